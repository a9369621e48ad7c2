"""The platform: control plane, tenant creation, mem schema init, and the tenant directory."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import structlog

from app.auth.tokens import mint_api_key
from app.db import sqlfiles
from app.db.dsn import database_of, with_database
from app.errors import AppError, BadRequest, Conflict, NotFound
from app.settings import FTS_CONFIG_PATTERN, Settings
from app.tenancy import repo
from app.tenancy.models import REF_PATTERN, Tenant

log = structlog.get_logger(__name__)

CONTROL_DB = "memory_control"
TENANT_CACHE_SECONDS = 30.0
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MemModuleDisabled(AppError):
    status_code = 409
    code = "mem_module_disabled"
    message = "The memory module is disabled on this platform (nubase.mem.enabled is false)."


class PgvectorMissing(AppError):
    status_code = 503
    code = "pgvector_unavailable"
    message = (
        "The pgvector extension is not available on this PostgreSQL server; install pgvector 0.8 or newer."
    )


@dataclass(frozen=True)
class SchemaInitResult:
    ref: str
    status: str
    schema_version: int | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ref": self.ref, "status": self.status, "schema_version": self.schema_version}
        if self.message:
            out["message"] = self.message
        return out


class Platform:
    """Owns the control-plane pool and knows how to reach every tenant's database."""

    def __init__(self, settings: Settings, server_dsn: str) -> None:
        self.settings = settings
        # With DATABASE_URL, its database is the control plane; the embedded server gets its own.
        self.server_dsn = server_dsn
        self.control_dsn = server_dsn if settings.database_url else with_database(server_dsn, CONTROL_DB)
        self.control: asyncpg.Pool | None = None
        self._cache: dict[str, tuple[Tenant, float]] = {}
        self._jwks: dict[str, jwt.PyJWKSet | None] = {}
        self._create_lock = asyncio.Lock()

    # --- start-up -----------------------------------------------------------------

    async def start(self) -> None:
        if not self.settings.database_url:
            await self._ensure_control_database()
        self.control = await asyncpg.create_pool(self.control_dsn, min_size=1, max_size=4)
        async with self.control.acquire() as conn, conn.transaction():
            # One platform process migrates at a time.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('memory_control_migrations'))")
            done = await repo.applied_control_versions(conn)
            for path in sqlfiles.sql_files("control"):
                if path.name not in done:
                    await repo.apply_control_file(conn, path.name, path.read_text())
                    log.info("control_migration_applied", file=path.name)
            if self.settings.mem.enabled and not await repo.vector_extension_available(conn):
                raise PgvectorMissing()

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.close()

    async def _ensure_control_database(self) -> None:
        conn = await asyncpg.connect(self.server_dsn)
        try:
            if not await repo.database_exists(conn, CONTROL_DB):
                await conn.execute(f'CREATE DATABASE "{CONTROL_DB}"')
                # Tenant roles can log in on this server: they have no business in the registry.
                await conn.execute(f'REVOKE CONNECT ON DATABASE "{CONTROL_DB}" FROM PUBLIC')
        finally:
            await conn.close()

    async def ready(self) -> bool:
        if self.control is None:
            return False
        try:
            async with self.control.acquire(timeout=2) as conn:
                return bool(await conn.fetchval("SELECT 1"))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False

    def _pool(self) -> asyncpg.Pool:
        if self.control is None:
            raise RuntimeError("Platform.start() has not run")
        return self.control

    # --- the tenant directory (cached) ----------------------------------------------

    async def find_tenant(self, ref: str) -> Tenant | None:
        # The ref may come from a key whose signature is not checked yet: only well-formed refs
        # are looked up, and only hits are cached, so made-up refs cannot grow the cache.
        if not REF_PATTERN.match(ref):
            return None
        cached = self._cache.get(ref)
        if cached is not None and time.monotonic() - cached[1] < TENANT_CACHE_SECONDS:
            return cached[0]
        async with self._pool().acquire() as conn:
            tenant = await repo.find_tenant(conn, ref)
        if tenant is not None:
            self._cache[ref] = (tenant, time.monotonic())
        return tenant

    def forget(self, ref: str) -> None:
        self._cache.pop(ref, None)
        self._jwks.pop(ref, None)

    def jwks_for(self, tenant: Tenant) -> jwt.PyJWKSet | None:
        """Inline JWKS of the tenant; a JWKS URL is fetched by the auth layer's client."""
        if tenant.ref not in self._jwks:
            self._jwks[tenant.ref] = jwt.PyJWKSet.from_dict(tenant.jwks) if tenant.jwks else None
        return self._jwks[tenant.ref]

    async def tenant_dsn(self, ref: str) -> str:
        tenant = await self.find_tenant(ref)
        if tenant is None:
            raise NotFound(f"Unknown tenant {ref!r}.", code="tenant_not_found")
        base = tenant.db_url or self.server_dsn
        return with_database(base, tenant.db_name, user=tenant.app_role, password=tenant.app_role_password)

    async def list_tenants(self) -> list[Tenant]:
        async with self._pool().acquire() as conn:
            return await repo.list_tenants(conn)

    # --- creating tenants -----------------------------------------------------------

    async def create_tenant(
        self,
        name: str,
        *,
        ref: str | None = None,
        jwt_secret: str | None = None,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
    ) -> Tenant:
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise BadRequest("A tenant name must have 1 to 200 characters.", code="invalid_tenant_name")
        ref = ref or _new_ref()
        if not REF_PATTERN.match(ref):
            raise BadRequest(
                "A tenant ref has 3 to 40 lowercase letters and digits, starting with a letter.",
                code="invalid_tenant_ref",
            )
        if jwks is not None:
            try:
                jwt.PyJWKSet.from_dict(jwks)
            except jwt.PyJWTError as exc:
                raise BadRequest(f"The JWKS is not valid: {exc}", code="invalid_jwks") from exc
        secret = jwt_secret or secrets.token_urlsafe(48)
        if len(secret) < 32:
            raise BadRequest("A JWT secret needs at least 32 characters.", code="weak_jwt_secret")
        issued_at = int(time.time())
        values = {
            "ref": ref,
            "name": name,
            "db_name": f"mem_{ref}",
            "owner_role": f"mem_owner_{ref}",
            "app_role": f"mem_app_{ref}",
            "app_role_password": secrets.token_hex(24),
            "jwt_secret": secret,
            "jwks_url": jwks_url,
            "jwks": jwks,
            "anon_key": mint_api_key(secret, ref, "anon", issued_at=issued_at),
            "service_role_key": mint_api_key(secret, ref, "service_role", issued_at=issued_at),
        }
        async with self._create_lock:
            async with self._pool().acquire() as conn:
                try:
                    await repo.insert_tenant(conn, values)
                except asyncpg.UniqueViolationError as exc:
                    raise Conflict(
                        f"A tenant with ref {ref!r} already exists.", code="tenant_exists"
                    ) from exc
            try:
                await self._provision(values)
                if self.settings.mem.enabled:
                    await self.init_mem_schema(ref)
                async with self._pool().acquire() as conn:
                    await repo.set_tenant_status(conn, ref, "active")
            except BaseException:
                log.exception("tenant_create_failed", tenant=ref)
                await self._undo_provision(values)
                raise
        self.forget(ref)
        tenant = await self.find_tenant(ref)
        assert tenant is not None
        log.info("tenant_created", tenant=ref, mem_schema=tenant.has_mem_schema)
        return tenant

    async def _provision(self, values: dict[str, Any]) -> None:
        for ident in (values["db_name"], values["owner_role"], values["app_role"]):
            if not _IDENT.match(ident):
                raise BadRequest(f"{ident!r} is not a safe identifier.", code="invalid_tenant_ref")
        if not re.fullmatch(r"[0-9a-f]{48}", values["app_role_password"]):
            raise RuntimeError("generated role password has an unexpected form")
        conn = await asyncpg.connect(with_database(self.server_dsn, database_of(self.server_dsn)))
        try:
            await repo.create_roles(
                conn,
                owner_role=values["owner_role"],
                app_role=values["app_role"],
                app_password=values["app_role_password"],
            )
            await repo.create_database(
                conn, db_name=values["db_name"], owner_role=values["owner_role"], app_role=values["app_role"]
            )
        finally:
            await conn.close()

    async def _undo_provision(self, values: dict[str, Any]) -> None:
        try:
            conn = await asyncpg.connect(self.server_dsn)
            try:
                await repo.drop_database_and_roles(
                    conn, db_name=values["db_name"], roles=[values["app_role"], values["owner_role"]]
                )
            finally:
                await conn.close()
            async with self._pool().acquire() as cp:
                await repo.delete_tenant_row(cp, values["ref"])
        except (OSError, asyncpg.PostgresError):
            log.exception("tenant_cleanup_failed", tenant=values["ref"])
        self.forget(values["ref"])

    # --- the mem schema -------------------------------------------------------------

    async def init_mem_schema(self, ref: str) -> SchemaInitResult:
        """Create or bring up to date the mem schema of one tenant. Safe to run again."""
        if not self.settings.mem.enabled:
            raise MemModuleDisabled()
        self.forget(ref)
        tenant = await self.find_tenant(ref)
        if tenant is None:
            raise NotFound(f"Unknown tenant {ref!r}.", code="tenant_not_found")
        # Dimensions and text-search config are fixed the first time; later runs keep them.
        dims = tenant.embedding_dims or self.settings.mem.embedding_dimensions
        fts_config = tenant.fts_config or self.settings.mem.search_fts_config
        if not re.match(FTS_CONFIG_PATTERN, fts_config):
            raise BadRequest(
                f"{fts_config!r} is not a text-search configuration name.", code="invalid_fts_config"
            )
        base = tenant.db_url or self.server_dsn
        conn = await asyncpg.connect(with_database(base, tenant.db_name))
        try:
            if not await repo.vector_extension_available(conn):
                raise PgvectorMissing()
            if not await repo.text_search_config_exists(conn, fts_config):
                raise BadRequest(
                    f"The text-search configuration {fts_config!r} does not exist on the server.",
                    code="invalid_fts_config",
                )
            values = {"dims": str(int(dims)), "fts_config": fts_config, "app_role": f'"{tenant.app_role}"'}
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('memory_mem_schema'))")
                version = 0
                for path in sqlfiles.sql_files("mem"):
                    version = await repo.apply_mem_schema(
                        conn, owner_role=tenant.owner_role, script=sqlfiles.render(path, values)
                    )
        finally:
            await conn.close()
        async with self._pool().acquire() as cp:
            await repo.set_mem_schema(cp, ref, version=version, dims=int(dims), fts_config=fts_config)
        self.forget(ref)
        log.info("mem_schema_ready", tenant=ref, version=version)
        return SchemaInitResult(ref=ref, status="ok", schema_version=version)

    async def init_all_mem_schemas(self) -> list[SchemaInitResult]:
        if not self.settings.mem.enabled:
            raise MemModuleDisabled()
        results = []
        for tenant in await self.list_tenants():
            try:
                results.append(await self.init_mem_schema(tenant.ref))
            except AppError as exc:
                results.append(SchemaInitResult(ref=tenant.ref, status="error", message=exc.message))
            except (OSError, asyncpg.PostgresError) as exc:
                log.error("mem_schema_init_failed", tenant=tenant.ref, error=type(exc).__name__)
                results.append(SchemaInitResult(ref=tenant.ref, status="error", message=type(exc).__name__))
        return results

    async def fingerprint(self, ref: str) -> list[tuple[str, str]]:
        tenant = await self.find_tenant(ref)
        if tenant is None:
            raise NotFound(f"Unknown tenant {ref!r}.", code="tenant_not_found")
        conn = await asyncpg.connect(with_database(tenant.db_url or self.server_dsn, tenant.db_name))
        try:
            return await repo.mem_schema_fingerprint(conn)
        finally:
            await conn.close()


def _new_ref() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(20))
