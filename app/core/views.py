"""How memories, their history and entities look in responses: never an embedding.

Typed structs, so the OpenAPI document describes every body. The JSON must not drift: a
nullable column is always present (null when empty); a key that only some answers carry is
`UNSET` and then absent, never null. Field order is the key order clients have always seen.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.core.schemas import iso


class Memory(msgspec.Struct):
    id: str
    memory: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    memory_type: str
    metadata: dict[str, Any]
    hash: str
    actor_id: str | None
    role: str | None
    expires_at: str | None
    created_at: str
    updated_at: str
    immutable: bool  # never changed by a later add or a PUT (a delete by id is still allowed)


class ScoreBreakdown(msgspec.Struct):
    """Each signal's normalised score in [0, 1], whether or not it took part in the fusion."""

    semantic: float
    keyword: float
    entity: float
    graph: float


class ScoredMemory(Memory):
    """A search result: the memory, its fused score and the per-signal parts."""

    score: float
    score_breakdown: ScoreBreakdown


class HistoryEntry(msgspec.Struct):
    id: str
    memory_id: str
    event: Literal["ADD", "UPDATE", "DELETE"]
    old_memory: str | None
    new_memory: str | None
    # Not in mem0's history items (extra keys): what a metadata-only update changed.
    old_metadata: dict[str, Any] | None
    new_metadata: dict[str, Any] | None
    actor: str
    created_at: str


class Entity(msgspec.Struct, omit_defaults=True):
    id: str
    text: str
    entity_type: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    created_at: str
    updated_at: str
    # Only where the query counts or collects the linked memories (listing, one entity).
    memory_count: int | UnsetType = UNSET
    memory_ids: list[str] | UnsetType = UNSET


class EntityList(msgspec.Struct):
    results: list[Entity]


class AddResult(msgspec.Struct, omit_defaults=True):
    """What an add did with one fact: ADD, UPDATE, DELETE, or NONE (already known)."""

    # Null only for a NONE on a text that matches nothing stored.
    id: str | None
    memory: str
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    previous_memory: str | UnsetType = UNSET  # UPDATE only
    memory_type: str | UnsetType = UNSET  # ADD and UPDATE


class Skipped(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A decision the add did not apply, and why: by its index in the model's answer, or by text."""

    index: int | UnsetType | None = UNSET
    text: str | UnsetType = UNSET
    id: str | UnsetType = UNSET  # the memory the decision named, when it was not applied to it
    reason: str


class AddResponse(msgspec.Struct, omit_defaults=True):
    """The answer of an add: here so an async add's event (app/core/jobs) carries the same shape."""

    results: list[AddResult]
    skipped: list[Skipped] | UnsetType = UNSET
    notes: list[str] | UnsetType = UNSET

    def written_type(self) -> str | None:
        """The memory type of the first memory this add wrote (ADD or UPDATE): the caller's, or
        the one the pipeline chose; None when it wrote none."""
        return next((r.memory_type for r in self.results if isinstance(r.memory_type, str)), None)


class Relation(msgspec.Struct):
    """One relation as mem0's graph memory shows it (source, relationship, target), with its
    validity in time (valid_to null: still held true), id, provenance and origin."""

    source: str
    relationship: str
    target: str
    valid_from: str
    valid_to: str | None
    id: str
    memory_id: str | None
    origin: str  # model, heuristic (co-mention) or manual


def relation_view(row: Any) -> Relation:
    return Relation(
        source=row["source"],
        relationship=row["relation"],
        target=row["target"],
        valid_from=iso(row["valid_from"]),
        valid_to=iso(row["valid_to"]),
        id=str(row["id"]),
        memory_id=str(row["memory_id"]) if row["memory_id"] is not None else None,
        origin=row["origin"],
    )


class Deleted(msgspec.Struct):
    """The answer to deleting one thing by id."""

    id: str
    message: str


def _memory_fields(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "memory": row["memory"],
        "user_id": row["user_id"],
        "agent_id": row["agent_id"],
        "run_id": row["run_id"],
        "memory_type": row["memory_type"],
        "metadata": row["metadata"],
        "hash": row["hash"],
        "actor_id": row["actor_id"],
        "role": row["role"],
        "expires_at": iso(row["expires_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "immutable": row["immutable"],
    }


def memory_view(row: Any) -> Memory:
    return Memory(**_memory_fields(row))


def scored_memory_view(row: Any, score: float, breakdown: ScoreBreakdown) -> ScoredMemory:
    return ScoredMemory(**_memory_fields(row), score=score, score_breakdown=breakdown)


def history_view(row: Any) -> HistoryEntry:
    return HistoryEntry(
        id=str(row["id"]),
        memory_id=str(row["memory_id"]),
        event=row["event"],
        old_memory=row["old_memory"],
        new_memory=row["new_memory"],
        old_metadata=row["old_metadata"],
        new_metadata=row["new_metadata"],
        actor=row["actor"],
        created_at=iso(row["created_at"]),
    )


def entity_view(row: Any) -> Entity:
    keys = set(row.keys())  # asyncpg: an iterator, which a first `in` would use up
    return Entity(
        id=str(row["id"]),
        text=row["text"],
        entity_type=row["entity_type"],
        user_id=row["user_id"],
        agent_id=row["agent_id"],
        run_id=row["run_id"],
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
        memory_count=int(row["memory_count"]) if "memory_count" in keys else UNSET,
        memory_ids=[str(m) for m in row["memory_ids"]] if "memory_ids" in keys else UNSET,
    )
