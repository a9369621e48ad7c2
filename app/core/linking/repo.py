"""SQL for the entity store's write side: upserting entities and linking them to memories.

Every memory write links the entities found in its text, whichever feature wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from app.auth.scope import Owner
from app.db.sql import owner_clause

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


async def unlink_entities(conn: asyncpg.Connection, memory_ids: Sequence[UUID]) -> None:
    """Remove entity links of memories the caller has already resolved within its owner."""
    await conn.execute("DELETE FROM mem.entity_links WHERE memory_id = ANY($1::uuid[])", list(memory_ids))


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
