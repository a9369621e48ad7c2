"""The tenant registry: lookups cached in process, and how to reach each tenant's database."""

from __future__ import annotations

import time

import asyncpg

from app.db.dsn import with_database
from app.tenancy import repo
from app.tenancy.control import ControlPlane
from app.tenancy.errors import TenantNotFound
from app.tenancy.models import REF_PATTERN, Tenant

TENANT_CACHE_SECONDS = 30.0
_MAX_CACHED_ORIGINS = 1024


class TenantRegistry:
    def __init__(self, control: ControlPlane, *, cache_seconds: float = TENANT_CACHE_SECONDS) -> None:
        self._control = control
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Tenant, float]] = {}
        self._origins: dict[str, tuple[bool, float]] = {}

    async def find(self, ref: str) -> Tenant | None:
        # The ref may come from a key whose signature is not checked yet: only well-formed refs
        # are looked up, and only hits are cached, so made-up refs cannot grow the cache.
        if not REF_PATTERN.fullmatch(ref):
            return None
        cached = self._cache.get(ref)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        async with self._control.pool.acquire() as conn:
            tenant = await repo.find_tenant(conn, ref)
        if tenant is not None:
            self._cache[ref] = (tenant, time.monotonic())
        return tenant

    async def get(self, ref: str) -> Tenant:
        tenant = await self.find(ref)
        if tenant is None:
            raise TenantNotFound(ref)
        return tenant

    async def list_all(self) -> list[Tenant]:
        async with self._control.pool.acquire() as conn:
            return await repo.list_tenants(conn)

    async def set_limits(self, ref: str, limits: dict[str, int]) -> Tenant:
        async with self._control.pool.acquire() as conn:
            found = await repo.set_tenant_limits(conn, ref, limits)
        self.forget(ref)
        if not found:
            raise TenantNotFound(ref)
        return await self.get(ref)

    def forget(self, ref: str) -> None:
        self._cache.pop(ref, None)
        self._origins.clear()

    async def set_cors_origins(self, ref: str, origins: tuple[str, ...]) -> None:
        async with self._control.pool.acquire() as conn:
            found = await repo.set_cors_origins(conn, ref, origins)
        self.forget(ref)
        if not found:
            raise TenantNotFound(ref)

    async def origin_listed(self, origin: str) -> bool:
        """Is the origin on some active tenant's CORS list? Cached like tenants, in a bounded map
        (a preflight's Origin is anyone's to choose)."""
        cached = self._origins.get(origin)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        async with self._control.pool.acquire() as conn:
            listed = await repo.origin_listed(conn, origin)
        if len(self._origins) >= _MAX_CACHED_ORIGINS:
            self._origins.clear()
        self._origins[origin] = (listed, time.monotonic())
        return listed

    async def tenant_dsn(self, ref: str) -> str:
        """The request role's DSN: what the tenant pools connect with."""
        tenant = await self.get(ref)
        base = tenant.db_url or self._control.server_dsn
        return with_database(base, tenant.db_name, user=tenant.app_role, password=tenant.app_role_password)

    def admin_dsn(self, tenant: Tenant) -> str:
        """The server's own (superuser) credentials on the tenant's database, for migrations."""
        return with_database(tenant.db_url or self._control.server_dsn, tenant.db_name)

    async def ready(self) -> bool:
        if not self._control.is_open:
            return False
        try:
            async with self._control.pool.acquire(timeout=2) as conn:
                return await repo.ping(conn)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
