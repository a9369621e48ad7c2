"""The entity store and its graph: what the heuristic or the model found, linked to memories and
to each other by relations, owner-scoped."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from app.auth.scope import MemoryAuthScope
from app.core.graph.service import Graph, owner_graph, parse_as_of
from app.core.linking.heuristic import ENTITY_TYPES
from app.core.linking.service import delete_relation as remove_relation
from app.core.paging import page_window
from app.core.views import Deleted, Entity, entity_view
from app.db.session import TenantSession
from app.entities import repo
from app.entities.responses import EntityPage
from app.errors import BadRequest, NotFound


async def list_entities(
    db: TenantSession,
    scope: MemoryAuthScope,
    owner_ids: dict[str, str | None],
    *,
    entity_type: str | None,
    page: int,
    page_size: int,
    max_page_size: int,
) -> EntityPage:
    owner = scope.owner(owner_ids.get("user_id"), owner_ids.get("agent_id"), owner_ids.get("run_id"))
    if entity_type is not None and entity_type not in ENTITY_TYPES:
        raise BadRequest(f"entity_type must be one of {', '.join(ENTITY_TYPES)}.", code="invalid_entity_type")
    page, page_size = page_window(page, page_size, max_page_size)
    rows, total = await repo.list_for_owner(
        await db.connection(), owner, entity_type=entity_type, limit=page_size, offset=(page - 1) * page_size
    )
    return EntityPage(results=[entity_view(r) for r in rows], total=total, page=page, page_size=page_size)


async def get_entity(db: TenantSession, scope: MemoryAuthScope, entity_id: UUID) -> Entity:
    row = await repo.find_for_owner(await db.connection(), entity_id, scope.owner())
    if row is None:
        raise NotFound("No entity with this id.", code="entity_not_found")
    return entity_view(row)


async def delete_entity(db: TenantSession, scope: MemoryAuthScope, entity_id: UUID) -> Deleted:
    if not await repo.delete_for_owner(await db.connection(), entity_id, scope.owner(), scope.actor):
        raise NotFound("No entity with this id.", code="entity_not_found")
    return Deleted(id=str(entity_id), message="Entity deleted; its links to memories are gone.")


@dataclass(frozen=True)
class GraphNode:
    id: str
    kind: str  # "entity" or "memory"
    label: str
    entity_type: str | None = None
    memory_count: int = 0


@dataclass
class EntityMemoryGraph:
    """Entity ↔ memory links of an owner, for drawing. Entity ↔ entity relations are
    in app.core.graph (`graph` below)."""

    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    truncated: bool = False


MAX_GRAPH_ENTITIES = 40
MAX_GRAPH_LINKS = 200


async def entity_graph(
    db: TenantSession, scope: MemoryAuthScope, owner_ids: dict[str, str | None]
) -> EntityMemoryGraph:
    owner = scope.owner(owner_ids.get("user_id"), owner_ids.get("agent_id"), owner_ids.get("run_id"))
    rows = await repo.graph_for_owner(
        await db.connection(), owner, max_entities=MAX_GRAPH_ENTITIES, max_links=MAX_GRAPH_LINKS + 1
    )
    graph = EntityMemoryGraph(truncated=len(rows) > MAX_GRAPH_LINKS)
    seen: set[str] = set()
    for row in rows[:MAX_GRAPH_LINKS]:
        entity_id = str(row["entity_id"])
        if entity_id not in seen:
            seen.add(entity_id)
            graph.nodes.append(
                GraphNode(
                    entity_id, "entity", row["entity_text"], row["entity_type"], int(row["memory_count"])
                )
            )
        if row["memory_id"] is None:
            continue
        memory_id = str(row["memory_id"])
        if memory_id not in seen:
            seen.add(memory_id)
            graph.nodes.append(GraphNode(memory_id, "memory", row["memory"]))
        graph.edges.append((entity_id, memory_id))
    return graph


async def graph(
    db: TenantSession,
    scope: MemoryAuthScope,
    owner_ids: dict[str, str | None],
    *,
    as_of: str | None = None,
    entity: str | None = None,
    depth: int | None = None,
    limit: int | None = None,
) -> Graph:
    """The owner's graph (GET /mem/v1/graph; Tabby's GET /memory/graph maps it to {nodes, rels}).

    An owner id is required (a user's is its own); `as_of` an ISO time (default now); `entity`
    an id or name to start from, `depth` 1-3 hops from it; at most `limit` (1-500) edges.
    """
    owner = scope.read_owner(owner_ids.get("user_id"), owner_ids.get("agent_id"), owner_ids.get("run_id"))
    when = parse_as_of(as_of)
    return await owner_graph(
        await db.connection(), owner, as_of=when, entity=entity, depth=depth, limit=limit
    )


async def delete_relation(db: TenantSession, scope: MemoryAuthScope, relation_id: UUID) -> Deleted:
    if not await remove_relation(await db.connection(), relation_id, scope.owner(), scope.actor):
        raise NotFound("No relation with this id.", code="relation_not_found")
    return Deleted(id=str(relation_id), message="Relation deleted; the graph history keeps a record of it.")
