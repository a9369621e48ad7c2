"""How memories, their history and entities look in responses: never an embedding."""

from __future__ import annotations

from typing import Any

from app.core.schemas import iso


def memory_view(row: Any, *, score: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {
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
    }
    if score is not None:
        out.update(score)
    return out


def history_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "memory_id": str(row["memory_id"]),
        "event": row["event"],
        "old_memory": row["old_memory"],
        "new_memory": row["new_memory"],
        "actor": row["actor"],
        "created_at": iso(row["created_at"]),
    }


def entity_view(row: Any) -> dict[str, Any]:
    out = {
        "id": str(row["id"]),
        "text": row["text"],
        "entity_type": row["entity_type"],
        "user_id": row["user_id"],
        "agent_id": row["agent_id"],
        "run_id": row["run_id"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if "memory_count" in row.keys():
        out["memory_count"] = int(row["memory_count"])
    if "memory_ids" in row.keys():
        out["memory_ids"] = [str(m) for m in row["memory_ids"]]
    return out
