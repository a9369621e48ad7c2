"""The request's unit of work on a tenant database."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
from asyncpg.transaction import Transaction

# A request that cannot get a connection this fast answers 503 (TimeoutError) instead of queueing.
ACQUIRE_TIMEOUT_SECONDS = 10.0
# Errors after which running the same statements again may well succeed (SQLSTATE class 40).
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
RETRY_ATTEMPTS = 4

T = TypeVar("T")


class TenantSession:
    """One connection and one transaction, opened on first use and ended by the owner of the request.

    Lazy so that a request can call a model provider before it holds a pooled connection.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._tx: Transaction | None = None

    async def connection(self) -> asyncpg.Connection:
        if self._conn is None:
            conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)
            try:
                tx = conn.transaction()
                await tx.start()
            except BaseException:
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
        later write relies on must be checked again inside that transaction.
        """
        if self._conn is not None:  # the transaction is already open: read inside it
            yield self._conn
            return
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn:
            yield conn

    async def finish(self, *, commit: bool) -> None:
        conn, tx = self._conn, self._tx
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
