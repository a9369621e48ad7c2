"""Tabby's `{"success": true, ...}` envelopes around the /mem/v1 response bodies.

The keys inside are Tabby's: `result` (what mem0's add, update or delete returned), `results`
and `memories` (mem0's `{"results": [...]}` lists), `history`, `memory`, and `classified_type`.
"""

from __future__ import annotations

import msgspec

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
