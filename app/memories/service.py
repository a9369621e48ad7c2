"""The rules of the memory store: who may touch what, what gets written, and its history."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog

from app.auth.scope import MemoryAuthScope, Owner
from app.db.session import TenantSession
from app.entities import repo as entities_repo
from app.entities.service import entity_view
from app.errors import BadRequest, Forbidden, NotFound
from app.memories import pipeline, repo
from app.memories.deps import MemoryDeps
from app.memories.filters import compile_scoped_filters
from app.memories.schemas import (
    MAX_MEMORY_CHARS,
    MAX_MESSAGES,
    AddMemoryRequest,
    Message,
    UpdateMemoryRequest,
    history_view,
    memory_view,
    normalise_memory_type,
)
from app.memories.turns import expiry, message_text, record_turn
from app.memories.writer import Writer, content_hash

log = structlog.get_logger(__name__)


# Per-tenant overrides that PUT /config accepts: key -> (type check, description of range).
CONFIG_KEYS: dict[str, tuple[type, float, float]] = {
    "search.default-top-k": (int, 1, 100),
    "search.entity-boost-enabled": (bool, 0, 1),
    "memory.short-term-ttl-hours": (float, 0.01, 24 * 365),
    "session.window-size": (int, 0, 500),
    "history.enabled": (bool, 0, 1),
}
FIXED_CONFIG_KEYS = ("embedding.dimensions", "search.fts-config")


def _is_blank(message: Message) -> bool:
    return not message.content.strip() if isinstance(message.content, str) else not message.content


async def add_memories(
    db: TenantSession, scope: MemoryAuthScope, request: AddMemoryRequest, deps: MemoryDeps
) -> dict[str, Any]:
    owner = scope.owner(request.user_id, request.agent_id, request.run_id, require_owner=True)
    memory_type = normalise_memory_type(request.memory_type) or "LONG_TERM"
    metadata = dict(request.metadata or {})
    notes: list[str] = []
    messages = (
        [Message(role="user", content=request.messages)]
        if isinstance(request.messages, str)
        else request.messages
    )
    if not messages or all(_is_blank(m) for m in messages):
        # Otherwise "" or "   " answers 200 with no results and still records an empty session turn.
        raise BadRequest("messages must not be empty.", code="empty_messages")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest(f"At most {MAX_MESSAGES} messages per request.", code="too_many_messages")
    for m in messages:
        if m.role not in ("user", "assistant", "system", "tool"):
            raise BadRequest(f"Unknown message role {m.role!r}.", code="invalid_message_role")

    if request.infer and deps.chat_available:
        return await pipeline.infer(db, scope, owner, messages, request, deps)
    if request.infer:
        notes.append("No chat provider is configured: messages were stored verbatim, as with infer=false.")

    turn = [(m.role, m.name, message_text(m, notes)) for m in messages if m.role != "system"]
    facts = [(role, name, text.strip()) for role, name, text in turn if text.strip()]
    for _, _, text in facts:
        if len(text) > MAX_MEMORY_CHARS:
            raise BadRequest(
                f"A message is longer than {MAX_MEMORY_CHARS} characters.", code="message_too_long"
            )

    # Duplicates within the request go first; then one batched embedding call, made before
    # the first database access so a slow provider never holds a pooled connection.
    unique: list[tuple[str, str | None, str]] = []
    seen: set[str] = set()
    for role, name, text in facts:
        digest = content_hash(text)
        if digest not in seen:
            seen.add(digest)
            unique.append((role, name, text))
    vectors = []
    if unique:
        deps.check_dimensions()
        vectors = await deps.embedder.embed([text for _, _, text in unique])

    writer = await Writer.open(db, scope, deps)
    expires_at = expiry(request, memory_type, writer)
    results: list[dict[str, Any]] = []
    added = 0
    for (role, name, fact), vector in zip(unique, vectors, strict=True):
        existing = await repo.find_live_by_hash(writer.conn, owner, content_hash(fact))
        if existing is not None:
            results.append({"id": str(existing["id"]), "memory": existing["memory"], "event": "NONE"})
            writer.unchanged()
            continue
        row = await writer.add(
            owner,
            fact,
            vector,
            memory_type=memory_type,
            metadata=metadata,
            expires_at=expires_at,
            actor_id=name,
            role=role,
        )
        added += 1
        results.append({"id": str(row["id"]), "memory": fact, "event": "ADD", "memory_type": memory_type})
    await writer.flush()
    await record_turn(writer, owner, turn)
    log.info("memories_added", added=added, unchanged=len(results) - added)
    body: dict[str, Any] = {"results": results}
    if notes:
        body["notes"] = sorted(set(notes))
    return body


def _requested_owner(
    scope: MemoryAuthScope, owner_ids: dict[str, str | None], *, require_owner: bool = False
) -> Owner:
    return scope.owner(
        owner_ids.get("user_id"),
        owner_ids.get("agent_id"),
        owner_ids.get("run_id"),
        require_owner=require_owner,
    )


_MAX_OFFSET = 2**63 - 1  # Postgres OFFSET is a bigint


def _page(page: int | None, page_size: int | None, max_page_size: int) -> tuple[int, int]:
    page = 1 if page is None else page
    page_size = 50 if page_size is None else page_size
    if page < 1:
        raise BadRequest("page starts at 1.", code="invalid_page")
    if not 1 <= page_size <= max_page_size:
        raise BadRequest(f"page_size must be between 1 and {max_page_size}.", code="invalid_page_size")
    if (page - 1) * page_size > _MAX_OFFSET:
        raise BadRequest("page is too large.", code="invalid_page")
    return page, page_size


async def list_memories(
    db: TenantSession,
    scope: MemoryAuthScope,
    owner_ids: dict[str, str | None],
    *,
    memory_type: str | None,
    filters: dict[str, Any] | None,
    page: int | None,
    page_size: int | None,
    include_expired: bool,
    deps: MemoryDeps,
) -> dict[str, Any]:
    owner = _requested_owner(scope, owner_ids)
    page, page_size = _page(page, page_size, deps.settings.list_max_page_size)
    sql, params = compile_scoped_filters(scope, filters, memory_type)
    rows, total = await repo.list_for_owner(
        await db.connection(),
        owner,
        filter_sql=sql,
        filter_params=params,
        include_expired=include_expired,
        limit=page_size,
        offset=(page - 1) * page_size,
    )
    return {"results": [memory_view(r) for r in rows], "total": total, "page": page, "page_size": page_size}


async def _find(db: TenantSession, scope: MemoryAuthScope, memory_id: UUID, **kwargs: Any) -> Any:
    row = await repo.find_by_id_for_owner(await db.connection(), memory_id, scope.owner(), **kwargs)
    if row is None:
        raise NotFound("No memory with this id.", code="memory_not_found")
    return row


async def get_memory(db: TenantSession, scope: MemoryAuthScope, memory_id: UUID) -> dict[str, Any]:
    return memory_view(await _find(db, scope, memory_id))


async def update_memory(
    db: TenantSession, scope: MemoryAuthScope, memory_id: UUID, request: UpdateMemoryRequest, deps: MemoryDeps
) -> dict[str, Any]:
    if request.text is not None and request.memory is not None and request.text != request.memory:
        raise BadRequest("Give the new text as text or memory, not both.", code="conflicting_fields")
    text = request.text if request.text is not None else request.memory
    if text is None and request.metadata is None:
        raise BadRequest("Nothing to update: give text and/or metadata.", code="empty_update")
    if text is not None:
        text = text.strip()
        if not text:
            raise BadRequest("text must not be empty.", code="empty_text")
        if len(text) > MAX_MEMORY_CHARS:
            raise BadRequest(f"text is longer than {MAX_MEMORY_CHARS} characters.", code="text_too_long")
    current = await _find(db, scope, memory_id, for_update=True)
    new_text = text if text is not None else current["memory"]
    vector = None
    if new_text != current["memory"]:
        deps.check_dimensions()
        (vector,) = await deps.embedder.embed([new_text])
    writer = await Writer.open(db, scope, deps)
    metadata = request.metadata if request.metadata is not None else current["metadata"]
    row = await writer.update(current, scope.owner(), text=new_text, vector=vector, metadata=metadata)
    if row is None:
        raise NotFound("No memory with this id.", code="memory_not_found")
    await writer.flush()
    return memory_view(row)


async def delete_memory(
    db: TenantSession, scope: MemoryAuthScope, memory_id: UUID, deps: MemoryDeps
) -> dict[str, Any]:
    writer = await Writer.open(db, scope, deps)
    row = await repo.soft_delete(writer.conn, memory_id, scope.owner())
    if row is None:
        raise NotFound("No memory with this id.", code="memory_not_found")
    await writer.deleted([row])
    await writer.flush()
    return {"id": str(memory_id), "message": "Memory deleted successfully!"}


async def delete_all_memories(
    db: TenantSession,
    scope: MemoryAuthScope,
    owner_ids: dict[str, str | None],
    filters: dict[str, Any] | None,
    deps: MemoryDeps,
) -> dict[str, Any]:
    # Never "everything": an owner id is required even for service_role (reset is the tool for that).
    owner = _requested_owner(scope, owner_ids, require_owner=True)
    sql, params = compile_scoped_filters(scope, filters, None)
    writer = await Writer.open(db, scope, deps)
    rows = await repo.soft_delete_matching(writer.conn, owner, filter_sql=sql, filter_params=params)
    await writer.deleted(rows)
    await writer.flush()
    log.info("memories_deleted", count=len(rows))
    return {"message": "Memories deleted successfully!", "deleted": len(rows)}


async def memory_history(db: TenantSession, scope: MemoryAuthScope, memory_id: UUID) -> list[dict[str, Any]]:
    # History stays readable after a delete, but only for the memory's owner.
    await _find(db, scope, memory_id, include_deleted=True)
    rows = await repo.history_for_owner(await db.connection(), memory_id, scope.owner())
    return [history_view(r) for r in rows]


async def memory_entities(db: TenantSession, scope: MemoryAuthScope, memory_id: UUID) -> dict[str, Any]:
    await _find(db, scope, memory_id)
    rows = await entities_repo.for_memory(await db.connection(), memory_id, scope.owner())
    return {"results": [entity_view(r) for r in rows]}


async def stats(
    db: TenantSession, scope: MemoryAuthScope, owner_ids: dict[str, str | None]
) -> dict[str, Any]:
    owner = _requested_owner(scope, owner_ids)
    return await repo.stats_for_owner(await db.connection(), owner, top_users=scope.is_service)


def _require_service(scope: MemoryAuthScope, what: str) -> None:
    if not scope.is_service:
        raise Forbidden(f"{what} needs the service_role key.", code="service_role_required")


def _config_view(row: Any, deps: MemoryDeps) -> dict[str, Any]:
    overrides = dict(row["settings"])
    s = deps.settings
    effective = {
        "search.default-top-k": s.search_default_top_k,
        "search.entity-boost-enabled": s.search_entity_boost_enabled,
        "memory.short-term-ttl-hours": s.short_term_ttl_hours,
        "session.window-size": s.session_window_size,
        "history.enabled": s.history_enabled,
    }
    effective.update(overrides)
    return {
        "embedding_dimensions": row["embedding_dims"],
        "fts_config": row["fts_config"],
        "embedding_provider": s.embedding_provider,
        "embedding_model": s.embedding_model,
        "chat_provider": s.chat_provider,
        "settings": effective,
        "overrides": overrides,
        "updated_at": row["updated_at"].isoformat().replace("+00:00", "Z"),
    }


async def get_config(db: TenantSession, scope: MemoryAuthScope, deps: MemoryDeps) -> dict[str, Any]:
    _require_service(scope, "Reading the memory config")
    return _config_view(await repo.read_config(await db.connection()), deps)


async def put_config(
    db: TenantSession, scope: MemoryAuthScope, changes: dict[str, Any], deps: MemoryDeps
) -> dict[str, Any]:
    """Merge overrides; a null value removes one. Only whitelisted keys, each range-checked."""
    _require_service(scope, "Changing the memory config")
    for key, value in changes.items():
        if key in FIXED_CONFIG_KEYS:
            raise BadRequest(f"{key} is fixed when the tenant is initialised.", code="config_key_fixed")
        if key not in CONFIG_KEYS:
            raise BadRequest(
                f"Unknown config key {key!r}; allowed: {', '.join(sorted(CONFIG_KEYS))}.",
                code="unknown_config_key",
            )
        if value is None:
            continue
        kind, low, high = CONFIG_KEYS[key]
        ok = (
            isinstance(value, bool)
            if kind is bool
            else isinstance(value, int | float)
            and not isinstance(value, bool)
            and (kind is float or isinstance(value, int))
        )
        if not ok or (kind is not bool and not low <= value <= high):
            raise BadRequest(
                f"{key} must be a {kind.__name__}"
                + ("" if kind is bool else f" between {low:g} and {high:g}")
                + ".",
                code="invalid_config_value",
            )
    conn = await db.connection()
    overrides = dict((await repo.read_config(conn))["settings"])
    for key, value in changes.items():
        if value is None:
            overrides.pop(key, None)
        else:
            overrides[key] = value
    return _config_view(await repo.write_config(conn, overrides), deps)


async def reset(db: TenantSession, scope: MemoryAuthScope) -> dict[str, Any]:
    _require_service(scope, "Reset")
    await repo.reset_tenant(await db.connection())
    log.warning("tenant_memory_reset")
    return {"message": "All memories of this tenant were deleted; config was kept."}
