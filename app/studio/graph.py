"""Where the entity graph's nodes go: entities on an inner ring, their memories on an outer one;
entity ↔ memory links, and entity ↔ entity relations (graph memory) as labelled chords.

Computed on the server, so the page is a plain SVG of links (each node opens its page) that
needs no script to draw; app/static/studio/graph.js only highlights a node's neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.core.graph.service import GraphEdge
from app.entities.service import EntityMemoryGraph as Graph

SIZE = 640
CENTRE = SIZE / 2
INNER, OUTER = 150.0, 280.0


@dataclass(frozen=True)
class PlacedNode:
    id: str
    kind: str
    label: str
    x: float
    y: float
    href: str
    neighbours: str  # space-separated ids, for the highlight script


@dataclass(frozen=True)
class PlacedEdge:
    source: str
    target: str
    x1: float
    y1: float
    x2: float
    y2: float
    kind: str = "link"  # "link" (entity ↔ memory) or "relation" (entity ↔ entity)
    label: str = ""  # a relation's name


def _ring(count: int, radius: float, index: int) -> tuple[float, float]:
    angle = 2 * math.pi * index / max(count, 1) - math.pi / 2
    return round(CENTRE + radius * math.cos(angle), 1), round(CENTRE + radius * math.sin(angle), 1)


def layout(graph: Graph, relations: Sequence[GraphEdge] = ()) -> tuple[list[PlacedNode], list[PlacedEdge]]:
    """Nodes on their rings; the links, then the relations between two drawn entities."""
    entities = [n for n in graph.nodes if n.kind == "entity"]
    memories = [n for n in graph.nodes if n.kind == "memory"]
    neighbours: dict[str, set[str]] = {n.id: set() for n in graph.nodes}
    drawn = [
        r for r in relations if r.source in neighbours and r.target in neighbours and r.source != r.target
    ]
    for a, b in [*graph.edges, *((r.source, r.target) for r in drawn)]:
        neighbours[a].add(b)
        neighbours[b].add(a)
    placed: dict[str, PlacedNode] = {}
    for group, radius, base in (
        (entities, INNER, "/studio/entities/"),
        (memories, OUTER, "/studio/memories/"),
    ):
        for i, node in enumerate(group):
            x, y = _ring(len(group), radius if len(group) > 1 else 0.0, i)
            label = node.label if len(node.label) <= 40 else node.label[:39] + "…"
            placed[node.id] = PlacedNode(
                node.id, node.kind, label, x, y, base + node.id, " ".join(sorted(neighbours[node.id]))
            )
    edges = [
        PlacedEdge(a, b, placed[a].x, placed[a].y, placed[b].x, placed[b].y)
        for a, b in graph.edges
        if a in placed and b in placed
    ]
    for r in drawn:
        one, other = placed[r.source], placed[r.target]
        edges.append(PlacedEdge(one.id, other.id, one.x, one.y, other.x, other.y, "relation", r.relationship))
    return list(placed.values()), edges
