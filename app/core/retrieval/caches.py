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


class RetrievalCaches:
    """Query lexemes by (tenant, text-search config, text) and owner sizes by (tenant, owner).

    Keyed by tenant, so one tenant's queries never warm (or reveal) another's entries.
    """

    def __init__(
        self, size: int = CACHE_SIZE, owner_size_ttl_seconds: float = OWNER_SIZE_TTL_SECONDS
    ) -> None:
        self.lexemes: LruCache[list[str]] = LruCache(size)
        self.owner_sizes: LruCache[int] = LruCache(size, ttl_seconds=owner_size_ttl_seconds)
