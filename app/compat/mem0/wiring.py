"""How /mem0 authenticates and answers errors: mem0's `Token` scheme, and `{"detail": ...}` bodies.

The error bodies come from the app's own handlers (app.http.errors), reshaped: the same status,
headers and stable `code`, with the message under mem0's `detail`, which the SDKs raise with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec

from app.compat.mem0.views import Mem0ErrorBody
from app.errors import ErrorBody, Unauthorized
from app.http.errors import exception_handlers

Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def credentials(headers: Mapping[str, str]) -> dict[str, str]:
    """`Authorization: Token <key>` (what the mem0 SDKs send) or `apikey: <key>` as the tenant key;
    `Authorization: Bearer <user jwt>` with the anon key still signs a user in, as on /mem/v1."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    apikey = headers.get("apikey")
    out: dict[str, str] = {}
    if scheme.lower() == "token":
        token = value.strip()
        if apikey and apikey != token:
            raise Unauthorized(
                "The apikey header and 'Authorization: Token' name different keys.",
                code="conflicting_api_keys",
            )
        apikey = token
    elif scheme.lower() == "bearer":
        out["authorization"] = headers["authorization"]
    if not apikey:
        raise Unauthorized(
            "No key: send 'Authorization: Token <your tenant's service_role key>' (what the mem0 SDKs "
            "send) or an apikey header.",
            code="missing_api_key",
        )
    out["apikey"] = apikey
    return out


def _reshaped(handler: Handler) -> Handler:
    def handle(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
        response = handler(request, exc)
        body = response.content
        if not isinstance(body, ErrorBody):
            return response
        return Response(
            content=Mem0ErrorBody(detail=body.message, code=body.code, details=body.details, hint=body.hint),
            status_code=response.status_code,
            headers=dict(response.headers),
            media_type="application/json",
        )

    return handle


def mem0_exception_handlers() -> dict[Any, Handler]:
    return {kind: _reshaped(handler) for kind, handler in exception_handlers().items()}


def answering_mem0_paths(handlers: dict[Any, Handler], prefix: str) -> dict[Any, Handler]:
    """The app's handlers, except that a request under `prefix` that matched no route (404, 405:
    raised before any router's own handlers) is answered in mem0's shape too."""

    def pick(handler: Handler) -> Handler:
        reshaped = _reshaped(handler)

        def handle(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
            under = request.url.path == prefix or request.url.path.startswith(prefix + "/")
            return (reshaped if under else handler)(request, exc)

        return handle

    return {kind: pick(handler) for kind, handler in handlers.items()}


_DESCRIPTIONS = {
    400: "Bad input (code says which): a bad field, filter or id.",
    401: "The key is missing or not valid.",
    403: "The key's role may not do this (the anon key alone is refused).",
    404: "No such id for this caller (another owner's ids are not found either).",
    409: "The tenant has no memory schema yet.",
    413: "The request body is too large.",
    422: "The body failed validation.",
    429: "Over the tenant's rate limits; see Retry-After.",
    500: "The server could not complete the request.",
    501: "A mem0 platform feature this service does not have; `detail` names it.",
    502: "The model provider answered with an error.",
    503: "The database or the model provider is unavailable or busy; see Retry-After.",
    504: "The model provider did not answer in time.",
}
ROUTE_ERRORS = (400, 401, 403, 409, 422, 429, 500, 503)
PROVIDER_ERRORS = (502, 503, 504)


def mem0_errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI error responses of a /mem0 route: mem0's body."""
    return {
        status: ResponseSpec(
            data_container=Mem0ErrorBody, description=_DESCRIPTIONS[status], generate_examples=False
        )
        for status in sorted({*ROUTE_ERRORS, *statuses})
    }
