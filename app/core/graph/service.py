"""The graph memory read side: an owner's entities and relations as a graph, at a point in time,
whole or around one entity; and the relations a list of memories asserts (`include_relations`).

Shared by the entities feature (GET /mem/v1/graph), search and list (`include_relations`), and
any compat route (Tabby's GET /memory/graph, mem0's enable_graph) that maps these shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import msgspec

from app.auth.scope import Owner
from app.core.graph import repo
from app.core.schemas import iso
from app.core.views import Relation, relation_view
from app.errors import BadRequest, NotFound

MAX_DEPTH = 3
DEFAULT_DEPTH = 2
DEFAULT_EDGES = 100
MAX_EDGES = 500
# Nodes: the ends of the edges first, then the most linked other entities, up to twice the edges.
NODES_PER_EDGE = 2
MAX_RELATIONS_PER_ANSWER = 500


class GraphNode(msgspec.Struct):
    """An entity: its name, type, merged aliases and how many live memories link to it (now)."""

    id: str
    name: str
    type: str
    memory_count: int
    aliases: list[str]
    created_at: str


class GraphEdge(msgspec.Struct):
    """A relation between two nodes (ids and names), with both clocks: valid_from/valid_to (true
    in the world; valid_to null: still true) and learned_at/invalidated_at (when we knew)."""

    id: str
    source: str
    target: str
    source_name: str
    target_name: str
    relationship: str
    origin: str
    weight: float
    memory_id: str | None
    valid_from: str
    valid_to: str | None
    learned_at: str
    invalidated_at: str | None


class Graph(msgspec.Struct):
    """`as_of`: the time the graph shows (null: now). `truncated`: more edges than `limit` exist."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    as_of: str | None
    truncated: bool


def parse_as_of(raw: str | None) -> datetime | None:
    """An ISO 8601 time (a date alone is its midnight UTC; no zone: UTC), or a 400 invalid_as_of."""
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("as_of must be an ISO 8601 date or time.", code="invalid_as_of") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def check_bounds(depth: int | None, limit: int | None) -> tuple[int, int]:
    depth = DEFAULT_DEPTH if depth is None else depth
    limit = DEFAULT_EDGES if limit is None else limit
    if not 1 <= depth <= MAX_DEPTH:
        raise BadRequest(f"depth must be between 1 and {MAX_DEPTH}.", code="invalid_depth")
    if not 1 <= limit <= MAX_EDGES:
        raise BadRequest(f"limit must be between 1 and {MAX_EDGES}.", code="invalid_limit")
    return depth, limit


def _edge(row: asyncpg.Record) -> GraphEdge:
    return GraphEdge(
        id=str(row["id"]),
        source=str(row["source_entity_id"]),
        target=str(row["target_entity_id"]),
        source_name=row["source"],
        target_name=row["target"],
        relationship=row["relation"],
        origin=row["origin"],
        weight=round(float(row["weight"]), 4),
        memory_id=str(row["memory_id"]) if row["memory_id"] is not None else None,
        valid_from=iso(row["valid_from"]),
        valid_to=iso(row["valid_to"]),
        learned_at=iso(row["learned_at"]),
        invalidated_at=iso(row["invalidated_at"]),
    )


def _node(row: asyncpg.Record) -> GraphNode:
    return GraphNode(
        id=str(row["id"]),
        name=row["text"],
        type=row["entity_type"],
        memory_count=int(row["memory_count"]),
        aliases=list(row["aliases"]),
        created_at=iso(row["created_at"]),
    )


async def owner_graph(
    conn: asyncpg.Connection,
    owner: Owner,
    *,
    as_of: datetime | None = None,
    entity: str | None = None,
    depth: int | None = None,
    limit: int | None = None,
) -> Graph:
    """The owner's graph at `as_of` (None: now): every entity and relation, or those within
    `depth` hops of `entity` (an id or a name), at most `limit` edges and twice as many nodes.

    An `entity` the owner does not have is a 404 entity_not_found, whoever else has it.
    """
    depth, limit = check_bounds(depth, limit)
    max_nodes = NODES_PER_EDGE * limit
    only: list[UUID] | None = None
    if entity is not None:
        start = await repo.find_entity(conn, owner, entity)
        if start is None:
            raise NotFound("No entity with this id or name.", code="entity_not_found")
        only, rows = await repo.walk(
            conn, owner, start, as_of=as_of, depth=depth, max_nodes=max_nodes, limit=limit + 1
        )
    else:
        rows = await repo.edges(conn, owner, as_of=as_of, limit=limit + 1)
    kept = rows[:limit]
    ends = list(dict.fromkeys(e for r in kept for e in (r["source_entity_id"], r["target_entity_id"])))
    node_rows = await repo.nodes(conn, owner, as_of=as_of, only=only, first=ends, limit=max_nodes)
    return Graph(
        nodes=[_node(r) for r in node_rows],
        edges=[_edge(r) for r in kept],
        as_of=iso(as_of) if as_of is not None else None,
        truncated=len(rows) > limit,
    )


async def relations_for_memories(
    conn: asyncpg.Connection, owner: Owner, memory_ids: Sequence[UUID]
) -> list[Relation]:
    """What `include_relations` adds to a search or list answer: the relations the listed
    memories assert now, in the memories' order (at most MAX_RELATIONS_PER_ANSWER)."""
    if not memory_ids:
        return []
    rows = await repo.for_memories(conn, owner, memory_ids, limit=MAX_RELATIONS_PER_ANSWER)
    return [relation_view(r) for r in rows]
