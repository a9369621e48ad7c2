"""CORS with a per-tenant allow-list of browser origins (SPEC §2: a web page calls the API with
the tenant's anon key and its signed-in user's JWT).

How a browser call is decided, and why:

- No `Origin` header (servers, curl, SDKs outside a browser), or an `Origin` naming this service
  itself (Swagger UI under /docs, the index page): passed through untouched.
- Preflight (`OPTIONS` with `Access-Control-Request-Method`): the browser sends no header values,
  only their names (`Access-Control-Request-Headers: apikey, authorization`), so the tenant is
  unknown here. The preflight is granted when the origin is on *some* active tenant's list
  (204 with the CORS headers, cached by the browser for MAX_AGE seconds), and refused with 403
  `origin_not_allowed` otherwise: a page on an origin no tenant lists never gets further.
- The actual request carries the key: its tenant is read from the `apikey` header's unverified
  `ref` claim, as `provide_scope` does (the signature is checked later, by the route; a forged
  ref gains nothing: the request then fails authentication). On that tenant's list, the answer
  gets `Access-Control-Allow-Origin: <origin>`. Not on it (or no key, or an unknown tenant):
  no allow header, so the browser keeps the answer from the page; and since an answer withheld
  from the page may still have changed something, a state-changing method (anything but GET and
  HEAD) is refused with 403 `origin_not_allowed` before it reaches a route.
- Never `Access-Control-Allow-Credentials`: keys travel in headers, not cookies. Every answer
  to a request with an `Origin` says `Vary: Origin`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg
import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from app.auth.tokens import unverified_ref
from app.errors import ErrorBody
from app.tenancy.models import Tenant

log = structlog.get_logger(__name__)

MAX_AGE = "600"
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
# What supabase-js and the SDKs send; a preflight asking for other header names gets them echoed
# when they are plain header tokens (the origin check, not the header list, is the guard).
DEFAULT_ALLOW_HEADERS = "apikey, authorization, content-type, x-client-info, x-request-id"
EXPOSE_HEADERS = "x-request-id, retry-after"
_HEADER_LIST = re.compile(r"^[A-Za-z0-9_-]+(\s*,\s*[A-Za-z0-9_-]+)*$")
_READ_METHODS = frozenset({"GET", "HEAD"})
_LOOKUP_ERRORS = (OSError, asyncpg.PostgresError, TimeoutError)


class OriginPolicy(Protocol):
    """What the middleware asks the platform (Platform satisfies it)."""

    async def find_tenant(self, ref: str) -> Tenant | None: ...

    async def origin_listed(self, origin: str) -> bool: ...


class CorsMiddleware:
    def __init__(
        self, app: ASGIApp, policy: Callable[[], OriginPolicy], *, public_url: str | None = None
    ) -> None:
        self.app = app
        self._policy = policy
        self._own_origin = _origin_of(public_url) if public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        origin = headers.get(b"origin")
        if origin is None or self._same_origin(origin, headers):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        try:
            if method == "OPTIONS" and b"access-control-request-method" in headers:
                await self._preflight(origin, headers, send)
                return
            allowed = await self._allowed_for_key(origin, headers.get(b"apikey"))
        except _LOOKUP_ERRORS:
            log.error("cors_lookup_failed", exc_info=True)
            await _refuse(send, 503, "database_unavailable", "The database is unavailable.", origin=None)
            return
        if not allowed and method not in _READ_METHODS:
            log.info("request_refused", code="origin_not_allowed", status=403, origin=origin)
            await _refuse(send, 403, "origin_not_allowed", _not_allowed(origin), origin=None)
            return
        await self.app(scope, receive, _with_cors(send, origin if allowed else None))

    def _same_origin(self, origin: str, headers: dict[bytes, str]) -> bool:
        """A page this service served (its Host, or its public URL) is not a cross-origin caller."""
        host = headers.get(b"host")
        return (host is not None and urlsplit(origin).netloc == host.lower()) or origin == self._own_origin

    async def _preflight(self, origin: str, headers: dict[bytes, str], send: Send) -> None:
        if not await self._policy().origin_listed(origin):
            await _refuse(send, 403, "origin_not_allowed", _not_allowed(origin), origin=None)
            return
        requested = headers.get(b"access-control-request-headers", "").strip()
        allow_headers = requested if _HEADER_LIST.fullmatch(requested) else DEFAULT_ALLOW_HEADERS
        out = [
            *_cors_headers(origin),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", allow_headers.encode("latin-1")),
            (b"access-control-max-age", MAX_AGE.encode()),
            (b"content-length", b"0"),
        ]
        await _respond(send, 204, out, b"")

    async def _allowed_for_key(self, origin: str, api_key: str | None) -> bool:
        ref = unverified_ref(api_key) if api_key else None
        tenant = await self._policy().find_tenant(ref) if ref else None
        return tenant is not None and tenant.status == "active" and origin.lower() in tenant.cors_origins


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _not_allowed(origin: str) -> str:
    return (
        f"The origin {origin!r} is not on this tenant's CORS allow-list; the platform operator adds it "
        "with PUT /auth/v1/admin/tenants/{ref}/cors."
    )


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    out = [(b"vary", b"Origin")]
    if origin is not None:
        out += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
        ]
    return out


def _with_cors(send: Send, origin: str | None) -> Send:
    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or [])
            headers.extend(_cors_headers(origin))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_cors


async def _refuse(send: Send, status: int, code: str, message: str, *, origin: str | None) -> None:
    body = msgspec.json.encode(ErrorBody(code=code, message=message))
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_cors_headers(origin),
    ]
    await _respond(send, status, headers, body)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
