"""The one place errors become HTTP answers: `{"code", "message", "details"?, "hint"?}`."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.errors import AppError

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def _response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content=body, status_code=status, headers=headers, media_type="application/json")


def app_error_handler(request: Request[Any, Any, Any], exc: AppError) -> Response[Any]:
    if exc.status_code >= 500:
        log.error("request_failed", code=exc.code, status=exc.status_code, exc_info=exc.__cause__ or exc)
    else:
        log.info("request_refused", code=exc.code, status=exc.status_code)
    return _response(exc.status_code, exc.to_body(), exc.headers)


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    body: dict[str, Any]
    if isinstance(exc, NotFoundException) and exc.detail in ("Not Found", ""):
        body = {"code": "route_not_found", "message": f"No route for {request.method} {request.url.path}."}
    elif isinstance(exc.__cause__, SerializationException):
        body = {"code": "malformed_json", "message": f"The request body is not valid JSON: {exc.detail}."}
    elif isinstance(exc, ValidationException) or status == 400:
        extra = exc.extra if isinstance(exc.extra, list) else None
        body = {"code": "validation_failed", "message": str(exc.detail or "The request is not valid.")}
        if extra:
            body["details"] = [
                {k: v for k, v in item.items() if k in ("key", "message", "source")}
                for item in extra
                if isinstance(item, dict)
            ]
    elif status == 413:
        body = {"code": "payload_too_large", "message": "The request body is too large."}
    else:
        body = {
            "code": _HTTP_CODES.get(status, "http_error"),
            "message": str(exc.detail or "Request failed."),
        }
    if status >= 500:
        log.error("request_failed", status=status, exc_info=exc)
    else:
        log.info("request_refused", code=body["code"], status=status)
    return _response(status, body, dict(exc.headers or {}))


def undecodable_body_handler(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    # Litestar's JSON decoding turns msgspec errors into 400s but lets a non-UTF-8 body escape as this.
    log.info("request_refused", code="malformed_json", status=400)
    return _response(400, {"code": "malformed_json", "message": "The request body is not valid UTF-8 JSON."})


def postgres_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Database errors that slipped past the repos: never a stack trace, the right status."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return _response(409, {"code": "conflict", "message": "That would duplicate an existing record."})
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        # Caller text Postgres cannot store: a NUL (\u0000) in a text column or in JSON.
        log.info("request_refused", code="invalid_text", status=400)
        return _response(
            400, {"code": "invalid_text", "message": "Text may not contain NUL (\\u0000) characters."}
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        log.error("database_timeout", exc_info=exc)
        return _response(
            503,
            {"code": "database_timeout", "message": "The database query took too long."},
            {"Retry-After": "1"},
        )
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.TooManyConnectionsError
        | asyncpg.CannotConnectNowError
        | asyncpg.InterfaceError
        | OSError
        | TimeoutError,
    ):
        log.error("database_unavailable", exc_info=exc)
        return _response(
            503,
            {"code": "database_unavailable", "message": "The database is unavailable."},
            {"Retry-After": "2"},
        )
    return internal_error_handler(request, exc)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
    return _response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        {"code": "internal_error", "message": "The server could not complete the request."},
    )


def exception_handlers() -> dict[Any, Any]:
    return {
        AppError: app_error_handler,
        HTTPException: http_exception_handler,
        UnicodeDecodeError: undecodable_body_handler,
        asyncpg.PostgresError: postgres_error_handler,
        asyncpg.InterfaceError: postgres_error_handler,
        OSError: postgres_error_handler,
        TimeoutError: postgres_error_handler,
        Exception: internal_error_handler,
    }
