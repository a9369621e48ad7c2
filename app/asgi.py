"""create_app(settings): the composition root. Wiring only."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import msgspec
import structlog
from litestar import Litestar, Request, Router, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from app.auth.jwks import JwksKeys
from app.compat.mem0 import app_exception_handlers, mem0_router
from app.compat.tabby.routes import TabbyController
from app.db.embedded import start_embedded
from app.db.pools import PoolSizing, TenantPools, size_pools
from app.entities.routes import EntityController, GraphController
from app.health.routes import health, ready
from app.http.cors import CorsMiddleware
from app.http.dependencies import admin_guard, app_dependencies, metrics_guard, scope_provider
from app.http.errors import error_responses, exception_handlers
from app.http.middleware import RequestContextMiddleware
from app.http.openapi import SECURITY_SCHEMES, StrictStructSchemas
from app.logging import configure_logging
from app.mcp.server import MemoryMCP, build_mcp_server, mcp_endpoint
from app.memories.routes import MemoryController
from app.providers.chat import build_chat_provider
from app.providers.embeddings import LocalEmbedder, QueryEmbeddingCache, build_embedder
from app.runtime import Runtime
from app.search.routes import SearchController
from app.settings import Settings
from app.studio.docs import OfflineSwagger
from app.studio.routes import static_router, studio_router, template_config
from app.tenancy.routes import AdminController
from app.tenancy.service import Platform
from app.worker.workers import QueueWorkers

log = structlog.get_logger(__name__)


class IndexLinks(msgspec.Struct):
    docs: str
    studio: str
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
            studio=f"{base}/studio",
            openapi=f"{base}/docs/openapi.json",
            health=f"{base}/health",
            ready=f"{base}/ready",
        ),
    )


async def pool_sizing(settings: Settings, platform: Platform) -> PoolSizing:
    """Tenant pools sized so that, all full, they stay within the server's connections less a reserve."""
    max_connections, ordinary = await platform.connection_slots()
    budget = settings.db_connection_budget or max(2, ordinary - settings.db_connection_reserve)
    sizing = size_pools(budget, max_size=settings.pool_max_size, max_pools=settings.max_pools)
    log.info(
        "tenant_pools_sized",
        max_connections=max_connections,
        budget=sizing.budget,
        pool_max_size=sizing.max_size,
        max_pools=sizing.max_pools,
    )
    return sizing


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
    sizing = await pool_sizing(settings, platform)
    pools = TenantPools(
        dsn_for=platform.tenant_dsn,
        min_size=min(settings.pool_min_size, sizing.max_size),
        max_size=sizing.max_size,
        idle_seconds=settings.pool_idle_seconds,
        max_pools=sizing.max_pools,
        statement_timeout_ms=settings.statement_timeout_ms,
    )
    pools.start_reaper()
    embedder = build_embedder(settings.mem, tenant_queue=settings.limits.embedding_queue)
    cache = QueryEmbeddingCache(
        embedder, size=settings.mem.embedding_cache_size, ttl_seconds=settings.mem.embedding_cache_ttl_seconds
    )
    return Runtime(
        settings,
        platform,
        pools,
        embedder,
        cache,
        jwks=JwksKeys(allow_insecure=settings.allow_insecure_jwks),
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


def _runtime(app: Litestar) -> Runtime:
    runtime: Runtime = app.state["runtime"]
    return runtime


def _lifespan(
    settings: Settings, runtime: Runtime | None, mcp: MemoryMCP | None
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None]:
        async with AsyncExitStack() as stack:
            if runtime is None:  # otherwise shared and owned by the caller
                rt = await build_runtime(settings)
                stack.push_async_callback(close_runtime, rt)
                app.state["runtime"] = rt
                if isinstance(rt.embedder, LocalEmbedder):
                    await rt.embedder.warm_up()
            if settings.mem.enabled and settings.queue.workers > 0:
                # Async adds: stopped (running jobs finish or are handed back) before the runtime closes.
                workers = QueueWorkers(_runtime(app), settings.queue)
                await workers.start()
                stack.push_async_callback(workers.stop)
            if mcp is not None:
                # The MCP session manager's task group lives as long as the app; closed first.
                await stack.enter_async_context(mcp.session_manager.run())
            yield

    return lifespan


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> Litestar:
    """Build the service. Pass a runtime to share one (tests); otherwise the app owns its own."""
    configure_logging(settings.log_format, settings.log_level)
    mcp = build_mcp_server(settings.max_body_bytes) if settings.mem.enabled else None
    admin = Router(path="/", route_handlers=[AdminController], guards=[admin_guard])
    # /metrics counts every tenant's traffic: operator only. /docs is public unless
    # MEM_PUBLIC_DOCS=false (it describes the API, the same everywhere, and holds no tenant data).
    metrics = Router(path="/", route_handlers=[PrometheusController], guards=[metrics_guard])
    docs = Router(
        path="/docs",
        route_handlers=[],
        guards=[] if settings.docs_are_public else [admin_guard],
        include_in_schema=False,
    )
    # Studio (the web console) and /static (its assets and the vendored Swagger UI).
    handlers: list[Any] = [index, health, ready, admin, metrics, studio_router(settings), static_router()]
    if settings.mem.enabled:
        # With the module off, /mem/v1, /mem0 and Tabby's /memory do not exist: every path there is a 404.
        handlers += [MemoryController, SearchController, EntityController, GraphController, TabbyController]
        handlers.append(mem0_router(scope_provider))
    if mcp is not None:
        handlers.append(mcp_endpoint(mcp))
    prometheus = PrometheusConfig(app_name="memory", prefix="memory", group_path=True, exclude=["/metrics"])
    app = Litestar(
        route_handlers=handlers,
        dependencies=app_dependencies(),
        lifespan=[_lifespan(settings, runtime, mcp)],
        middleware=[prometheus.middleware],
        exception_handlers=app_exception_handlers(exception_handlers()),
        plugins=[StrictStructSchemas()],
        template_config=template_config(),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Memory",
            version="0.1.0",
            description="Long-term memory for AI applications: the /mem/v1 API and platform admin.",
            openapi_router=docs,
            render_plugins=[OfflineSwagger()],
            components=Components(security_schemes=dict(SECURITY_SCHEMES)),
        ),
        state=State({"runtime": runtime} if runtime is not None else {}),
        debug=False,
    )
    # Outside the router, not in `middleware=`: Litestar runs that list only for matched routes,
    # so unknown routes (404) and wrong methods (405) would go without an X-Request-Id.
    # CORS sits inside it, so its refusals carry an X-Request-Id and are logged too.
    app.asgi_handler = RequestContextMiddleware(
        CorsMiddleware(app.asgi_handler, lambda: _runtime(app).platform, public_url=settings.public_url)
    )
    return app
