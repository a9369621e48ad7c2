"""Linking a memory to the entities in its text and to the relations between them (from the
model, or the offline heuristic). The one place every memory write builds the graph through.

A relation names its ends by text; an end that is not among the fact's entities becomes one
(type `other`), and "user"/"I"/"me" is the owner itself (a person entity named by its id, as
mem0's graph memory does). Without relations from the model the fact's entities are linked
pairwise by the heuristic `related_to` edge (co_mention_relations).
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from app.auth.scope import Owner
from app.core.linking import repo
from app.core.linking.heuristic import (
    ENTITY_TYPES,
    MAX_ENTITY_CHARS,
    MAX_RELATIONS_PER_TEXT,
    FoundEntity,
    FoundRelation,
    co_mention_relations,
)

SELF_NAMES = frozenset({"user", "the user", "i", "me", "myself", "my", "self"})

Key = tuple[str, str]  # (text as first written, entity type)


def _self_name(owner: Owner) -> str:
    return (owner.user_id or owner.agent_id or owner.run_id or "user")[:MAX_ENTITY_CHARS]


def _kind(entity: FoundEntity) -> str:
    return entity.entity_type if entity.entity_type in ENTITY_TYPES else "other"


def _endpoint(name: str, owner: Owner, known: dict[str, Key]) -> Key | None:
    """The entity a relation end names: one of the fact's, the owner itself, or a new `other`."""
    name = name.strip()
    if name.lower() in SELF_NAMES:
        return (_self_name(owner), "person")
    if not 1 < len(name) <= MAX_ENTITY_CHARS:
        return None
    return known.get(name.lower(), (name, "other"))


def _planned(
    owner: Owner, entities: list[FoundEntity], relations: list[FoundRelation]
) -> tuple[list[Key], list[tuple[Key, str, Key, str, float]]]:
    """The entities to upsert (one spelling per case-insensitive name and type) and the edges
    between them, each end as its (lower-cased name, type) key."""
    keys: dict[Key, Key] = {}
    known: dict[str, Key] = {}
    for entity in entities:
        key = (entity.text, _kind(entity))
        keys.setdefault(_norm(key), key)
        known.setdefault(entity.text.lower(), key)
    edges = []
    for rel in relations[:MAX_RELATIONS_PER_TEXT]:
        source, target = _endpoint(rel.source, owner, known), _endpoint(rel.target, owner, known)
        if source is None or target is None or source[0].lower() == target[0].lower():
            continue
        keys.setdefault(_norm(source), source)
        keys.setdefault(_norm(target), target)
        edges.append(
            (_norm(source), rel.relation, _norm(target), rel.origin, max(0.01, min(1.0, rel.weight)))
        )
    return list(keys.values()), edges


def _norm(key: Key) -> Key:
    return (key[0].lower(), key[1])


async def _merge_aliases(
    conn: asyncpg.Connection, owner: Owner, entities: list[FoundEntity], ids: dict[Key, UUID], actor: str
) -> None:
    """Fold each entity the model called another name of one into that one (the type of the
    fact's entity of that name, else the alias's)."""
    typed = {e.text.lower(): _kind(e) for e in entities}
    for entity in entities:
        if not entity.same_as or entity.same_as.strip().lower() == entity.text.lower():
            continue
        name = entity.same_as.strip()[:MAX_ENTITY_CHARS]
        canonical = (name, typed.get(name.lower(), _kind(entity)))
        (canonical_id,) = await repo.upsert_entities(conn, owner, [canonical])
        alias = _norm((entity.text, _kind(entity)))
        if await repo.merge_entity(conn, owner, ids[alias], canonical_id, actor):
            ids.update({k: canonical_id for k, v in ids.items() if v == ids[alias]})


async def link_memory(
    conn: asyncpg.Connection,
    owner: Owner,
    memory_id: UUID,
    entities: list[FoundEntity],
    relations: list[FoundRelation] | None,
    *,
    actor: str,
    new: bool = False,
) -> None:
    """Upsert the entities for the owner, link them to the memory, and make the memory's open
    relations exactly `relations` (None: the heuristic co-mention edges): relations it asserted
    before and no longer does are closed, never deleted (inside the caller's transaction).
    A `new` memory asserted nothing before, so nothing is closed."""
    found = relations if relations is not None else co_mention_relations(entities)
    keys, edges = _planned(owner, entities, found)
    ids = {_norm(k): i for k, i in zip(keys, await repo.upsert_entities(conn, owner, keys), strict=True)}
    await _merge_aliases(conn, owner, entities, ids, actor)
    await repo.link(conn, memory_id, list(dict.fromkeys(ids.values())))
    unique = {
        (ids[s], rel, ids[t]): (origin, w) for s, rel, t, origin, w in reversed(edges) if ids[s] != ids[t]
    }
    wanted = [(s, rel, t, origin, w) for (s, rel, t), (origin, w) in unique.items()]
    if not new:
        await repo.close_relations(conn, [memory_id], actor, keep=[(s, rel, t) for s, rel, t, _, _ in wanted])
    await repo.open_relations(conn, owner, memory_id, wanted, actor)


async def unlink_entities(conn: asyncpg.Connection, memory_ids: list[UUID]) -> None:
    if memory_ids:
        await repo.unlink_entities(conn, memory_ids)


async def close_relations(conn: asyncpg.Connection, memory_ids: list[UUID], actor: str) -> None:
    """The memories were deleted: what they asserted is no longer held true (valid_to = now)."""
    if memory_ids:
        await repo.close_relations(conn, memory_ids, actor)


async def delete_relation(conn: asyncpg.Connection, relation_id: UUID, owner: Owner, actor: str) -> bool:
    """An explicit removal (the API's, not an add's): the row goes, graph_history keeps its words."""
    return await repo.delete_relation(conn, relation_id, owner, actor)
