"""POST /mem/v1/search."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, post
from litestar.openapi.spec import Example
from litestar.params import Body
from litestar.status_codes import HTTP_200_OK

from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.http.bodies import StrictBody
from app.http.errors import MEMORY_ROUTE_ERRORS, PROVIDER_ERRORS, error_responses
from app.http.openapi import MEMORY_SECURITY
from app.search import service
from app.search.responses import SearchResponse
from app.search.schemas import SearchRequest

SEARCH_EXAMPLES = [
    Example(
        summary="An owner's memories about a topic",
        value={"query": "What does Alice drink?", "user_id": "alice"},
    ),
    Example(
        summary="The top 3 above a score, filtered on metadata",
        value={
            "query": "food preferences",
            "user_id": "alice",
            "top_k": 3,
            "threshold": 0.3,
            "filters": {"AND": [{"source": "onboarding"}, {"created_at": {"gte": "2026-01-01"}}]},
        },
    ),
]


class SearchController(Controller):
    path = "/mem/v1"
    tags = ["search"]
    security = MEMORY_SECURITY

    @post(
        "/search",
        status_code=HTTP_200_OK,
        summary="Search an owner's memories",
        responses=error_responses(*MEMORY_ROUTE_ERRORS, 413, *PROVIDER_ERRORS),
        dto=StrictBody[SearchRequest],
        return_dto=None,
    )
    async def search(
        self,
        data: Annotated[SearchRequest, Body(examples=SEARCH_EXAMPLES)],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> Response[SearchResponse]:
        outcome = await service.search(db, auth, data, deps)
        if not deps.settings.server_timing:
            # Off by default: the embed time shows whether the query embedding was cached.
            return Response(outcome.body)
        # For benchmarks (MEM_SERVER_TIMING=true): retrieval time apart from the network.
        timing = ", ".join(f"{name};dur={ms:.3f}" for name, ms in outcome.timings_ms.items())
        return Response(outcome.body, headers={"Server-Timing": timing})
