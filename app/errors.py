"""The one error tree of the service: each class carries its HTTP status and a stable code."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """The body of every error response; `details` and `hint` are absent, not null, when unset."""

    code: str
    message: str
    details: Any | UnsetType = UNSET
    hint: str | UnsetType = UNSET


class AppError(Exception):
    status_code: int = 500
    code: str = "internal_error"
    message: str = "The server could not complete the request."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Any = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        if code is not None:
            self.code = code
        self.details = details
        self.hint = hint
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> ErrorBody:
        return ErrorBody(
            code=self.code,
            message=self.message,
            details=UNSET if self.details is None else self.details,
            hint=UNSET if self.hint is None else self.hint,
        )

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = msgspec.to_builtins(self.body())
        return body


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"
    message = "The request is not valid."


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_failed"
    message = "The request body or parameters failed validation."


class InvalidFilter(BadRequest):
    code = "invalid_filter"
    message = "The filters are not valid."


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"
    message = "A valid API key is required."


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = "This caller may not do that."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "Not found."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class ProviderError(AppError):
    status_code = 502
    code = "provider_error"
    message = "The model provider failed to answer."


class ProviderUnavailable(AppError):
    status_code = 503
    code = "provider_unavailable"
    message = "The model provider is unavailable; try again later."


class ProviderTimeout(AppError):
    status_code = 504
    code = "provider_timeout"
    message = "The model provider did not answer in time."


class RateLimited(AppError):
    """Over a per-tenant rate or concurrency limit: answered at once, with Retry-After."""

    status_code = 429
    code = "rate_limited"
    message = "Too many requests for this tenant; slow down and retry after the given seconds."


class Overloaded(AppError):
    """A shared resource (the embedding queue, the database connections) is full: retry shortly."""

    status_code = 503
    code = "overloaded"
    message = "The service is busy; retry after the given seconds."


def retry_after(seconds: float) -> dict[str, str]:
    """The Retry-After header: whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
