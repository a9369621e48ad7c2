"""Liveness and readiness."""

from __future__ import annotations

from litestar import Response, get

from app.tenancy.service import Platform


@get("/health", tags=["health"], summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", tags=["health"], summary="The control plane is reachable")
async def ready(platform: Platform) -> Response[dict[str, str]]:
    if await platform.ready():
        return Response({"status": "ready"})
    return Response(
        {"code": "not_ready", "message": "The control-plane database is not reachable."},
        status_code=503,
        headers={"Retry-After": "2"},
    )
