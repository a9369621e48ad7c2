"""SQL for mem.entities and mem.entity_links. Every query names its owner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from app.auth.scope import Owner
from app.memories.repo import owner_clause

# An entity linked to more memories than this stops collecting links: its boost is ~0 anyway.
MAX_LINKS_PER_ENTITY = 1000

ENTITY_COLUMNS = "e.id, e.text, e.entity_type, e.user_id, e.agent_id, e.run_id, e.created_at, e.updated_at"


async def upsert_entities(
    conn: asyncpg.Connection, owner: Owner, entities: Sequence[tuple[str, str]]
) -> list[UUID]:
    """Insert (text, type) pairs for the owner, case-insensitively unique; return their ids in order."""
    if not entities:
        return []
    rows = await conn.fetch(
        """INSERT INTO mem.entities AS e (user_id, agent_id, run_id, text, entity_type)
           SELECT $1, $2, $3, t.text, t.entity_type
           FROM unnest($4::text[], $5::text[]) AS t(text, entity_type)
           ON CONFLICT (lower(text), entity_type, coalesce(user_id, ''), coalesce(agent_id, ''),
                        coalesce(run_id, ''))
           DO UPDATE SET updated_at = now()
           RETURNING e.id, lower(e.text) AS key, e.entity_type""",
        owner.user_id,
        owner.agent_id,
        owner.run_id,
        [t for t, _ in entities],
        [k for _, k in entities],
    )
    ids = {(r["key"], r["entity_type"]): r["id"] for r in rows}
    return [ids[(t.lower(), k)] for t, k in entities]


async def link(conn: asyncpg.Connection, memory_id: UUID, entity_ids: Sequence[UUID]) -> None:
    await conn.execute(
        """INSERT INTO mem.entity_links (entity_id, memory_id)
           SELECT e, $1 FROM unnest($2::uuid[]) AS e
           WHERE (SELECT count(*) FROM mem.entity_links l WHERE l.entity_id = e) < $3
           ON CONFLICT DO NOTHING""",
        memory_id,
        list(entity_ids),
        MAX_LINKS_PER_ENTITY,
    )


async def list_for_owner(
    conn: asyncpg.Connection, owner: Owner, *, entity_type: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    clause = owner_clause(owner, 2, alias="e")
    where = f"($1::text IS NULL OR e.entity_type = $1) AND {clause.sql}"
    total = await conn.fetchval(
        f"SELECT count(*) FROM mem.entities e WHERE {where}", entity_type, *clause.params
    )
    n = 1 + len(clause.params)
    rows = await conn.fetch(
        f"""SELECT {ENTITY_COLUMNS},
                   (SELECT count(*) FROM mem.entity_links l WHERE l.entity_id = e.id) AS memory_count
            FROM mem.entities e WHERE {where}
            ORDER BY lower(e.text), e.entity_type
            LIMIT ${n + 1} OFFSET ${n + 2}""",
        entity_type,
        *clause.params,
        limit,
        offset,
    )
    return list(rows), int(total)


async def find_for_owner(conn: asyncpg.Connection, entity_id: UUID, owner: Owner) -> asyncpg.Record | None:
    clause = owner_clause(owner, 2, alias="e")
    return await conn.fetchrow(
        f"""SELECT {ENTITY_COLUMNS},
                   (SELECT coalesce(array_agg(l.memory_id ORDER BY l.created_at), '{{}}')
                    FROM mem.entity_links l WHERE l.entity_id = e.id) AS memory_ids
            FROM mem.entities e WHERE e.id = $1 AND {clause.sql}""",
        entity_id,
        *clause.params,
    )


async def delete_for_owner(conn: asyncpg.Connection, entity_id: UUID, owner: Owner) -> bool:
    clause = owner_clause(owner, 2, alias="e")
    deleted: Any = await conn.fetchval(
        f"DELETE FROM mem.entities e WHERE e.id = $1 AND {clause.sql} RETURNING e.id",
        entity_id,
        *clause.params,
    )
    return deleted is not None


async def for_memory(conn: asyncpg.Connection, memory_id: UUID, owner: Owner) -> list[asyncpg.Record]:
    clause = owner_clause(owner, 2, alias="e")
    return list(
        await conn.fetch(
            f"""SELECT {ENTITY_COLUMNS}
                FROM mem.entity_links l JOIN mem.entities e ON e.id = l.entity_id
                WHERE l.memory_id = $1 AND {clause.sql}
                ORDER BY lower(e.text)""",
            memory_id,
            *clause.params,
        )
    )
