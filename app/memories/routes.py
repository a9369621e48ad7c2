"""/mem/v1 memory routes: parse, authorise through the scope, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.core.jobs import service as jobs
from app.core.jobs.views import Event, EventPage
from app.core.views import Deleted, EntityList, HistoryEntry, Memory
from app.db.session import TenantSession
from app.errors import BadRequest, ValidationFailed
from app.http.bodies import StrictBody, unknown_field
from app.http.errors import MEMORY_ROUTE_ERRORS, PROVIDER_ERRORS, error_responses
from app.http.openapi import MEMORY_SECURITY
from app.http.params import flag, id_parameter, json_filters, owner_ids, parse_id
from app.memories import service
from app.memories.responses import AddResponse, DeletedMany, MemoryConfig, MemoryPage, ResetDone, Stats
from app.memories.schemas import AddMemoryRequest, ConfigUpdateRequest, UpdateMemoryRequest

_ERRORS = error_responses(*MEMORY_ROUTE_ERRORS)
# A str, parsed in the handler: a malformed id is a 400 invalid_id, not a 404 "no route".
MemoryId = Annotated[str, id_parameter("memory id")]
_BY_ID_ERRORS = error_responses(*MEMORY_ROUTE_ERRORS, 404)
_BODY_ERRORS = error_responses(*MEMORY_ROUTE_ERRORS, 413)

ADD_EXAMPLES = [
    Example(
        summary="A conversation turn, stored as facts the model extracts",
        value={
            "messages": [
                {"role": "user", "content": "I'm vegetarian and allergic to nuts."},
                {"role": "assistant", "content": "Noted: vegetarian, no nuts."},
            ],
            "user_id": "alice",
            "metadata": {"source": "onboarding"},
        },
    ),
    Example(
        summary="One sentence stored verbatim (no model call)",
        value={"messages": "Alice prefers green tea.", "user_id": "alice", "infer": False},
    ),
    Example(
        summary="Accepted now, processed by a worker: 202 with an event to poll",
        value={"messages": "I moved to Lisbon last month.", "user_id": "alice", "async": True},
    ),
]
EventId = Annotated[str, id_parameter("event id")]
_ACCEPTED = {
    HTTP_202_ACCEPTED: ResponseSpec(
        data_container=Event,
        description='With "async": true: the add is queued; poll GET /mem/v1/events/{id} until SUCCEEDED.',
    )
}


class ConfigBody(StrictBody[ConfigUpdateRequest]):
    """`{"settings": {...}}`, or the settings object alone (the older form, still accepted)."""

    def convert(self, parsed: Any) -> ConfigUpdateRequest:
        if not isinstance(parsed, dict):
            raise ValidationFailed("The request body must be a JSON object.", code="invalid_body")
        if "settings" in parsed and len(parsed) > 1:
            raise unknown_field(next(k for k in parsed if k != "settings"), ["settings"])
        changes = parsed.get("settings", parsed)
        if not isinstance(changes, dict):
            raise ValidationFailed("settings must be a JSON object.", code="invalid_body")
        return ConfigUpdateRequest(settings=changes)


class MemoryController(Controller):
    path = "/mem/v1"
    tags = ["memories"]
    security = MEMORY_SECURITY

    @post(
        "/memories",
        status_code=HTTP_200_OK,
        summary="Add memories from messages",
        responses={**error_responses(*MEMORY_ROUTE_ERRORS, 413, *PROVIDER_ERRORS), **_ACCEPTED},
        dto=StrictBody[AddMemoryRequest],
        return_dto=None,
    )
    async def add(
        self,
        data: Annotated[AddMemoryRequest, Body(examples=ADD_EXAMPLES)],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> Response[AddResponse]:
        if data.async_:
            event = await service.enqueue_add(db, auth, data, deps)
            # One route, two answers: the 202's body is described by _ACCEPTED above.
            return Response(event, status_code=HTTP_202_ACCEPTED)  # type: ignore[arg-type]
        return Response(await service.add_memories(db, auth, data, deps))

    @get("/events", summary="The caller's async adds, newest first", responses=_ERRORS)
    async def list_events(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        status: str | None = Parameter(default=None, description="PENDING, RUNNING, SUCCEEDED or FAILED"),
        page: int | None = Parameter(default=None, ge=1),
        page_size: int | None = Parameter(default=None, ge=1),
    ) -> EventPage:
        return await jobs.list_events(
            db,
            auth,
            owner_ids(request, user_id=user_id, agent_id=agent_id, run_id=run_id),
            status=status,
            page=page,
            page_size=page_size if page_size is not None else _int_alias(request, "pageSize"),
            max_page_size=deps.settings.list_max_page_size,
        )

    @get("/events/{event_id:str}", summary="One async add: its status and results", responses=_BY_ID_ERRORS)
    async def get_event(self, event_id: EventId, auth: MemoryAuthScope, db: TenantSession) -> Event:
        return await jobs.get_event(db, auth, parse_id(event_id, "event_id"))

    @get("/memories", summary="List an owner's memories", responses=_ERRORS)
    async def list_(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        memory_type: str | None = None,
        filters: str | None = Parameter(default=None, description="mem0 filter object, JSON-encoded"),
        page: int | None = Parameter(default=None, ge=1),
        page_size: int | None = Parameter(default=None, ge=1),
        include_expired: str | None = None,
        include_relations: str | None = Parameter(
            default=None, description="true: add the relations the listed memories assert (mem0 graph shape)"
        ),
    ) -> MemoryPage:
        return await service.list_memories(
            db,
            auth,
            owner_ids(request, user_id=user_id, agent_id=agent_id, run_id=run_id),
            memory_type=memory_type or request.query_params.get("memoryType"),
            filters=json_filters(filters),
            page=page,
            page_size=page_size if page_size is not None else _int_alias(request, "pageSize"),
            include_expired=flag(include_expired, "include_expired"),
            deps=deps,
            include_relations=flag(include_relations, "include_relations"),
        )

    @delete(
        "/memories", status_code=HTTP_200_OK, summary="Delete all memories of an owner", responses=_ERRORS
    )
    async def delete_all(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: str | None = None,
    ) -> DeletedMany:
        return await service.delete_all_memories(
            db,
            auth,
            owner_ids(request, user_id=user_id, agent_id=agent_id, run_id=run_id),
            json_filters(filters),
            deps,
        )

    @get("/memories/{memory_id:str}", summary="Get one memory", responses=_BY_ID_ERRORS)
    async def get_one(self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession) -> Memory:
        return await service.get_memory(db, auth, parse_id(memory_id, "memory_id"))

    @put(
        "/memories/{memory_id:str}",
        summary="Replace a memory's text and/or metadata",
        responses=error_responses(*MEMORY_ROUTE_ERRORS, 404, 413, *PROVIDER_ERRORS),
        dto=StrictBody[UpdateMemoryRequest],
        return_dto=None,
    )
    async def update(
        self,
        memory_id: MemoryId,
        data: UpdateMemoryRequest,
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> Memory:
        return await service.update_memory(db, auth, parse_id(memory_id, "memory_id"), data, deps)

    @delete(
        "/memories/{memory_id:str}",
        status_code=HTTP_200_OK,
        summary="Delete one memory",
        responses=_BY_ID_ERRORS,
    )
    async def delete_one(
        self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> Deleted:
        return await service.delete_memory(db, auth, parse_id(memory_id, "memory_id"), deps)

    @get(
        "/memories/{memory_id:str}/history",
        summary="The audit trail of a memory, oldest first",
        responses=_BY_ID_ERRORS,
    )
    async def history(
        self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession
    ) -> list[HistoryEntry]:
        return await service.memory_history(db, auth, parse_id(memory_id, "memory_id"))

    @get("/memories/{memory_id:str}/entities", summary="Entities linked to a memory", responses=_BY_ID_ERRORS)
    async def entities(self, memory_id: MemoryId, auth: MemoryAuthScope, db: TenantSession) -> EntityList:
        return await service.memory_entities(db, auth, parse_id(memory_id, "memory_id"))

    @get("/stats", summary="Counts for the caller's scope", responses=_ERRORS)
    async def stats(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
    ) -> Stats:
        return await service.stats(
            db, auth, owner_ids(request, user_id=user_id, agent_id=agent_id, run_id=run_id)
        )

    @get("/config", summary="Per-tenant memory settings (service_role)", responses=_ERRORS)
    async def get_config(self, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps) -> MemoryConfig:
        return await service.get_config(db, auth, deps)

    @put(
        "/config",
        summary="Change per-tenant overrides (service_role)",
        responses=_BODY_ERRORS,
        dto=ConfigBody,
        return_dto=None,
    )
    async def put_config(
        self, data: ConfigUpdateRequest, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> MemoryConfig:
        return await service.put_config(db, auth, data.settings, deps)

    @post(
        "/reset",
        status_code=HTTP_200_OK,
        summary="Delete every memory of the tenant (service_role)",
        responses=_ERRORS,
    )
    async def reset(self, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps) -> ResetDone:
        return await service.reset(db, auth, deps)


def _int_alias(request: Request[Any, Any, Any], name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer.", code="invalid_parameter") from None
