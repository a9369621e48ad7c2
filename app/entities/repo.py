"""SQL for mem.entities and mem.entity_links. Every query names its owner."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from app.auth.scope import Owner
from app.core.linking.repo import ENTITY_COLUMNS
from app.db.sql import owner_clause


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


async def delete_for_owner(conn: asyncpg.Connection, entity_id: UUID, owner: Owner, actor: str) -> bool:
    """Delete the entity; its links and relations go with it (cascade), the relations' words
    kept in graph_history first, in the same statement."""
    clause = owner_clause(owner, 3, alias="e")
    deleted: Any = await conn.fetchval(
        f"""WITH target AS (SELECT e.id FROM mem.entities e WHERE e.id = $1 AND {clause.sql}),
            history AS (
                INSERT INTO mem.graph_history (user_id, agent_id, run_id, event, relation_id, memory_id,
                                               detail, actor)
                SELECT r.user_id, r.agent_id, r.run_id, 'RELATION_DELETE', r.id, r.memory_id,
                       jsonb_build_object('source', s.text, 'relation', r.relation, 'target', t.text,
                                          'origin', r.origin, 'entity_deleted', true),
                       $2
                FROM mem.relations r
                JOIN mem.entities s ON s.id = r.source_entity_id
                JOIN mem.entities t ON t.id = r.target_entity_id
                WHERE r.source_entity_id IN (SELECT id FROM target)
                   OR r.target_entity_id IN (SELECT id FROM target)
            )
            DELETE FROM mem.entities e WHERE e.id IN (SELECT id FROM target) RETURNING e.id""",
        entity_id,
        actor,
        *clause.params,
    )
    return deleted is not None


async def graph_for_owner(
    conn: asyncpg.Connection, owner: Owner, *, max_entities: int, max_links: int
) -> list[asyncpg.Record]:
    """The owner's most linked entities and their links to live memories (entity, memory, text)."""
    clause = owner_clause(owner, 3, alias="e")
    return list(
        await conn.fetch(
            f"""WITH top AS (
                    SELECT e.id, e.text, e.entity_type,
                           (SELECT count(*) FROM mem.entity_links l WHERE l.entity_id = e.id) AS n
                    FROM mem.entities e WHERE {clause.sql}
                    ORDER BY n DESC, lower(e.text) LIMIT $1)
                SELECT top.id AS entity_id, top.text AS entity_text, top.entity_type, top.n AS memory_count,
                       m.id AS memory_id, m.memory
                FROM top
                LEFT JOIN mem.entity_links l ON l.entity_id = top.id
                LEFT JOIN mem.memories m ON m.id = l.memory_id AND m.deleted_at IS NULL
                ORDER BY top.n DESC, lower(top.text), l.created_at
                LIMIT $2""",
            max_entities,
            max_links,
            *clause.params,
        )
    )
