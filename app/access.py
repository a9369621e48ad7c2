"""Who is calling, from request headers: the one scope resolution behind /mem/v1 and /mcp.

Both entry points hand over the headers they received; this module verifies the tenant's API key,
the user's token, and opens the tenant transaction a call runs in. It knows no web framework.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from app.auth.scope import MAX_ID_LENGTH, MemoryAuthScope
from app.auth.tokens import (
    ASYMMETRIC_ALGORITHMS,
    NOT_A_USER_TOKEN,
    USER_ROLE,
    UserClaims,
    token_algorithm,
    verify_user_token,
)
from app.core.context import MemoryDeps
from app.core.limits import Kind
from app.db.session import BoundedPool, RowClaims, TenantSession
from app.errors import Conflict, Forbidden, Unauthorized
from app.runtime import Runtime
from app.tenancy.models import Tenant


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def resolve_scope(
    runtime: Runtime,
    headers: Mapping[str, str],
    *,
    on_tenant: Callable[[str], None] | None = None,
    kind: Kind = "request",
) -> MemoryAuthScope:
    """The caller's scope from `apikey` and `Authorization: Bearer`; anonymous callers are refused.

    `on_tenant` hears the tenant's ref as soon as the key is verified (request logs name it even
    when the call is refused later, e.g. for a missing memory schema).
    """
    api_key = headers.get("apikey")
    tenant, role = await _key_tenant(runtime, api_key)
    assert api_key is not None
    if on_tenant is not None:
        on_tenant(tenant.ref)
    # Per key role, before any further work: a tenant over its rate gets 429 and costs nothing more.
    runtime.limits.check(tenant.ref, role, kind, tenant.limits)
    if not tenant.has_mem_schema:
        raise Conflict(
            "This tenant has no memory schema yet.",
            code="mem_schema_missing",
            hint="POST /auth/v1/admin/init/mem-schema?dbKey=<ref> creates it.",
        )
    token = bearer_token(headers)
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


async def _key_tenant(runtime: Runtime, api_key: str | None) -> tuple[Tenant, str]:
    """The active tenant whose key this is, and the key's role."""
    if not api_key:
        raise Unauthorized(
            "The apikey header is missing: send your tenant's anon or service_role key.",
            code="missing_api_key",
        )
    ref = runtime.verified_keys.ref(api_key)
    tenant = await runtime.platform.find_tenant(ref) if ref else None
    if tenant is None or tenant.status != "active":
        raise Unauthorized("The API key is not valid.", code="invalid_api_key")
    return tenant, runtime.verified_keys.role(api_key, tenant.keys, tenant.ref)


def _service_scope(ref: str) -> MemoryAuthScope:
    return MemoryAuthScope(tenant_ref=ref, role="service_role", user_id=None)


def _user_scope(ref: str, claims: UserClaims) -> MemoryAuthScope:
    return MemoryAuthScope(tenant_ref=ref, role=USER_ROLE, user_id=claims.sub, session_id=claims.session_id)


async def _user_claims(runtime: Runtime, tenant: Tenant, token: str) -> UserClaims:
    """A signed-in user's verified claims; a genuine token that names no user is NOT_A_USER_TOKEN."""
    # Only an ES256/RS256 token needs the key set: an HS256 token never costs a JWKS fetch,
    # so a tenant's broken JWKS URL cannot break its HS256 users.
    jwks = None
    if token_algorithm(token) in ASYMMETRIC_ALGORITHMS:
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


@asynccontextmanager
async def tenant_transaction(
    runtime: Runtime, scope: MemoryAuthScope, *, slots: asyncio.Semaphore | None = None
) -> AsyncIterator[TenantSession]:
    """One transaction for one call: commit when the block ends, roll back when it raises.

    The session states the caller's row-security claims in every transaction it opens: the
    whole tenant for service_role, the token's sub for a user (sql/mem/003). `slots` bounds
    the connections callers sharing it hold at once (the queue workers' jobs of a tenant).
    """
    pool = await runtime.pools.get(scope.tenant_ref)
    session = TenantSession(
        pool if slots is None else BoundedPool(pool, slots),
        RowClaims(scope.role, None if scope.is_service else scope.user_id),
        acquire_timeout=runtime.settings.pool_acquire_timeout_seconds,
    )
    try:
        yield session
    except BaseException:
        await session.finish(commit=False)
        raise
    else:
        await session.finish(commit=True)


async def memory_deps(runtime: Runtime, scope: MemoryAuthScope) -> MemoryDeps:
    tenant = await runtime.platform.find_tenant(scope.tenant_ref)
    assert tenant is not None and tenant.embedding_dims is not None
    return runtime.memory_deps(tenant.ref, tenant.embedding_dims, tenant.fts_config or "simple")
