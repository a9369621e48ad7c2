"""Platform admin pages: tenants with their schema version, create one (keys shown once), run
the `mem` schema migration for one tenant or all of them."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Template

from app.errors import AppError
from app.studio.web import Studio, runtime_of


async def _tenants_page(
    studio: Studio, request: Request[Any, Any, Any], status_code: int = 200, **extra: Any
) -> Template:
    session = studio.require_admin(request)
    tenants = await runtime_of(request).platform.list_tenants()
    return studio.page(
        request,
        session,
        "admin.html",
        status_code=status_code,
        tenants=sorted(tenants, key=lambda t: t.created_at),
        **extra,
    )


@get("/admin", name="studio_admin")
async def admin_page(request: Request[Any, Any, Any], studio: Studio) -> Template:
    return await _tenants_page(studio, request)


@post("/admin/tenants", name="studio_admin_create", status_code=200)
async def create_tenant(request: Request[Any, Any, Any], studio: Studio) -> Template:
    session = studio.require_admin(request)
    form = await studio.form(request, session)
    platform = runtime_of(request).platform
    try:
        tenant = await platform.create_tenant(form.get("name", "").strip())
    except AppError as exc:
        return await _tenants_page(studio, request, 400, create_error=exc.message)
    # Shown on this answer only: the keys are in no cookie, URL or later page.
    return await _tenants_page(studio, request, created=platform.key_set(tenant), created_name=tenant.name)


@post("/admin/migrate", name="studio_admin_migrate", status_code=200)
async def migrate(request: Request[Any, Any, Any], studio: Studio) -> Template:
    session = studio.require_admin(request)
    form = await studio.form(request, session)
    platform = runtime_of(request).platform
    ref = form.get("ref") or None
    results = [await platform.init_mem_schema(ref)] if ref else await platform.init_all_mem_schemas()
    return await _tenants_page(studio, request, migrated=[r.as_dict() for r in results])
