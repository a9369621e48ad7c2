"""The mem0 platform API under /mem0, so the official mem0 SDKs work unchanged.

Routes and translation only: every call goes to the same services, scope and owner-scoped SQL
as /mem/v1 (see `routes`). What mem0 features are honoured, ignored or refused: `schemas`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Router
from litestar.di import Provide

from app.compat.mem0.routes import Mem0Controller, unsupported_feature
from app.compat.mem0.wiring import answering_mem0_paths, credentials, mem0_exception_handlers

PREFIX = "/mem0"
# POSTs that add memories: rate-limited as adds, as POST /mem/v1/memories is.
ADD_PATHS = (f"{PREFIX}/v3/memories/add", f"{PREFIX}/v1/memories")


def mem0_router(scope_provider: Callable[..., Any]) -> Router:
    """The /mem0 routes, given the app's scope provider factory (app.http.dependencies.scope_provider)."""
    return Router(
        path=PREFIX,
        route_handlers=[Mem0Controller, unsupported_feature],
        dependencies={"auth": Provide(scope_provider(credentials, add_paths=ADD_PATHS))},
        exception_handlers=mem0_exception_handlers(),
    )


def app_exception_handlers(handlers: dict[Any, Any]) -> dict[Any, Any]:
    """The app's exception handlers, answering unmatched paths under /mem0 in mem0's shape."""
    return answering_mem0_paths(handlers, PREFIX)
