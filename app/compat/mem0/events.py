"""Asynchronous adds and their events: the one place /mem0 meets the job queue.

Until the durable queue is wired in, each of these answers 501 `async_mode_unavailable`; the
routes call nothing else for async work, so wiring the queue means changing these three bodies.
"""

from __future__ import annotations

from uuid import UUID

from app.auth.scope import MemoryAuthScope
from app.compat.mem0.schemas import NotSupported
from app.compat.mem0.views import Mem0AddItem, Mem0Event, Mem0EventPage
from app.core.context import MemoryDeps
from app.db.session import TenantSession
from app.memories.schemas import AddMemoryRequest


def _no_queue() -> NotSupported:
    return NotSupported(
        "async_mode requires the queue, which this service does not have yet.",
        code="async_mode_unavailable",
        hint='Send "async_mode": false to have the add processed before the answer.',
    )


async def accept_async_add(
    db: TenantSession, scope: MemoryAuthScope, request: AddMemoryRequest, deps: MemoryDeps
) -> list[Mem0AddItem]:
    """Queue the add (in the request's transaction) and answer its PENDING event(s), each
    `views.queued_view(event_id)`."""
    raise _no_queue()


async def read_event(db: TenantSession, scope: MemoryAuthScope, event_id: UUID) -> Mem0Event:
    """One event of the caller's (another owner's is not found)."""
    raise _no_queue()


async def list_events(
    db: TenantSession, scope: MemoryAuthScope, page: int | None, page_size: int | None, url: str
) -> Mem0EventPage:
    """The caller's events, newest first, one page."""
    raise _no_queue()
