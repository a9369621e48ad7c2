"""The tenancy package's front door: starts the control plane and composes its parts.

Each part does one job (ControlPlane, TenantRegistry, Provisioner, MemSchemas with the
migration runners); Platform only wires them and keeps the call sites short.
"""

from __future__ import annotations

from typing import Any

import structlog

from app.core.limits import effective_limits
from app.settings import Settings
from app.tenancy import repo
from app.tenancy.control import ControlPlane
from app.tenancy.crypto import MasterKey, MasterKeyError, development_master_key, parse_previous_keys
from app.tenancy.errors import PgvectorMissing, TenantNotFound
from app.tenancy.keys import Rotation, SigningKeys, api_keys
from app.tenancy.mem_schema import MemSchemas
from app.tenancy.migrations import ControlMigrations, MemMigrations
from app.tenancy.models import REF_PATTERN, SchemaInitResult, Tenant
from app.tenancy.origins import normalize_origins
from app.tenancy.provisioning import Provisioner, new_tenant
from app.tenancy.registry import TenantRegistry
from app.tenancy.vault import Vault

log = structlog.get_logger(__name__)


class Platform:
    def __init__(
        self, settings: Settings, server_dsn: str, *, mem_migrations: MemMigrations | None = None
    ) -> None:
        self.settings = settings
        self.control = ControlPlane(server_dsn, own_database=not settings.database_url)
        self.vault = Vault(
            master_key(settings),
            audience=settings.jwt_audience,
            max_token_lifetime=settings.max_token_lifetime_seconds,
            previous=parse_previous_keys(settings.master_key_previous),
        )
        self.registry = TenantRegistry(self.control, self.vault, key_check_seconds=settings.key_check_seconds)
        self.provisioner = Provisioner(self.control, self.vault)
        self.signing_keys = SigningKeys(self.control, self.vault)
        self.mem_schemas = MemSchemas(
            settings.mem, self.control, self.registry, mem_migrations or MemMigrations()
        )

    @property
    def server_dsn(self) -> str:
        return self.control.server_dsn

    @property
    def control_dsn(self) -> str:
        return self.control.dsn

    async def start(self) -> None:
        await self.control.open(ControlMigrations())
        try:
            await self.signing_keys.check_master_key()
            await self.signing_keys.seal_plaintext_rows()
            await self.signing_keys.reseal_with_current_key()
            if self.settings.mem.enabled and not await self.control.has_pgvector():
                raise PgvectorMissing()
        except BaseException:
            await self.control.close()
            raise

    async def stop(self) -> None:
        await self.control.close()

    async def ready(self) -> bool:
        return await self.registry.ready()

    async def connection_slots(self) -> tuple[int, int]:
        return await self.control.connection_slots()

    async def find_tenant(self, ref: str) -> Tenant | None:
        return await self.registry.find(ref)

    async def get_tenant(self, ref: str) -> Tenant:
        """The tenant, or TenantNotFound (404)."""
        return await self.registry.get(ref)

    async def list_tenants(self) -> list[Tenant]:
        return await self.registry.list_all()

    async def tenant_dsn(self, ref: str) -> str:
        return await self.registry.tenant_dsn(ref)

    async def create_tenant(
        self,
        name: str,
        *,
        ref: str | None = None,
        jwt_secret: str | None = None,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
        cors_origins: list[str] | None = None,
        jwt_issuer: str | None = None,
    ) -> Tenant:
        new = new_tenant(
            name,
            ref=ref,
            jwt_secret=jwt_secret,
            jwks_url=jwks_url,
            jwks=jwks,
            jwt_issuer=jwt_issuer,
            cors_origins=cors_origins,
            allow_insecure_jwks=self.settings.allow_insecure_jwks,
        )
        init_schema = self.mem_schemas.init if self.settings.mem.enabled else None
        try:
            await self.provisioner.create(new, after_database=init_schema)
        finally:
            self.registry.forget(new.ref)
        tenant = await self.registry.get(new.ref)
        log.info("tenant_created", tenant=new.ref, mem_schema=tenant.has_mem_schema)
        return tenant

    async def set_cors_origins(self, ref: str, origins: list[str]) -> Tenant:
        """Replace the tenant's CORS allow-list (validated); TenantNotFound for an unknown ref."""
        await self.registry.get(ref)
        await self.registry.set_cors_origins(ref, normalize_origins(origins))
        return await self.registry.get(ref)

    async def origin_listed(self, origin: str) -> bool:
        return await self.registry.origin_listed(origin)

    async def record_reset(self, ref: str, actor: str, removed: dict[str, int]) -> None:
        """Write a tenant reset to the control plane's audit trail (control.tenant_resets)."""
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        async with self.control.pool.acquire() as conn:
            await repo.insert_reset(conn, ref, actor=actor, request_id=request_id, removed=removed)
        log.warning("tenant_reset_recorded", tenant=ref, actor=actor, removed=removed)

    async def resets(self, ref: str) -> list[dict[str, Any]]:
        """The tenant's reset audit trail, oldest first."""
        async with self.control.pool.acquire() as conn:
            return await repo.list_resets(conn, ref)

    async def set_tenant_limits(self, ref: str, limits: dict[str, int]) -> Tenant:
        """Replace the tenant's own limits (absent keys use the platform defaults).

        This replica applies them at once; others within their tenant cache time (30 s).
        """
        if not REF_PATTERN.fullmatch(ref):
            raise TenantNotFound(ref)
        tenant = await self.registry.set_limits(ref, limits)
        log.info("tenant_limits_set", tenant=ref, limits=limits)
        return tenant

    def limits_view(self, tenant: Tenant) -> dict[str, Any]:
        return {
            "ref": tenant.ref,
            "limits": dict(tenant.limits),
            "effective": effective_limits(self.settings.limits, tenant.limits),
        }

    def api_keys(self, tenant: Tenant) -> dict[str, str]:
        """Fresh anon and service_role keys, signed with the tenant's current secret."""
        return api_keys(tenant, lifetime_seconds=self.settings.api_key_lifetime_days * 86_400)

    def key_set(self, tenant: Tenant) -> dict[str, str]:
        """What the admin API and the banner show of a tenant's keys: fresh keys, secret and kid."""
        minted = self.api_keys(tenant)
        return {
            "ref": tenant.ref,
            "anon_key": minted["anon"],
            "service_role_key": minted["service_role"],
            "jwt_secret": tenant.jwt_secret,
            "kid": tenant.kid,
        }

    async def rotate_keys(self, ref: str, *, grace_seconds: int | None = None) -> tuple[Tenant, Rotation]:
        grace = self.settings.key_rotation_grace_seconds if grace_seconds is None else grace_seconds
        rotation = await self.signing_keys.rotate(ref, grace_seconds=grace)
        self.registry.forget(ref)
        return await self.registry.get(ref), rotation

    async def revoke_keys(self, ref: str, kid: str | None = None) -> tuple[list[str], int]:
        result = await self.signing_keys.revoke(ref, kid)
        self.registry.forget(ref)
        return result

    async def init_mem_schema(self, ref: str) -> SchemaInitResult:
        return await self.mem_schemas.init(ref)

    async def init_all_mem_schemas(self) -> list[SchemaInitResult]:
        return await self.mem_schemas.init_all()

    async def fingerprint(self, ref: str) -> list[tuple[str, str]]:
        return await self.mem_schemas.fingerprint(ref)


def master_key(settings: Settings) -> MasterKey:
    """MEM_MASTER_KEY (or _FILE); on the embedded development default, one kept in the data directory."""
    if settings.master_key:
        return MasterKey.from_base64(settings.master_key)
    if settings.database_url:
        raise MasterKeyError(
            "MEM_MASTER_KEY (or MEM_MASTER_KEY_FILE) is required with DATABASE_URL: "
            "it seals the tenants' secrets in the control plane.",
            hint="Generate one with: openssl rand -base64 32",
        )
    return development_master_key(settings.data_dir)
