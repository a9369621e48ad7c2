"""Tabby's `{"success": true, ...}` envelopes around the /mem/v1 response bodies.

The keys inside are Tabby's: `result` (what mem0's add, update or delete returned), `results`
and `memories` (mem0's `{"results": [...]}` lists), `history`, `memory`, `classified_type`, and
the Brain Panel graph's `nodes` and `rels`.
"""

from __future__ import annotations

import msgspec

from app.core.graph.service import GraphEdge, GraphNode
from app.core.views import Deleted, HistoryEntry, Memory
from app.memories.responses import AddResponse, DeletedMany, MemoryPage
from app.search.responses import SearchResponse


class TabbyAdded(msgspec.Struct, kw_only=True):
    success: bool = True
    result: AddResponse
    # The memory type the add gave what it wrote (the caller's own when given); null when it
    # wrote nothing, or when auto_classify was false and no type was given.
    classified_type: str | None


class TabbySearchResults(msgspec.Struct, kw_only=True):
    success: bool = True
    results: SearchResponse


class TabbyMemories(msgspec.Struct, kw_only=True):
    success: bool = True
    memories: MemoryPage


class TabbyMemory(msgspec.Struct, kw_only=True):
    success: bool = True
    memory: Memory


class TabbyUpdateResult(msgspec.Struct):
    message: str
    memory: Memory


class TabbyUpdated(msgspec.Struct, kw_only=True):
    success: bool = True
    result: TabbyUpdateResult


class TabbyDeleted(msgspec.Struct, kw_only=True):
    success: bool = True
    result: Deleted


class TabbyDeletedAll(msgspec.Struct, kw_only=True):
    success: bool = True
    result: DeletedMany


class TabbyHistory(msgspec.Struct, kw_only=True):
    success: bool = True
    history: list[HistoryEntry]


class TabbyGraph(msgspec.Struct, kw_only=True):
    """GET /memory/graph: the user's entities (`nodes`) and the relations between them (`rels`),
    as GET /mem/v1/graph gives them (its `nodes` and `edges`, with validity in time)."""

    success: bool = True
    nodes: list[GraphNode]
    rels: list[GraphEdge]
    as_of: str | None
    truncated: bool
