"""Request dependencies, declared once for the whole app: the auth scope, the request's
transaction, the memory services' context, and the platform admin guard.

Feature routes name these parameters (`auth`, `db`, `deps`, `platform`) and never import
this module: `create_app` registers the providers, so features stay independent.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncGenerator
from typing import Any

import structlog
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler

from app.auth.scope import MAX_ID_LENGTH, MemoryAuthScope
from app.auth.tokens import (
    NOT_A_USER_TOKEN,
    USER_ROLE,
    UserClaims,
    unverified_ref,
    verify_api_key,
    verify_user_token,
)
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.errors import Conflict, Forbidden, Unauthorized
from app.http.middleware import TENANT_SCOPE_KEY
from app.runtime import Runtime
from app.tenancy.models import Tenant
from app.tenancy.service import Platform

log = structlog.get_logger(__name__)


def runtime_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
    runtime: Runtime = connection.app.state["runtime"]
    return runtime


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    value = connection.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def provide_scope(request: Request[Any, Any, Any]) -> MemoryAuthScope:
    runtime = runtime_of(request)
    api_key = request.headers.get("apikey")
    if not api_key:
        raise Unauthorized(
            "The apikey header is missing: send your tenant's anon or service_role key.",
            code="missing_api_key",
        )
    ref = unverified_ref(api_key)
    tenant = await runtime.platform.find_tenant(ref) if ref else None
    if tenant is None or tenant.status != "active":
        raise Unauthorized("The API key is not valid.", code="invalid_api_key")
    role = verify_api_key(api_key, tenant.keys, tenant.ref)
    request.scope.setdefault("state", {})[TENANT_SCOPE_KEY] = tenant.ref
    structlog.contextvars.bind_contextvars(tenant=tenant.ref)
    if not tenant.has_mem_schema:
        raise Conflict(
            "This tenant has no memory schema yet.",
            code="mem_schema_missing",
            hint="POST /auth/v1/admin/init/mem-schema?dbKey=<ref> creates it.",
        )
    token = _bearer(request)
    # Bytes: compare_digest raises TypeError on str with non-ASCII characters, and headers may hold them.
    if token is not None and hmac.compare_digest(token.encode(), api_key.encode()):
        token = None  # what supabase-js sends when nobody is signed in: no user
    if role == "service_role":
        # As in Supabase, the Bearer token is what the request runs as: a user's access token
        # narrows even the service_role key to that user. A tenant key there names no one.
        if token is None:
            return _service_scope(tenant.ref)
        try:
            claims = await _user_claims(runtime, tenant, token)
        except Forbidden as exc:
            if exc.code == NOT_A_USER_TOKEN:
                return _service_scope(tenant.ref)
            raise
        return _user_scope(tenant.ref, claims)
    if token is None:
        raise Forbidden(
            "Anonymous callers may not use the memory API: send a signed-in user's access token as "
            "'Authorization: Bearer <jwt>', or use the service_role key from your backend.",
            code="anonymous_not_allowed",
        )
    return _user_scope(tenant.ref, await _user_claims(runtime, tenant, token))


def _service_scope(ref: str) -> MemoryAuthScope:
    return MemoryAuthScope(tenant_ref=ref, role="service_role", user_id=None)


def _user_scope(ref: str, claims: UserClaims) -> MemoryAuthScope:
    return MemoryAuthScope(tenant_ref=ref, role=USER_ROLE, user_id=claims.sub, session_id=claims.session_id)


async def _user_claims(runtime: Runtime, tenant: Tenant, token: str) -> UserClaims:
    """A signed-in user's verified claims; a genuine token that names no user is NOT_A_USER_TOKEN."""
    jwks = await runtime.jwks.for_tenant(tenant.ref, jwks=tenant.jwks, jwks_url=tenant.jwks_url)
    claims = verify_user_token(token, keys=tenant.keys, jwks=jwks)
    if len(claims.sub) > MAX_ID_LENGTH:
        raise Unauthorized(
            f"The token's subject is longer than {MAX_ID_LENGTH} characters.", code="invalid_token"
        )
    if claims.role != USER_ROLE:
        # A service_role or anon JWT in the Bearer never raises privilege: authority comes from apikey.
        raise Forbidden("The bearer token is not a signed-in user's access token.", code=NOT_A_USER_TOKEN)
    return claims


async def provide_db(request: Request[Any, Any, Any], auth: MemoryAuthScope) -> AsyncGenerator[TenantSession]:
    """The request owns the transaction: commit when the handler returns, roll back when it raises."""
    pool = await runtime_of(request).pools.get(auth.tenant_ref)
    session = TenantSession(pool)
    try:
        yield session
    except BaseException:
        await session.finish(commit=False)
        raise
    else:
        await session.finish(commit=True)


async def provide_deps(request: Request[Any, Any, Any], auth: MemoryAuthScope) -> MemoryDeps:
    runtime = runtime_of(request)
    tenant = await runtime.platform.find_tenant(auth.tenant_ref)
    assert tenant is not None and tenant.embedding_dims is not None
    return runtime.memory_deps(tenant.ref, tenant.embedding_dims, tenant.fts_config or "simple")


async def provide_platform(request: Request[Any, Any, Any]) -> Platform:
    return runtime_of(request).platform


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    expected = runtime_of(connection).settings.admin_key
    token = _bearer(connection)
    if not expected or token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized(
            "Admin endpoints need 'Authorization: Bearer <platform admin key>'.", code="invalid_admin_key"
        )


def app_dependencies() -> dict[str, Provide]:
    """What `create_app` registers for every route that names these parameters."""
    return {
        "auth": Provide(provide_scope),
        "db": Provide(provide_db),
        "deps": Provide(provide_deps),
        "platform": Provide(provide_platform),
    }
