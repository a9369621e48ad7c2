"""The /mcp endpoint: MCP's streamable HTTP transport, mounted in the Litestar app.

Built on the official `mcp` Python SDK (pinned to the 1.x line: its `FastMCP` turns typed, described
Python parameters into the tools' JSON schemas, and its `StreamableHTTPSessionManager` is a plain ASGI
callable that Litestar mounts with `@asgi(is_mount=True)`; the separate `fastmcp` package would add
a second framework and its own auth layer, which we do not want here). mcp 2.x renamed these APIs
and moved to another HTTP client; the 1.x line is what today's desktop clients and frameworks speak.

Transport choices:

* stateless, JSON responses: every POST is one self-contained JSON-RPC exchange, authenticated on
  its own by the same headers as /mem/v1, so any instance behind a load balancer can answer it and no
  session outlives its request. (Memory tools need no server-initiated messages.)
* auth at the mount, before the SDK sees the request: a missing, foreign or anonymous key gets our
  401/403 error body and no MCP session is ever created. The verified scope rides in the ASGI scope's
  state to the tools (see `app.mcp.calls`).
* DNS-rebinding protection (a Host allow-list) is off: it guards servers that trust ambient
  credentials, and this one trusts only the explicit apikey/Bearer headers it receives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pydantic
from litestar import asgi
from litestar.handlers.asgi_handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ContentBlock

from app.access import resolve_scope
from app.errors import ErrorBody
from app.http.middleware import TENANT_SCOPE_KEY
from app.mcp import tools
from app.mcp.calls import CALLER_KEY, INVALID_ARGUMENTS, Caller, record, tool_error
from app.runtime import Runtime

INSTRUCTIONS = (
    "Long-term memory for the user you are talking to. Search it (search_memories) before answering "
    "questions that may depend on what you know about the user; remember new durable facts, "
    "preferences and corrections (add_memory); correct or forget them on request (update_memory, "
    "delete_memory). Owner ids: user_id, agent_id, run_id."
)


class MemoryMCP(FastMCP[Any]):
    """FastMCP whose every failure is a tool error carrying our error `code`."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any]
    ) -> Sequence[ContentBlock] | dict[str, Any]:
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            raise tool_error(ErrorBody("unknown_tool", f"There is no tool named {name!r}."))
        known = set(tool.parameters.get("properties", {}))
        unknown = sorted(set(arguments) - known)
        if unknown:
            record(name, None, "refused", "unknown_argument", None)
            raise tool_error(
                ErrorBody(
                    "unknown_argument",
                    f"Unknown argument {unknown[0]!r}.",
                    details={"unknown": unknown, "allowed": sorted(known)},
                )
            )
        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            raise _coded(name, exc) from exc


def _coded(name: str, exc: ToolError) -> ToolError:
    cause = exc.__cause__
    if isinstance(cause, ToolError):  # raised by app.mcp.calls: already our error body
        return cause
    if isinstance(cause, pydantic.ValidationError):
        record(name, None, "refused", INVALID_ARGUMENTS, None)
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in cause.errors()
        ]
        return tool_error(ErrorBody(INVALID_ARGUMENTS, "The arguments are not valid.", details=problems))
    return tool_error(ErrorBody("tool_failed", str(exc)))


def build_mcp_server(max_body_bytes: int) -> MemoryMCP:
    server = MemoryMCP(
        name="memory",
        instructions=INSTRUCTIONS,
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=max_body_bytes,
    )
    tools.register(server)
    # The SDK logs every request at INFO; our `mcp_tool_called` and `request_finished` lines say more.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    server.streamable_http_app()  # creates the session manager; its ASGI handler is mounted below
    return server


def mcp_endpoint(server: MemoryMCP) -> ASGIRouteHandler:
    """The mount: verify the caller exactly as /mem/v1 does, then hand the request to the SDK."""

    @asgi("/mcp", is_mount=True, copy_scope=False, summary="MCP (streamable HTTP)", include_in_schema=False)
    async def mcp(scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["litestar_app"].state["runtime"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        state: dict[str, Any] = scope.setdefault("state", {})
        scope["path_template"] = "/mcp"  # a mount has none; request logs name the route

        def on_tenant(ref: str) -> None:
            state[TENANT_SCOPE_KEY] = ref

        # Raised errors are rendered by the app's handlers: our error body, status 401/403/409.
        caller = await resolve_scope(runtime, headers, on_tenant=on_tenant)
        state[CALLER_KEY] = Caller(runtime=runtime, scope=caller)
        handle: Any = server.session_manager.handle_request  # typed for Starlette's ASGI aliases
        await handle(scope, receive, send)

    return mcp
