"""Typed responses encode to exactly the JSON the dict builders produced: same keys, same order,
null where a value is empty, absent where a key only sometimes applies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from app.core.views import ScoreBreakdown, entity_view, history_view, memory_view, scored_memory_view
from app.errors import NotFound, ValidationFailed
from app.memories.responses import AddResponse, AddResult, Skipped, Stats
from app.tenancy.responses import SchemaInitView

MEMORY_ID = UUID("0b6f0e1c-7a52-4d1a-9a55-1f2b3c4d5e6f")
CREATED = datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
UPDATED = datetime(2025, 3, 2, 8, 0, tzinfo=UTC)


def same_json(value: Any, expected: dict[str, Any] | list[Any]) -> bool:
    return msgspec.json.encode(value) == msgspec.json.encode(expected)


def memory_row(**changes: Any) -> dict[str, Any]:
    row = {
        "id": MEMORY_ID,
        "memory": "Likes green tea",
        "user_id": "alice",
        "agent_id": None,
        "run_id": None,
        "memory_type": "LONG_TERM",
        "metadata": {"source": "chat"},
        "hash": "abc123",
        "actor_id": None,
        "role": "user",
        "expires_at": None,
        "created_at": CREATED,
        "updated_at": UPDATED,
        "immutable": False,
        "embedding": [0.1, 0.2],
    }
    row.update(changes)
    return row


MEMORY_JSON = {
    "id": str(MEMORY_ID),
    "memory": "Likes green tea",
    "user_id": "alice",
    "agent_id": None,
    "run_id": None,
    "memory_type": "LONG_TERM",
    "metadata": {"source": "chat"},
    "hash": "abc123",
    "actor_id": None,
    "role": "user",
    "expires_at": None,
    "created_at": "2025-03-01T12:30:05.123456Z",
    "updated_at": "2025-03-02T08:00:00Z",
    "immutable": False,
}


def test_a_memory_keeps_its_null_columns_and_never_shows_its_embedding() -> None:
    assert same_json(memory_view(memory_row()), MEMORY_JSON)


def test_a_search_result_appends_score_and_breakdown_after_the_memory() -> None:
    scored = scored_memory_view(
        memory_row(), 0.5, ScoreBreakdown(semantic=0.75, keyword=0.25, entity=0.0, graph=0.0)
    )
    expected = {
        **MEMORY_JSON,
        "score": 0.5,
        "score_breakdown": {"semantic": 0.75, "keyword": 0.25, "entity": 0.0, "graph": 0.0},
    }
    assert same_json(scored, expected)


def test_history_entries_keep_null_texts() -> None:
    row = {
        "id": 7,
        "memory_id": MEMORY_ID,
        "event": "ADD",
        "old_memory": None,
        "new_memory": "Likes green tea",
        "old_metadata": None,
        "new_metadata": {"source": "chat"},
        "actor": "user:alice",
        "created_at": CREATED,
    }
    assert same_json(
        history_view(row),
        {
            "id": "7",
            "memory_id": str(MEMORY_ID),
            "event": "ADD",
            "old_memory": None,
            "new_memory": "Likes green tea",
            "old_metadata": None,
            "new_metadata": {"source": "chat"},
            "actor": "user:alice",
            "created_at": "2025-03-01T12:30:05.123456Z",
        },
    )


def test_an_entity_carries_memory_counts_and_ids_only_when_the_query_has_them() -> None:
    row = {
        "id": MEMORY_ID,
        "text": "Lisbon",
        "entity_type": "place",
        "user_id": "alice",
        "agent_id": None,
        "run_id": None,
        "created_at": CREATED,
        "updated_at": UPDATED,
    }
    plain = {k: (str(v) if k == "id" else v) for k, v in row.items()}
    plain["created_at"], plain["updated_at"] = "2025-03-01T12:30:05.123456Z", "2025-03-02T08:00:00Z"
    assert same_json(entity_view(row), plain)
    counted = entity_view({**row, "memory_count": 0, "memory_ids": []})
    assert same_json(counted, {**plain, "memory_count": 0, "memory_ids": []})


def test_add_results_show_previous_memory_and_type_only_where_they_apply() -> None:
    results = [
        {"id": None, "memory": "unknown", "event": "NONE"},
        {"id": "a", "memory": "new", "event": "ADD", "memory_type": "LONG_TERM"},
        {"id": "b", "memory": "now", "event": "UPDATE", "previous_memory": "then", "memory_type": "EPISODIC"},
        {"id": "c", "memory": "gone", "event": "DELETE"},
    ]
    response = AddResponse(results=msgspec.convert(results, list[AddResult]))
    assert same_json(response, {"results": results})


def test_skipped_decisions_and_notes_appear_only_when_there_are_some() -> None:
    skipped = [{"index": None, "reason": "no facts"}, {"text": "x", "reason": "deleted meanwhile"}]
    response = AddResponse(results=[], skipped=msgspec.convert(skipped, list[Skipped]), notes=["n"])
    assert same_json(response, {"results": [], "skipped": skipped, "notes": ["n"]})


def test_stats_show_top_users_only_for_service_role() -> None:
    counts = {"memories": 3, "entities": 1, "last_24h": {"adds": 3, "updates": 0, "deletes": 0}}
    assert same_json(msgspec.convert(counts, Stats), counts)
    with_users = {**counts, "top_users": [{"user_id": "alice", "memories": 3}]}
    assert same_json(msgspec.convert(with_users, Stats), with_users)


def test_a_schema_init_result_carries_a_message_only_on_failure() -> None:
    ok = {"ref": "acme", "status": "ok", "schema_version": 1}
    failed = {"ref": "acme", "status": "error", "schema_version": None, "message": "PostgresError"}
    assert same_json(msgspec.convert(ok, SchemaInitView), ok)
    assert same_json(msgspec.convert(failed, SchemaInitView), failed)


def test_an_error_body_omits_details_and_hint_unless_given() -> None:
    assert same_json(NotFound().body(), {"code": "not_found", "message": "Not found."})
    error = ValidationFailed("Bad.", details=[{"key": "top_k"}], hint="Send an integer.")
    expected = {
        "code": "validation_failed",
        "message": "Bad.",
        "details": [{"key": "top_k"}],
        "hint": "Send an integer.",
    }
    assert same_json(error.body(), expected)
    assert error.to_body() == expected
