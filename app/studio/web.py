"""What every Studio page shares: the session cookie, CSRF checks, the tenant call, rendering.

A tenant page runs exactly as an API call does: the key from the session goes through
`app.access.resolve_scope` (the same verification, rate limits and in-flight slots), then the
services run in `app.access.tenant_transaction` with `app.access.memory_deps`.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Template

from app.access import memory_deps, resolve_scope, tenant_transaction
from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.errors import AppError, Forbidden, NotFound
from app.runtime import Runtime
from app.studio.session import (
    COOKIE_NAME,
    COOKIE_PATH,
    CSRF_FIELD,
    SessionCodec,
    StudioSession,
    new_session,
)
from app.tenancy.models import Tenant

# Pages load only this service's own files; inline styles (the score bars) but never inline script.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


class SignInRequired(AppError):
    """No valid session (none, forged or expired): the page answers with the sign-in form."""

    status_code = 401

    def __init__(self, reason: str = "signed_out") -> None:
        super().__init__("Sign in to Studio.", code="studio_sign_in_required")
        self.reason = reason


class ChooseTenant(AppError):
    """An admin session that has not opened a tenant yet: the page sends it to the tenant list."""

    status_code = 409

    def __init__(self) -> None:
        super().__init__("Choose a tenant first.", code="studio_no_tenant")


@dataclass(frozen=True)
class StudioCall:
    scope: MemoryAuthScope
    db: TenantSession
    deps: MemoryDeps
    tenant: Tenant


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state["runtime"]
    return runtime


class Studio:
    """Handed to every Studio handler (a router dependency): sessions, CSRF, tenant calls, pages."""

    def __init__(self, codec: SessionCodec) -> None:
        self.codec = codec

    def session(self, request: Request[Any, Any, Any]) -> StudioSession | None:
        return self.codec.decode(request.cookies.get(COOKIE_NAME))

    def require(self, request: Request[Any, Any, Any]) -> StudioSession:
        session = self.session(request)
        if session is None or not session.signed_in:
            raise SignInRequired("expired" if COOKIE_NAME in request.cookies else "signed_out")
        if session.is_admin and not self.admin_key_valid(request, session.admin_key):
            raise SignInRequired("expired")
        return session

    def require_admin(self, request: Request[Any, Any, Any]) -> StudioSession:
        session = self.require(request)
        if not session.is_admin:
            raise NotFound("This page is for the platform admin.", code="studio_admin_only")
        return session

    @staticmethod
    def admin_key_valid(request: Request[Any, Any, Any], key: str | None) -> bool:
        admin_key = runtime_of(request).settings.admin_key
        return bool(key and admin_key) and hmac.compare_digest(str(key).encode(), str(admin_key).encode())

    async def form(self, request: Request[Any, Any, Any], session: StudioSession) -> dict[str, str]:
        """The posted form, once its CSRF token matches the session's (403 otherwise)."""
        posted = await request.form()
        values = {k: str(v) for k, v in posted.items() if isinstance(v, str)}
        if not session.csrf_matches(values.get(CSRF_FIELD)):
            raise Forbidden(
                "The form's CSRF token is missing or wrong: reload the page.", code="csrf_invalid"
            )
        return values

    def cookie(self, request: Request[Any, Any, Any], session: StudioSession | None) -> Cookie:
        secure = request.url.scheme == "https"
        if session is None:
            return Cookie(
                key=COOKIE_NAME, value="", path=COOKIE_PATH, max_age=0, httponly=True, secure=secure
            )
        return Cookie(
            key=COOKIE_NAME,
            value=self.codec.encode(session),
            path=COOKIE_PATH,
            max_age=self.codec.max_age,
            httponly=True,
            samesite="strict",
            secure=secure,
        )

    def page(
        self,
        request: Request[Any, Any, Any],
        session: StudioSession | None,
        template: str,
        *,
        status_code: int = 200,
        **context: Any,
    ) -> Template:
        """A rendered page; it renews the session cookie (sliding expiry)."""
        session = session or new_session()
        context.update(session=session, csrf_field=CSRF_FIELD, csrf_token=session.csrf, path=request.url.path)
        return Template(
            template_name=template,
            context=context,
            status_code=status_code,
            cookies=[self.cookie(request, session)],
            headers=PAGE_HEADERS,
        )

    @asynccontextmanager
    async def tenant(
        self, request: Request[Any, Any, Any], session: StudioSession
    ) -> AsyncIterator[StudioCall]:
        """The services' context for the tenant the session opened, as the API builds it."""
        runtime = runtime_of(request)
        if not runtime.settings.mem.enabled:
            raise NotFound(
                "The memory module is off on this server (nubase.mem.enabled).", code="mem_disabled"
            )
        key = await self._tenant_key(runtime, session)
        scope = await resolve_scope(runtime, {"apikey": key})
        tenant = await runtime.platform.get_tenant(scope.tenant_ref)
        with runtime.limits.in_flight(scope.tenant_ref, tenant.limits):
            deps = await memory_deps(runtime, scope)
            async with tenant_transaction(runtime, scope) as db:
                yield StudioCall(scope=scope, db=db, deps=deps, tenant=tenant)

    @staticmethod
    async def _tenant_key(runtime: Runtime, session: StudioSession) -> str:
        if session.tenant_key is not None:
            return session.tenant_key
        if session.tenant_ref is None:
            raise ChooseTenant()
        # The admin opened this tenant: act with its service_role key, freshly signed.
        return runtime.platform.api_keys(await runtime.platform.get_tenant(session.tenant_ref))[
            "service_role"
        ]
