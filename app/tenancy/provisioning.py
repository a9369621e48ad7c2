"""Creating a tenant: its registry row, roles, database and keys, all removed again if a step fails."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import jwt
import structlog

from app.auth.jwks import jwks_url_problem
from app.tenancy import repo
from app.tenancy.control import ControlPlane
from app.tenancy.errors import InvalidTenant, TenantExists
from app.tenancy.models import REF_PATTERN, NewTenant
from app.tenancy.origins import normalize_origins
from app.tenancy.vault import Vault

log = structlog.get_logger(__name__)

AfterDatabase = Callable[[str], Awaitable[object]]


def new_tenant(
    name: str,
    *,
    ref: str | None = None,
    jwt_secret: str | None = None,
    jwks_url: str | None = None,
    jwks: dict[str, Any] | None = None,
    jwt_issuer: str | None = None,
    cors_origins: list[str] | None = None,
    allow_insecure_jwks: bool = False,
) -> NewTenant:
    """Validate a create request and generate what the caller did not give: ref, secret, kid."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidTenant("A tenant name must have 1 to 200 characters.", code="invalid_tenant_name")
    ref = ref or _random_ref()
    if not REF_PATTERN.fullmatch(ref):
        raise InvalidTenant(
            "A tenant ref has 3 to 40 lowercase letters and digits, starting with a letter.",
            code="invalid_tenant_ref",
        )
    _check_jwks(jwks_url, jwks, allow_insecure=allow_insecure_jwks)
    secret = jwt_secret or secrets.token_urlsafe(48)
    if len(secret) < 32:
        raise InvalidTenant("A JWT secret needs at least 32 characters.", code="weak_jwt_secret")
    if jwt_issuer is not None and not 1 <= len(jwt_issuer) <= 500:
        raise InvalidTenant("A JWT issuer has 1 to 500 characters.", code="invalid_jwt_issuer")
    return NewTenant(
        ref=ref,
        name=name,
        db_name=f"mem_{ref}",
        owner_role=f"mem_owner_{ref}",
        app_role=f"mem_app_{ref}",
        app_role_password=secrets.token_hex(24),
        jwt_secret=secret,
        kid=new_kid(),
        jwt_issuer=jwt_issuer,
        jwks_url=jwks_url,
        jwks=jwks,
        cors_origins=normalize_origins(cors_origins or []),
    )


def _check_jwks(jwks_url: str | None, jwks: dict[str, Any] | None, *, allow_insecure: bool) -> None:
    if jwks_url is not None:
        problem = jwks_url_problem(jwks_url, allow_insecure=allow_insecure)
        if problem is not None:
            raise InvalidTenant(
                f"The JWKS URL is refused: {problem}.",
                code="invalid_jwks_url",
                hint="Use a public https URL; MEM_ALLOW_INSECURE_JWKS=true lifts this for development.",
            )
    if jwks is not None:
        try:
            jwt.PyJWKSet.from_dict(jwks)
        except jwt.PyJWTError as exc:
            raise InvalidTenant(f"The JWKS is not valid: {exc}", code="invalid_jwks") from exc


def new_kid() -> str:
    return secrets.token_hex(8)


def _random_ref() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(20))


class Provisioner:
    def __init__(self, control: ControlPlane, vault: Vault) -> None:
        self._control = control
        self._vault = vault
        self._lock = asyncio.Lock()

    async def create(self, new: NewTenant, *, after_database: AfterDatabase | None = None) -> None:
        """Register, provision, run after_database(ref) (the mem schema), then mark the tenant active."""
        async with self._lock:
            await self._register(new)
            try:
                await self._create_roles_and_database(new)
                if after_database is not None:
                    await after_database(new.ref)
                async with self._control.pool.acquire() as conn:
                    await repo.set_tenant_status(conn, new.ref, "active")
            except BaseException:
                log.exception("tenant_create_failed", tenant=new.ref)
                await self._undo(new)
                raise

    async def _register(self, new: NewTenant) -> None:
        """The row and its first signing key, secrets sealed: nothing in plain text reaches the database."""
        vault = self._vault
        async with self._control.pool.acquire() as conn, conn.transaction():
            try:
                await repo.insert_tenant(
                    conn,
                    new,
                    password_sealed=vault.seal_password(new.ref, new.app_role_password),
                    master_key_id=vault.key_id,
                )
            except asyncpg.UniqueViolationError as exc:
                raise TenantExists(new.ref) from exc
            await repo.insert_signing_key(
                conn,
                new.ref,
                kid=new.kid,
                secret_sealed=vault.seal_secret(new.ref, new.kid, new.jwt_secret),
                master_key_id=vault.key_id,
            )

    async def _create_roles_and_database(self, new: NewTenant) -> None:
        conn = await self._control.server_connection()
        try:
            await repo.create_roles(
                conn, owner_role=new.owner_role, app_role=new.app_role, app_password=new.app_role_password
            )
            await repo.create_database(
                conn, db_name=new.db_name, owner_role=new.owner_role, app_role=new.app_role
            )
        finally:
            await conn.close()

    async def remove(self, ref: str, *, db_name: str, roles: list[str]) -> None:
        """Drop a tenant's database (open sessions and all), its roles and its registry row."""
        conn = await self._control.server_connection()
        try:
            await repo.drop_database_and_roles(conn, db_name=db_name, roles=roles)
        finally:
            await conn.close()
        async with self._control.pool.acquire() as cp:
            await repo.delete_tenant_row(cp, ref)

    async def _undo(self, new: NewTenant) -> None:
        try:
            await self.remove(new.ref, db_name=new.db_name, roles=[new.app_role, new.owner_role])
        except (OSError, asyncpg.PostgresError):
            log.exception("tenant_cleanup_failed", tenant=new.ref)
