"""The memory tools: each one a thin translation from MCP arguments to an existing service call.

Argument types and descriptions here become the tools' JSON schemas, which is what an LLM reads to
decide how to call them; every rule (who may touch what, limits, defaults) stays in the services.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from app.entities import service as entities
from app.errors import BadRequest
from app.http.params import parse_id
from app.mcp.calls import tool_call
from app.memories import service as memories
from app.memories.schemas import AddMemoryRequest, UpdateMemoryRequest
from app.search import service as search
from app.search.schemas import SearchRequest

Ctx = Context[Any, Any, Any]
Result = dict[str, Any]

UserId = Annotated[
    str | None,
    Field(
        description="The end user the memories belong to. With a signed-in user's token, omit it "
        "(or give that user's own id); with the service_role key, name the user."
    ),
]
AgentId = Annotated[str | None, Field(description="Narrow to memories of this agent.")]
RunId = Annotated[str | None, Field(description="Narrow to memories of this run/conversation.")]
MemoryId = Annotated[str, Field(description="The memory's id (a UUID, as returned by other tools).")]
Filters = Annotated[
    dict[str, Any] | None,
    Field(
        description='mem0 filter object on metadata and columns, e.g. {"category": "food"} or '
        '{"AND": [{"source": "chat"}, {"created_at": {"gte": "2026-01-01"}}]}. '
        "Operators: eq, ne, in, nin, gt, gte, lt, lte, contains, icontains, *."
    ),
]
EntityType = Literal["person", "place", "organization", "product", "event", "date", "other"]
Page = Annotated[int | None, Field(description="Page number, from 1 (default 1).")]
PageSize = Annotated[int | None, Field(description="Items per page (default 50).")]


class ChatMessage(BaseModel):
    """One message of a conversation turn."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant", "system", "tool"]
    content: str = Field(description="The message text.")


def _dump(value: Any) -> Result:
    result: Result = msgspec.to_builtins(value)
    return result


def _struct(kind: type[Any], fields: dict[str, Any]) -> Any:
    """Our request struct from tool arguments (None means "not given")."""
    return msgspec.convert({k: v for k, v in fields.items() if v is not None}, kind)


def _messages(text: str | None, messages: list[ChatMessage] | None) -> str | list[dict[str, Any]]:
    if (text is None) == (messages is None):
        raise BadRequest("Give exactly one of text or messages.", code="text_or_messages_required")
    return text if text is not None else [m.model_dump() for m in messages or []]


READ_ONLY = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
WRITES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)
DELETES = ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False)


def register(server: FastMCP[Any]) -> None:
    """Add every memory tool, and the memory://{id} resource, to the server."""
    tools: list[tuple[Callable[..., Awaitable[Result]], ToolAnnotations]] = [
        (add_memory, WRITES),
        (search_memories, READ_ONLY),
        (list_memories, READ_ONLY),
        (get_memory, READ_ONLY),
        (update_memory, WRITES),
        (delete_memory, DELETES),
        (delete_all_memories, DELETES),
        (memory_history, READ_ONLY),
        (list_entities, READ_ONLY),
    ]
    for tool, hints in tools:
        server.add_tool(tool, description=inspect.cleandoc(tool.__doc__ or ""), annotations=hints)
    server.resource(
        "memory://{memory_id}",
        name="memory",
        description="One memory by id, as JSON.",
        mime_type="application/json",
    )(memory_resource)


async def add_memory(
    ctx: Ctx,
    text: Annotated[str | None, Field(description="One fact or sentence to remember.")] = None,
    messages: Annotated[
        list[ChatMessage] | None,
        Field(description="A conversation turn to remember; the service extracts facts from it."),
    ] = None,
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    metadata: Annotated[
        dict[str, Any] | None, Field(description="Free-form JSON stored with each memory.")
    ] = None,
    infer: Annotated[
        bool,
        Field(
            description="true (default): extract facts with the model and reconcile them with what "
            "is already known; false: store the text (or the user's messages) verbatim."
        ),
    ] = True,
) -> Result:
    """Remember something about a user, agent or run. Give `text` (stored as one memory when infer is
    false) or `messages` (a conversation turn), and at least one owner id unless a signed-in user's
    token names the owner. Returns what changed: each result has id, memory and event (ADD,
    UPDATE, DELETE, NONE)."""
    async with tool_call(ctx, "add_memory") as call:
        request = _struct(
            AddMemoryRequest,
            {"messages": _messages(text, messages), "user_id": user_id, "agent_id": agent_id}
            | {"run_id": run_id, "metadata": metadata, "infer": infer},
        )
        return _dump(await memories.add_memories(call.db, call.scope, request, call.deps))


async def search_memories(
    ctx: Ctx,
    query: Annotated[str, Field(description="What to look for, in natural language.")],
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    filters: Filters = None,
    top_k: Annotated[int | None, Field(description="How many results at most (default 10).")] = None,
    threshold: Annotated[float | None, Field(description="Drop results scoring below this (0 to 1).")] = None,
) -> Result:
    """Find the memories most relevant to a query, best first. Each result has id, memory, metadata,
    score (0 to 1) and score_breakdown (semantic, keyword, entity, graph). Name an owner (user_id,
    agent_id or run_id) unless a signed-in user's token names it."""
    async with tool_call(ctx, "search_memories") as call:
        request = _struct(
            SearchRequest,
            {"query": query, "user_id": user_id, "agent_id": agent_id, "run_id": run_id}
            | {"filters": filters, "top_k": top_k, "threshold": threshold},
        )
        outcome = await search.search(call.db, call.scope, request, call.deps)
        return _dump(outcome.body)


async def list_memories(
    ctx: Ctx,
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    filters: Filters = None,
    page: Page = None,
    page_size: PageSize = None,
) -> Result:
    """List an owner's memories, newest first, a page at a time (results, total, page, page_size)."""
    async with tool_call(ctx, "list_memories") as call:
        page_ = await memories.list_memories(
            call.db,
            call.scope,
            {"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
            memory_type=None,
            filters=filters,
            page=page,
            page_size=page_size,
            include_expired=False,
            deps=call.deps,
        )
        return _dump(page_)


async def get_memory(ctx: Ctx, memory_id: MemoryId) -> Result:
    """Read one memory by id: its text, owner ids, metadata, type and timestamps."""
    async with tool_call(ctx, "get_memory") as call:
        return _dump(await memories.get_memory(call.db, call.scope, parse_id(memory_id, "memory_id")))


async def update_memory(
    ctx: Ctx,
    memory_id: MemoryId,
    text: Annotated[str | None, Field(description="The memory's new text.")] = None,
    metadata: Annotated[
        dict[str, Any] | None, Field(description="The memory's new metadata (replaces the old).")
    ] = None,
) -> Result:
    """Correct a memory: replace its text and/or metadata. The change is kept in its history."""
    async with tool_call(ctx, "update_memory") as call:
        request = _struct(UpdateMemoryRequest, {"text": text, "metadata": metadata})
        memory_uuid = parse_id(memory_id, "memory_id")
        return _dump(await memories.update_memory(call.db, call.scope, memory_uuid, request, call.deps))


async def delete_memory(ctx: Ctx, memory_id: MemoryId) -> Result:
    """Forget one memory by id. Its history stays readable through memory_history."""
    async with tool_call(ctx, "delete_memory") as call:
        memory_uuid = parse_id(memory_id, "memory_id")
        return _dump(await memories.delete_memory(call.db, call.scope, memory_uuid, call.deps))


async def delete_all_memories(
    ctx: Ctx, user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None, filters: Filters = None
) -> Result:
    """Forget every memory of one owner: at least one of user_id, agent_id or run_id is required
    (a signed-in user's token names its user). Returns how many were deleted."""
    async with tool_call(ctx, "delete_all_memories") as call:
        owner_ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return _dump(await memories.delete_all_memories(call.db, call.scope, owner_ids, filters, call.deps))


async def memory_history(ctx: Ctx, memory_id: MemoryId) -> Result:
    """The audit trail of one memory, oldest first: each change's event, old and new text, when, by whom."""
    async with tool_call(ctx, "memory_history") as call:
        memory_uuid = parse_id(memory_id, "memory_id")
        return {"results": _dump(await memories.memory_history(call.db, call.scope, memory_uuid))}


async def list_entities(
    ctx: Ctx,
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    entity_type: Annotated[EntityType | None, Field(description="Only entities of this type.")] = None,
    page: Page = None,
    page_size: PageSize = None,
) -> Result:
    """The people, places, things and topics found in an owner's memories, with how often each appears."""
    async with tool_call(ctx, "list_entities") as call:
        return _dump(
            await entities.list_entities(
                call.db,
                call.scope,
                {"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
                entity_type=entity_type,
                page=1 if page is None else page,
                page_size=50 if page_size is None else page_size,
                max_page_size=call.deps.settings.list_max_page_size,
            )
        )


# Bare `Context`: the SDK validates a resource's arguments with pydantic, which would rebuild a
# `Context[...]` instance from its fields and lose the request it carries.
async def memory_resource(memory_id: str, ctx: Context) -> str:  # type: ignore[type-arg]
    async with tool_call(ctx, "memory_resource") as call:
        memory = await memories.get_memory(call.db, call.scope, parse_id(memory_id, "memory_id"))
        return msgspec.json.encode(memory).decode()
