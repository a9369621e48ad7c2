"""Studio's router: its pages, its session and CSRF handling, and errors as pages, not JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from litestar import Request, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Response
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from app.errors import AppError, Unauthorized
from app.settings import Settings
from app.studio import admin, auth, entities, memories, overview, settings_page
from app.studio.docs import STATIC_PATH
from app.studio.session import SessionCodec, session_secret
from app.studio.web import ChooseTenant, SignInRequired, Studio

log = structlog.get_logger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parents[1] / "static"

HANDLERS = [
    auth.home,
    auth.login_form,
    auth.sign_in,
    auth.sign_out,
    auth.open_tenant,
    memories.memories_page,
    memories.memory_page,
    memories.update_memory,
    memories.delete_memory,
    memories.delete_all,
    memories.search_page,
    entities.entities_page,
    entities.entity_page,
    overview.overview_page,
    settings_page.settings_page,
    settings_page.save_settings,
    settings_page.reset,
    admin.admin_page,
    admin.create_tenant,
    admin.migrate,
]


def template_config() -> TemplateConfig[Any]:
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine)


def static_router() -> Router:
    """/static: Studio's stylesheet and script, and the vendored Swagger UI that /docs loads."""
    return create_static_files_router(
        path=STATIC_PATH, directories=[STATIC], include_in_schema=False, name="static"
    )


def studio_router(settings: Settings) -> Router:
    studio = Studio(SessionCodec(session_secret(settings)))

    def error_page(request: Request[Any, Any, Any], exc: AppError) -> Response[Any]:
        if isinstance(exc, SignInRequired | Unauthorized):
            reason = exc.reason if isinstance(exc, SignInRequired) else "expired"
            return Redirect(
                f"/studio/login?reason={reason}", cookies=[studio.cookie(request, None)], status_code=303
            )
        if isinstance(exc, ChooseTenant):
            return Redirect("/studio/admin", status_code=303)
        if exc.status_code >= 500:
            log.error("studio_error", code=exc.code, error=exc.message)
        return studio.page(
            request, studio.session(request), "error.html", status_code=exc.status_code, error=exc
        )

    def http_error_page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        """Litestar's own refusals (a malformed query parameter, 405) as a page too."""
        refused = AppError(str(exc.detail or "The request is not valid."), code="bad_request")
        refused.status_code = exc.status_code
        return studio.page(
            request, studio.session(request), "error.html", status_code=exc.status_code, error=refused
        )

    return Router(
        path="/studio",
        route_handlers=HANDLERS,
        dependencies={"studio": Provide(lambda: studio, sync_to_thread=False)},
        exception_handlers={AppError: error_page, HTTPException: http_error_page},
        include_in_schema=False,
    )
