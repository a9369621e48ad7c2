"""The retrieval core: candidate memories by meaning, words, entities and the entity graph,
fused into one score.

Search ranks with it; the add pipeline uses it to find the memories a new fact is compared
with. The fused score, in [0, 1]:

    semantic = clamp(1 - cosine_distance, 0, 1)
    keyword  = bm25 / max(bm25 over the candidates)        (0 without a keyword hit)
    entity   = boost / max(boost over the candidates)      (boost = sum over named entities
                                                            linked to the memory of 1/(1+ln(links)))
    graph    = gboost / max(gboost over the candidates)    (gboost = sum over the entities reached
                                                            from the named ones in 1-2 hops along open
                                                            relations, linked to the memory, of
                                                            reach/(1+ln(links)); reach = product of the
                                                            edge weights on the best path, x0.5 per hop
                                                            after the first)
    score    = (W_SEMANTIC*semantic + W_KEYWORD*keyword + W_ENTITY*entity + W_GRAPH*graph)
               / (sum of the enabled weights)

Candidates are the union of each signal's top list, so a memory found only by a rare word
(keyword-only) or only through an entity can still surface. With only the semantic signal
enabled the score is the plain cosine similarity.

Ranking is by the fused score alone. Which results are returned is a separate rule
(`passes`), because the fused score is a poor thing to threshold: its denominator holds the
keyword and entity weights even when the query matched no word and named no entity, so a
purely semantic match tops out near 1/1.58 = 0.63, and mem0 users' thresholds (tuned on
cosine similarity, which is what mem0 thresholds) would drop good matches:

    returned  <=>  max(semantic, score) >= threshold     (with a threshold)
                   score > 0                            (without one)

A memory passes `threshold` when its semantic similarity reaches it, as in mem0; one found by
its words or entities also passes when its fused score does, so keyword-only hits can still
clear a threshold. We chose this over renormalising the fused score by the signals that fired:
that would still let a similarity-0.42 memory fall under 0.3 whenever another memory matched a
query word, and it would make the number depend on the rest of the corpus. Without a
threshold, rows with a fused score of 0 (no similarity, no word, no entity) are not results;
`threshold: 0` asks for every row that matches the filters, scored or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import asyncpg
import numpy as np

from app.auth.scope import Owner
from app.core.context import MemoryDeps
from app.core.filters import NO_FILTER, MemoryFilter
from app.core.retrieval import repo
from app.core.retrieval.caches import EXACT_SCAN_MAX_ROWS
from app.core.schemas import MAX_QUERY_CHARS
from app.text import keyword_query, query_phrases

SIGNALS = ("semantic", "keyword", "entity", "graph")
W_SEMANTIC = 1.0
W_KEYWORD = 0.5
W_ENTITY = 0.05
# Small, like the entity weight: a neighbour's neighbour is a hint, not evidence (LoCoMo: README).
W_GRAPH = 0.03
WEIGHTS = {"semantic": W_SEMANTIC, "keyword": W_KEYWORD, "entity": W_ENTITY, "graph": W_GRAPH}
# Each signal contributes this many candidates per requested result (at least MIN_CANDIDATES).
CANDIDATES_PER_RESULT = 3
MIN_CANDIDATES = 30


class Scored(NamedTuple):
    score: float
    parts: dict[str, float]
    row: asyncpg.Record


@dataclass(frozen=True)
class RetrievalQuery:
    text: str
    vector: np.ndarray
    signals: frozenset[str]
    top_k: int
    filters: MemoryFilter = NO_FILTER
    include_expired: bool = False


def fuse(rows: Sequence[asyncpg.Record], signals: frozenset[str] | set[str]) -> list[Scored]:
    """Score candidate rows by the formula in this module's docstring, best first."""
    max_bm25 = max((float(r["bm25"]) for r in rows), default=0.0)
    max_boost = max((float(r["entity_boost"]) for r in rows), default=0.0)
    max_graph = max((float(r["graph_boost"]) for r in rows), default=0.0)
    total = sum(w for s, w in WEIGHTS.items() if s in signals)
    scored = []
    for row in rows:
        parts = {
            "semantic": max(0.0, min(1.0, 1.0 - float(row["distance"]))) if "semantic" in signals else 0.0,
            "keyword": float(row["bm25"]) / max_bm25 if max_bm25 > 0 else 0.0,
            "entity": float(row["entity_boost"]) / max_boost if max_boost > 0 else 0.0,
            "graph": float(row["graph_boost"]) / max_graph if max_graph > 0 else 0.0,
        }
        scored.append(Scored(sum(WEIGHTS[s] * parts[s] for s in signals) / total, parts, row))
    # Ties (e.g. several memories whose clamped semantic score is 0) are broken by the raw
    # distance, so dense-only results always equal exact search; then by recency and id.
    scored.sort(
        key=lambda s: (-s.score, float(s.row["distance"]), -s.row["created_at"].timestamp(), str(s.row["id"]))
    )
    return scored


def passes(scored: Scored, threshold: float | None) -> bool:
    """Whether a ranked row is a result: the rule in this module's docstring."""
    if threshold is None:
        return scored.score > 0
    return max(scored.parts["semantic"], scored.score) >= threshold


async def lexemes(conn: asyncpg.Connection, deps: MemoryDeps, text: str) -> list[str]:
    key = (deps.tenant_ref, deps.fts_config, text)
    cached = deps.caches.lexemes.get(key)
    if cached is None:
        cached = await repo.query_lexemes(conn, deps.fts_config, text)
        deps.caches.lexemes.put(key, cached)
    return cached


async def use_exact_scan(conn: asyncpg.Connection, deps: MemoryDeps, owner: Owner) -> bool:
    """Exact ranking for typical owners; the indexes for the tenant and for very large owners."""
    if owner.is_tenant_wide:
        return False
    key = (deps.tenant_ref, owner)
    size = deps.caches.owner_sizes.get(key)
    if size is None:
        size = await repo.count_live(conn, owner)
        deps.caches.owner_sizes.put(key, size)
    return size <= EXACT_SCAN_MAX_ROWS


async def prepare(conn: asyncpg.Connection, deps: MemoryDeps, owner: Owner, text: str) -> None:
    """Read what `retrieve` needs besides the vector (the query's lexemes, the owner's size) into
    the caches it looks in, so a caller can do it while the query is being embedded."""
    await lexemes(conn, deps, text[:MAX_QUERY_CHARS])
    await use_exact_scan(conn, deps, owner)


async def retrieve(
    conn: asyncpg.Connection, deps: MemoryDeps, owner: Owner, query: RetrievalQuery
) -> list[Scored]:
    """The owner's memories ranked for the query by the enabled signals, best first."""
    keywords = keyword_query(await lexemes(conn, deps, query.text[:MAX_QUERY_CHARS]), deps.fts_config)
    n = max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * query.top_k)
    signals = query.signals
    rows = await repo.hybrid_candidates(
        conn,
        owner,
        query.vector,
        term_queries=keywords.term_queries if "keyword" in signals else (),
        tsquery=keywords.tsquery if "keyword" in signals else None,
        phrases=query_phrases(query.text) if signals & {"entity", "graph"} else (),
        limits=repo.SignalLimits(
            dense=n if "semantic" in signals else 0,
            keyword=n if "keyword" in signals else 0,
            entity=n if "entity" in signals else 0,
            graph=n if "graph" in signals else 0,
        ),
        filters=query.filters,
        include_expired=query.include_expired,
        exact=await use_exact_scan(conn, deps, owner),
    )
    return fuse(rows, signals)


async def candidates_for_texts(
    conn: asyncpg.Connection,
    deps: MemoryDeps,
    owner: Owner,
    texts: Sequence[str],
    vectors: Sequence[Any],
    *,
    per_text: int = 5,
) -> list[asyncpg.Record]:
    """The owner's live memories nearest to each text, by meaning and by words: what new facts
    are compared with before the model decides ADD / UPDATE / DELETE / NONE."""
    best: dict[Any, Scored] = {}
    for text, vector in zip(texts, vectors, strict=True):
        keywords = keyword_query(await lexemes(conn, deps, text[:MAX_QUERY_CHARS]), deps.fts_config)
        rows = await repo.hybrid_candidates(
            conn,
            owner,
            vector,
            term_queries=keywords.term_queries,
            tsquery=keywords.tsquery,
            phrases=(),
            limits=repo.SignalLimits(dense=per_text, keyword=per_text, entity=0),
            filters=NO_FILTER,
            include_expired=False,
            exact=True,
        )
        for scored in fuse(rows, {"semantic", "keyword"})[: 2 * per_text]:
            key = scored.row["id"]
            if key not in best or best[key].score < scored.score:
                best[key] = scored
    return [s.row for s in sorted(best.values(), key=lambda s: -s.score)]
