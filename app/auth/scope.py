"""MemoryAuthScope: who is calling, computed once per request and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from app.db.sql import OWNER_FIELDS
from app.errors import BadRequest, Forbidden

__all__ = ["MAX_ID_LENGTH", "OWNER_FIELDS", "TENANT_SCOPE", "MemoryAuthScope", "Owner"]

MAX_ID_LENGTH = 255
# What a service_role read names to mean "every owner of the tenant" on purpose.
TENANT_SCOPE = "tenant"


@dataclass(frozen=True)
class Owner:
    """The owner triple a query is restricted to. All None means the whole tenant (service_role only)."""

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    @property
    def is_tenant_wide(self) -> bool:
        return self.user_id is None and self.agent_id is None and self.run_id is None

    def as_dict(self) -> dict[str, str | None]:
        return {"user_id": self.user_id, "agent_id": self.agent_id, "run_id": self.run_id}


@dataclass(frozen=True)
class MemoryAuthScope:
    tenant_ref: str
    role: str  # "service_role" or "authenticated"
    user_id: str | None  # the JWT sub for users; None for service_role
    session_id: str | None = None

    @property
    def is_service(self) -> bool:
        return self.role == "service_role"

    @property
    def actor(self) -> str:
        """Who a history row says did it."""
        return "service_role" if self.is_service else f"user:{self.user_id}"

    def owner(
        self,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        *,
        require_owner: bool = False,
    ) -> Owner:
        """The owner a request may act on, from the ids it names.

        A user is pinned to its `sub`: naming anyone else is a 403. agent_id and run_id
        only ever narrow the scope.
        """
        for name, value in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise BadRequest(f"{name} must be a non-empty string.", code="invalid_owner_id")
            if value is not None and len(value) > MAX_ID_LENGTH:
                raise BadRequest(
                    f"{name} is longer than {MAX_ID_LENGTH} characters.", code="invalid_owner_id"
                )
        if not self.is_service:
            if user_id is not None and user_id != self.user_id:
                raise Forbidden(
                    "An authenticated user may only act on its own memories; "
                    "user_id must be omitted or equal the token's subject.",
                    code="user_scope_violation",
                )
            user_id = self.user_id
        owner = Owner(user_id=user_id, agent_id=agent_id, run_id=run_id)
        if require_owner and owner.is_tenant_wide:
            raise BadRequest(
                "At least one of user_id, agent_id or run_id is required.",
                code="owner_required",
            )
        return owner

    def read_owner(
        self,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        *,
        requested_scope: str | None = None,
    ) -> Owner:
        """The owner a search or list reads: an owner id is required unless service_role says
        `scope: tenant`, because a forgotten user_id must never pull everyone's memories into a
        prompt (mem0 refuses owner-less searches too)."""
        if requested_scope is not None and requested_scope != TENANT_SCOPE:
            raise BadRequest(f"scope may only be {TENANT_SCOPE!r}.", code="invalid_scope")
        if requested_scope == TENANT_SCOPE and not self.is_service:
            raise Forbidden(
                "Reading the whole tenant needs the service_role key.", code="service_role_required"
            )
        owner = self.owner(user_id, agent_id, run_id)
        if owner.is_tenant_wide and requested_scope is None:
            raise BadRequest(
                "At least one of user_id, agent_id or run_id is required.",
                code="owner_required",
                hint=f'To read every owner of the tenant on purpose, send scope "{TENANT_SCOPE}".',
            )
        return owner

    def check_named_users(self, named: set[str]) -> None:
        """Refuse a user whose filters name any other user."""
        if not self.is_service and any(u != self.user_id for u in named):
            raise Forbidden(
                "Filters may not name another user's user_id.",
                code="user_scope_violation",
            )
