"""Linking a memory to the entities in its text (from the model, or the offline heuristic)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from app.auth.scope import Owner
from app.core.linking import repo
from app.core.linking.heuristic import ENTITY_TYPES, FoundEntity


async def link_entities(
    conn: asyncpg.Connection, owner: Owner, memory_id: UUID, entities: list[FoundEntity]
) -> None:
    """Upsert the entities for the owner and link them to the memory (inside the caller's transaction)."""
    pairs = list(
        dict.fromkeys((e.text, e.entity_type if e.entity_type in ENTITY_TYPES else "other") for e in entities)
    )
    ids = await repo.upsert_entities(conn, owner, pairs)
    await repo.link(conn, memory_id, ids)


async def unlink_entities(conn: asyncpg.Connection, memory_ids: list[UUID]) -> None:
    if memory_ids:
        await repo.unlink_entities(conn, memory_ids)
