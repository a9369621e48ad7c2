"""Errors of the tenancy package: each carries its HTTP status and a stable code."""

from __future__ import annotations

from app.errors import AppError, BadRequest, Conflict, NotFound


class MemModuleDisabled(AppError):
    status_code = 409
    code = "mem_module_disabled"
    message = "The memory module is disabled on this platform (nubase.mem.enabled is false)."


class PgvectorMissing(AppError):
    status_code = 503
    code = "pgvector_unavailable"
    message = (
        "The pgvector extension is not available on this PostgreSQL server; install pgvector 0.8 or newer."
    )


class TenantNotFound(NotFound):
    code = "tenant_not_found"

    def __init__(self, ref: str) -> None:
        super().__init__(f"Unknown tenant {ref!r}.")


class TenantExists(Conflict):
    code = "tenant_exists"

    def __init__(self, ref: str) -> None:
        super().__init__(f"A tenant with ref {ref!r} already exists.")


class InvalidTenant(BadRequest):
    """A bad name, ref, JWKS or secret in a create request; the code says which."""

    code = "invalid_tenant"


class InvalidFtsConfig(BadRequest):
    code = "invalid_fts_config"


class MigrationOutOfOrder(AppError):
    """A numbered file is missing from a database that already has a later one: refuse, never guess."""

    status_code = 500
    code = "mem_migration_out_of_order"


class SigningKeyNotFound(NotFound):
    code = "signing_key_not_found"

    def __init__(self, kid: str) -> None:
        super().__init__(f"The tenant has no retired signing key {kid!r}.")


class CurrentKeyNotRevocable(Conflict):
    code = "current_key_not_revocable"

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"{kid!r} is the tenant's current signing key: rotate the keys first, then revoke it."
        )
