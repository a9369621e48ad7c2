"""Response bodies of the /mem/v1 memory routes (requests are in `schemas`).

Keys that only some answers carry are `UNSET`, so they are absent, never null, as they
have always been.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

# The add answer lives in app.core.views, shared with async-add events (app/core/jobs).
from app.core.views import AddResponse as AddResponse
from app.core.views import AddResult as AddResult
from app.core.views import Memory, Relation
from app.core.views import Skipped as Skipped


class MemoryPage(msgspec.Struct):
    results: list[Memory]
    total: int
    page: int
    page_size: int
    # Only with include_relations=true: the open relations the page's memories assert.
    relations: list[Relation] | UnsetType = UNSET


class DeletedMany(msgspec.Struct):
    message: str
    deleted: int


class Last24h(msgspec.Struct):
    adds: int
    updates: int
    deletes: int


class UserCount(msgspec.Struct):
    user_id: str
    memories: int


class Stats(msgspec.Struct, omit_defaults=True):
    memories: int
    entities: int
    last_24h: Last24h
    top_users: list[UserCount] | UnsetType = UNSET  # service_role only


class OwnerCount(msgspec.Struct):
    """A user, agent or run that holds live memories, and how many."""

    kind: Literal["user", "agent", "run"]
    name: str
    memories: int
    created_at: str
    updated_at: str


class MemoryConfig(msgspec.Struct):
    """The tenant's memory settings: fixed at init, effective values, and its own overrides."""

    embedding_dimensions: int
    fts_config: str
    embedding_provider: str
    embedding_model: str
    chat_provider: str
    settings: dict[str, Any]
    overrides: dict[str, Any]
    updated_at: str


class ResetDone(msgspec.Struct):
    message: str
    # Rows removed per table (memories, entities, entity_links, memory_history, session_messages).
    removed: dict[str, int]
