"""The request's unit of work on a tenant database."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

import asyncpg
from asyncpg.transaction import Transaction

from app.errors import Overloaded, retry_after

# A request that cannot get a connection this fast answers 503 database_busy instead of queueing
# (settings: database.acquire-timeout-seconds).
ACQUIRE_TIMEOUT_SECONDS = 2.0


class DatabaseBusy(Overloaded):
    code = "database_busy"
    message = "Every database connection of this tenant is in use; retry shortly."


# Errors after which running the same statements again may well succeed (SQLSTATE class 40).
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
RETRY_ATTEMPTS = 4

T = TypeVar("T")

SERVICE_ROLE = "service_role"
USER_ROLE = "authenticated"


@dataclass(frozen=True)
class RowClaims:
    """Who a transaction runs as, for the row-level security policies (sql/mem/003).

    Set with set_config(..., is_local => true), i.e. SET LOCAL: the values end with the
    transaction, so a pooled connection never carries one request's claims into the next.
    """

    role: str  # SERVICE_ROLE (the whole tenant) or USER_ROLE (the user's rows)
    user_id: str | None = None

    def __post_init__(self) -> None:
        if self.role not in (SERVICE_ROLE, USER_ROLE):
            raise ValueError(f"{self.role!r} is not a row-security role")
        if self.role == USER_ROLE and not self.user_id:
            raise ValueError("a user's claims need its user_id")

    @classmethod
    def service(cls) -> RowClaims:
        return cls(SERVICE_ROLE)


async def set_claims(conn: asyncpg.Connection, claims: RowClaims) -> None:
    """State the claims for the transaction open on conn (outside one they would be lost at once)."""
    await conn.execute(
        "SELECT set_config('mem.role', $1, true), set_config('mem.user_id', $2, true)",
        claims.role,
        claims.user_id or "",
    )


class ConnectionSource(Protocol):
    """What a session takes its connection from: a tenant's asyncpg pool, or a BoundedPool over it."""

    # `timeout` as asyncpg.Pool.acquire names it: the session calls either the same way.
    async def acquire(self, *, timeout: float | None = None) -> asyncpg.Connection: ...  # noqa: ASYNC109
    async def release(self, connection: asyncpg.Connection) -> None: ...


class BoundedPool:
    """A pool of which this caller may hold at most `slots` connections at once (waiting for a slot,
    never failing for want of one). The queue workers' jobs go through one per tenant, so that the
    tenant's requests always find the rest of the pool."""

    def __init__(self, pool: asyncpg.Pool, slots: asyncio.Semaphore) -> None:
        self._pool = pool
        self._slots = slots

    async def acquire(self, *, timeout: float | None = None) -> asyncpg.Connection:  # noqa: ASYNC109
        await self._slots.acquire()
        try:
            conn: asyncpg.Connection = await self._pool.acquire(timeout=timeout)
        except BaseException:
            self._slots.release()
            raise
        return conn

    async def release(self, connection: asyncpg.Connection) -> None:
        try:
            await self._pool.release(connection)
        finally:
            self._slots.release()


class TenantSession:
    """One connection and one transaction, opened on first use and ended by the owner of the request.

    Lazy so that a request can call a model provider before it holds a pooled connection.
    Every transaction it opens starts by stating the request's row-security claims.
    """

    def __init__(
        self,
        pool: asyncpg.Pool | ConnectionSource,
        claims: RowClaims,
        *,
        acquire_timeout: float = ACQUIRE_TIMEOUT_SECONDS,
    ) -> None:
        self._pool = pool
        self._claims = claims
        self._acquire_timeout = acquire_timeout
        self._conn: asyncpg.Connection | None = None
        self._tx: Transaction | None = None
        self._after_commit: list[Callable[[], None]] = []

    async def connection(self) -> asyncpg.Connection:
        if self._conn is None:
            conn = await self._acquire()
            try:
                tx = conn.transaction()
                await tx.start()
                await set_claims(conn, self._claims)
            except BaseException:  # release rolls back a transaction left open
                await self._pool.release(conn)
                raise
            self._conn, self._tx = conn, tx
        return self._conn

    async def retry_alone(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work` in a savepoint, again (up to RETRY_ATTEMPTS) after a deadlock or a
        serialization failure. Rolling back to the savepoint releases the locks `work` took,
        so the other transaction can finish. Only for work that is safe to repeat: the last
        failure is raised (a 503 database_busy)."""
        conn = await self.connection()
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                async with conn.transaction():
                    return await work(conn)
            except RETRYABLE:
                if attempt == RETRY_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for reads made before slow provider calls, returned right after.

        It sees committed data only and is not part of the request's transaction: whatever a
        later write relies on must be checked again inside that transaction. It runs in a short
        read-only transaction of its own, so the row-security claims hold for it too.
        """
        if self._conn is not None:  # the transaction is already open: read inside it
            yield self._conn
            return
        conn = await self._acquire()
        try:
            async with conn.transaction(readonly=True):
                await set_claims(conn, self._claims)
                yield conn
        finally:
            await self._pool.release(conn)

    async def _acquire(self) -> asyncpg.Connection:
        try:
            conn: asyncpg.Connection = await self._pool.acquire(timeout=self._acquire_timeout)
        except TimeoutError:
            raise DatabaseBusy(headers=retry_after(1)) from None
        return conn

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the transaction has committed (never when it rolls back).

        For what other tasks of this process may act on only once the rows are visible to them,
        e.g. waking the queue workers for a job just enqueued.
        """
        self._after_commit.append(callback)

    async def finish(self, *, commit: bool) -> None:
        conn, tx = self._conn, self._tx
        callbacks, self._after_commit = self._after_commit, []
        self._conn = self._tx = None
        if conn is None or tx is None:
            return
        try:
            if commit:
                await tx.commit()
            else:
                await tx.rollback()
        finally:
            await self._pool.release(conn)
        if commit:
            for callback in callbacks:
                callback()
