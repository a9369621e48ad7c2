"""/mem/v1/entities: the owner's entity store."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.core.graph.service import Graph
from app.core.views import Deleted, Entity
from app.db.session import TenantSession
from app.entities import service
from app.entities.responses import EntityPage
from app.http.errors import MEMORY_ROUTE_ERRORS, error_responses
from app.http.openapi import MEMORY_SECURITY
from app.http.params import id_parameter, owner_ids, parse_id

_BY_ID_ERRORS = error_responses(*MEMORY_ROUTE_ERRORS, 404)
# A str, parsed in the handler: a malformed id is a 400 invalid_id, not a 404 "no route".
EntityId = Annotated[str, id_parameter("entity id")]
RelationId = Annotated[str, id_parameter("relation id")]


class EntityController(Controller):
    path = "/mem/v1/entities"
    tags = ["entities"]
    security = MEMORY_SECURITY

    @get("/", summary="List an owner's entities", responses=error_responses(*MEMORY_ROUTE_ERRORS))
    async def list_(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        entity_type: str | None = None,
        page: int = Parameter(default=1, ge=1),
        page_size: int = Parameter(default=50, ge=1),
    ) -> EntityPage:
        return await service.list_entities(
            db,
            auth,
            owner_ids(request, user_id=user_id, agent_id=agent_id, run_id=run_id),
            entity_type=entity_type,
            page=page,
            page_size=page_size,
            max_page_size=deps.settings.list_max_page_size,
        )

    @get("/{entity_id:str}", summary="One entity and the memories linked to it", responses=_BY_ID_ERRORS)
    async def get_one(self, entity_id: EntityId, auth: MemoryAuthScope, db: TenantSession) -> Entity:
        return await service.get_entity(db, auth, parse_id(entity_id, "entity_id"))

    @delete(
        "/{entity_id:str}",
        status_code=HTTP_200_OK,
        summary="Delete an entity and its links",
        responses=_BY_ID_ERRORS,
    )
    async def delete_one(self, entity_id: EntityId, auth: MemoryAuthScope, db: TenantSession) -> Deleted:
        return await service.delete_entity(db, auth, parse_id(entity_id, "entity_id"))


class GraphController(Controller):
    path = "/mem/v1"
    tags = ["graph"]
    security = MEMORY_SECURITY

    @get(
        "/graph",
        summary="An owner's entity graph: nodes and relations, now or as of a past time",
        responses=_BY_ID_ERRORS,
    )
    async def graph(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        as_of: str | None = Parameter(default=None, description="ISO 8601 time; the graph as it was then"),
        entity: str | None = Parameter(default=None, description="Start from this entity (id or name)"),
        depth: int | None = Parameter(default=None, description="Hops from `entity`, 1 to 3 (default 2)"),
        limit: int | None = Parameter(
            default=None, description="At most this many edges, 1 to 500 (default 100)"
        ),
    ) -> Graph:
        return await service.graph(
            db,
            auth,
            owner_ids(request, user_id=user_id, agent_id=agent_id, run_id=run_id),
            as_of=as_of,
            entity=entity,
            depth=depth,
            limit=limit,
        )

    @delete(
        "/relations/{relation_id:str}",
        status_code=HTTP_200_OK,
        summary="Delete a relation (its history is kept)",
        responses=_BY_ID_ERRORS,
    )
    async def delete_relation(
        self, relation_id: RelationId, auth: MemoryAuthScope, db: TenantSession
    ) -> Deleted:
        return await service.delete_relation(db, auth, parse_id(relation_id, "relation_id"))
