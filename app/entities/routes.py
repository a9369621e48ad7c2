"""/mem/v1/entities: the owner's entity store."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.core.views import Deleted, Entity
from app.db.session import TenantSession
from app.entities import service
from app.entities.responses import EntityPage
from app.http.errors import MEMORY_ROUTE_ERRORS, error_responses
from app.http.params import owner_ids

_BY_ID_ERRORS = error_responses(*MEMORY_ROUTE_ERRORS, 404)


class EntityController(Controller):
    path = "/mem/v1/entities"
    tags = ["entities"]

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

    @get("/{entity_id:uuid}", summary="One entity and the memories linked to it", responses=_BY_ID_ERRORS)
    async def get_one(self, entity_id: UUID, auth: MemoryAuthScope, db: TenantSession) -> Entity:
        return await service.get_entity(db, auth, entity_id)

    @delete(
        "/{entity_id:uuid}",
        status_code=HTTP_200_OK,
        summary="Delete an entity and its links",
        responses=_BY_ID_ERRORS,
    )
    async def delete_one(self, entity_id: UUID, auth: MemoryAuthScope, db: TenantSession) -> Deleted:
        return await service.delete_entity(db, auth, entity_id)
