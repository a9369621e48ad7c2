"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from app.auth.dependencies import runtime_of


@get("/health", tags=["health"], summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", tags=["health"], summary="The control plane is reachable")
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    if await runtime_of(request).platform.ready():
        return Response({"status": "ready"})
    return Response(
        {"code": "not_ready", "message": "The control-plane database is not reachable."},
        status_code=503,
        headers={"Retry-After": "2"},
    )
