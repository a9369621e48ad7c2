"""Asynchronous adds and their events: the one place /mem0 meets the job queue.

An async add is checked and enqueued exactly as `/mem/v1/memories` with `"async": true` does
(app.memories.service.enqueue_add); its event is the same job, read through the same owner-scoped
service (app.core.jobs.service), in mem0's shape.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from app.auth.scope import MemoryAuthScope
from app.compat.mem0 import translate
from app.compat.mem0.views import Mem0AddItem, Mem0Event, Mem0EventPage, queued_view
from app.core.context import MemoryDeps
from app.core.jobs import service as jobs
from app.core.jobs.views import Event
from app.db.session import TenantSession
from app.memories import service as memories
from app.memories.schemas import AddMemoryRequest


async def accept_async_add(
    db: TenantSession, scope: MemoryAuthScope, request: AddMemoryRequest, deps: MemoryDeps
) -> list[Mem0AddItem]:
    """Queue the add (in the request's transaction) and answer its PENDING event."""
    event = await memories.enqueue_add(db, scope, request, deps)
    return [queued_view(event.id)]


def event_view(event: Event) -> Mem0Event:
    """mem0's event: the results of a SUCCEEDED add as `{id, event, memory}`, a failure's reason."""
    results: list[dict[str, Any]] = []
    if event.results:
        results = [{"id": r.id, "event": r.event, "memory": r.memory} for r in event.results]
    error = event.error
    return Mem0Event(
        id=event.id,
        event_type=event.event_type,
        status=event.status,
        payload=event.payload,
        results=results,
        error=None if isinstance(error, msgspec.UnsetType) else f"{error.code}: {error.message}",
        created_at=event.created_at,
        updated_at=event.updated_at,
    )


async def read_event(db: TenantSession, scope: MemoryAuthScope, event_id: UUID) -> Mem0Event:
    """One event of the caller's (another owner's, like a missing one, is not found)."""
    return event_view(await jobs.get_event(db, scope, event_id))


async def list_events(
    db: TenantSession,
    scope: MemoryAuthScope,
    page: int | None,
    page_size: int | None,
    url: str,
    deps: MemoryDeps,
) -> Mem0EventPage:
    """The caller's events, newest first, one page: a user's own, service_role the tenant's."""
    found = await jobs.list_events(
        db,
        scope,
        {},
        status=None,
        page=page,
        page_size=page_size,
        max_page_size=deps.settings.list_max_page_size,
    )
    following, previous = translate.page_links(url, found.page, found.page_size, found.total)
    return Mem0EventPage(
        count=found.total,
        next=following,
        previous=previous,
        results=[event_view(e) for e in found.results],
    )
