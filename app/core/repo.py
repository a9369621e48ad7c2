"""SQL for mem.config: the tenant's one row of memory settings."""

from __future__ import annotations

from typing import Any

import asyncpg


async def read_config(conn: asyncpg.Connection) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "SELECT embedding_dims, fts_config, settings, updated_at FROM mem.config"
    )
    return row


async def write_config(conn: asyncpg.Connection, settings: dict[str, Any]) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        """UPDATE mem.config SET settings = $1, updated_at = now()
           RETURNING embedding_dims, fts_config, settings, updated_at""",
        settings,
    )
    return row


async def refresh_statistics(conn: asyncpg.Connection) -> bool:
    """ANALYZE the tables a search reads if mem.memories is stale (sql/mem/007); never waits."""
    analyzed: bool = await conn.fetchval("SELECT mem.refresh_statistics()")
    return analyzed
