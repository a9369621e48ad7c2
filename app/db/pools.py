"""One asyncpg pool per tenant database: created on first use, bounded, evicted when idle."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import structlog
from pgvector.asyncpg import register_vector
from prometheus_client import Gauge

log = structlog.get_logger(__name__)

POOLS_OPEN = Gauge("memory_tenant_pools_open", "Tenant connection pools currently open")
POOL_CONNECTIONS = Gauge("memory_pool_connections", "Connections held by tenant pools", ["state"])


# A pool smaller than this is not worth having: the budget then buys fewer pools instead.
MIN_POOL_MAX_SIZE = 4


@dataclass(frozen=True)
class PoolSizing:
    """How the connection budget is spent: `max_pools` pools of at most `max_size` connections."""

    budget: int
    max_size: int
    max_pools: int

    @property
    def most_connections(self) -> int:
        return self.max_size * self.max_pools


def size_pools(budget: int, *, max_size: int, max_pools: int) -> PoolSizing:
    """Fit the configured pool size and count into the budget, so max_size * max_pools <= budget.

    The configured sizes are kept when they fit. Otherwise each pool shrinks first (down to
    MIN_POOL_MAX_SIZE, or the configured size if smaller), so that more tenants keep a pool
    at once, and then the number of pools shrinks to what the budget holds (at least one).
    """
    if budget < 1:
        raise ValueError(f"the connection budget must be at least 1, not {budget}")
    size = max(1, min(max_size, budget))
    if size * max_pools > budget:
        size = max(min(max_size, MIN_POOL_MAX_SIZE), budget // max_pools, 1)
        size = min(size, budget)
    return PoolSizing(budget=budget, max_size=size, max_pools=max(1, min(max_pools, budget // size)))


async def init_connection(conn: asyncpg.Connection) -> None:
    # The codec lets embeddings travel as numpy arrays in binary, not as text.
    await register_vector(conn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, in place of asyncpg's default reset query.

    asyncpg rolls back an open transaction and drops listeners on release in any case; its
    default then sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`, one
    more round trip per request (issue 13's profile). Tenant connections never carry session
    state: claims are SET LOCAL (app/db/session.py), advisory locks are transaction locks,
    nothing LISTENs or opens a cursor WITH HOLD, and the session settings are startup parameters.
    """
    del conn


class TenantPools:
    def __init__(
        self,
        *,
        dsn_for: Callable[[str], Awaitable[str]],
        min_size: int,
        max_size: int,
        idle_seconds: float,
        max_pools: int,
        statement_timeout_ms: int,
    ) -> None:
        self._dsn_for = dsn_for
        self._min_size = min_size
        self._max_size = max_size
        self._idle_seconds = idle_seconds
        self._max_pools = max_pools
        self._statement_timeout_ms = statement_timeout_ms
        self._pools: OrderedDict[str, tuple[asyncpg.Pool, float]] = OrderedDict()
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def max_pools(self) -> int:
        return self._max_pools

    async def get(self, ref: str) -> asyncpg.Pool:
        entry = self._pools.get(ref)
        if entry is not None:
            self._pools[ref] = (entry[0], time.monotonic())
            self._pools.move_to_end(ref)
            self._update_gauges()
            return entry[0]
        async with self._lock:
            entry = self._pools.get(ref)
            if entry is not None:
                return entry[0]
            pool = await asyncpg.create_pool(
                await self._dsn_for(ref),
                min_size=self._min_size,
                max_size=self._max_size,
                init=init_connection,
                reset=keep_session,
                # Connections idle this long are closed even while the pool stays open.
                max_inactive_connection_lifetime=self._idle_seconds,
                server_settings={
                    "application_name": f"memory:{ref}",
                    "statement_timeout": str(self._statement_timeout_ms),
                    # Plan each prepared statement once per connection. Under "auto", PostgreSQL
                    # kept re-planning the add's writes (the row-security policies make their
                    # custom plans look cheaper): binding the entity-link insert took 0.5 ms, the
                    # dedupe read 0.3 ms; generic, 0.01-0.05 ms. The policies read the claims when
                    # a statement runs, so a generic plan holds no one's rows.
                    "plan_cache_mode": "force_generic_plan",
                },
            )
            self._pools[ref] = (pool, time.monotonic())
            while len(self._pools) > self._max_pools:
                old_ref, (old_pool, _) = self._pools.popitem(last=False)
                await self._close(old_ref, old_pool, reason="capacity")
            self._update_gauges()
            log.info("tenant_pool_opened", tenant=ref)
            return pool

    async def drop(self, ref: str) -> None:
        entry = self._pools.pop(ref, None)
        if entry is not None:
            await self._close(ref, entry[0], reason="dropped")

    async def evict_idle(self) -> int:
        now = time.monotonic()
        idle = [ref for ref, (_, used) in self._pools.items() if now - used > self._idle_seconds]
        for ref in idle:
            pool, _ = self._pools.pop(ref)
            await self._close(ref, pool, reason="idle")
        self._update_gauges()
        return len(idle)

    def start_reaper(self) -> None:
        async def reap() -> None:
            while True:
                await asyncio.sleep(max(1.0, self._idle_seconds / 4))
                try:
                    await self.evict_idle()
                except Exception:  # the reaper must outlive one bad close
                    log.exception("tenant_pool_reaper_failed")

        self._reaper = asyncio.create_task(reap())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        while self._pools:
            ref, (pool, _) = self._pools.popitem()
            await self._close(ref, pool, reason="shutdown")
        self._update_gauges()

    def refs(self) -> list[str]:
        return list(self._pools)

    async def _close(self, ref: str, pool: asyncpg.Pool, *, reason: str) -> None:
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except (TimeoutError, asyncpg.PostgresError, OSError):
            pool.terminate()
        log.info("tenant_pool_closed", tenant=ref, reason=reason)

    def _update_gauges(self) -> None:
        POOLS_OPEN.set(len(self._pools))
        in_use = sum(p.get_size() - p.get_idle_size() for p, _ in self._pools.values())
        idle = sum(p.get_idle_size() for p, _ in self._pools.values())
        POOL_CONNECTIONS.labels("in_use").set(in_use)
        POOL_CONNECTIONS.labels("idle").set(idle)
