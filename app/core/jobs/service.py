"""Enqueue an add, read its event, and the queue operations the workers (app/worker) perform.

Every function takes the TenantSession it runs in: the request's (enqueue, reads), a short
service-role one (claim, retry, fail), or the add's own transaction (succeed), so that the
add's writes and its SUCCEEDED status commit together.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import structlog
from prometheus_client import Counter

from app.auth.scope import MemoryAuthScope, Owner
from app.core.jobs import repo
from app.core.jobs.views import STATUSES, Event, EventPage, event_view
from app.core.paging import page_window
from app.core.views import AddResponse
from app.db.session import TenantSession
from app.errors import BadRequest, NotFound

log = structlog.get_logger(__name__)

JOBS_ENQUEUED = Counter("memory_queue_jobs_enqueued_total", "Async adds accepted onto the queue")


async def enqueue(
    db: TenantSession,
    scope: MemoryAuthScope,
    owner: Owner,
    payload: dict[str, Any],
    *,
    wake: Callable[[], None] | None = None,
) -> Event:
    """Store a validated add as a PENDING job; `wake` is called once the request's transaction has
    committed, so a worker woken by it finds the row."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    row = await repo.insert_job(
        await db.connection(),
        scope_role=scope.role,
        scope_user_id=None if scope.is_service else scope.user_id,
        scope_session_id=scope.session_id,
        owner=owner,
        payload=payload,
        request_id=request_id if isinstance(request_id, str) else None,
    )
    if wake is not None:
        db.after_commit(wake)
    JOBS_ENQUEUED.inc()
    log.info("job_enqueued", event_id=str(row["id"]))
    return event_view(row)


async def get_event(db: TenantSession, scope: MemoryAuthScope, event_id: UUID) -> Event:
    """The caller's event: another owner's is a 404, as a missing one is."""
    row = await repo.find_for_owner(await db.connection(), event_id, scope.owner())
    if row is None:
        raise NotFound("No event with this id.", code="event_not_found")
    return event_view(row)


async def list_events(
    db: TenantSession,
    scope: MemoryAuthScope,
    owner_ids: dict[str, str | None],
    *,
    status: str | None,
    page: int | None,
    page_size: int | None,
    max_page_size: int,
) -> EventPage:
    """Newest first. A user sees its own; service_role the whole tenant, or the owner it names."""
    owner = scope.owner(owner_ids.get("user_id"), owner_ids.get("agent_id"), owner_ids.get("run_id"))
    if status is not None and status.upper() not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}.", code="invalid_status")
    page, page_size = page_window(page, page_size, max_page_size)
    rows, total = await repo.list_for_owner(
        await db.connection(),
        owner,
        status=status.upper() if status else None,
        limit=page_size,
        offset=(page - 1) * page_size,
    )
    return EventPage(results=[event_view(r) for r in rows], total=total, page=page, page_size=page_size)


async def status_counts(db: TenantSession, scope: MemoryAuthScope) -> dict[str, int]:
    """The caller's jobs per status, every status present (0 when none): a user's own, service_role
    the whole tenant's."""
    found = await repo.status_counts(await db.connection(), scope.owner())
    return {status: found.get(status, 0) for status in STATUSES}


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds under `token` until its lease runs out."""

    id: UUID
    token: UUID
    scope: MemoryAuthScope  # the enqueuer's, rebuilt: the add runs as it would have
    payload: dict[str, Any]
    attempts: int  # this one included
    created_at: datetime
    request_id: str | None


@dataclass(frozen=True)
class QueueState:
    pending: int
    running: int
    due_in: float | None  # seconds until the next job may be taken (<= 0: now); None: no job


async def claim(db: TenantSession, tenant_ref: str, lease_seconds: float) -> ClaimedJob | None:
    token = uuid.uuid4()
    row = await repo.claim_next(await db.connection(), token, lease_seconds)
    if row is None:
        return None
    scope = MemoryAuthScope(
        tenant_ref=tenant_ref,
        role=row["scope_role"],
        user_id=row["scope_user_id"],
        session_id=row["scope_session_id"],
    )
    return ClaimedJob(
        row["id"], token, scope, dict(row["payload"]), row["attempts"], row["created_at"], row["request_id"]
    )


async def renew(db: TenantSession, job: ClaimedJob, lease_seconds: float) -> bool:
    return await repo.renew_lease(await db.connection(), job.id, job.token, lease_seconds)


async def succeed(db: TenantSession, job: ClaimedJob, response: AddResponse) -> Event | None:
    """Mark the job SUCCEEDED in `db`'s transaction (the add's own); None when this attempt no
    longer holds it, and the caller must then roll the transaction back."""
    row = await repo.mark_succeeded(await db.connection(), job.id, job.token, msgspec.to_builtins(response))
    return event_view(row) if row is not None else None


async def retry_later(db: TenantSession, job: ClaimedJob, delay: float, code: str, message: str) -> bool:
    conn = await db.connection()
    return await repo.mark_retry(conn, job.id, job.token, delay_seconds=delay, code=code, message=message)


async def fail(db: TenantSession, job: ClaimedJob, code: str, message: str) -> bool:
    return await repo.mark_failed(await db.connection(), job.id, job.token, code=code, message=message)


async def release(db: TenantSession, job: ClaimedJob) -> bool:
    return await repo.release(await db.connection(), job.id, job.token)


async def queue_state(db: TenantSession) -> QueueState:
    row = await repo.queue_state(await db.connection())
    return QueueState(int(row["pending"]), int(row["running"]), row["due_in"])
