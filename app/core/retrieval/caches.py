"""Process-wide retrieval caches, built by the app factory and handed to each request."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    """A bounded LRU map with an optional time to live."""

    def __init__(self, size: int, ttl_seconds: float | None = None) -> None:
        self._size = size
        self._ttl = ttl_seconds
        self._items: OrderedDict[Hashable, tuple[V, float]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        value, stored = entry
        if self._ttl is not None and time.monotonic() - stored > self._ttl:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V) -> None:
        self._items[key] = (value, time.monotonic())
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


# Owners with more live memories than this are searched through the indexes (HNSW, GIN)
# instead of an exact scan: measured here, an exact scan of 20k memories takes ~22 ms.
EXACT_SCAN_MAX_ROWS = 10_000
OWNER_SIZE_TTL_SECONDS = 60.0
CACHE_SIZE = 10_000
# Every this many adds to one tenant in this process, the add path asks PostgreSQL to refresh
# the tenant's planner statistics if they are stale (sql/mem/007_planner_statistics.sql).
ADDS_PER_STATISTICS_CHECK = 32


class StatisticsSchedule:
    """Counts adds per tenant and says when the add path should call mem.refresh_statistics().

    A fresh tenant is planned with empty-table statistics until its tables are analyzed: after
    a bulk add of a few hundred memories that made a search ~4x slower. Counting here keeps the
    check off the other adds' round trips; the function itself analyzes only when stale.
    """

    def __init__(self, every: int = ADDS_PER_STATISTICS_CHECK, size: int = CACHE_SIZE) -> None:
        self._every = every
        self._added: LruCache[int] = LruCache(size)

    def due(self, tenant: str, added: int) -> bool:
        """Record `added` new memories of `tenant`; True on its first add and once per `every`."""
        if added <= 0:
            return False
        before = self._added.get(tenant) or 0
        total = before + added
        self._added.put(tenant, total)
        return before == 0 or total // self._every > before // self._every


class RetrievalCaches:
    """Query lexemes by (tenant, text-search config, text) and owner sizes by (tenant, owner).

    Keyed by tenant, so one tenant's queries never warm (or reveal) another's entries.
    """

    def __init__(
        self, size: int = CACHE_SIZE, owner_size_ttl_seconds: float = OWNER_SIZE_TTL_SECONDS
    ) -> None:
        self.lexemes: LruCache[list[str]] = LruCache(size)
        self.owner_sizes: LruCache[int] = LruCache(size, ttl_seconds=owner_size_ttl_seconds)
        self.statistics = StatisticsSchedule(size=size)
