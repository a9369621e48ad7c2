"""Search: embed the query (cached), gather three signals, fuse them into one score.

The fused score, in [0, 1]:

    semantic = clamp(1 - cosine_distance, 0, 1)
    keyword  = bm25 / max(bm25 over the candidates)        (0 without a keyword hit)
    entity   = boost / max(boost over the candidates)      (boost = sum over named entities
                                                            linked to the memory of 1/(1+ln(links)))
    score    = (W_SEMANTIC*semantic + W_KEYWORD*keyword + W_ENTITY*entity) / (sum of the enabled weights)

Candidates are the union of each signal's top list, so a memory found only by a rare word
(keyword-only) or only through an entity can still surface. `threshold` applies to the
fused score. With only the semantic signal enabled the score is the plain cosine similarity.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from app.auth.scope import MemoryAuthScope, Owner
from app.db.session import TenantSession
from app.errors import BadRequest
from app.memories.deps import MemoryDeps
from app.memories.filters import compile_scoped_filters
from app.memories.schemas import MAX_QUERY_CHARS, SearchRequest, memory_view
from app.memories.writer import tenant_overrides
from app.search import repo
from app.search.keywords import keyword_query, query_phrases

SIGNALS = ("semantic", "keyword", "entity")
W_SEMANTIC = 1.0
W_KEYWORD = 0.5
W_ENTITY = 0.05
# Each signal contributes this many candidates per requested result (at least MIN_CANDIDATES).
CANDIDATES_PER_RESULT = 3
MIN_CANDIDATES = 30

# Owners with more live memories than this are searched through the indexes (HNSW, GIN)
# instead of an exact scan: measured here, an exact scan of 20k memories takes ~22 ms.
EXACT_SCAN_MAX_ROWS = 10_000
OWNER_SIZE_TTL_SECONDS = 60.0
_OWNER_SIZES: OrderedDict[tuple[str, Owner], tuple[int, float]] = OrderedDict()

_LEXEME_CACHE: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
_LEXEME_CACHE_SIZE = 10_000


@dataclass
class SearchOutcome:
    body: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)


def _signals(requested: list[str] | None, configured: tuple[str, ...], *, entity_enabled: bool) -> set[str]:
    if requested is None:
        return {s for s in configured if s != "entity" or entity_enabled}
    unknown = [s for s in requested if s not in SIGNALS]
    if unknown or not requested:
        raise BadRequest(
            f"signals must be a non-empty subset of {', '.join(SIGNALS)}.",
            code="invalid_signals",
        )
    return set(requested)


async def _lexemes(conn: Any, fts_config: str, query: str) -> list[str]:
    key = (fts_config, query)
    cached = _LEXEME_CACHE.get(key)
    if cached is not None:
        _LEXEME_CACHE.move_to_end(key)
        return cached
    lexemes = await repo.query_lexemes(conn, fts_config, query)
    _LEXEME_CACHE[key] = lexemes
    while len(_LEXEME_CACHE) > _LEXEME_CACHE_SIZE:
        _LEXEME_CACHE.popitem(last=False)
    return lexemes


async def _use_exact_scan(db: TenantSession, scope: MemoryAuthScope, owner: Owner) -> bool:
    """Exact ranking for typical owners; the indexes for the tenant and for very large owners."""
    if owner.is_tenant_wide:
        return False
    key = (scope.tenant_ref, owner)
    cached = _OWNER_SIZES.get(key)
    now = time.monotonic()
    if cached is None or now - cached[1] > OWNER_SIZE_TTL_SECONDS:
        cached = (await repo.count_live(await db.connection(), owner), now)
        _OWNER_SIZES[key] = cached
        _OWNER_SIZES.move_to_end(key)
        while len(_OWNER_SIZES) > _LEXEME_CACHE_SIZE:
            _OWNER_SIZES.popitem(last=False)
    return cached[0] <= EXACT_SCAN_MAX_ROWS


def fuse(rows: list[Any], signals: set[str]) -> list[tuple[float, dict[str, float], Any]]:
    """Score candidate rows by the formula in this module's docstring, best first."""
    max_bm25 = max((float(r["bm25"]) for r in rows), default=0.0)
    max_boost = max((float(r["entity_boost"]) for r in rows), default=0.0)
    weights = {"semantic": W_SEMANTIC, "keyword": W_KEYWORD, "entity": W_ENTITY}
    total = sum(w for s, w in weights.items() if s in signals)
    scored = []
    for row in rows:
        parts = {
            "semantic": max(0.0, min(1.0, 1.0 - float(row["distance"]))) if "semantic" in signals else 0.0,
            "keyword": float(row["bm25"]) / max_bm25 if max_bm25 > 0 else 0.0,
            "entity": float(row["entity_boost"]) / max_boost if max_boost > 0 else 0.0,
        }
        score = sum(weights[s] * parts[s] for s in signals) / total
        scored.append((score, parts, row))
    # Ties (e.g. several memories whose clamped semantic score is 0) are broken by the raw
    # distance, so dense-only results always equal exact search; then by recency and id.
    scored.sort(
        key=lambda t: (-t[0], float(t[2]["distance"]), -t[2]["created_at"].timestamp(), str(t[2]["id"]))
    )
    return scored


async def search(
    db: TenantSession, scope: MemoryAuthScope, request: SearchRequest, deps: MemoryDeps
) -> SearchOutcome:
    owner = scope.owner(request.user_id, request.agent_id, request.run_id)
    query = request.query.strip()
    if not query:
        raise BadRequest("query must not be empty.", code="empty_query")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"query is longer than {MAX_QUERY_CHARS} characters.", code="query_too_long")
    if request.threshold is not None and not 0 <= request.threshold <= 1:
        raise BadRequest("threshold must be between 0 and 1.", code="invalid_threshold")
    top_k = request.top_k if request.top_k is not None else request.limit
    if top_k is not None and not 1 <= top_k <= deps.settings.search_max_top_k:
        raise BadRequest(
            f"top_k must be between 1 and {deps.settings.search_max_top_k}.", code="invalid_top_k"
        )
    filter_sql, filter_params = compile_scoped_filters(scope, request.filters, request.memory_type)

    signals = _signals(request.signals, deps.settings.search_signals, entity_enabled=True)

    # The query is embedded before the first database access, so a slow or failing provider
    # never holds a pooled connection.
    started = time.perf_counter()
    deps.check_dimensions()
    vector = await deps.query_cache.embed_query(query)
    embedded = time.perf_counter()
    overrides = await tenant_overrides(db)
    if request.signals is None and not overrides.get(
        "search.entity-boost-enabled", deps.settings.search_entity_boost_enabled
    ):
        signals.discard("entity")
    signals = signals or {"semantic"}
    if top_k is None:
        top_k = int(overrides.get("search.default-top-k", deps.settings.search_default_top_k))
    keywords = keyword_query(await _lexemes(await db.connection(), deps.fts_config, query), deps.fts_config)
    n = max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * top_k)
    rows = await repo.hybrid_candidates(
        await db.connection(),
        owner,
        vector,
        term_queries=keywords.term_queries if "keyword" in signals else (),
        tsquery=keywords.tsquery if "keyword" in signals else None,
        phrases=query_phrases(query) if "entity" in signals else (),
        limits=repo.SignalLimits(
            dense=n if "semantic" in signals else 0,
            keyword=n if "keyword" in signals else 0,
            entity=n if "entity" in signals else 0,
        ),
        filter_sql=filter_sql,
        filter_params=filter_params,
        include_expired=request.include_expired,
        exact=await _use_exact_scan(db, scope, owner),
    )
    results = []
    for score, parts, row in fuse(rows, signals):
        if request.threshold is not None and score < request.threshold:
            continue
        breakdown = {k: round(v, 6) for k, v in parts.items()}
        results.append(memory_view(row, score={"score": round(score, 6), "score_breakdown": breakdown}))
        if len(results) == top_k:
            break
    finished = time.perf_counter()
    return SearchOutcome(
        body={"results": results},
        timings_ms={"embed": (embedded - started) * 1000, "retrieval": (finished - embedded) * 1000},
    )


async def candidates_for_texts(
    conn: Any,
    owner: Owner,
    texts: list[str],
    vectors: list[Any],
    deps: MemoryDeps,
    *,
    per_text: int = 5,
) -> list[Any]:
    """The owner's live memories nearest to each text, by meaning and by words: what new facts
    are compared with before the model decides ADD / UPDATE / DELETE / NONE."""
    by_id: dict[Any, tuple[float, Any]] = {}
    for text, vector in zip(texts, vectors, strict=True):
        keywords = keyword_query(
            await _lexemes(conn, deps.fts_config, text[:MAX_QUERY_CHARS]), deps.fts_config
        )
        rows = await repo.hybrid_candidates(
            conn,
            owner,
            vector,
            term_queries=keywords.term_queries,
            tsquery=keywords.tsquery,
            phrases=(),
            limits=repo.SignalLimits(dense=per_text, keyword=per_text, entity=0),
            filter_sql="TRUE",
            filter_params=(),
            include_expired=False,
            exact=True,
        )
        for score, _, row in fuse(rows, {"semantic", "keyword"})[: 2 * per_text]:
            if row["id"] not in by_id or by_id[row["id"]][0] < score:
                by_id[row["id"]] = (score, row)
    return [row for _, row in sorted(by_id.values(), key=lambda t: -t[0])]
