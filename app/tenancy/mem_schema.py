"""Creating and upgrading the mem schema of tenants, and recording the outcome in the registry."""

from __future__ import annotations

import re

import asyncpg
import structlog

from app.errors import AppError
from app.settings import FTS_CONFIG_PATTERN, MemSettings
from app.tenancy import repo
from app.tenancy.control import ControlPlane
from app.tenancy.errors import InvalidFtsConfig, MemModuleDisabled, PgvectorMissing
from app.tenancy.migrations import MemMigrations
from app.tenancy.models import MemSchemaParams, MigrationOutcome, SchemaInitResult, Tenant
from app.tenancy.registry import TenantRegistry

log = structlog.get_logger(__name__)


class MemSchemas:
    def __init__(
        self,
        settings: MemSettings,
        control: ControlPlane,
        registry: TenantRegistry,
        migrations: MemMigrations,
    ) -> None:
        self._settings = settings
        self._control = control
        self._registry = registry
        self._migrations = migrations

    async def init(self, ref: str) -> SchemaInitResult:
        """Apply the mem migrations one tenant lacks. Safe to run again, and from two replicas at once."""
        if not self._settings.enabled:
            raise MemModuleDisabled()
        self._registry.forget(ref)
        tenant = await self._registry.get(ref)
        params = self._params(tenant)
        outcome = await self._migrate(tenant, params)
        async with self._control.pool.acquire() as conn:
            await repo.set_mem_schema(
                conn, ref, version=outcome.version, dims=params.dims, fts_config=params.fts_config
            )
        self._registry.forget(ref)
        log.info("mem_schema_ready", tenant=ref, version=outcome.version, applied=list(outcome.applied))
        return SchemaInitResult(ref=ref, status="ok", schema_version=outcome.version, applied=outcome.applied)

    async def init_all(self) -> list[SchemaInitResult]:
        """Every tenant in turn; one tenant's failure is reported and does not stop the others."""
        if not self._settings.enabled:
            raise MemModuleDisabled()
        results = []
        for tenant in await self._registry.list_all():
            try:
                results.append(await self.init(tenant.ref))
            except AppError as exc:
                results.append(SchemaInitResult(ref=tenant.ref, status="error", message=exc.message))
            except (OSError, asyncpg.PostgresError) as exc:
                log.error("mem_schema_init_failed", tenant=tenant.ref, error=type(exc).__name__)
                results.append(SchemaInitResult(ref=tenant.ref, status="error", message=type(exc).__name__))
        return results

    async def fingerprint(self, ref: str) -> list[tuple[str, str]]:
        tenant = await self._registry.get(ref)
        conn = await asyncpg.connect(self._registry.admin_dsn(tenant))
        try:
            return await repo.mem_schema_fingerprint(conn)
        finally:
            await conn.close()

    def _params(self, tenant: Tenant) -> MemSchemaParams:
        # Dimensions and text-search config are fixed the first time; later runs keep them.
        dims = tenant.embedding_dims or self._settings.embedding_dimensions
        fts_config = tenant.fts_config or self._settings.search_fts_config
        if not re.fullmatch(FTS_CONFIG_PATTERN, fts_config):
            raise InvalidFtsConfig(f"{fts_config!r} is not a text-search configuration name.")
        return MemSchemaParams(
            owner_role=tenant.owner_role, app_role=tenant.app_role, dims=int(dims), fts_config=fts_config
        )

    async def _migrate(self, tenant: Tenant, params: MemSchemaParams) -> MigrationOutcome:
        conn = await asyncpg.connect(self._registry.admin_dsn(tenant))
        try:
            if not await repo.vector_extension_available(conn):
                raise PgvectorMissing()
            if not await repo.text_search_config_exists(conn, params.fts_config):
                raise InvalidFtsConfig(
                    f"The text-search configuration {params.fts_config!r} does not exist on the server."
                )
            return await self._migrations.apply(conn, params)
        finally:
            await conn.close()
