"""The tenant's `mem` settings (overrides validated field by field, errors shown inline) and the
reset, which happens only when the tenant's name is typed exactly."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Template

from app.core.config import CONFIG_KEYS, check_changes
from app.errors import AppError
from app.memories import service as memories
from app.studio.web import Studio, StudioCall, runtime_of


def _parse(name: str, raw: str) -> Any:
    """A form field's value as its key's type; "" removes the override (the default applies)."""
    raw = raw.strip()
    if raw == "":
        return None
    kind = CONFIG_KEYS[name].kind
    if kind is bool:
        if raw not in ("true", "false"):
            raise AppError(f"{name} must be true or false.", code="invalid_config_value")
        return raw == "true"
    try:
        return kind(raw)
    except ValueError:
        raise AppError(f"{name} must be a number.", code="invalid_config_value") from None


def changes_from(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The changes the form asks for, and an error message per field that is not valid."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in CONFIG_KEYS:
        if name not in form:
            continue
        try:
            value = _parse(name, form[name])
            check_changes({name: value})
        except AppError as exc:
            errors[name] = exc.message
            continue
        changes[name] = value
    return changes, errors


async def _render(
    studio: Studio, request: Request[Any, Any, Any], call: StudioCall, status_code: int = 200, **extra: Any
) -> Template:
    config = await memories.get_config(call.db, call.scope, call.deps)
    settings = runtime_of(request).settings
    return studio.page(
        request,
        studio.require(request),
        "settings.html",
        status_code=status_code,
        tenant=call.tenant,
        config=config,
        keys=CONFIG_KEYS,
        mem=settings.mem,
        module_enabled=settings.mem.enabled,
        **extra,
    )


@get("/settings", name="studio_settings")
async def settings_page(request: Request[Any, Any, Any], studio: Studio, done: str | None = None) -> Template:
    session = studio.require(request)
    async with studio.tenant(request, session) as call:
        return await _render(studio, request, call, done=done)


@post("/settings", name="studio_settings_save", status_code=200)
async def save_settings(request: Request[Any, Any, Any], studio: Studio) -> Template:
    session = studio.require(request)
    form = await studio.form(request, session)
    changes, errors = changes_from(form)
    async with studio.tenant(request, session) as call:
        if errors:
            return await _render(studio, request, call, 400, errors=errors, submitted=form)
        await memories.put_config(call.db, call.scope, changes, call.deps)
        return await _render(studio, request, call, done="saved")


@post("/reset", name="studio_reset", status_code=200)
async def reset(request: Request[Any, Any, Any], studio: Studio) -> Template:
    """Empty the tenant's store, as POST /mem/v1/reset does, once its name is typed exactly."""
    session = studio.require(request)
    form = await studio.form(request, session)
    async with studio.tenant(request, session) as call:
        if form.get("confirm", "") != call.tenant.name:
            return await _render(
                studio, request, call, 400, reset_error="The name does not match: nothing was deleted."
            )
        done = await memories.reset(call.db, call.scope, call.deps)
    async with studio.tenant(request, session) as call:
        return await _render(studio, request, call, reset_done=done.removed)
