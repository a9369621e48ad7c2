"""The request's unit of work on a tenant database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.transaction import Transaction

from app.errors import Overloaded, retry_after

# A request that cannot get a connection this fast answers 503 database_busy instead of queueing
# (settings: database.acquire-timeout-seconds).
ACQUIRE_TIMEOUT_SECONDS = 2.0


class DatabaseBusy(Overloaded):
    code = "database_busy"
    message = "Every database connection of this tenant is in use; retry shortly."


class TenantSession:
    """One connection and one transaction, opened on first use and ended by the owner of the request.

    Lazy so that a request can call a model provider before it holds a pooled connection.
    """

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = ACQUIRE_TIMEOUT_SECONDS) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._conn: asyncpg.Connection | None = None
        self._tx: Transaction | None = None

    async def connection(self) -> asyncpg.Connection:
        if self._conn is None:
            conn = await self._acquire()
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
        conn = await self._acquire()
        try:
            yield conn
        finally:
            await self._pool.release(conn)

    async def _acquire(self) -> asyncpg.Connection:
        try:
            conn: asyncpg.Connection = await self._pool.acquire(timeout=self._acquire_timeout)
        except TimeoutError:
            raise DatabaseBusy(headers=retry_after(1)) from None
        return conn

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
