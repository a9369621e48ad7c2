"""/mem/v1 memory routes: parse, authorise through the scope, shape the answer."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from app.auth.scope import MemoryAuthScope
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.errors import BadRequest, ValidationFailed
from app.http.bodies import decode_body
from app.http.params import flag, json_filters, owner_ids
from app.memories import service
from app.memories.schemas import AddMemoryRequest, UpdateMemoryRequest


class MemoryController(Controller):
    path = "/mem/v1"
    tags = ["memories"]

    @post("/memories", status_code=HTTP_200_OK, summary="Add memories from messages")
    async def add(
        self, data: dict[str, Any], auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> dict[str, Any]:
        return await service.add_memories(db, auth, decode_body(data, AddMemoryRequest), deps)

    @get("/memories", summary="List an owner's memories")
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
    ) -> dict[str, Any]:
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
        )

    @delete("/memories", status_code=HTTP_200_OK, summary="Delete all memories of an owner")
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
    ) -> dict[str, Any]:
        return await service.delete_all_memories(
            db,
            auth,
            owner_ids(request, user_id=user_id, agent_id=agent_id, run_id=run_id),
            json_filters(filters),
            deps,
        )

    @get("/memories/{memory_id:uuid}", summary="Get one memory")
    async def get_one(self, memory_id: UUID, auth: MemoryAuthScope, db: TenantSession) -> dict[str, Any]:
        return await service.get_memory(db, auth, memory_id)

    @put("/memories/{memory_id:uuid}", summary="Replace a memory's text and/or metadata")
    async def update(
        self,
        memory_id: UUID,
        data: dict[str, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        deps: MemoryDeps,
    ) -> dict[str, Any]:
        return await service.update_memory(db, auth, memory_id, decode_body(data, UpdateMemoryRequest), deps)

    @delete("/memories/{memory_id:uuid}", status_code=HTTP_200_OK, summary="Delete one memory")
    async def delete_one(
        self, memory_id: UUID, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> dict[str, Any]:
        return await service.delete_memory(db, auth, memory_id, deps)

    @get("/memories/{memory_id:uuid}/history", summary="The audit trail of a memory, oldest first")
    async def history(
        self, memory_id: UUID, auth: MemoryAuthScope, db: TenantSession
    ) -> list[dict[str, Any]]:
        return await service.memory_history(db, auth, memory_id)

    @get("/memories/{memory_id:uuid}/entities", summary="Entities linked to a memory")
    async def entities(self, memory_id: UUID, auth: MemoryAuthScope, db: TenantSession) -> dict[str, Any]:
        return await service.memory_entities(db, auth, memory_id)

    @get("/stats", summary="Counts for the caller's scope")
    async def stats(
        self,
        request: Request[Any, Any, Any],
        auth: MemoryAuthScope,
        db: TenantSession,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        return await service.stats(
            db, auth, owner_ids(request, user_id=user_id, agent_id=agent_id, run_id=run_id)
        )

    @get("/config", summary="Per-tenant memory settings (service_role)")
    async def get_config(self, auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps) -> dict[str, Any]:
        return await service.get_config(db, auth, deps)

    @put("/config", summary="Change per-tenant overrides (service_role)")
    async def put_config(
        self, data: dict[str, Any], auth: MemoryAuthScope, db: TenantSession, deps: MemoryDeps
    ) -> dict[str, Any]:
        changes = data.get("settings", data)
        if not isinstance(changes, dict):
            raise ValidationFailed("settings must be a JSON object.", code="invalid_body")
        return await service.put_config(db, auth, changes, deps)

    @post("/reset", status_code=HTTP_200_OK, summary="Delete every memory of the tenant (service_role)")
    async def reset(self, auth: MemoryAuthScope, db: TenantSession) -> dict[str, Any]:
        return await service.reset(db, auth)


def _int_alias(request: Request[Any, Any, Any], name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer.", code="invalid_parameter") from None
