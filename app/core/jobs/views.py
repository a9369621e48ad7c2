"""How an async add looks to its caller: an event, mem0's word for it."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.core.schemas import iso
from app.core.views import AddResult, Skipped

Status = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]
STATUSES: tuple[str, ...] = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")


class EventError(msgspec.Struct):
    """Why the last attempt failed: the error code and message a sync add would have answered."""

    code: str
    message: str


class Event(msgspec.Struct, omit_defaults=True, kw_only=True):
    """An async add: PENDING until a worker takes it, RUNNING, then SUCCEEDED with the results a sync
    add returns, or FAILED with the reason. A PENDING event with an `error` is waiting to be retried."""

    id: str
    event_type: Literal["ADD"]
    status: Status
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    attempts: int
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    payload: dict[str, Any]
    # Seconds from enqueue to SUCCEEDED or FAILED.
    latency: float | UnsetType = UNSET
    next_attempt_at: str | UnsetType = UNSET  # PENDING after a failed attempt
    results: list[AddResult] | UnsetType = UNSET  # SUCCEEDED
    skipped: list[Skipped] | UnsetType = UNSET
    notes: list[str] | UnsetType = UNSET
    error: EventError | UnsetType = UNSET


class EventPage(msgspec.Struct):
    results: list[Event]
    total: int
    page: int
    page_size: int


def event_view(row: Any) -> Event:
    event = Event(
        id=str(row["id"]),
        event_type="ADD",
        status=row["status"],
        user_id=row["user_id"],
        agent_id=row["agent_id"],
        run_id=row["run_id"],
        attempts=row["attempts"],
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
        started_at=iso(row["started_at"]),
        finished_at=iso(row["finished_at"]),
        payload=dict(row["payload"]),
    )
    if row["finished_at"] is not None:
        event.latency = round((row["finished_at"] - row["created_at"]).total_seconds(), 3)
    if row["status"] == "PENDING" and row["attempts"] > 0:
        event.next_attempt_at = iso(row["next_run_at"])
    if row["error_code"] is not None and row["status"] != "SUCCEEDED":
        event.error = EventError(code=row["error_code"], message=row["error_message"] or "")
    result = row["result"]
    if result is not None:
        event.results = msgspec.convert(result.get("results", []), list[AddResult])
        if result.get("skipped"):
            event.skipped = msgspec.convert(result["skipped"], list[Skipped])
        if result.get("notes"):
            event.notes = list(result["notes"])
    return event
