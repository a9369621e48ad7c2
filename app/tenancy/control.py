"""The control-plane database: where it lives, its connection pool, and its migrations."""

from __future__ import annotations

import asyncpg

from app.db.dsn import database_of, with_database
from app.tenancy import repo
from app.tenancy.migrations import ControlMigrations

CONTROL_DB = "memory_control"


class ControlPlane:
    """Opens the registry database (creating it on the embedded server) and lends its pool."""

    def __init__(self, server_dsn: str, *, own_database: bool) -> None:
        # With DATABASE_URL, its database is the control plane; the embedded server gets its own.
        self.server_dsn = server_dsn
        self.dsn = with_database(server_dsn, CONTROL_DB) if own_database else server_dsn
        self._own_database = own_database
        self._pool: asyncpg.Pool | None = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("ControlPlane.open() has not run")
        return self._pool

    async def open(self, migrations: ControlMigrations) -> None:
        if self._own_database:
            await self._create_database()
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        async with self._pool.acquire() as conn:
            await migrations.apply(conn)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def has_pgvector(self) -> bool:
        async with self.pool.acquire() as conn:
            return await repo.vector_extension_available(conn)

    async def connection_slots(self) -> tuple[int, int]:
        """The server's max_connections, and how many of them tenant (non-superuser) roles may use."""
        async with self.pool.acquire() as conn:
            return await repo.ordinary_connection_slots(conn)

    async def server_connection(self) -> asyncpg.Connection:
        """A connection outside any pool, for CREATE/DROP DATABASE (they refuse to run in a transaction)."""
        return await asyncpg.connect(with_database(self.server_dsn, database_of(self.server_dsn)))

    async def _create_database(self) -> None:
        conn = await self.server_connection()
        try:
            await repo.create_control_database(conn, CONTROL_DB)
        finally:
            await conn.close()
