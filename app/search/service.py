"""Search: embed the query (cached), rank the owner's memories, apply the threshold."""

from __future__ import annotations

from typing import Any

from app.auth.scope import MemoryAuthScope
from app.db.session import TenantSession
from app.errors import BadRequest
from app.memories.schemas import MAX_QUERY_CHARS, SearchRequest, memory_view
from app.memories.service import MemoryDeps, _overrides, compile_scoped_filters
from app.search import repo


async def search(
    db: TenantSession, scope: MemoryAuthScope, request: SearchRequest, deps: MemoryDeps
) -> dict[str, Any]:
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
    deps.check_dimensions()
    vector = await deps.query_cache.embed_query(query)
    conn = await db.connection()
    if top_k is None:
        top_k = int((await _overrides(db)).get("search.default-top-k", deps.settings.search_default_top_k))
    rows = await repo.vector_top_k(
        conn,
        owner,
        vector,
        k=top_k,
        filter_sql=filter_sql,
        filter_params=filter_params,
        include_expired=request.include_expired,
    )
    results = []
    for row in rows:
        semantic = max(0.0, min(1.0, float(row["similarity"])))
        if request.threshold is not None and semantic < request.threshold:
            continue
        breakdown = {"semantic": round(semantic, 6), "keyword": 0.0, "entity": 0.0}
        results.append(memory_view(row, score={"score": round(semantic, 6), "score_breakdown": breakdown}))
    return {"results": results}
