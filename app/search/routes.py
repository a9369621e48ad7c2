"""POST /mem/v1/search."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, post
from litestar.status_codes import HTTP_200_OK

from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.http.bodies import decode_body
from app.http.errors import MEMORY_ROUTE_ERRORS, PROVIDER_ERRORS, error_responses
from app.search import service
from app.search.responses import SearchResponse
from app.search.schemas import SearchRequest


class SearchController(Controller):
    path = "/mem/v1"
    tags = ["search"]

    @post(
        "/search",
        status_code=HTTP_200_OK,
        summary="Search an owner's memories",
        responses=error_responses(*MEMORY_ROUTE_ERRORS, 413, *PROVIDER_ERRORS),
    )
    async def search(
        self, data: dict[str, Any], auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> Response[SearchResponse]:
        outcome = await service.search(db, auth, decode_body(data, SearchRequest), deps)
        # Server-Timing lets clients (and the benchmark) see retrieval time apart from the network.
        timing = ", ".join(f"{name};dur={ms:.3f}" for name, ms in outcome.timings_ms.items())
        return Response(outcome.body, headers={"Server-Timing": timing})
