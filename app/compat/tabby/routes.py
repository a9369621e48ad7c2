"""Tabby's memory server under /memory: its paths and envelopes over the /mem/v1 services.

Auth is /mem/v1's (the `auth`, `db` and `deps` dependencies): the service_role key, or the anon
key with a user's JWT, which pins every route to that user. Each handler translates the body,
calls the same service function the /mem/v1 route calls, and wraps the answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_200_OK

from app.auth.scope import MemoryAuthScope
from app.compat.tabby import translate
from app.compat.tabby.errors import tabby_error_responses, tabby_exception_handlers
from app.compat.tabby.responses import (
    TabbyAdded,
    TabbyDeleted,
    TabbyDeletedAll,
    TabbyGraph,
    TabbyHistory,
    TabbyMemories,
    TabbyMemory,
    TabbySearchResults,
    TabbyUpdated,
    TabbyUpdateResult,
)
from app.compat.tabby.schemas import (
    TabbyAddImageRequest,
    TabbyAddRequest,
    TabbyGetAllRequest,
    TabbySearchRequest,
    TabbyUpdateRequest,
)
from app.core.context import MemoryDeps
from app.core.limits import LIMIT_KIND
from app.db.session import TenantSession
from app.entities import service as entities
from app.http.bodies import StrictBody
from app.http.errors import MEMORY_ROUTE_ERRORS, PROVIDER_ERRORS
from app.http.openapi import MEMORY_SECURITY
from app.http.params import id_parameter, owner_ids, parse_id
from app.memories import service as memories
from app.memories.schemas import AddMemoryRequest, UpdateMemoryRequest
from app.search import service as search
from app.search.responses import SearchResponse
from app.search.schemas import SearchRequest

MemoryId = Annotated[str, id_parameter("memory id")]
_ERRORS = tabby_error_responses(*MEMORY_ROUTE_ERRORS)
_BY_ID_ERRORS = tabby_error_responses(*MEMORY_ROUTE_ERRORS, 404)
_BODY_ERRORS = tabby_error_responses(*MEMORY_ROUTE_ERRORS, 413, *PROVIDER_ERRORS)
_ADD = {LIMIT_KIND: "add"}  # counted against the tenant's add rate, as POST /mem/v1/memories

ADD_EXAMPLES = [
    Example(
        summary="A conversation turn; the pipeline classifies each fact",
        value={
            "messages": [
                {"role": "user", "content": "I'm currently working on the auth feature."},
                {"role": "assistant", "content": "Got it."},
            ],
            "user_id": "user-123",
            "metadata": {"source": "chat"},
        },
    ),
    Example(
        summary="The caller's own type, as Tabby sent it in metadata",
        value={
            "messages": [{"role": "user", "content": "To deploy, run npm run build first."}],
            "user_id": "user-123",
            "metadata": {"memory_type": "PROCEDURAL"},
        },
    ),
]
SEARCH_EXAMPLES = [
    Example(
        summary="A user's memories of one type",
        value={
            "query": "What am I working on?",
            "user_id": "user-123",
            "limit": 5,
            "memory_type": "SHORT_TERM",
        },
    )
]


async def _added(
    db: TenantSession,
    auth: MemoryAuthScope,
    deps: MemoryDeps,
    request: AddMemoryRequest,
    explicit_type: str | None,
    auto_classify: bool,
) -> TabbyAdded:
    added = await memories.add_memories(db, auth, request, deps)
    chosen = added.written_type() if auto_classify else None
    return TabbyAdded(result=added, classified_type=explicit_type or chosen)


class TabbyController(Controller):
    path = "/memory"
    tags = ["tabby"]
    security = MEMORY_SECURITY
    exception_handlers = tabby_exception_handlers()

    @post(
        "/add",
        status_code=HTTP_200_OK,
        summary="Tabby: add memories from a conversation",
        responses=_BODY_ERRORS,
        dto=StrictBody[TabbyAddRequest],
        return_dto=None,
        opt=_ADD,
    )
    async def add(
        self,
        data: Annotated[TabbyAddRequest, Body(examples=ADD_EXAMPLES)],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> TabbyAdded:
        request, explicit = translate.add_request(data, data.messages, data.metadata or {})
        return await _added(db, auth, deps, request, explicit, data.auto_classify)

    @post(
        "/add_image",
        status_code=HTTP_200_OK,
        summary="Tabby: add memories from an image (described by the vision model) and its context",
        responses=_BODY_ERRORS,
        dto=StrictBody[TabbyAddImageRequest],
        return_dto=None,
        opt=_ADD,
    )
    async def add_image(
        self, data: TabbyAddImageRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> TabbyAdded:
        messages = translate.image_messages(data)
        metadata = data.metadata if data.metadata is not None else translate.IMAGE_METADATA
        request, explicit = translate.add_request(data, messages, metadata)
        return await _added(db, auth, deps, request, explicit, data.auto_classify)

    @post(
        "/search",
        status_code=HTTP_200_OK,
        summary="Tabby: search a user's memories",
        responses=_BODY_ERRORS,
        dto=StrictBody[TabbySearchRequest],
        return_dto=None,
    )
    async def search(
        self,
        data: Annotated[TabbySearchRequest, Body(examples=SEARCH_EXAMPLES)],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> TabbySearchResults:
        request = SearchRequest(
            query=data.query, user_id=data.user_id, limit=data.limit, memory_type=data.memory_type
        )
        outcome = await search.search(db, auth, request, deps)
        found = [translate.as_tabby(m) for m in outcome.body.results]
        return TabbySearchResults(results=SearchResponse(results=found))

    @post(
        "/get_all",
        status_code=HTTP_200_OK,
        summary="Tabby: a user's memories, optionally of one type",
        responses=tabby_error_responses(*MEMORY_ROUTE_ERRORS, 413),
        dto=StrictBody[TabbyGetAllRequest],
        return_dto=None,
    )
    async def get_all(
        self, data: TabbyGetAllRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> TabbyMemories:
        page = await memories.list_memories(
            db,
            auth,
            {"user_id": data.user_id},
            memory_type=data.memory_type,
            filters=None,
            page=data.page,
            page_size=data.page_size if data.page_size is not None else deps.settings.list_max_page_size,
            include_expired=False,
            deps=deps,
        )
        page.results = [translate.as_tabby(m) for m in page.results]
        return TabbyMemories(memories=page)

    # Declared before /{memory_id}; the router prefers the fixed segment whatever the order.
    @get(
        "/graph",
        summary="Tabby: a user's entity graph (the Brain Panel's nodes and rels)",
        responses=_BY_ID_ERRORS,
    )
    async def graph(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        user_id: str | None = Parameter(default=None, description="The user (also read as `userId`)"),
        as_of: str | None = Parameter(default=None, description="ISO 8601 time; the graph as it was then"),
        entity: str | None = Parameter(default=None, description="Start from this entity (id or name)"),
        depth: int | None = Parameter(default=None, description="Hops from `entity`, 1 to 3 (default 2)"),
        limit: int | None = Parameter(
            default=None, description="At most this many relations, 1 to 500 (default 100)"
        ),
    ) -> TabbyGraph:
        # The same service as GET /mem/v1/graph; a user's token may name only its own user.
        found = await entities.graph(
            db,
            auth,
            owner_ids(request, user_id=user_id),
            as_of=as_of,
            entity=entity,
            depth=depth,
            limit=limit,
        )
        return TabbyGraph(nodes=found.nodes, rels=found.edges, as_of=found.as_of, truncated=found.truncated)

    @get("/{memory_id:str}", summary="Tabby: one memory", responses=_BY_ID_ERRORS)
    async def get_one(self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession) -> TabbyMemory:
        found = await memories.get_memory(db, auth, parse_id(memory_id, "memory_id"))
        return TabbyMemory(memory=translate.as_tabby(found))

    @put(
        "/update",
        summary="Tabby: replace a memory's text",
        responses=tabby_error_responses(*MEMORY_ROUTE_ERRORS, 404, 413, *PROVIDER_ERRORS),
        dto=StrictBody[TabbyUpdateRequest],
        return_dto=None,
    )
    async def update(
        self, data: TabbyUpdateRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> TabbyUpdated:
        memory_id = parse_id(data.memory_id, "memory_id")
        updated = await memories.update_memory(db, auth, memory_id, UpdateMemoryRequest(text=data.data), deps)
        return TabbyUpdated(
            result=TabbyUpdateResult(
                message="Memory updated successfully!", memory=translate.as_tabby(updated)
            )
        )

    @delete(
        "/{memory_id:str}", status_code=HTTP_200_OK, summary="Tabby: delete a memory", responses=_BY_ID_ERRORS
    )
    async def delete_one(
        self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> TabbyDeleted:
        return TabbyDeleted(
            result=await memories.delete_memory(db, auth, parse_id(memory_id, "memory_id"), deps)
        )

    @delete(
        "/user/{user_id:str}",
        status_code=HTTP_200_OK,
        summary="Tabby: delete all of a user's memories",
        responses=_BY_ID_ERRORS,
    )
    async def delete_user(
        self, user_id: str, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> TabbyDeletedAll:
        # A user's token may name only its own user: the scope answers 403 for anyone else.
        deleted = await memories.delete_all_memories(db, auth, {"user_id": user_id}, None, deps)
        return TabbyDeletedAll(result=deleted)

    @get(
        "/history/{memory_id:str}", summary="Tabby: a memory's history, oldest first", responses=_BY_ID_ERRORS
    )
    async def history(self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession) -> TabbyHistory:
        return TabbyHistory(history=await memories.memory_history(db, auth, parse_id(memory_id, "memory_id")))
