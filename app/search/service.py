"""Search: validate the request, embed the query (cached), rank with the retrieval core.

The score formula, and which ranked rows `threshold` lets through, are documented in
`app.core.retrieval.service`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from uuid import UUID

from app.auth.scope import MemoryAuthScope, Owner
from app.core.config import EffectiveConfig
from app.core.context import MemoryDeps
from app.core.filters import scoped_filter
from app.core.graph.service import relations_for_memories
from app.core.retrieval.service import SIGNALS, RetrievalQuery, passes, prepare, retrieve
from app.core.schemas import MAX_QUERY_CHARS
from app.core.views import ScoreBreakdown, ScoredMemory, scored_memory_view
from app.db.session import TenantSession
from app.errors import BadRequest
from app.providers.embeddings import Vector
from app.search.responses import SearchResponse
from app.search.schemas import SearchRequest


@dataclass
class SearchOutcome:
    body: SearchResponse
    timings_ms: dict[str, float] = field(default_factory=dict)


def effective_signals(
    requested: list[str] | None, configured: tuple[str, ...], *, entity_enabled: bool
) -> set[str]:
    if requested is None:
        return {s for s in configured if s != "entity" or entity_enabled}
    unknown = [s for s in requested if s not in SIGNALS]
    if unknown or not requested:
        raise BadRequest(
            f"signals must be a non-empty subset of {', '.join(SIGNALS)}.",
            code="invalid_signals",
        )
    return set(requested)


def _checked_query(request: SearchRequest) -> str:
    query = request.query.strip()
    if not query:
        raise BadRequest("query must not be empty.", code="empty_query")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"query is longer than {MAX_QUERY_CHARS} characters.", code="query_too_long")
    if request.threshold is not None and not 0 <= request.threshold <= 1:
        raise BadRequest("threshold must be between 0 and 1.", code="invalid_threshold")
    return query


def _cache_partition(scope: MemoryAuthScope, deps: MemoryDeps) -> str:
    """Whose cached query embeddings this search may reuse: its tenant's, and for a signed-in
    user only that user's, so a cache hit never tells a caller what someone else searched."""
    return deps.tenant_ref if scope.is_service else f"{deps.tenant_ref}/user:{scope.user_id}"


def _requested_top_k(request: SearchRequest, deps: MemoryDeps) -> int | None:
    top_k = request.top_k if request.top_k is not None else request.limit
    if top_k is not None and not 1 <= top_k <= deps.settings.search_max_top_k:
        raise BadRequest(
            f"top_k must be between 1 and {deps.settings.search_max_top_k}.", code="invalid_top_k"
        )
    return top_k


async def _embed_and_configure(
    db: TenantSession, scope: MemoryAuthScope, owner: Owner, query: str, deps: MemoryDeps
) -> tuple[Vector, EffectiveConfig]:
    """The query's vector and the tenant's config; with an idle local model, the round trips
    that need no vector (acquire, BEGIN, claims, the config, then the query's lexemes and the
    owner's size for retrieval) run during the forward pass (MemoryDeps.embed_while)."""
    deps.check_dimensions()

    async def configure() -> EffectiveConfig:
        config = await deps.config(db)
        await prepare(await db.connection(), deps, owner, query)
        return config

    embedding = deps.query_cache.embed_query(
        query, partition=_cache_partition(scope, deps), tenant=deps.tenant_ref
    )
    return await deps.embed_while(embedding, configure)


async def search(
    db: TenantSession, scope: MemoryAuthScope, request: SearchRequest, deps: MemoryDeps
) -> SearchOutcome:
    owner = scope.read_owner(request.user_id, request.agent_id, request.run_id, requested_scope=request.scope)
    query = _checked_query(request)
    top_k = _requested_top_k(request, deps)
    filters = scoped_filter(scope, request.filters, request.memory_type)
    signals = effective_signals(request.signals, deps.settings.search_signals, entity_enabled=True)

    started = time.perf_counter()
    vector, config = await _embed_and_configure(db, scope, owner, query, deps)
    embedded = time.perf_counter()
    if request.signals is None and not config.search_entity_boost_enabled:
        signals.discard("entity")
    signals = signals or {"semantic"}
    top_k = top_k if top_k is not None else config.search_default_top_k
    ranked = await retrieve(
        await db.connection(),
        deps,
        owner,
        RetrievalQuery(
            text=query,
            vector=vector,
            signals=frozenset(signals),
            top_k=top_k,
            filters=filters,
            include_expired=request.include_expired,
        ),
    )
    results: list[ScoredMemory] = []
    for scored in ranked:
        if not passes(scored, request.threshold):
            continue
        score, parts, row = scored
        breakdown = ScoreBreakdown(
            semantic=round(parts["semantic"], 6),
            keyword=round(parts["keyword"], 6),
            entity=round(parts["entity"], 6),
            graph=round(parts["graph"], 6),
        )
        results.append(scored_memory_view(row, round(score, 6), breakdown))
        if len(results) == top_k:
            break
    body = SearchResponse(results=results)
    if request.include_relations:
        body.relations = await relations_for_memories(
            await db.connection(), owner, [UUID(r.id) for r in results]
        )
    finished = time.perf_counter()
    return SearchOutcome(
        body=body,
        timings_ms={"embed": (embedded - started) * 1000, "retrieval": (finished - embedded) * 1000},
    )
