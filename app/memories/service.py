"""The rules of the memory store: who may touch what, what gets written, and its history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
import structlog

from app.auth.scope import MemoryAuthScope, Owner
from app.core import repo as core_repo
from app.core.config import CONFIG_KEYS, EffectiveConfig, check_changes, merge_overrides
from app.core.context import MemoryDeps
from app.core.filters import scoped_filter
from app.core.graph.service import relations_for_memories
from app.core.jobs import service as jobs
from app.core.jobs.views import Event
from app.core.linking import repo as linking_repo
from app.core.paging import page_window
from app.core.schemas import MAX_MEMORY_CHARS, iso, normalise_memory_type
from app.core.views import Deleted, EntityList, HistoryEntry, Memory, entity_view, history_view, memory_view
from app.db.session import TenantSession
from app.errors import AppError, BadRequest, Conflict, Forbidden, NotFound
from app.memories import pipeline, repo
from app.memories.apply import AddOptions, PlanWriter, apply_decisions
from app.memories.pipeline import Plan
from app.memories.responses import (
    AddResponse,
    AddResult,
    DeletedMany,
    MemoryConfig,
    MemoryPage,
    OwnerCount,
    ResetDone,
    Skipped,
    Stats,
)
from app.memories.schemas import AddMemoryRequest, Message, UpdateMemoryRequest
from app.memories.turns import checked_messages, expiry, record_turn, to_turn
from app.memories.writer import Writer

log = structlog.get_logger(__name__)

MAX_CUSTOM_INSTRUCTIONS_CHARS = 4_000


async def _plan(
    db: TenantSession, deps: MemoryDeps, owner: Owner, request: AddMemoryRequest, messages: list[Message]
) -> Plan:
    if request.infer and deps.chat is not None:
        notes: list[str] = []
        described = await pipeline.describe_images(messages, deps.chat, notes)
        turn = to_turn(described, notes)
        return await pipeline.plan_inferred(db, deps, deps.chat, owner, turn, request.custom_instructions)
    turn = to_turn(messages)
    if request.custom_instructions:
        turn.notes.append("custom_instructions were ignored: no model read this add (stored verbatim).")
    if not request.infer:
        return pipeline.plan_verbatim(turn)
    turn.notes.append(
        "No chat provider is configured: the user's messages were stored verbatim; "
        "assistant and tool messages were kept only as conversation context."
    )
    return pipeline.plan_verbatim(turn, user_only=True)


@dataclass(frozen=True)
class CheckedAdd:
    """An add request that passed every check made before a provider call or a write."""

    owner: Owner
    options: AddOptions
    messages: list[Message]


def check_custom_instructions(instructions: str | None) -> None:
    if instructions is None:
        return
    if not instructions.strip():
        raise BadRequest("custom_instructions must not be blank.", code="invalid_custom_instructions")
    if len(instructions) > MAX_CUSTOM_INSTRUCTIONS_CHARS:
        raise BadRequest(
            f"custom_instructions is longer than {MAX_CUSTOM_INSTRUCTIONS_CHARS} characters.",
            code="custom_instructions_too_long",
        )


def check_add(scope: MemoryAuthScope, request: AddMemoryRequest, deps: MemoryDeps) -> CheckedAdd:
    """Everything about an add that can be refused from the request alone: a sync add checks it
    before its provider calls, an async add before it is enqueued (bad input never becomes a job)."""
    owner = scope.owner(request.user_id, request.agent_id, request.run_id, require_owner=True)
    options = AddOptions(
        metadata=dict(request.metadata or {}),
        forced_type=normalise_memory_type(request.memory_type),
        expiration_date=request.expiration_date,
        immutable=request.immutable,
    )
    check_custom_instructions(request.custom_instructions)
    if options.expiration_date is not None:
        # expiry() checks it again at write time.
        expiry(
            options.expiration_date,
            options.forced_type or "LONG_TERM",
            EffectiveConfig.resolve(deps.settings, {}),
        )
    messages = checked_messages(request)
    if not (request.infer and deps.chat is not None):
        # What will be stored verbatim is known now: refuse an over-long message before the job.
        pipeline.check_verbatim(to_turn(messages))
    return CheckedAdd(owner, options, messages)


async def add_memories(
    db: TenantSession, scope: MemoryAuthScope, request: AddMemoryRequest, deps: MemoryDeps
) -> AddResponse:
    """One path for every add: normalise the turn, plan (verbatim or from the model), apply."""
    checked = check_add(scope, request, deps)
    owner, options = checked.owner, checked.options
    plan = await _plan(db, deps, owner, request, checked.messages)
    texts = plan.new_texts

    async def open_and_record() -> Writer:
        # The turn's session messages need no vector: written first, in the same transaction.
        writer = await Writer.open(db, scope, deps)
        await record_turn(writer.conn, writer.config, owner, plan.turn)
        return writer

    # One batched embedding call for every new text, before the first memory is written; the
    # transaction opens and the turn is recorded meanwhile when the local model is idle
    # (MemoryDeps.embed_while).
    if texts:
        deps.check_dimensions()
        vectors, writer = await deps.embed_while(
            deps.embedder.embed(texts, tenant=deps.tenant_ref), open_and_record
        )
    else:
        vectors, writer = [], await open_and_record()
    plan_writer = PlanWriter(writer, owner, options, dict(zip(texts, vectors, strict=True)))
    applied = await apply_decisions(plan_writer, plan.decisions, plan.candidates)
    await writer.flush()
    log.info(
        "memories_added",
        llm_calls=plan.llm_calls,
        candidates=len(plan.candidates),
        results=len(applied.results),
        skipped=len(plan.skipped) + len(applied.skipped),
    )
    response = AddResponse(results=msgspec.convert(applied.results, list[AddResult]))
    skipped = plan.skipped + applied.skipped
    if skipped:
        response.skipped = msgspec.convert(skipped, list[Skipped])
    if plan.turn.notes:
        response.notes = sorted(set(plan.turn.notes))
    return response


async def enqueue_add(
    db: TenantSession, scope: MemoryAuthScope, request: AddMemoryRequest, deps: MemoryDeps
) -> Event:
    """Accept an add to run later on the queue (app/worker): checked now, PENDING until a worker
    runs it as `add_memories` under the same scope."""
    checked = check_add(scope, request, deps)
    payload = msgspec.to_builtins(msgspec.structs.replace(request, async_=False))
    return await jobs.enqueue(db, scope, checked.owner, payload, wake=deps.wake_workers)


def _requested_owner(
    scope: MemoryAuthScope, owner_ids: dict[str, str | None], *, require_owner: bool = False
) -> Owner:
    return scope.owner(
        owner_ids.get("user_id"),
        owner_ids.get("agent_id"),
        owner_ids.get("run_id"),
        require_owner=require_owner,
    )


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
    include_relations: bool = False,
) -> MemoryPage:
    owner = scope.read_owner(
        owner_ids.get("user_id"),
        owner_ids.get("agent_id"),
        owner_ids.get("run_id"),
        requested_scope=owner_ids.get("scope"),
    )
    page, page_size = page_window(page, page_size, deps.settings.list_max_page_size)
    rows, total = await repo.list_for_owner(
        await db.connection(),
        owner,
        filters=scoped_filter(scope, filters, memory_type),
        include_expired=include_expired,
        limit=page_size,
        offset=(page - 1) * page_size,
    )
    listed = MemoryPage(results=[memory_view(r) for r in rows], total=total, page=page, page_size=page_size)
    if include_relations:
        listed.relations = await relations_for_memories(await db.connection(), owner, [r["id"] for r in rows])
    return listed


async def _find(db: TenantSession, scope: MemoryAuthScope, memory_id: UUID, **kwargs: Any) -> Any:
    row = await repo.find_by_id_for_owner(await db.connection(), memory_id, scope.owner(), **kwargs)
    if row is None:
        raise NotFound("No memory with this id.", code="memory_not_found")
    return row


async def get_memory(db: TenantSession, scope: MemoryAuthScope, memory_id: UUID) -> Memory:
    return memory_view(await _find(db, scope, memory_id))


async def update_memory(
    db: TenantSession, scope: MemoryAuthScope, memory_id: UUID, request: UpdateMemoryRequest, deps: MemoryDeps
) -> Memory:
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
    if current["immutable"]:
        raise Conflict(
            "This memory is immutable: it cannot be updated (it can still be deleted).",
            code="memory_immutable",
            details={"memory_id": str(memory_id)},
        )
    new_text = text if text is not None else current["memory"]
    vector = None
    if new_text != current["memory"]:
        deps.check_dimensions()
        (vector,) = await deps.embedder.embed([new_text], tenant=deps.tenant_ref)
    writer = await Writer.open(db, scope, deps)
    metadata = request.metadata if request.metadata is not None else current["metadata"]
    row = await writer.update(current, scope.owner(), text=new_text, vector=vector, metadata=metadata)
    if row is None:
        raise NotFound("No memory with this id.", code="memory_not_found")
    await writer.flush()
    return memory_view(row)


async def delete_memory(
    db: TenantSession, scope: MemoryAuthScope, memory_id: UUID, deps: MemoryDeps
) -> Deleted:
    writer = await Writer.open(db, scope, deps)
    row = await repo.soft_delete(writer.conn, memory_id, scope.owner())
    if row is None:
        raise NotFound("No memory with this id.", code="memory_not_found")
    await writer.deleted([row])
    await writer.flush()
    return Deleted(id=str(memory_id), message="Memory deleted successfully!")


async def delete_all_memories(
    db: TenantSession,
    scope: MemoryAuthScope,
    owner_ids: dict[str, str | None],
    filters: dict[str, Any] | None,
    deps: MemoryDeps,
) -> DeletedMany:
    # Never "everything": an owner id is required even for service_role (reset is the tool for that).
    owner = _requested_owner(scope, owner_ids, require_owner=True)
    matching = scoped_filter(scope, filters, None)
    writer = await Writer.open(db, scope, deps)
    rows = await repo.soft_delete_matching(writer.conn, owner, filters=matching)
    await writer.deleted(rows)
    await writer.flush()
    log.info("memories_deleted", count=len(rows))
    return DeletedMany(message="Memories deleted successfully!", deleted=len(rows))


async def memory_history(db: TenantSession, scope: MemoryAuthScope, memory_id: UUID) -> list[HistoryEntry]:
    # History stays readable after a delete, but only for the memory's owner.
    await _find(db, scope, memory_id, include_deleted=True)
    rows = await repo.history_for_owner(await db.connection(), memory_id, scope.owner())
    return [history_view(r) for r in rows]


async def memory_entities(db: TenantSession, scope: MemoryAuthScope, memory_id: UUID) -> EntityList:
    await _find(db, scope, memory_id)
    rows = await linking_repo.for_memory(await db.connection(), memory_id, scope.owner())
    return EntityList(results=[entity_view(r) for r in rows])


async def stats(db: TenantSession, scope: MemoryAuthScope, owner_ids: dict[str, str | None]) -> Stats:
    owner = _requested_owner(scope, owner_ids)
    counts = await repo.stats_for_owner(await db.connection(), owner, top_users=scope.is_service)
    return msgspec.convert(counts, Stats)


async def owners(db: TenantSession, scope: MemoryAuthScope) -> list[OwnerCount]:
    """The users, agents and runs that hold live memories, as far as the caller may see."""
    rows = await repo.owners_for_owner(await db.connection(), scope.owner())
    return [
        OwnerCount(
            kind=r["kind"],
            name=r["name"],
            memories=int(r["memories"]),
            created_at=iso(r["created_at"]),
            updated_at=iso(r["updated_at"]),
        )
        for r in rows
    ]


def _require_service(scope: MemoryAuthScope, what: str) -> None:
    if not scope.is_service:
        raise Forbidden(f"{what} needs the service_role key.", code="service_role_required")


async def _config_view(db: TenantSession, row: Any, deps: MemoryDeps) -> MemoryConfig:
    s = deps.settings
    return MemoryConfig(
        embedding_dimensions=row["embedding_dims"],
        fts_config=row["fts_config"],
        embedding_provider=s.embedding_provider,
        embedding_model=s.embedding_model,
        chat_provider=s.chat_provider,
        settings=(await deps.config(db)).as_settings(),
        overrides={k: v for k, v in dict(row["settings"]).items() if k in CONFIG_KEYS},
        updated_at=iso(row["updated_at"]),
    )


async def get_config(db: TenantSession, scope: MemoryAuthScope, deps: MemoryDeps) -> MemoryConfig:
    _require_service(scope, "Reading the memory config")
    return await _config_view(db, await core_repo.read_config(await db.connection()), deps)


async def put_config(
    db: TenantSession, scope: MemoryAuthScope, changes: dict[str, Any], deps: MemoryDeps
) -> MemoryConfig:
    """Merge overrides; a null value removes one. Only whitelisted keys, each range-checked."""
    _require_service(scope, "Changing the memory config")
    check_changes(changes)
    conn = await db.connection()
    current = dict((await core_repo.read_config(conn))["settings"])
    row = await core_repo.write_config(conn, merge_overrides(current, changes))
    deps.forget_config()
    return await _config_view(db, row, deps)


async def reset(db: TenantSession, scope: MemoryAuthScope, deps: MemoryDeps) -> ResetDone:
    """Empty the tenant's store and record it in the platform's audit trail.

    The record is written before the tenant's transaction commits: a reset is never missing
    from the trail (a commit that then fails leaves a record of a reset that did not happen).
    """
    _require_service(scope, "Reset")
    if deps.record_reset is None:
        raise AppError("Resets cannot be recorded here, so none is done.", code="reset_not_recorded")
    # Alone in its transaction, so a deadlock or serialization failure is safely retried.
    removed = await db.retry_alone(repo.reset_tenant)
    await deps.record_reset(scope.actor, removed)
    log.warning("tenant_memory_reset", removed=removed)
    return ResetDone(
        message="All memories and queued adds of this tenant were deleted; config was kept.", removed=removed
    )
