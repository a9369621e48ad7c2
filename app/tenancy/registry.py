"""The tenant registry: lookups cached in process, and how to reach each tenant's database.

A tenant is cached for 30 s, but its signing keys must not lag that long behind a
revocation: after key_check_seconds (default 2 s) a cached tenant is trusted again only once
`SELECT keys_version` (a primary-key lookup of one integer) says its keys have not changed;
otherwise it is reloaded. A revocation made on any replica is thus in force on all of them
within key_check_seconds plus one query, at the cost of at most one cheap query per tenant
per interval per replica, only for tenants that receive requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from app.db.dsn import with_database
from app.tenancy import repo
from app.tenancy.control import ControlPlane
from app.tenancy.errors import TenantNotFound
from app.tenancy.models import REF_PATTERN, Tenant
from app.tenancy.vault import Vault

TENANT_CACHE_SECONDS = 30.0
_MAX_CACHED_ORIGINS = 1024
KEY_CHECK_SECONDS = 2.0


@dataclass
class _Cached:
    tenant: Tenant
    loaded_at: float
    checked_at: float


class TenantRegistry:
    def __init__(
        self,
        control: ControlPlane,
        vault: Vault,
        *,
        cache_seconds: float = TENANT_CACHE_SECONDS,
        key_check_seconds: float = KEY_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._control = control
        self._vault = vault
        self._cache_seconds = cache_seconds
        self._key_check_seconds = key_check_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._origins: dict[str, tuple[bool, float]] = {}

    async def find(self, ref: str) -> Tenant | None:
        # The ref may come from a key whose signature is not checked yet: only well-formed refs
        # are looked up, and only hits are cached, so made-up refs cannot grow the cache.
        if not REF_PATTERN.fullmatch(ref):
            return None
        now = self._clock()
        cached = self._cache.get(ref)
        if cached is not None and now - cached.loaded_at < self._cache_seconds:
            if now - cached.checked_at < self._key_check_seconds:
                return cached.tenant
            async with self._control.pool.acquire() as conn:
                version = await repo.keys_version(conn, ref)
            if version == cached.tenant.keys_version:
                cached.checked_at = now
                return cached.tenant
        return await self._load(ref)

    async def _load(self, ref: str) -> Tenant | None:
        async with self._control.pool.acquire() as conn:
            record = await repo.find_tenant(conn, ref)
        if record is None:
            self._cache.pop(ref, None)
            return None
        tenant = self._vault.open(record)
        now = self._clock()
        self._cache[ref] = _Cached(tenant, now, now)
        return tenant

    async def get(self, ref: str) -> Tenant:
        tenant = await self.find(ref)
        if tenant is None:
            raise TenantNotFound(ref)
        return tenant

    async def list_all(self) -> list[Tenant]:
        async with self._control.pool.acquire() as conn:
            records = await repo.list_tenants(conn)
        return [self._vault.open(r) for r in records]

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
