"""SQL fragments every repository shares: the owner clause, the memory columns, visibility.

Placeholders are numbered by the caller: a fragment is built for the position its first
parameter takes in the statement (`first_param`), so nothing renumbers SQL text afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

OWNER_FIELDS = ("user_id", "agent_id", "run_id")

MEMORY_COLUMNS = """m.id, m.memory, m.user_id, m.agent_id, m.run_id, m.memory_type, m.metadata,
    m.hash, m.actor_id, m.role, m.expires_at, m.created_at, m.updated_at, m.immutable"""

LIVE = "m.deleted_at IS NULL"
NOT_EXPIRED = "(m.expires_at IS NULL OR m.expires_at > now())"


class OwnerIds(Protocol):
    """The owner triple a query is restricted to (all None: the whole tenant)."""

    @property
    def user_id(self) -> str | None: ...
    @property
    def agent_id(self) -> str | None: ...
    @property
    def run_id(self) -> str | None: ...


@dataclass(frozen=True)
class Clause:
    sql: str
    params: list[Any]

    def next_param(self, first_param: int) -> int:
        """The placeholder number that follows this clause when it started at `first_param`."""
        return first_param + len(self.params)


def owner_clause(owner: OwnerIds, first_param: int, alias: str = "m") -> Clause:
    """`alias.user_id = $n AND ...` for the ids the owner sets; TRUE for a tenant-wide service scope.

    Building the text per combination (instead of `$1 IS NULL OR user_id = $1`) keeps each
    prepared statement's plan able to use the owner indexes.
    """
    parts: list[str] = []
    params: list[Any] = []
    for name in OWNER_FIELDS:
        value = getattr(owner, name)
        if value is not None:
            params.append(value)
            parts.append(f"{alias}.{name} = ${first_param + len(params) - 1}")
    return Clause(" AND ".join(parts) if parts else "TRUE", params)


def visibility(include_expired: bool) -> str:
    return LIVE if include_expired else f"{LIVE} AND {NOT_EXPIRED}"
