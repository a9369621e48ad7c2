"""One tool call: who calls (resolved at the mount), its transaction, its metrics, log line and errors.

Every tool body runs inside `tool_call`, which gives it the caller's `MemoryAuthScope`, a
`TenantSession` (committed when the tool returns, rolled back when it raises) and the memory deps.
Any failure leaves as a `ToolError` whose text is our error body as JSON (`code`, `message`, ...),
so an MCP client sees an `isError` result, never a protocol error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import structlog
from mcp.server.fastmcp import Context
from mcp.server.fastmcp.exceptions import ToolError
from prometheus_client import Counter, Histogram

from app.access import memory_deps, tenant_transaction
from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.errors import AppError, ErrorBody, Unauthorized
from app.runtime import Runtime

log = structlog.get_logger("app.mcp")

# Where the mount leaves the verified caller for the tools: in the ASGI scope's state, which the
# SDK hands back to every tool as `ctx.request_context.request.scope`.
CALLER_KEY = "memory.mcp_caller"
INVALID_ARGUMENTS = "invalid_arguments"

TOOL_CALLS = Counter("memory_mcp_tool_calls_total", "MCP tool calls", ["tool", "outcome"])
TOOL_LATENCY = Histogram(
    "memory_mcp_tool_duration_seconds",
    "Duration of MCP tool calls",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@dataclass(frozen=True)
class Caller:
    runtime: Runtime
    scope: MemoryAuthScope


@dataclass(frozen=True)
class Call:
    """What a tool body works with."""

    scope: MemoryAuthScope
    db: TenantSession
    deps: MemoryDeps


def caller_of(ctx: Context[Any, Any, Any]) -> Caller:
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state")
    caller = state.get(CALLER_KEY) if isinstance(state, dict) else None
    if not isinstance(caller, Caller):  # the mount refuses unverified callers before the session
        raise Unauthorized("The apikey header is missing or not valid.", code="invalid_api_key")
    return caller


async def admit(caller: Caller, tool: str) -> None:
    """The tenant's rate limits, before the tool touches anything.

    Hook: tenants have no rate limits yet. When they do, check them here (raise an AppError with
    status 429 and code `rate_limited`) so every MCP tool obeys the same limits as /mem/v1.
    """
    return None


def tool_error(body: ErrorBody) -> ToolError:
    return ToolError(msgspec.json.encode(body).decode())


def unexpected_error(exc: Exception) -> ErrorBody:
    """What /mem/v1 would answer for an error no service turned into an AppError."""
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        return ErrorBody("invalid_text", "Text may not contain NUL (\\u0000) characters.")
    if isinstance(exc, asyncpg.QueryCanceledError):
        return ErrorBody("database_timeout", "The database query took too long.")
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | OSError | TimeoutError):
        return ErrorBody("database_unavailable", "The database is unavailable.")
    return ErrorBody("internal_error", "The server could not complete the request.")


def record(tool: str, tenant: str | None, outcome: str, code: str | None, started: float | None) -> None:
    """Count a call, time it, and log it (one `mcp_tool_called` line per call)."""
    elapsed = 0.0 if started is None else time.perf_counter() - started
    TOOL_CALLS.labels(tool=tool, outcome=outcome).inc()
    TOOL_LATENCY.labels(tool=tool).observe(elapsed)
    log.info(
        "mcp_tool_called",
        tool=tool,
        outcome=outcome,
        code=code,
        tenant=tenant,
        duration_ms=round(elapsed * 1000, 2),
    )


@asynccontextmanager
async def tool_call(ctx: Context[Any, Any, Any], tool: str) -> AsyncIterator[Call]:
    """Run one tool: admit, open the transaction, and turn every failure into a coded tool error."""
    started = time.perf_counter()
    tenant: str | None = None
    try:
        caller = caller_of(ctx)
        tenant = caller.scope.tenant_ref
        await admit(caller, tool)
        deps = await memory_deps(caller.runtime, caller.scope)
        async with tenant_transaction(caller.runtime, caller.scope) as db:
            yield Call(scope=caller.scope, db=db, deps=deps)
    except AppError as exc:
        record(tool, tenant, "error" if exc.status_code >= 500 else "refused", exc.code, started)
        raise tool_error(exc.body()) from exc
    except msgspec.ValidationError as exc:
        record(tool, tenant, "refused", INVALID_ARGUMENTS, started)
        raise tool_error(ErrorBody(INVALID_ARGUMENTS, f"The arguments are not valid: {exc}.")) from exc
    except Exception as exc:
        body = unexpected_error(exc)
        log.error("mcp_tool_failed", tool=tool, error=type(exc).__name__, exc_info=exc)
        record(tool, tenant, "error", body.code, started)
        raise tool_error(body) from exc
    record(tool, tenant, "ok", None, started)
