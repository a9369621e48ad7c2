"""Signing in and out of Studio, and the admin choosing a tenant to open."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from app.access import resolve_scope
from app.errors import AppError
from app.studio.session import StudioSession, new_session
from app.studio.web import SignInRequired, Studio, runtime_of

_REASONS = {
    "expired": "Your session expired or is no longer valid: sign in again.",
    "signed_out": "Sign in with the platform admin key or a tenant's service_role key.",
}


def home_of(session: StudioSession) -> str:
    return "/studio/admin" if session.is_admin and session.tenant_ref is None else "/studio/overview"


@get("/", name="studio_home")
async def home(request: Request[Any, Any, Any], studio: Studio) -> Redirect:
    session = studio.session(request)
    return Redirect(home_of(session) if session is not None and session.signed_in else "/studio/login")


@get("/login", name="studio_login")
async def login_form(request: Request[Any, Any, Any], studio: Studio, reason: str | None = None) -> Template:
    # Always a session without keys: opening the sign-in page signs out.
    return studio.page(request, new_session(), "login.html", message=_REASONS.get(reason or ""))


async def _signed_in(request: Request[Any, Any, Any], studio: Studio, key: str) -> StudioSession:
    """The new session for this key (a fresh CSRF token), or a refusal that names no key."""
    if studio.admin_key_valid(request, key):
        return StudioSession(csrf=new_session().csrf, admin_key=key)
    try:
        scope = await resolve_scope(runtime_of(request), {"apikey": key})
    except AppError as exc:
        raise SignInRequired("invalid_key") from exc
    if not scope.is_service:
        raise SignInRequired("invalid_key")
    return StudioSession(csrf=new_session().csrf, tenant_key=key, tenant_ref=scope.tenant_ref)


@post("/login", name="studio_sign_in", status_code=303)
async def sign_in(request: Request[Any, Any, Any], studio: Studio) -> Redirect | Template:
    anonymous = studio.session(request) or new_session()
    form = await studio.form(request, anonymous)
    try:
        session = await _signed_in(request, studio, form.get("key", "").strip())
    except SignInRequired:
        return studio.page(
            request,
            anonymous,
            "login.html",
            status_code=401,
            error="That key is not the platform admin key or a tenant's service_role key.",
        )
    return Redirect(home_of(session), cookies=[studio.cookie(request, session)], status_code=303)


@post("/logout", name="studio_sign_out", status_code=303)
async def sign_out(request: Request[Any, Any, Any], studio: Studio) -> Redirect:
    session = studio.session(request) or new_session()
    await studio.form(request, session)
    return Redirect("/studio/login", cookies=[studio.cookie(request, None)], status_code=303)


@post("/tenant", name="studio_open_tenant", status_code=303)
async def open_tenant(request: Request[Any, Any, Any], studio: Studio) -> Redirect:
    """The admin opens one tenant; Studio then acts with that tenant's service_role key."""
    session = studio.require_admin(request)
    form = await studio.form(request, session)
    tenant = await runtime_of(request).platform.get_tenant(form.get("ref", ""))
    opened = StudioSession(csrf=session.csrf, admin_key=session.admin_key, tenant_ref=tenant.ref)
    return Redirect("/studio/overview", cookies=[studio.cookie(request, opened)], status_code=303)
