"""Retrieval SQL: the four signals (dense, keyword, entity, graph) gathered in one statement.

Typical owner scopes rank exactly: the owner's rows come from the btree owner index and
every one is scored, because a global HNSW index with an owner post-filter returns almost
nothing when the owner holds a small share of the rows (SPEC §7). Tenant-wide scopes and
owners too large to scan use HNSW with iterative scans and the GIN index instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np

from app.auth.scope import Owner
from app.core.filters import MemoryFilter
from app.db.sql import LIVE, MEMORY_COLUMNS, owner_clause, visibility

# BM25 constants (Robertson/Sparck Jones defaults).
BM25_K1 = 1.2
BM25_B = 0.75


@dataclass(frozen=True)
class SignalLimits:
    """How many candidates each signal contributes; 0 switches a signal off."""

    dense: int
    keyword: int
    entity: int
    graph: int = 0


# The graph walk from the entities a query names: at most GRAPH_SEEDS start entities, GRAPH_FAN_OUT
# edges followed per entity and step (the heaviest open ones, read from the partial indexes of
# sql/mem/006), GRAPH_MAX_REACHED entities kept: at most 8 + 80 + 800 walk rows at depth 2.
GRAPH_SEEDS = 8
GRAPH_FAN_OUT = 10
GRAPH_MAX_REACHED = 64
GRAPH_DEPTH = 2
# Each further hop counts half as much as the one before.
GRAPH_DECAY = 0.5


async def count_live(conn: asyncpg.Connection, owner: Owner) -> int:
    clause = owner_clause(owner, 1)
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM mem.memories m WHERE {clause.sql} AND {LIVE}", *clause.params
        )
    )


async def query_lexemes(conn: asyncpg.Connection, fts_config: str, text: str) -> list[str]:
    lexemes = await conn.fetchval(
        "SELECT tsvector_to_array(to_tsvector($1::regconfig, $2))", fts_config, text
    )
    return list(lexemes or [])


async def hybrid_candidates(
    conn: asyncpg.Connection,
    owner: Owner,
    query: np.ndarray,
    *,
    term_queries: Sequence[str],
    tsquery: str | None,
    phrases: Sequence[str],
    limits: SignalLimits,
    filters: MemoryFilter,
    include_expired: bool,
    exact: bool,
) -> list[asyncpg.Record]:
    """Candidate memories with their raw signals: `distance`, `bm25`, `entity_boost`, `graph_boost`.

    $1 query vector, $2 one tsquery per term, $3 their OR, $4 phrases, $5..$8 limits, $9 the
    graph depth, then the owner ids, then the filter parameters.
    """
    fixed = 9
    owner_sql = owner_clause(owner, fixed + 1)
    ent_owner = owner_clause(owner, fixed + 1, alias="e")
    rel_owner = owner_clause(owner, fixed + 1, alias="r")
    compiled = filters.compile(owner_sql.next_param(fixed + 1))
    where = f"{owner_sql.sql} AND {visibility(include_expired)} AND ({compiled.sql})"
    if not exact:
        owned = _INDEXED_OWNED.format(where=where, ent_owner=ent_owner.sql)
        await conn.execute(f"SET LOCAL hnsw.ef_search = {max(100, min(1000, 8 * limits.dense))}")
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    else:
        owned = _OWNER_OWNED.format(where=where)
    sql = _HYBRID.format(
        walk=_GRAPH_WALK.format(ent_owner=ent_owner.sql, rel_owner=rel_owner.sql),
        owned=owned,
        ent_owner=ent_owner.sql,
        owner=owner_sql.sql,
        columns=MEMORY_COLUMNS,
        k1=BM25_K1,
        b=BM25_B,
    )
    return list(
        await conn.fetch(
            sql,
            query,
            list(term_queries),
            tsquery,
            list(phrases),
            limits.dense,
            limits.keyword,
            limits.entity,
            limits.graph,
            GRAPH_DEPTH,
            *owner_sql.params,
            *compiled.params,
        )
    )


# Every live row of the owner, each with its exact cosine distance. MATERIALIZED so the
# three signals below share one scan.
_OWNER_OWNED = """
    SELECT m.id, m.embedding <=> $1 AS distance, m.fts
    FROM mem.memories m
    WHERE {where}
"""

# Tenant-wide and very large owners: HNSW (with iterative scans, so an owner filter still
# fills the list) for the dense candidates, GIN for the keyword ones (ts_rank_cd picks the
# best few hundred before BM25 ranks them), never a full scan.
_INDEXED_OWNED = """
    (SELECT m.id, m.embedding <=> $1 AS distance, m.fts
     FROM mem.memories m WHERE {where}
     ORDER BY m.embedding <=> $1 LIMIT greatest($5, 1))
    UNION
    (SELECT m.id, m.embedding <=> $1 AS distance, m.fts
     FROM mem.memories m WHERE {where} AND m.fts @@ $3::tsquery
     ORDER BY ts_rank_cd(m.fts, $3::tsquery) DESC LIMIT 20 * greatest($6, 1))
    UNION
    -- The memories linked to an entity named in the query, or an entity-only hit could never
    -- surface here (`linked` below only sees rows of `owned`). At most MAX_LINKS_PER_ENTITY each.
    (SELECT m.id, m.embedding <=> $1 AS distance, m.fts
     FROM mem.memories m WHERE {where} AND m.id IN (
         SELECT l.memory_id FROM mem.entity_links l JOIN mem.entities e ON e.id = l.entity_id
         WHERE $7 > 0 AND {ent_owner} AND lower(e.text) = ANY($4::text[])))
    UNION
    -- And the memories linked to the entities the graph walk reached, the best few.
    (SELECT m.id, m.embedding <=> $1 AS distance, m.fts
     FROM mem.memories m WHERE {where} AND m.id IN (
         SELECT l.memory_id FROM reached r JOIN mem.entity_links l ON l.entity_id = r.id
         ORDER BY r.reach DESC LIMIT 10 * greatest($8, 1)))
"""

# The graph walk: start at the entities the query names (by name or merged alias), follow open
# relations either way, at most GRAPH_FAN_OUT per entity and step, up to $9 hops. `reach` of an
# entity is the best product of edge weights on a path to it times GRAPH_DECAY per hop after the
# first; the start entities themselves are the entity signal's, not the graph's.
_GRAPH_WALK = f"""
seeds AS MATERIALIZED (
    SELECT e.id FROM mem.entities e
    WHERE $8 > 0 AND {{ent_owner}} AND (lower(e.text) = ANY($4::text[]) OR e.aliases && $4::text[])
    LIMIT {GRAPH_SEEDS}
),
walk (id, hop, reach) AS (
    SELECT id, 0, 1.0::float8 FROM seeds
    UNION ALL
    SELECT n.id, w.hop + 1, w.reach * n.weight * (CASE WHEN w.hop = 0 THEN 1 ELSE {GRAPH_DECAY} END)
    FROM walk w CROSS JOIN LATERAL (
        -- Each direction read in weight order from its partial index, stopping at the fan-out.
        SELECT x.id, x.weight FROM (
            (SELECT r.target_entity_id AS id, r.weight::float8 AS weight
             FROM mem.relations r
             WHERE r.source_entity_id = w.id AND r.valid_to IS NULL AND {{rel_owner}}
             ORDER BY r.weight DESC LIMIT {GRAPH_FAN_OUT})
            UNION ALL
            (SELECT r.source_entity_id AS id, r.weight::float8 AS weight
             FROM mem.relations r
             WHERE r.target_entity_id = w.id AND r.valid_to IS NULL AND {{rel_owner}}
             ORDER BY r.weight DESC LIMIT {GRAPH_FAN_OUT})
        ) x
        ORDER BY x.weight DESC
        LIMIT {GRAPH_FAN_OUT}
    ) n
    WHERE w.hop < $9
),
reached_ids AS MATERIALIZED (
    SELECT w.id, max(w.reach) AS reach
    FROM walk w
    WHERE w.hop > 0 AND w.id NOT IN (SELECT id FROM seeds)
    GROUP BY w.id
    ORDER BY max(w.reach) DESC, w.id
    LIMIT {GRAPH_MAX_REACHED}
),
reached AS MATERIALIZED (
    -- Links counted for the kept entities only (a hub may have a thousand).
    SELECT r.id, r.reach, (SELECT count(*) FROM mem.entity_links c WHERE c.entity_id = r.id) AS links
    FROM reached_ids r
),"""

_HYBRID = """
WITH RECURSIVE {walk}
owned AS MATERIALIZED ({owned}),
stats AS MATERIALIZED (
    SELECT count(*)::float8 AS n, greatest(avg(length(fts)), 1)::float8 AS avgdl FROM owned
),
dense AS (
    SELECT id FROM owned ORDER BY distance LIMIT $5
),
terms AS (
    SELECT t.term::tsquery AS q, t.i FROM unnest($2::text[]) WITH ORDINALITY AS t(term, i)
),
hits AS (
    -- Memories are short, so a term counts once per memory (binary tf): one @@ per term and
    -- row instead of unnesting every lexeme (LoCoMo dev: 68.1 % vs 68.5 % recall@10).
    SELECT o.id, t.i, length(o.fts)::float8 AS dl
    FROM owned o JOIN terms t ON o.fts @@ t.q
    WHERE $6 > 0 AND o.fts @@ $3::tsquery
),
df AS MATERIALIZED (
    SELECT i, count(*)::float8 AS df FROM hits GROUP BY i
),
scored AS MATERIALIZED (
    -- Every hit keeps its score: a memory picked by another signal still gets its keyword part.
    SELECT h.id,
           sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
               * ({k1} + 1) / (1 + {k1} * (1 - {b} + {b} * h.dl / s.avgdl))) AS bm25
    FROM hits h JOIN df USING (i) CROSS JOIN stats s
    GROUP BY h.id
),
keyword AS (
    SELECT id FROM scored ORDER BY bm25 DESC LIMIT $6
),
named AS MATERIALIZED (
    -- MATERIALIZED: each named entity's links are counted once, not once per linked memory.
    SELECT e.id, (SELECT count(*) FROM mem.entity_links c WHERE c.entity_id = e.id) AS links
    FROM mem.entities e
    WHERE $7 > 0 AND {ent_owner} AND lower(e.text) = ANY($4::text[])
),
boosted AS MATERIALIZED (
    -- Entities linked to many memories say little about any one of them: the boost decays.
    SELECT l.memory_id AS id, sum(1.0 / (1 + ln(greatest(n.links, 1))))::float8 AS entity_boost
    FROM named n
    JOIN mem.entity_links l ON l.entity_id = n.id
    JOIN owned o ON o.id = l.memory_id
    GROUP BY l.memory_id
),
linked AS (
    SELECT id FROM boosted ORDER BY entity_boost DESC LIMIT $7
),
graphed AS MATERIALIZED (
    -- Like the entity boost, decaying for entities linked to many memories.
    SELECT l.memory_id AS id, sum(r.reach / (1 + ln(greatest(r.links, 1))))::float8 AS graph_boost
    FROM reached r
    JOIN mem.entity_links l ON l.entity_id = r.id
    JOIN owned o ON o.id = l.memory_id
    GROUP BY l.memory_id
),
walked AS (
    SELECT id FROM graphed ORDER BY graph_boost DESC LIMIT $8
),
candidates AS (
    SELECT id FROM dense UNION SELECT id FROM keyword UNION SELECT id FROM linked UNION SELECT id FROM walked
)
SELECT {columns}, o.distance, coalesce(k.bm25, 0)::float8 AS bm25,
       coalesce(li.entity_boost, 0)::float8 AS entity_boost,
       coalesce(g.graph_boost, 0)::float8 AS graph_boost
FROM candidates c
JOIN owned o ON o.id = c.id
JOIN mem.memories m ON m.id = c.id AND {owner}
LEFT JOIN scored k ON k.id = c.id
LEFT JOIN boosted li ON li.id = c.id
LEFT JOIN graphed g ON g.id = c.id
"""
