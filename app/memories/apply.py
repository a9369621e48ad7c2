"""Applying a plan: the one writer every add goes through, verbatim or inferred.

Exact duplicates (same normalised hash for the owner, stored or earlier in this request)
become NONE whatever the plan said; UPDATE and DELETE targets are locked and checked again,
because the plan was made from a read that is not part of this transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from app.auth.scope import Owner
from app.memories import repo
from app.memories.decisions import Decision
from app.memories.turns import expiry
from app.memories.writer import Writer, content_hash


@dataclass(frozen=True)
class AddOptions:
    metadata: dict[str, Any]
    forced_type: str | None
    expiration_date: str | None
    immutable: bool = False


@dataclass
class Applied:
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    added_hashes: dict[str, UUID] = field(default_factory=dict)


def _none(target: asyncpg.Record | None, text: str, target_id: UUID | None = None) -> dict[str, Any]:
    ident = target["id"] if target is not None else target_id
    return {
        "id": str(ident) if ident is not None else None,
        "memory": target["memory"] if target is not None else text,
        "event": "NONE",
    }


class PlanWriter:
    """Turns decisions into rows, history and results, in the request's transaction."""

    def __init__(
        self, writer: Writer, owner: Owner, options: AddOptions, vectors: dict[str, np.ndarray]
    ) -> None:
        self.writer = writer
        self.owner = owner
        self.options = options
        self.vectors = vectors
        self.out = Applied()

    def _expires_at(self, memory_type: str) -> datetime | None:
        return expiry(self.options.expiration_date, memory_type, self.writer.config)

    async def none(self, decision: Decision, candidates: dict[UUID, asyncpg.Record]) -> None:
        self.writer.unchanged()
        target = candidates.get(decision.target) if decision.target else None
        self.out.results.append(_none(target, decision.text))

    async def add(self, decision: Decision) -> None:
        digest = content_hash(decision.text)
        existing = await repo.find_live_by_hash(self.writer.conn, self.owner, digest)
        if existing is not None or digest in self.out.added_hashes:
            self.writer.unchanged()
            self.out.results.append(_none(existing, decision.text, self.out.added_hashes.get(digest)))
            return
        memory_type = self.options.forced_type or decision.memory_type or "LONG_TERM"
        row = await self.writer.add(
            self.owner,
            decision.text,
            self.vectors[decision.text],
            memory_type=memory_type,
            metadata=dict(self.options.metadata),
            expires_at=self._expires_at(memory_type),
            entities=decision.entities,
            relations=decision.relations,
            actor_id=decision.actor_id,
            role=decision.role,
            immutable=self.options.immutable,
        )
        self.out.added_hashes[digest] = row["id"]
        self.out.results.append(
            {"id": str(row["id"]), "memory": decision.text, "event": "ADD", "memory_type": memory_type}
        )

    async def change(self, decision: Decision) -> None:
        assert decision.target is not None
        current = await repo.find_by_id_for_owner(
            self.writer.conn, decision.target, self.owner, for_update=True
        )
        if current is None:
            self.out.skipped.append({"text": decision.text, "reason": "the memory was deleted meanwhile"})
        elif current["immutable"]:
            # Checked on the locked row: an immutable memory is context for the model, never a target.
            self.writer.unchanged()
            self.out.skipped.append(
                {
                    "id": str(current["id"]),
                    "text": decision.text or current["memory"],
                    "reason": f"the memory is immutable ({decision.event})",
                }
            )
        elif decision.event == "DELETE":
            await self._delete(decision.target)
        else:
            await self._update(current, decision)

    async def _delete(self, target: UUID) -> None:
        row = await repo.soft_delete(self.writer.conn, target, self.owner)
        if row is not None:
            await self.writer.deleted([row])
            self.out.results.append({"id": str(row["id"]), "memory": row["memory"], "event": "DELETE"})

    async def _update(self, current: asyncpg.Record, decision: Decision) -> None:
        row = await self.writer.update(
            current,
            self.owner,
            text=decision.text,
            vector=self.vectors[decision.text],
            metadata={**current["metadata"], **self.options.metadata},
            entities=decision.entities,
            relations=decision.relations,
        )
        if row is not None:
            self.out.results.append(
                {
                    "id": str(row["id"]),
                    "memory": decision.text,
                    "event": "UPDATE",
                    "previous_memory": current["memory"],
                    "memory_type": row["memory_type"],
                }
            )


async def apply_decisions(
    plan_writer: PlanWriter, decisions: list[Decision], candidates: dict[UUID, asyncpg.Record]
) -> Applied:
    """NONE first, then ADD, then UPDATE and DELETE: the order the results have always had."""
    for decision in decisions:
        if decision.event == "NONE":
            await plan_writer.none(decision, candidates)
    for decision in decisions:
        if decision.event == "ADD":
            await plan_writer.add(decision)
    for event in ("UPDATE", "DELETE"):
        for decision in decisions:
            if decision.event == event:
                await plan_writer.change(decision)
    return plan_writer.out
