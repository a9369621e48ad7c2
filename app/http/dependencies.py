"""Request dependencies, declared once for the whole app: the auth scope, the request's
transaction, the memory services' context, and the platform admin guard.

Feature routes name these parameters (`auth`, `db`, `deps`, `platform`) and never import
this module: `create_app` registers the providers, so features stay independent.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncGenerator, Callable, Collection, Mapping
from typing import Any

import structlog
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler

from app.access import bearer_token, memory_deps, resolve_scope, tenant_transaction
from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.core.limits import LIMIT_KIND, Kind
from app.db.session import TenantSession
from app.errors import Unauthorized
from app.http.middleware import TENANT_SCOPE_KEY
from app.runtime import Runtime
from app.tenancy.service import Platform

log = structlog.get_logger(__name__)

ADD_PATH = "/mem/v1/memories"


def runtime_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
    runtime: Runtime = connection.app.state["runtime"]
    return runtime


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return bearer_token(connection.headers)


# Translates the headers a surface receives into the `apikey` / `Authorization: Bearer` pair
# that resolve_scope reads (e.g. mem0's `Authorization: Token <key>`).
HeaderTranslation = Callable[[Mapping[str, str]], Mapping[str, str]]


def _request_kind(request: Request[Any, Any, Any], adds: frozenset[str]) -> Kind:
    """An add (rate-limited as one) is a POST to one of the surface's add paths, or a route marked
    `opt={LIMIT_KIND: "add"}`."""
    is_add = request.method == "POST" and request.url.path.rstrip("/") in adds
    return "add" if is_add or request.route_handler.opt.get(LIMIT_KIND) == "add" else "request"


def scope_provider(
    translate: HeaderTranslation | None = None, add_paths: Collection[str] = (ADD_PATH,)
) -> Callable[[Request[Any, Any, Any]], AsyncGenerator[MemoryAuthScope]]:
    """A provider of the caller's scope, for a surface whose credentials arrive as `translate` reads
    them and whose adds (rate-limited as adds) are POSTs to `add_paths`."""
    adds = frozenset(p.rstrip("/") for p in add_paths)

    async def provide(request: Request[Any, Any, Any]) -> AsyncGenerator[MemoryAuthScope]:
        """The caller's scope, holding one of its tenant's in-flight slots until the response is done."""

        def on_tenant(ref: str) -> None:
            request.scope.setdefault("state", {})[TENANT_SCOPE_KEY] = ref
            structlog.contextvars.bind_contextvars(tenant=ref)

        runtime = runtime_of(request)
        headers = request.headers if translate is None else translate(request.headers)
        scope = await resolve_scope(runtime, headers, on_tenant=on_tenant, kind=_request_kind(request, adds))
        tenant = await runtime.platform.find_tenant(scope.tenant_ref)  # cached: resolve_scope just read it
        with runtime.limits.in_flight(scope.tenant_ref, tenant.limits if tenant else None):
            yield scope

    return provide


provide_scope = scope_provider()


async def provide_db(request: Request[Any, Any, Any], auth: MemoryAuthScope) -> AsyncGenerator[TenantSession]:
    """The request owns the transaction: commit when the handler returns, roll back when it raises."""
    async with tenant_transaction(runtime_of(request), auth) as session:
        yield session


async def provide_deps(request: Request[Any, Any, Any], auth: MemoryAuthScope) -> MemoryDeps:
    return await memory_deps(runtime_of(request), auth)


async def provide_platform(request: Request[Any, Any, Any]) -> Platform:
    return runtime_of(request).platform


def _bearer_is_one_of(connection: ASGIConnection[Any, Any, Any, Any], *keys: str | None) -> bool:
    token = _bearer(connection)
    if token is None:
        return False
    # Every configured key is compared, so the time taken does not say which one matched.
    matches = [hmac.compare_digest(token.encode(), key.encode()) for key in keys if key]
    return any(matches)


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not _bearer_is_one_of(connection, runtime_of(connection).settings.admin_key):
        raise Unauthorized(
            "Admin endpoints need 'Authorization: Bearer <platform admin key>'.", code="invalid_admin_key"
        )


def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """/metrics counts every tenant's traffic: the operator's (admin or scrape-only metrics) key only."""
    settings = runtime_of(connection).settings
    if not _bearer_is_one_of(connection, settings.admin_key, settings.metrics_key):
        raise Unauthorized(
            "/metrics needs 'Authorization: Bearer <platform admin key or MEM_METRICS_KEY>'.",
            code="invalid_admin_key",
        )


def app_dependencies() -> dict[str, Provide]:
    """What `create_app` registers for every route that names these parameters."""
    return {
        "auth": Provide(provide_scope),
        "db": Provide(provide_db),
        "deps": Provide(provide_deps),
        "platform": Provide(provide_platform),
    }
