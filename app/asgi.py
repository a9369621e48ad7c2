"""create_app(settings): the composition root. Wiring only."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Router, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from app.auth.jwks import JwksKeys
from app.db.embedded import start_embedded
from app.db.pools import TenantPools
from app.entities.routes import EntityController
from app.health.routes import health, ready
from app.http.dependencies import admin_guard, app_dependencies
from app.http.errors import error_responses, exception_handlers
from app.http.middleware import RequestContextMiddleware
from app.http.openapi import SECURITY_SCHEMES, StrictStructSchemas
from app.logging import configure_logging
from app.memories.routes import MemoryController
from app.providers.chat import build_chat_provider
from app.providers.embeddings import LocalEmbedder, QueryEmbeddingCache, build_embedder
from app.runtime import Runtime
from app.search.routes import SearchController
from app.settings import Settings
from app.tenancy.routes import AdminController
from app.tenancy.service import Platform


class IndexLinks(msgspec.Struct):
    docs: str
    openapi: str
    health: str
    ready: str


class Index(msgspec.Struct):
    service: str
    links: IndexLinks


@get("/", summary="Where to start: links to the docs and health checks", responses=error_responses(500))
async def index(request: Request[Any, Any, Any]) -> Index:
    # A newcomer's first request is often the bare URL; a 404 there reads as "broken".
    base = str(request.base_url).rstrip("/")
    return Index(
        service="Memory",
        links=IndexLinks(
            docs=f"{base}/docs",
            openapi=f"{base}/docs/openapi.json",
            health=f"{base}/health",
            ready=f"{base}/ready",
        ),
    )


async def build_runtime(settings: Settings) -> Runtime:
    embedded = None
    server_dsn = settings.database_url
    if not server_dsn:
        embedded = start_embedded(settings.data_dir)
        server_dsn = embedded.dsn
    try:
        platform = Platform(settings, server_dsn)
        await platform.start()
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    pools = TenantPools(
        dsn_for=platform.tenant_dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        idle_seconds=settings.pool_idle_seconds,
        max_pools=settings.max_pools,
        statement_timeout_ms=settings.statement_timeout_ms,
    )
    pools.start_reaper()
    embedder = build_embedder(settings.mem)
    cache = QueryEmbeddingCache(
        embedder, size=settings.mem.embedding_cache_size, ttl_seconds=settings.mem.embedding_cache_ttl_seconds
    )
    return Runtime(
        settings,
        platform,
        pools,
        embedder,
        cache,
        jwks=JwksKeys(),
        embedded=embedded,
        chat=build_chat_provider(settings.mem),
    )


async def close_runtime(runtime: Runtime) -> None:
    await runtime.pools.close()
    await runtime.embedder.close()
    if runtime.chat is not None:
        await runtime.chat.close()
    await runtime.platform.stop()
    if runtime.embedded is not None:
        runtime.embedded.stop()


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> Litestar:
    """Build the service. Pass a runtime to share one (tests); otherwise the app owns its own."""
    configure_logging(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None]:
        if runtime is not None:  # shared and owned by the caller
            yield
            return
        rt = await build_runtime(settings)
        app.state["runtime"] = rt
        if isinstance(rt.embedder, LocalEmbedder):
            await rt.embedder.warm_up()
        try:
            yield
        finally:
            await close_runtime(rt)

    admin = Router(path="/", route_handlers=[AdminController], guards=[admin_guard])
    handlers: list[Any] = [index, health, ready, admin, PrometheusController]
    if settings.mem.enabled:
        # With the module off, /mem/v1 does not exist: every path there is a 404.
        handlers += [MemoryController, SearchController, EntityController]
    prometheus = PrometheusConfig(app_name="memory", prefix="memory", group_path=True, exclude=["/metrics"])
    app = Litestar(
        route_handlers=handlers,
        dependencies=app_dependencies(),
        lifespan=[lifespan],
        middleware=[prometheus.middleware],
        exception_handlers=exception_handlers(),
        plugins=[StrictStructSchemas()],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Memory",
            version="0.1.0",
            description="Long-term memory for AI applications: the /mem/v1 API and platform admin.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin()],
            components=Components(security_schemes=dict(SECURITY_SCHEMES)),
        ),
        state=State({"runtime": runtime} if runtime is not None else {}),
        debug=False,
    )
    # Outside the router, not in `middleware=`: Litestar runs that list only for matched routes,
    # so unknown routes (404) and wrong methods (405) would go without an X-Request-Id.
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler)
    return app
