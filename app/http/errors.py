"""The one place errors become HTTP answers: `{"code", "message", "details"?, "hint"?}`, an
`ErrorBody`; and how routes declare those answers in the OpenAPI document."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.errors import AppError, ErrorBody

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


# What each documented error status means, across the API; the `code` in the body says which case.
_ERROR_DESCRIPTIONS = {
    400: "Bad input: malformed JSON, a bad parameter, an unknown filter operator.",
    401: "The API key (or admin key, or user token) is missing or not valid.",
    403: "The caller's role or scope does not allow this.",
    404: "No such id for this caller (another owner's ids are not found either).",
    409: "A conflict with the current state, e.g. the tenant has no memory schema yet.",
    413: "The request body is too large.",
    422: "The body or a parameter failed validation.",
    429: "Over the tenant's rate or concurrency limit (code rate_limited); see Retry-After.",
    500: "The server could not complete the request (never a stack trace).",
    502: "The model provider answered with an error.",
    503: (
        "The database or the model provider is unavailable or busy (embedding queue full, no free "
        "connection), or a query took too long; see Retry-After."
    ),
    504: "The model provider did not answer in time.",
}


# Any /mem/v1 route can refuse bad input, a missing key or a scope violation, a tenant without a
# memory schema (409), a tenant over its limits (429), and answer 500 or 503 (database); routes
# add 404, 413 and provider errors.
MEMORY_ROUTE_ERRORS = (400, 401, 403, 409, 422, 429, 500, 503)
PROVIDER_ERRORS = (502, 503, 504)


def error_responses(*statuses: int, body: type[Any] = ErrorBody) -> dict[int, ResponseSpec]:
    """OpenAPI error responses for a route: each status documented with the `ErrorBody` schema
    (or, on a compatibility surface, the envelope that carries it).

    Declaring 400 also replaces Litestar's own validation-error schema, which is not our body.
    """
    return {
        status: ResponseSpec(
            data_container=body, description=_ERROR_DESCRIPTIONS[status], generate_examples=False
        )
        for status in sorted(statuses)
    }


def error_response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content=body, status_code=status, headers=headers, media_type="application/json")


def app_error_handler(request: Request[Any, Any, Any], exc: AppError) -> Response[Any]:
    if exc.status_code >= 500 and exc.status_code != 501:  # 501: a feature we lack, not a fault
        log.error("request_failed", code=exc.code, status=exc.status_code, exc_info=exc.__cause__ or exc)
    else:
        log.info("request_refused", code=exc.code, status=exc.status_code)
    return error_response(exc.status_code, exc.body(), exc.headers)


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    body: ErrorBody
    if isinstance(exc, NotFoundException) and exc.detail in ("Not Found", ""):
        body = ErrorBody("route_not_found", f"No route for {request.method} {request.url.path}.")
    elif isinstance(exc.__cause__, SerializationException):
        body = ErrorBody("malformed_json", f"The request body is not valid JSON: {exc.detail}.")
    elif isinstance(exc, ValidationException) or status == 400:
        extra = exc.extra if isinstance(exc.extra, list) else None
        body = ErrorBody("validation_failed", str(exc.detail or "The request is not valid."))
        if extra:
            body.details = [
                {k: v for k, v in item.items() if k in ("key", "message", "source")}
                for item in extra
                if isinstance(item, dict)
            ]
    elif status == 413:
        body = ErrorBody("payload_too_large", "The request body is too large.")
    else:
        body = ErrorBody(_HTTP_CODES.get(status, "http_error"), str(exc.detail or "Request failed."))
    if status >= 500:
        log.error("request_failed", status=status, exc_info=exc)
    else:
        log.info("request_refused", code=body.code, status=status)
    return error_response(status, body, dict(exc.headers or {}))


def undecodable_body_handler(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    # Litestar's JSON decoding turns msgspec errors into 400s but lets a non-UTF-8 body escape as this.
    log.info("request_refused", code="malformed_json", status=400)
    return error_response(400, ErrorBody("malformed_json", "The request body is not valid UTF-8 JSON."))


def unencodable_text_handler(request: Request[Any, Any, Any], exc: UnicodeEncodeError) -> Response[Any]:
    # Text with no UTF-8 form (a lone surrogate such as \ud800) that got past the body checks.
    log.info("request_refused", code="invalid_text", status=400)
    return error_response(
        400, ErrorBody("invalid_text", "Text may not contain lone UTF-16 surrogates (such as \\ud800).")
    )


def postgres_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Database errors that slipped past the repos: never a stack trace, the right status."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return error_response(409, ErrorBody("conflict", "That would duplicate an existing record."))
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        # Caller text Postgres cannot store: a NUL (\u0000) in a text column or in JSON.
        log.info("request_refused", code="invalid_text", status=400)
        return error_response(
            400, ErrorBody("invalid_text", "Text may not contain NUL (\\u0000) characters.")
        )
    if isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        # Another request held what this one needed; the transaction was rolled back whole.
        log.warning("database_busy", error=type(exc).__name__)
        return error_response(
            503,
            ErrorBody("database_busy", "The database was busy with a conflicting change; try again."),
            {"Retry-After": "1"},
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        log.error("database_timeout", exc_info=exc)
        return error_response(
            503, ErrorBody("database_timeout", "The database query took too long."), {"Retry-After": "1"}
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
        return error_response(
            503, ErrorBody("database_unavailable", "The database is unavailable."), {"Retry-After": "2"}
        )
    return internal_error_handler(request, exc)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
    return error_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        ErrorBody("internal_error", "The server could not complete the request."),
    )


def exception_handlers() -> dict[Any, Any]:
    return {
        AppError: app_error_handler,
        HTTPException: http_exception_handler,
        UnicodeDecodeError: undecodable_body_handler,
        UnicodeEncodeError: unencodable_text_handler,
        asyncpg.PostgresError: postgres_error_handler,
        asyncpg.InterfaceError: postgres_error_handler,
        OSError: postgres_error_handler,
        TimeoutError: postgres_error_handler,
        Exception: internal_error_handler,
    }
