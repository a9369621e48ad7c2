"""The write primitives every mutation path shares: row, history, entity links, metrics.

All writes go through the request's transaction, so a failure anywhere leaves the tenant
as it was.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np
from prometheus_client import Counter

from app.auth.scope import MemoryAuthScope, Owner
from app.core.config import EffectiveConfig
from app.core.context import MemoryDeps
from app.core.linking.heuristic import FoundEntity, FoundRelation, extract_entities
from app.core.linking.service import close_relations, link_memory, unlink_entities
from app.core.repo import refresh_statistics
from app.db.session import TenantSession
from app.memories import repo

PIPELINE_EVENTS = Counter("memory_pipeline_events_total", "Memory mutations by event", ["event"])


def content_hash(text: str) -> str:
    """md5 of the normalised text (mem0 uses md5): the same fact twice is a duplicate."""
    normalised = re.sub(r"\s+", " ", text).strip().lower()
    return hashlib.md5(normalised.encode()).hexdigest()


class Writer:
    """Collects history rows and writes them once; one Writer per request."""

    def __init__(self, conn: asyncpg.Connection, scope: MemoryAuthScope, config: EffectiveConfig) -> None:
        self.conn = conn
        self.scope = scope
        self.config = config
        self._history: list[dict[str, Any]] = []
        self._deps: MemoryDeps | None = None

    @classmethod
    async def open(cls, db: TenantSession, scope: MemoryAuthScope, deps: MemoryDeps) -> Writer:
        config = await deps.config(db)
        writer = cls(await db.connection(), scope, config)
        writer._deps = deps
        return writer

    async def add(
        self,
        owner: Owner,
        text: str,
        vector: np.ndarray,
        *,
        memory_type: str,
        metadata: dict[str, Any],
        expires_at: datetime | None,
        entities: list[FoundEntity] | None = None,
        relations: list[FoundRelation] | None = None,
        actor_id: str | None = None,
        role: str | None = None,
        immutable: bool = False,
    ) -> asyncpg.Record:
        row = await repo.insert_memory(
            self.conn,
            owner,
            memory=text,
            embedding=vector,
            hash_=content_hash(text),
            memory_type=memory_type,
            metadata=metadata,
            actor_id=actor_id,
            role=role,
            expires_at=expires_at,
            immutable=immutable,
        )
        await link_memory(
            self.conn,
            owner,
            row["id"],
            entities if entities else extract_entities(text),
            relations,
            actor=self.scope.actor,
            new=True,
        )
        self._record(row, "ADD", None, text, new_metadata=row["metadata"])
        return row

    async def update(
        self,
        current: asyncpg.Record,
        owner: Owner,
        *,
        text: str,
        vector: np.ndarray | None,
        metadata: dict[str, Any],
        entities: list[FoundEntity] | None = None,
        relations: list[FoundRelation] | None = None,
    ) -> asyncpg.Record | None:
        """Replace text and/or metadata of a memory already resolved within `owner`."""
        row = await repo.update_memory(
            self.conn,
            current["id"],
            owner,
            memory=text,
            embedding=vector,
            hash_=content_hash(text),
            metadata=metadata,
        )
        if row is None:
            return None
        if text != current["memory"]:
            # The entities and relations follow the text, under the memory's own owner: what
            # the old text asserted and the new one does not is closed (Berlin -> Paris).
            await unlink_entities(self.conn, [row["id"]])
            memory_owner = Owner(row["user_id"], row["agent_id"], row["run_id"])
            await link_memory(
                self.conn,
                memory_owner,
                row["id"],
                entities if entities else extract_entities(text),
                relations,
                actor=self.scope.actor,
            )
        self._record(
            row,
            "UPDATE",
            current["memory"],
            text,
            old_metadata=current["metadata"],
            new_metadata=row["metadata"],
        )
        return row

    async def deleted(self, rows: list[asyncpg.Record]) -> None:
        """Unlink, close their relations and record memories the caller has soft-deleted within its owner."""
        await unlink_entities(self.conn, [r["id"] for r in rows])
        await close_relations(self.conn, [r["id"] for r in rows], self.scope.actor)
        for row in rows:
            self._record(row, "DELETE", row["memory"], None, old_metadata=row["metadata"])

    def unchanged(self, count: int = 1) -> None:
        PIPELINE_EVENTS.labels("NONE").inc(count)

    def _record(
        self,
        row: asyncpg.Record,
        event: str,
        old: str | None,
        new: str | None,
        *,
        old_metadata: dict[str, Any] | None = None,
        new_metadata: dict[str, Any] | None = None,
    ) -> None:
        PIPELINE_EVENTS.labels(event).inc()
        self._history.append(
            {
                "memory_id": row["id"],
                "user_id": row["user_id"],
                "agent_id": row["agent_id"],
                "run_id": row["run_id"],
                "event": event,
                "old_memory": old,
                "new_memory": new,
                "old_metadata": old_metadata,
                "new_metadata": new_metadata,
                "actor": self.scope.actor,
            }
        )

    async def flush(self) -> None:
        if self._history:
            await repo.insert_history(self.conn, self._history)
            added = sum(1 for row in self._history if row["event"] == "ADD")
            if self._deps is not None and self._deps.caches.statistics.due(self._deps.tenant_ref, added):
                # A fresh tenant would be planned with empty-table statistics (sql/mem/007).
                await refresh_statistics(self.conn)
        self._history = []
