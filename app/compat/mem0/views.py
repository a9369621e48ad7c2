"""Response bodies of the /mem0 routes, in mem0's shapes, built from our services' answers."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.core.views import HistoryEntry, Memory, Relation, ScoredMemory
from app.memories.responses import AddResult, OwnerCount

APP_ID_KEY = "app_id"  # mem0's app_id lives in the memory's metadata here


class Mem0ErrorBody(msgspec.Struct, omit_defaults=True):
    """mem0's error body (`detail`, which the SDKs read) plus our stable `code`."""

    detail: str
    code: str
    details: Any | UnsetType = UNSET
    hint: str | UnsetType = UNSET


class Ping(msgspec.Struct):
    status: str
    org_id: str
    project_id: str
    user_email: str


class Mem0Memory(msgspec.Struct, omit_defaults=True):
    id: str
    memory: str
    hash: str
    user_id: str | None
    agent_id: str | None
    app_id: str | None
    run_id: str | None
    session_id: str | None  # mem0's name for run_id on its list routes; both are given
    metadata: dict[str, Any]
    categories: list[str]
    memory_type: str
    immutable: bool
    expiration_date: str | None
    created_at: str
    updated_at: str
    score: float | UnsetType = UNSET  # search results only
    score_breakdown: dict[str, float] | UnsetType = UNSET


class Mem0Page(msgspec.Struct):
    count: int
    next: str | None
    previous: str | None
    results: list[Mem0Memory]
    # mem0's graph memory: only with enable_graph, the open relations the results assert.
    relations: list[Relation] | UnsetType = UNSET


class Mem0Results(msgspec.Struct, forbid_unknown_fields=True):
    """mem0's v1.1 `{"results": [...]}`; with enable_graph, also `relations`
    ([{source, relationship, target, ...}]), as mem0's graph memory answers.

    Closed (`additionalProperties: false` in the OpenAPI document) so that a page, which also
    has `results`, matches only `Mem0Page` where a route answers either shape."""

    results: list[Mem0Memory]
    relations: list[Relation] | UnsetType = UNSET


class AddedData(msgspec.Struct):
    memory: str


class Mem0AddItem(msgspec.Struct, omit_defaults=True):
    """One item of an add's answer: a processed fact (`id`, `event`, `memory`, and v1.0's `data`)
    when async_mode is false, an accepted add (`message`, `status` PENDING, `event_id`) when true."""

    id: str | UnsetType | None = UNSET
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"] | UnsetType = UNSET
    memory: str | UnsetType = UNSET
    data: AddedData | UnsetType = UNSET
    message: str | UnsetType = UNSET
    status: Literal["PENDING"] | UnsetType = UNSET
    event_id: str | UnsetType = UNSET


class Mem0AddResults(msgspec.Struct):
    results: list[Mem0AddItem]


class Mem0HistoryItem(msgspec.Struct):
    id: str
    memory_id: str
    input: list[dict[str, str]]
    old_memory: str | None
    new_memory: str | None
    event: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    metadata: dict[str, Any] | None
    categories: list[str]
    actor: str
    created_at: str
    updated_at: str


class Mem0Entity(msgspec.Struct):
    id: str
    name: str
    type: Literal["user", "agent", "run"]
    total_memories: int
    owner: str
    metadata: dict[str, Any] | None
    created_at: str
    updated_at: str


class Mem0Entities(msgspec.Struct):
    count: int
    next: str | None
    previous: str | None
    results: list[Mem0Entity]
    total_users: int
    total_agents: int
    total_apps: int
    total_runs: int


class Mem0Done(msgspec.Struct):
    """What a delete or batch answers: mem0's `message`."""

    message: str


class Mem0Event(msgspec.Struct):
    """An async add's event, as GET /v1/event/{id}/ answers it."""

    id: str
    event_type: str
    status: Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]
    payload: dict[str, Any]
    results: list[dict[str, Any]]
    error: str | None
    created_at: str
    updated_at: str


class Mem0EventPage(msgspec.Struct):
    count: int
    next: str | None
    previous: str | None
    results: list[Mem0Event]


def memory_view(m: Memory) -> Mem0Memory:
    app_id = m.metadata.get(APP_ID_KEY)
    return Mem0Memory(
        id=m.id,
        memory=m.memory,
        hash=m.hash,
        user_id=m.user_id,
        agent_id=m.agent_id,
        app_id=app_id if isinstance(app_id, str) else None,
        run_id=m.run_id,
        session_id=m.run_id,
        metadata=m.metadata,
        categories=[],
        memory_type=m.memory_type,
        immutable=m.immutable,
        expiration_date=m.expires_at,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


def scored_view(m: ScoredMemory) -> Mem0Memory:
    view = memory_view(m)
    view.score = m.score
    parts = m.score_breakdown
    view.score_breakdown = {
        "semantic": parts.semantic,
        "bm25": parts.keyword,
        "entity": parts.entity,
        "graph": parts.graph,
    }
    return view


def added_view(result: AddResult) -> Mem0AddItem:
    return Mem0AddItem(id=result.id, event=result.event, memory=result.memory, data=AddedData(result.memory))


def queued_view(event_id: str) -> Mem0AddItem:
    return Mem0AddItem(
        message="Memory processing has been queued for background execution",
        status="PENDING",
        event_id=event_id,
    )


def history_view(entry: HistoryEntry, memory: Memory | None) -> Mem0HistoryItem:
    return Mem0HistoryItem(
        id=entry.id,
        memory_id=entry.memory_id,
        input=[],
        old_memory=entry.old_memory,
        new_memory=entry.new_memory,
        event=entry.event,
        user_id=memory.user_id if memory else None,
        agent_id=memory.agent_id if memory else None,
        run_id=memory.run_id if memory else None,
        metadata=entry.new_metadata,
        categories=[],
        actor=entry.actor,
        created_at=entry.created_at,
        updated_at=entry.created_at,
    )


def entities_view(owners: list[OwnerCount], tenant_ref: str) -> Mem0Entities:
    results = [
        Mem0Entity(
            id=f"{o.kind}:{o.name}",
            name=o.name,
            type=o.kind,
            total_memories=o.memories,
            owner=tenant_ref,
            metadata=None,
            created_at=o.created_at,
            updated_at=o.updated_at,
        )
        for o in owners
    ]
    kinds = [o.kind for o in owners]
    return Mem0Entities(
        count=len(results),
        next=None,
        previous=None,
        results=results,
        total_users=kinds.count("user"),
        total_agents=kinds.count("agent"),
        total_apps=0,
        total_runs=kinds.count("run"),
    )
