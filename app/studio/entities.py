"""An owner's entities, the memories linked to each, and the entity ↔ memory graph."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get
from litestar.response import Template

from app.core.views import Memory
from app.entities import service as entities
from app.errors import NotFound
from app.memories import service as memories
from app.studio.graph import SIZE, layout
from app.studio.memories import owner_ids
from app.studio.web import Studio

MAX_LISTED = 100
MAX_MEMORIES_SHOWN = 50


@get("/entities", name="studio_entities")
async def entities_page(
    request: Request[Any, Any, Any],
    studio: Studio,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
) -> Template:
    session = studio.require(request)
    ids = owner_ids(user_id, agent_id, run_id)
    async with studio.tenant(request, session) as call:
        listing = await entities.list_entities(
            call.db, call.scope, ids, entity_type=None, page=1, page_size=MAX_LISTED, max_page_size=MAX_LISTED
        )
        graph = await entities.entity_graph(call.db, call.scope, ids)
        # Graph memory: the open entity ↔ entity relations, from the same service as GET /mem/v1/graph
        # (it reads one owner; with none picked, Studio asks for one).
        relations = await entities.graph(call.db, call.scope, ids) if any(ids.values()) else None
    open_relations = [e for e in relations.edges if e.valid_to is None] if relations is not None else []
    nodes, edges = layout(graph, open_relations)
    return studio.page(
        request,
        session,
        "entities.html",
        tenant=call.tenant,
        ids=ids,
        listing=listing,
        nodes=nodes,
        edges=edges,
        truncated=graph.truncated,
        size=SIZE,
        relations=open_relations if relations is not None else None,
        relations_truncated=relations is not None and relations.truncated,
    )


@get("/entities/{entity_id:str}", name="studio_entity")
async def entity_page(request: Request[Any, Any, Any], studio: Studio, entity_id: str) -> Template:
    session = studio.require(request)
    try:
        parsed = UUID(entity_id)
    except ValueError:
        raise NotFound("No entity with this id.", code="entity_not_found") from None
    linked: list[Memory] = []
    async with studio.tenant(request, session) as call:
        entity = await entities.get_entity(call.db, call.scope, parsed)
        for memory_id in (entity.memory_ids or [])[:MAX_MEMORIES_SHOWN]:
            try:
                linked.append(await memories.get_memory(call.db, call.scope, UUID(memory_id)))
            except NotFound:
                continue  # deleted since it was linked
    return studio.page(request, session, "entity.html", tenant=call.tenant, entity=entity, linked=linked)
