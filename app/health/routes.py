"""Liveness and readiness."""

from __future__ import annotations

import msgspec
from litestar import Response, get

from app.errors import ErrorBody
from app.http.errors import error_response, error_responses
from app.tenancy.service import Platform


class HealthStatus(msgspec.Struct):
    status: str  # "ok" (/health) or "ready" (/ready)


@get("/health", tags=["health"], summary="The process is up", responses=error_responses(500))
async def health() -> HealthStatus:
    return HealthStatus(status="ok")


@get("/ready", tags=["health"], summary="The control plane is reachable", responses=error_responses(500, 503))
async def ready(platform: Platform) -> Response[HealthStatus]:
    if await platform.ready():
        return Response(HealthStatus(status="ready"))
    return error_response(
        503,
        ErrorBody("not_ready", "The control-plane database is not reachable."),
        headers={"Retry-After": "2"},
    )
