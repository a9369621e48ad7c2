"""SQL for reading the graph: an owner's entities (nodes) and relations (edges) as they were at a
point in time, a bounded walk from one entity, and the relations a set of memories asserted.

Every query names its owner; the relation rows carry it, the entities they join are the same
owner's by construction (a relation is only ever written between the owner's entities).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from app.auth.scope import Owner
from app.db.sql import owner_clause

# Edges followed per entity and step of a walk (the heaviest, newest first).
WALK_FAN_OUT = 25

RELATION_COLUMNS = """r.id, s.text AS source, r.relation, t.text AS target, r.source_entity_id,
    r.target_entity_id, r.memory_id, r.origin, r.weight, r.valid_from, r.valid_to, r.learned_at,
    r.invalidated_at"""
_JOIN_ENDS = """JOIN mem.entities s ON s.id = r.source_entity_id
    JOIN mem.entities t ON t.id = r.target_entity_id"""


def _valid_at(param: int) -> str:
    """True in the world at $param (null: now): the relation had begun and not yet ended."""
    at = f"coalesce(${param}::timestamptz, now())"
    return f"r.valid_from <= {at} AND (r.valid_to IS NULL OR r.valid_to > {at})"


async def edges(
    conn: asyncpg.Connection, owner: Owner, *, as_of: datetime | None, limit: int
) -> list[asyncpg.Record]:
    """The owner's relations valid at `as_of`, heaviest and newest first."""
    clause = owner_clause(owner, 3, alias="r")
    return list(
        await conn.fetch(
            f"""SELECT {RELATION_COLUMNS}
                FROM mem.relations r {_JOIN_ENDS}
                WHERE {clause.sql} AND {_valid_at(1)}
                ORDER BY r.weight DESC, r.valid_from DESC, r.id
                LIMIT $2""",
            as_of,
            limit,
            *clause.params,
        )
    )


async def walk(
    conn: asyncpg.Connection,
    owner: Owner,
    start: UUID,
    *,
    as_of: datetime | None,
    depth: int,
    max_nodes: int,
    limit: int,
) -> tuple[list[UUID], list[asyncpg.Record]]:
    """Entities within `depth` hops of `start` along relations valid at `as_of` (either way,
    WALK_FAN_OUT per entity and step, at most `max_nodes`, nearest first), and the relations
    between them."""
    clause = owner_clause(owner, 5, alias="r")
    reached = await conn.fetch(
        f"""WITH RECURSIVE walk (id, hop) AS (
                SELECT $2::uuid, 0
                UNION
                SELECT n.id, w.hop + 1
                FROM walk w CROSS JOIN LATERAL (
                    SELECT CASE WHEN r.source_entity_id = w.id THEN r.target_entity_id
                                ELSE r.source_entity_id END AS id
                    FROM mem.relations r
                    WHERE (r.source_entity_id = w.id OR r.target_entity_id = w.id)
                      AND {_valid_at(1)} AND {clause.sql}
                    ORDER BY r.weight DESC, r.valid_from DESC
                    LIMIT {WALK_FAN_OUT}
                ) n
                WHERE w.hop < $3
            )
            SELECT id FROM walk GROUP BY id ORDER BY min(hop), id LIMIT $4""",
        as_of,
        start,
        depth,
        max_nodes,
        *clause.params,
    )
    ids = [r["id"] for r in reached]
    clause = owner_clause(owner, 4, alias="r")
    rows = await conn.fetch(
        f"""SELECT {RELATION_COLUMNS}
            FROM mem.relations r {_JOIN_ENDS}
            WHERE r.source_entity_id = ANY($2::uuid[]) AND r.target_entity_id = ANY($2::uuid[])
              AND {_valid_at(1)} AND {clause.sql}
            ORDER BY r.weight DESC, r.valid_from DESC, r.id
            LIMIT $3""",
        as_of,
        ids,
        limit,
        *clause.params,
    )
    return ids, list(rows)


async def nodes(
    conn: asyncpg.Connection,
    owner: Owner,
    *,
    as_of: datetime | None,
    only: Sequence[UUID] | None,
    first: Sequence[UUID],
    limit: int,
) -> list[asyncpg.Record]:
    """The owner's entities known at `as_of` (all of them, or `only` these), those in `first`
    before the others, then by how many live memories link to them."""
    clause = owner_clause(owner, 5, alias="e")
    return list(
        await conn.fetch(
            f"""SELECT e.id, e.text, e.entity_type, e.aliases, e.created_at,
                       (SELECT count(*) FROM mem.entity_links l WHERE l.entity_id = e.id) AS memory_count
                FROM mem.entities e
                WHERE {clause.sql} AND e.created_at <= coalesce($1::timestamptz, now())
                  AND ($2::uuid[] IS NULL OR e.id = ANY($2::uuid[]))
                ORDER BY (e.id = ANY($3::uuid[])) DESC, memory_count DESC, lower(e.text), e.id
                LIMIT $4""",
            as_of,
            list(only) if only is not None else None,
            list(first),
            limit,
            *clause.params,
        )
    )


async def find_entity(conn: asyncpg.Connection, owner: Owner, name_or_id: str) -> UUID | None:
    """The owner's entity with this id, or else with this name or merged alias (case-insensitive;
    the most linked one when several types share the name)."""
    try:
        wanted: UUID | None = UUID(name_or_id)
    except ValueError:
        wanted = None
    clause = owner_clause(owner, 3, alias="e")
    found: UUID | None = await conn.fetchval(
        f"""SELECT e.id FROM mem.entities e
            WHERE {clause.sql} AND (e.id = $1 OR lower(e.text) = lower($2) OR lower($2) = ANY(e.aliases))
            ORDER BY (e.id = $1) DESC NULLS LAST,
                     (SELECT count(*) FROM mem.entity_links l WHERE l.entity_id = e.id) DESC, e.id
            LIMIT 1""",
        wanted,
        name_or_id,
        *clause.params,
    )
    return found


async def for_memories(
    conn: asyncpg.Connection, owner: Owner, memory_ids: Sequence[UUID], *, limit: int
) -> list[asyncpg.Record]:
    """The relations these memories assert now (open ones), in the order of `memory_ids`."""
    clause = owner_clause(owner, 3, alias="r")
    return list(
        await conn.fetch(
            f"""SELECT {RELATION_COLUMNS}
                FROM unnest($1::uuid[]) WITH ORDINALITY AS x(memory_id, i)
                JOIN mem.relations r ON r.memory_id = x.memory_id {_JOIN_ENDS}
                WHERE r.valid_to IS NULL AND {clause.sql}
                ORDER BY x.i, r.valid_from, r.id
                LIMIT $2""",
            list(memory_ids),
            limit,
            *clause.params,
        )
    )
