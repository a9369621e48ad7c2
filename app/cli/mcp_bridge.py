"""`python -m app mcp`: MCP on stdio for desktop clients, forwarded to a running service's /mcp.

Claude Desktop, Cursor and VS Code start MCP servers as local processes speaking JSON-RPC on
stdin/stdout. This bridge is such a process: it opens one streamable-HTTP client session to
`<url>/mcp` with the tenant's headers, lists the remote tools, resource templates and resources as
its own, and forwards every call unchanged, tool errors included. Nothing but MCP goes to stdout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client.streamable_http import streamablehttp_client
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.stdio import stdio_server
from pydantic import AnyUrl

from app.cli.errors import CliError

URL_ENV = "MEMORY_URL"
KEY_ENV = "MEMORY_API_KEY"
USER_TOKEN_ENV = "MEMORY_USER_TOKEN"


@dataclass(frozen=True)
class BridgeTarget:
    endpoint: str
    headers: dict[str, str]


def bridge_target(url: str | None, key: str | None, user_token: str | None) -> BridgeTarget:
    """Where to forward, from the options or else the environment."""
    url = url or os.environ.get(URL_ENV)
    key = key or os.environ.get(KEY_ENV)
    user_token = user_token or os.environ.get(USER_TOKEN_ENV)
    if not url:
        raise CliError(f"give the service's URL: --url or {URL_ENV}", exit_code=2)
    if not key:
        raise CliError(f"give the tenant's API key: --key or {KEY_ENV}", exit_code=2)
    headers = {"apikey": key}
    if user_token:
        headers["authorization"] = f"Bearer {user_token}"
    base = url.rstrip("/")
    return BridgeTarget(endpoint=base if base.endswith("/mcp") else f"{base}/mcp", headers=headers)


def proxy_server(remote: ClientSession, instructions: str | None) -> Server[Any, Any]:
    """A local MCP server whose every handler asks the remote session."""
    server: Server[Any, Any] = Server("memory", instructions=instructions)

    @server.list_tools()  # type: ignore[no-untyped-call, untyped-decorator]
    async def list_tools() -> list[types.Tool]:
        return (await remote.list_tools()).tools

    @server.call_tool(validate_input=False)  # type: ignore[untyped-decorator]
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        return await remote.call_tool(name, arguments)

    @server.list_resource_templates()  # type: ignore[no-untyped-call, untyped-decorator]
    async def list_resource_templates() -> list[types.ResourceTemplate]:
        return (await remote.list_resource_templates()).resourceTemplates

    @server.list_resources()  # type: ignore[no-untyped-call, untyped-decorator]
    async def list_resources() -> list[types.Resource]:
        return (await remote.list_resources()).resources

    @server.read_resource()  # type: ignore[no-untyped-call, untyped-decorator]
    async def read_resource(uri: AnyUrl) -> list[ReadResourceContents]:
        result = await remote.read_resource(uri)
        return [
            ReadResourceContents(content=c.text, mime_type=c.mimeType)
            for c in result.contents
            if isinstance(c, types.TextResourceContents)
        ]

    return server


async def serve_bridge(target: BridgeTarget) -> None:
    async with (
        streamablehttp_client(target.endpoint, headers=target.headers) as (read, write, _),
        ClientSession(read, write) as remote,
    ):
        init = await remote.initialize()
        server = proxy_server(remote, init.instructions)
        async with stdio_server() as (stdin, stdout):
            await server.run(stdin, stdout, server.create_initialization_options())


def run_bridge(target: BridgeTarget) -> int:
    try:
        anyio.run(serve_bridge, target)
    except Exception as exc:  # one line on stderr, which desktop clients show in their MCP logs
        raise CliError(f"the MCP bridge to {target.endpoint} stopped: {_first_cause(exc)}") from exc
    return 0


def _first_cause(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        hint = " (check --key and --user-token)" if status in (401, 403) else ""
        return f"the service answered HTTP {status}{hint}"
    return " ".join(f"{type(exc).__name__}: {exc}".split())
