"""SQL for the entity store's write side: upserting entities, linking them to memories, merging
aliases, and opening and closing the relations a memory asserts (mem.relations, 006).

Every memory write links the entities found in its text, whichever feature wrote it. Every
relation change and merge writes a mem.graph_history row in the same statement.
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


# The exact owner triple of an entity or relation row (entities are unique per triple).
_SAME_OWNER = (
    "{a}.user_id IS NOT DISTINCT FROM $1 AND {a}.agent_id IS NOT DISTINCT FROM $2 "
    "AND {a}.run_id IS NOT DISTINCT FROM $3"
)


async def _by_alias(
    conn: asyncpg.Connection, owner: Owner, entities: Sequence[tuple[str, str]]
) -> dict[str, UUID]:
    """lower text -> the entity that took that name as an alias in a merge (whatever its type:
    the model said the names are one)."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (a.alias) e.id, a.alias
            FROM mem.entities e CROSS JOIN LATERAL unnest(e.aliases) AS a(alias)
            WHERE e.aliases && $4::text[] AND a.alias = ANY($4::text[]) AND {_SAME_OWNER.format(a="e")}
            ORDER BY a.alias, e.created_at""",
        owner.user_id,
        owner.agent_id,
        owner.run_id,
        list({t.lower() for t, _ in entities}),
    )
    return {r["alias"]: r["id"] for r in rows}


async def upsert_entities(
    conn: asyncpg.Connection, owner: Owner, entities: Sequence[tuple[str, str]]
) -> list[UUID]:
    """Insert (text, type) pairs for the owner, case-insensitively unique, a merged alias
    resolving to its canonical entity; return their ids in order."""
    if not entities:
        return []
    aliased = await _by_alias(conn, owner, entities)
    fresh = [(t, k) for t, k in entities if t.lower() not in aliased]
    ids = await _insert_entities(conn, owner, fresh) if fresh else {}
    return [aliased.get(t.lower()) or ids[(t.lower(), k)] for t, k in entities]


async def _insert_entities(
    conn: asyncpg.Connection, owner: Owner, entities: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], UUID]:
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
    return {(r["key"], r["entity_type"]): r["id"] for r in rows}


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


async def merge_entity(
    conn: asyncpg.Connection, owner: Owner, alias_id: UUID, canonical_id: UUID, actor: str
) -> bool:
    """Fold the alias entity into the canonical one (both the owner's exact triple): its memory
    links and relations move, its names become aliases, it is deleted, and history says so."""
    names = await conn.fetchrow(
        f"""SELECT a.text AS alias, c.text AS canonical, lower(a.text) || a.aliases AS names
            FROM mem.entities a JOIN mem.entities c ON c.id = $5
            WHERE a.id = $4 AND a.id <> c.id
              AND {_SAME_OWNER.format(a="a")} AND {_SAME_OWNER.format(a="c")}
            FOR UPDATE OF a, c""",
        owner.user_id,
        owner.agent_id,
        owner.run_id,
        alias_id,
        canonical_id,
    )
    if names is None:
        return False
    await conn.execute(
        """INSERT INTO mem.entity_links (entity_id, memory_id, created_at)
           SELECT $2, memory_id, created_at FROM mem.entity_links WHERE entity_id = $1
           ON CONFLICT DO NOTHING""",
        alias_id,
        canonical_id,
    )
    for end, other in (("source_entity_id", "target_entity_id"), ("target_entity_id", "source_entity_id")):
        # An edge the canonical entity already has open for the same memory stays with the
        # alias and goes with it; so does an edge between the two names.
        await conn.execute(
            f"""UPDATE mem.relations r SET {end} = $2
                WHERE r.{end} = $1 AND r.{other} <> $2 AND NOT EXISTS (
                    SELECT 1 FROM mem.relations d
                    WHERE d.{end} = $2 AND d.{other} = r.{other} AND d.relation = r.relation
                      AND d.memory_id IS NOT DISTINCT FROM r.memory_id AND d.valid_to IS NULL)""",
            alias_id,
            canonical_id,
        )
    await conn.execute(
        """UPDATE mem.entities SET aliases = ARRAY(SELECT DISTINCT unnest(aliases || $2::text[])),
                                   updated_at = now()
           WHERE id = $1""",
        canonical_id,
        list(names["names"]),
    )
    await conn.execute("DELETE FROM mem.entities WHERE id = $1", alias_id)
    await conn.execute(
        """INSERT INTO mem.graph_history (user_id, agent_id, run_id, event, entity_id, detail, actor)
           VALUES ($1, $2, $3, 'ENTITY_MERGE', $4, $5, $6)""",
        owner.user_id,
        owner.agent_id,
        owner.run_id,
        canonical_id,
        {"alias": names["alias"], "alias_id": str(alias_id), "into": names["canonical"]},
        actor,
    )
    return True


# History rows for the relations a statement returned as `changed` (id, owner, ends, memory).
_GRAPH_HISTORY = """
history AS (
    INSERT INTO mem.graph_history (user_id, agent_id, run_id, event, relation_id, memory_id, detail, actor)
    SELECT c.user_id, c.agent_id, c.run_id, '{event}', c.id, c.memory_id,
           jsonb_build_object('source', s.text, 'relation', c.relation, 'target', t.text,
                              'origin', c.origin),
           $2
    FROM changed c
    JOIN mem.entities s ON s.id = c.source_entity_id
    JOIN mem.entities t ON t.id = c.target_entity_id
)
SELECT count(*) FROM changed"""

RELATION_RETURNING = (
    "id, user_id, agent_id, run_id, source_entity_id, relation, target_entity_id, memory_id, origin"
)


async def close_relations(
    conn: asyncpg.Connection,
    memory_ids: Sequence[UUID],
    actor: str,
    keep: Sequence[tuple[UUID, str, UUID]] = (),
) -> int:
    """Close (never delete) the open relations these memories asserted, but those in `keep`.

    The caller has resolved the memories within its owner; the relations carry the memory's owner.
    """
    return int(
        await conn.fetchval(
            f"""WITH changed AS (
                    UPDATE mem.relations r
                    SET valid_to = greatest(now(), r.valid_from), invalidated_at = now()
                    WHERE r.memory_id = ANY($1::uuid[]) AND r.valid_to IS NULL
                      AND NOT EXISTS (
                          SELECT 1 FROM unnest($3::uuid[], $4::text[], $5::uuid[]) AS k(s, rel, t)
                          WHERE k.s = r.source_entity_id AND k.rel = r.relation AND k.t = r.target_entity_id)
                    RETURNING {RELATION_RETURNING}
                ),
                {_GRAPH_HISTORY.format(event="RELATION_CLOSE")}""",
            list(memory_ids),
            actor,
            [s for s, _, _ in keep],
            [r for _, r, _ in keep],
            [t for _, _, t in keep],
        )
    )


async def open_relations(
    conn: asyncpg.Connection,
    owner: Owner,
    memory_id: UUID,
    edges: Sequence[tuple[UUID, str, UUID, str, float]],
    actor: str,
) -> int:
    """Open (source, relation, target, origin, weight) edges for the memory, unless already open."""
    if not edges:
        return 0
    return int(
        await conn.fetchval(
            f"""WITH changed AS (
                    INSERT INTO mem.relations AS r (user_id, agent_id, run_id, source_entity_id, relation,
                                                    target_entity_id, memory_id, origin, weight)
                    SELECT $3, $4, $5, e.s, e.rel, e.t, $1, e.origin, e.weight
                    FROM unnest($6::uuid[], $7::text[], $8::uuid[], $9::text[], $10::real[])
                         AS e(s, rel, t, origin, weight)
                    ON CONFLICT (memory_id, source_entity_id, relation, target_entity_id)
                        WHERE valid_to IS NULL DO NOTHING
                    RETURNING {RELATION_RETURNING}
                ),
                {_GRAPH_HISTORY.format(event="RELATION_ADD")}""",
            memory_id,
            actor,
            owner.user_id,
            owner.agent_id,
            owner.run_id,
            [e[0] for e in edges],
            [e[1] for e in edges],
            [e[2] for e in edges],
            [e[3] for e in edges],
            [e[4] for e in edges],
        )
    )


async def delete_relation(conn: asyncpg.Connection, relation_id: UUID, owner: Owner, actor: str) -> bool:
    """Remove one relation of the owner for good, its history row written first (same statement)."""
    clause = owner_clause(owner, 3, alias="r")
    deleted = await conn.fetchval(
        f"""WITH changed AS (
                DELETE FROM mem.relations r WHERE r.id = $1 AND {clause.sql}
                RETURNING {RELATION_RETURNING}
            ),
            {_GRAPH_HISTORY.format(event="RELATION_DELETE")}""",
        relation_id,
        actor,
        *clause.params,
    )
    return bool(deleted)
