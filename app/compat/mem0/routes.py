"""The mem0 platform routes: parse mem0's request, call our service, answer in mem0's shape.

Paths are mem0's (the SDK's base URL is `<api>/mem0`); a trailing slash is optional. Nothing here
decides who may touch what or how memories are stored: that is the services' and the scope's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, delete, get, post, put, route
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from app.auth.scope import MemoryAuthScope
from app.compat.mem0 import events, translate
from app.compat.mem0.schemas import (
    Mem0AddRequest,
    Mem0BatchItem,
    Mem0BatchRequest,
    Mem0ListRequest,
    Mem0SearchRequest,
    Mem0UpdateRequest,
    NotSupported,
    refuse_unsupported,
)
from app.compat.mem0.views import (
    Mem0AddItem,
    Mem0AddResults,
    Mem0Done,
    Mem0Entities,
    Mem0Event,
    Mem0EventPage,
    Mem0HistoryItem,
    Mem0Memory,
    Mem0Page,
    Mem0Results,
    Ping,
    added_view,
    entities_view,
    history_view,
    memory_view,
    scored_view,
)
from app.compat.mem0.wiring import PROVIDER_ERRORS, mem0_errors
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.errors import BadRequest, NotFound
from app.http.bodies import StrictBody
from app.http.params import flag, id_parameter, parse_id
from app.memories import service as memories
from app.memories.schemas import UpdateMemoryRequest
from app.search import service as search
from app.tenancy.service import Platform

MAX_BATCH = 1000
MemoryId = Annotated[str, id_parameter("memory id")]
_ERRORS = mem0_errors()
_BY_ID = mem0_errors(404)
_BODY = mem0_errors(413, *PROVIDER_ERRORS)
_BY_ID_BODY = mem0_errors(404, 413, *PROVIDER_ERRORS)
ENTITY_TYPES = {"user": "user_id", "agent": "agent_id", "run": "run_id"}


async def _add(
    data: Mem0AddRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
) -> list[Mem0AddItem]:
    request = translate.add_request(data)
    if data.async_mode:
        auth.owner(request.user_id, request.agent_id, request.run_id, require_owner=True)
        return await events.accept_async_add(db, auth, request, deps)
    answer = await memories.add_memories(db, auth, request, deps)
    return [added_view(r) for r in answer.results]


async def _list(
    request: Request[Any, Any, Any],
    data: Mem0ListRequest,
    auth: MemoryAuthScope,
    db: TenantSession,
    deps: MemoryDeps,
) -> Mem0Page:
    owner, filters = translate.list_parts(auth, data)
    page = await memories.list_memories(
        db,
        auth,
        owner,
        memory_type=None,
        filters=filters,
        page=data.page,
        page_size=data.page_size,
        include_expired=data.show_expired,
        deps=deps,
        include_relations=bool(data.enable_graph),
    )
    following, previous = translate.page_links(str(request.url), page.page, page.page_size, page.total)
    return Mem0Page(
        count=page.total,
        next=following,
        previous=previous,
        results=[memory_view(m) for m in page.results],
        relations=page.relations,
    )


async def _search(
    data: Mem0SearchRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
) -> Mem0Results:
    outcome = await search.search(db, auth, translate.search_request(auth, data), deps)
    return Mem0Results(
        results=[scored_view(m) for m in outcome.body.results], relations=outcome.body.relations
    )


def _wrapped(output_format: str | None, enable_graph: bool | None) -> bool:
    """v1.1, or graph memory on: the answer is an object (`results`, and `relations` with the graph),
    as mem0 answers with a graph store; otherwise v1.0's bare list."""
    return output_format == "v1.1" or bool(enable_graph)


def _query_int(request: Request[Any, Any, Any], name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer.", code="invalid_parameter") from None


class Mem0Controller(Controller):
    path = "/"
    tags = ["mem0"]

    @get("/v1/ping", summary="mem0: check the key", responses=_ERRORS)
    async def ping(self, auth: MemoryAuthScope, platform: Platform) -> Ping:
        tenant = await platform.find_tenant(auth.tenant_ref)
        name = tenant.name if tenant is not None else auth.tenant_ref
        return Ping(status="ok", org_id=auth.tenant_ref, project_id=auth.tenant_ref, user_email=name)

    @post(
        "/v3/memories/add",
        status_code=HTTP_200_OK,
        summary="mem0: add memories (queued by default; async_mode false: processed before the answer)",
        responses=mem0_errors(413, 501, *PROVIDER_ERRORS),
        dto=StrictBody[Mem0AddRequest],
        return_dto=None,
    )
    async def add_v3(
        self, data: Mem0AddRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> Mem0AddResults:
        return Mem0AddResults(results=await _add(data, auth, db, deps))

    @post(
        "/v1/memories",
        status_code=HTTP_200_OK,
        summary="mem0 v1: add memories (output_format v1.0: a bare list)",
        responses=mem0_errors(413, 501, *PROVIDER_ERRORS),
        dto=StrictBody[Mem0AddRequest],
        return_dto=None,
    )
    async def add_v1(
        self, data: Mem0AddRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> Mem0AddResults | list[Mem0AddItem]:
        results = await _add(data, auth, db, deps)
        return Mem0AddResults(results=results) if data.output_format == "v1.1" else results

    @post(
        "/v3/memories",
        status_code=HTTP_200_OK,
        summary="mem0: list memories by filters, one page",
        responses=_BODY,
        dto=StrictBody[Mem0ListRequest],
        return_dto=None,
    )
    async def list_v3(
        self,
        request: Request[Any, Any, Any],
        data: Mem0ListRequest,
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> Mem0Page:
        # The SDK sends page and page_size in the query string; they win over the body's.
        data.page = _query_int(request, "page") or data.page
        data.page_size = _query_int(request, "page_size") or data.page_size
        return await _list(request, data, auth, db, deps)

    @post(
        "/v2/memories",
        status_code=HTTP_200_OK,
        summary="mem0 v2: list memories by filters (a bare list; v1.1: under results)",
        responses=_BODY,
        dto=StrictBody[Mem0ListRequest],
        return_dto=None,
    )
    async def list_v2(
        self,
        request: Request[Any, Any, Any],
        data: Mem0ListRequest,
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> list[Mem0Memory] | Mem0Results:
        data.page = _query_int(request, "page") or data.page
        data.page_size = _query_int(request, "page_size") or data.page_size
        page = await _list(request, data, auth, db, deps)
        wrapped = Mem0Results(results=page.results, relations=page.relations)
        return wrapped if _wrapped(data.output_format, data.enable_graph) else page.results

    @get("/v1/memories", summary="mem0 v1: list an owner's memories", responses=_ERRORS)
    async def list_v1(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        app_id: str | None = None,
        page: int | None = Parameter(default=None, ge=1),
        page_size: int | None = Parameter(default=None, ge=1),
        enable_graph: str | None = Parameter(
            default=None, description="true: add the relations the listed memories assert (mem0 graph shape)"
        ),
    ) -> list[Mem0Memory] | Mem0Page | Mem0Results:
        graph = flag(enable_graph, "enable_graph")
        data = Mem0ListRequest(
            user_id=user_id,
            agent_id=agent_id,
            run_id=run_id,
            app_id=app_id,
            page=page,
            page_size=page_size,
            enable_graph=graph,
        )
        answer = await _list(request, data, auth, db, deps)
        # mem0 pages only when both are given; otherwise a bare list (of the first page here).
        if page is not None and page_size is not None:
            return answer
        return Mem0Results(results=answer.results, relations=answer.relations) if graph else answer.results

    @delete(
        "/v1/memories",
        status_code=HTTP_200_OK,
        summary="mem0: delete every memory of an owner",
        responses=_ERRORS,
    )
    async def delete_all(
        self,
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        app_id: str | None = None,
    ) -> Mem0Done:
        owner = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        filters = {"app_id": app_id} if app_id is not None else None
        done = await memories.delete_all_memories(db, auth, owner, filters, deps)
        return Mem0Done(message=f"Memories deleted successfully! ({done.deleted})")

    @post(
        "/v3/memories/search",
        status_code=HTTP_200_OK,
        summary="mem0: search memories",
        responses=_BODY,
        dto=StrictBody[Mem0SearchRequest],
        return_dto=None,
    )
    async def search_v3(
        self, data: Mem0SearchRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> Mem0Results:
        return await _search(data, auth, db, deps)

    @post(
        ["/v1/memories/search", "/v2/memories/search"],
        status_code=HTTP_200_OK,
        summary="mem0 v1/v2: search memories (a bare list; v1.1: under results)",
        responses=_BODY,
        dto=StrictBody[Mem0SearchRequest],
        return_dto=None,
    )
    async def search_v1(
        self, data: Mem0SearchRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> list[Mem0Memory] | Mem0Results:
        found = await _search(data, auth, db, deps)
        return found if _wrapped(data.output_format, data.enable_graph) else found.results

    @get("/v1/memories/{memory_id:str}", summary="mem0: get one memory", responses=_BY_ID)
    async def get_one(self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession) -> Mem0Memory:
        return memory_view(await memories.get_memory(db, auth, parse_id(memory_id, "memory_id")))

    @put(
        "/v1/memories/{memory_id:str}",
        summary="mem0: change a memory's text and/or metadata",
        responses=_BY_ID_BODY,
        dto=StrictBody[Mem0UpdateRequest],
        return_dto=None,
    )
    async def update(
        self,
        memory_id: MemoryId,
        data: Mem0UpdateRequest,
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> Mem0Memory:
        refuse_unsupported(data)
        change = UpdateMemoryRequest(text=data.text, metadata=data.metadata)
        updated = await memories.update_memory(db, auth, parse_id(memory_id, "memory_id"), change, deps)
        return memory_view(updated)

    @delete(
        "/v1/memories/{memory_id:str}",
        status_code=HTTP_200_OK,
        summary="mem0: delete one memory",
        responses=mem0_errors(404, 501),
    )
    async def delete_one(
        self,
        memory_id: MemoryId,
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
        delete_linked: bool = False,
    ) -> Mem0Done:
        if delete_linked:
            raise NotSupported("delete_linked is not supported: memories here have no supersession chain.")
        await memories.delete_memory(db, auth, parse_id(memory_id, "memory_id"), deps)
        return Mem0Done(message="Memory deleted successfully!")

    @get(
        "/v1/memories/{memory_id:str}/history",
        summary="mem0: a memory's history, oldest first",
        responses=_BY_ID,
    )
    async def history(
        self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession
    ) -> list[Mem0HistoryItem]:
        uid = parse_id(memory_id, "memory_id")
        entries = await memories.memory_history(db, auth, uid)
        try:
            current = await memories.get_memory(db, auth, uid)
        except NotFound:  # deleted: its history stays readable, its owner ids are not repeated
            current = None
        return [history_view(e, current) for e in entries]

    @put(
        "/v1/batch",
        summary="mem0: update up to 1000 memories, all or none",
        responses=_BY_ID_BODY,
        dto=StrictBody[Mem0BatchRequest],
        return_dto=None,
    )
    async def batch_update(
        self, data: Mem0BatchRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> Mem0Done:
        # One request, one transaction: the first failure rolls every earlier change back.
        for item, uid in _batch(data):
            change = UpdateMemoryRequest(text=item.text, metadata=item.metadata)
            await memories.update_memory(db, auth, uid, change, deps)
        return Mem0Done(message=f"Successfully updated {len(data.memories)} memories")

    @delete(
        "/v1/batch",
        status_code=HTTP_200_OK,
        summary="mem0: delete up to 1000 memories, all or none",
        responses=_BY_ID_BODY,
        dto=StrictBody[Mem0BatchRequest],
        return_dto=None,
    )
    async def batch_delete(
        self, data: Mem0BatchRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> Mem0Done:
        for _, uid in _batch(data):
            await memories.delete_memory(db, auth, uid, deps)
        return Mem0Done(message=f"Successfully deleted {len(data.memories)} memories")

    @get("/v1/entities", summary="mem0: the users, agents and runs that hold memories", responses=_ERRORS)
    async def entities(self, auth: MemoryAuthScope, db: TenantSession) -> Mem0Entities:
        return entities_view(await memories.owners(db, auth), auth.tenant_ref)

    @delete(
        ["/v2/entities/{entity_type:str}/{name:str}", "/v1/entities/{entity_type:str}/{name:str}"],
        status_code=HTTP_200_OK,
        summary="mem0: delete a user, agent or run and all its memories",
        responses=_BY_ID,
    )
    async def delete_entity(
        self, entity_type: str, name: str, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> Mem0Done:
        field = ENTITY_TYPES.get(entity_type)
        if field is None:
            raise BadRequest(
                f"entity type must be one of {', '.join(ENTITY_TYPES)}.", code="invalid_entity_type"
            )
        done = await memories.delete_all_memories(db, auth, {field: name}, None, deps)
        if done.deleted == 0:
            raise NotFound(f"No {entity_type} named {name!r} holds memories.", code="entity_not_found")
        return Mem0Done(message="Entity deleted successfully!")

    @get("/v1/event/{event_id:str}", summary="mem0: one async add's event", responses=_BY_ID)
    async def event(
        self, event_id: Annotated[str, id_parameter("event id")], auth: MemoryAuthScope, db: TenantSession
    ) -> Mem0Event:
        return await events.read_event(db, auth, parse_id(event_id, "event_id"))

    @get("/v1/events", summary="mem0: the caller's async add events, newest first", responses=_ERRORS)
    async def event_list(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
        page: int | None = Parameter(default=None, ge=1),
        page_size: int | None = Parameter(default=None, ge=1),
    ) -> Mem0EventPage:
        return await events.list_events(db, auth, page, page_size, str(request.url), deps)


def _batch(data: Mem0BatchRequest) -> list[tuple[Mem0BatchItem, UUID]]:
    if not 1 <= len(data.memories) <= MAX_BATCH:
        raise BadRequest(f"memories must hold 1 to {MAX_BATCH} items.", code="invalid_batch_size")
    items = [(item, parse_id(item.memory_id, "memory_id")) for item in data.memories]
    if len({uid for _, uid in items}) != len(items):
        raise BadRequest("A memory_id appears twice in the batch.", code="duplicate_memory_id")
    return items


# mem0 platform features without a counterpart here: each path prefix answers 501 naming it.
UNSUPPORTED_FEATURES = {
    "/v1/exports": "Memory exports",
    "/v1/summary": "Memory summaries",
    "/v1/feedback": "Memory feedback",
    "/v1/stats": "mem0 usage stats (see GET /mem/v1/stats)",
    "/v1/users": "Creating users, agents, apps or runs (they exist once they hold memories)",
    "/v1/agents": "Creating users, agents, apps or runs (they exist once they hold memories)",
    "/v1/apps": "Creating users, agents, apps or runs (they exist once they hold memories)",
    "/v1/runs": "Creating users, agents, apps or runs (they exist once they hold memories)",
    "/v2/profiles": "User profiles",
    "/api/v1/webhooks": "Webhooks",
    "/api/v1/orgs": "Organisation and project administration (a tenant is the project here)",
}

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_ALL: list[Method] = ["GET", "POST", "PUT", "PATCH", "DELETE"]


PROFILE_PATH = "/v2/entities/{entity_type:str}/{name:str}/profile"


@route(
    [*UNSUPPORTED_FEATURES, *(f"{p}/{{rest:path}}" for p in UNSUPPORTED_FEATURES), PROFILE_PATH],
    http_method=_ALL,
    summary="mem0 platform features not supported here (501)",
    responses=mem0_errors(501),
    include_in_schema=False,
)
async def unsupported_feature(request: Request[Any, Any, Any], auth: MemoryAuthScope) -> Mem0Done:
    path = request.url.path.removeprefix("/mem0").rstrip("/")
    features = (name for prefix, name in UNSUPPORTED_FEATURES.items() if path.startswith(prefix))
    feature = next(features, "User profiles")  # the one path that is no prefix: PROFILE_PATH
    raise NotSupported(f"{feature}: not supported by this service.", code="mem0_feature_not_supported")
