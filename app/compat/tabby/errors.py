"""Errors on /memory in Tabby's envelope: `{"success": false, "error": {code, message, ...}, "detail"}`.

The handlers of the rest of the API still decide the status, the stable code and what is logged;
this only wraps their `ErrorBody`. `success: false` is what Tabby's front end checks, and
`detail` is where its FastAPI server put an error's text (and where FastAPI clients look for it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec

from app.errors import ErrorBody
from app.http.errors import error_responses, exception_handlers

Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


class TabbyError(msgspec.Struct):
    success: bool
    error: ErrorBody
    detail: str  # error.message again, where FastAPI servers put it


def enveloped(handler: Handler) -> Handler:
    def handle(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
        response = handler(request, exc)
        body = response.content
        if not isinstance(body, ErrorBody):  # every handler answers one; never guess at another shape
            body = ErrorBody("internal_error", "The server could not complete the request.")
        return Response(
            content=TabbyError(success=False, error=body, detail=body.message),
            status_code=response.status_code,
            headers=response.headers,
            media_type="application/json",
        )

    return handle


def tabby_exception_handlers() -> dict[Any, Handler]:
    """The API's exception handlers, each with its answer put in Tabby's envelope."""
    return {kind: enveloped(handler) for kind, handler in exception_handlers().items()}


def tabby_error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    return error_responses(*statuses, body=TabbyError)
