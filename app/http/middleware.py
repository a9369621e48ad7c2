"""Request ids and the one `request_finished` log line per request."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("app.request")
_GOOD_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TENANT_SCOPE_KEY = "memory.tenant"


class RequestContextMiddleware:
    """Pure ASGI so it also wraps errors and 404s that never reach a handler."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _GOOD_ID.match(incoming) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            state: Any = scope.get("state") or {}
            log.info(
                "request_finished",
                method=scope.get("method"),
                route=scope.get("path_template") or "unmatched",
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                tenant=state.get(TENANT_SCOPE_KEY) if isinstance(state, dict) else None,
            )
            structlog.contextvars.clear_contextvars()
