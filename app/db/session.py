"""The request's unit of work on a tenant database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.transaction import Transaction

# A request that cannot get a connection this fast answers 503 (TimeoutError) instead of queueing.
ACQUIRE_TIMEOUT_SECONDS = 10.0


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
