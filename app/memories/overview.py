"""What Studio's overview and owner picker show: counts by type and owner, adds per day.

Read-only and owner-scoped like every other read: a user's scope sees its own memories only,
service_role the tenant (or the owner it names).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.scope import TENANT_SCOPE, MemoryAuthScope, Owner
from app.core.schemas import MEMORY_TYPES
from app.db.session import TenantSession
from app.memories import repo

MAX_OWNERS_LISTED = 50
DAYS_CHARTED = 30


@dataclass(frozen=True)
class Owners:
    """Per owner field, its most frequent values with their live memory counts."""

    user_id: list[tuple[str, int]]
    agent_id: list[tuple[str, int]]
    run_id: list[tuple[str, int]]


@dataclass(frozen=True)
class Overview:
    by_type: dict[str, int]
    owners: Owners
    adds_per_day: list[tuple[str, int]]

    @property
    def total(self) -> int:
        return sum(self.by_type.values())


def _owner(scope: MemoryAuthScope, owner_ids: dict[str, str | None]) -> Owner:
    """The owner named, or (service_role naming none) the whole tenant, on purpose."""
    ids = [owner_ids.get(name) for name in ("user_id", "agent_id", "run_id")]
    requested = TENANT_SCOPE if scope.is_service and not any(ids) else None
    return scope.read_owner(*ids, requested_scope=requested)


async def type_counts(
    db: TenantSession, scope: MemoryAuthScope, owner_ids: dict[str, str | None]
) -> dict[str, int]:
    """Live, unexpired memories per memory type (every type present, 0 when none)."""
    counts = await repo.counts_by_type(await db.connection(), _owner(scope, owner_ids))
    return {t: counts.get(t, 0) for t in MEMORY_TYPES}


async def owners(db: TenantSession, scope: MemoryAuthScope) -> Owners:
    found = await repo.owners_with_counts(await db.connection(), _owner(scope, {}), limit=MAX_OWNERS_LISTED)
    return Owners(user_id=found["user_id"], agent_id=found["agent_id"], run_id=found["run_id"])


async def overview(db: TenantSession, scope: MemoryAuthScope) -> Overview:
    conn = await db.connection()
    return Overview(
        by_type=await type_counts(db, scope, {}),
        owners=await owners(db, scope),
        adds_per_day=await repo.adds_per_day(conn, _owner(scope, {}), days=DAYS_CHARTED),
    )
