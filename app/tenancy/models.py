"""What the platform knows about a tenant."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.auth.tokens import KeyRing

REF_PATTERN = re.compile(r"^[a-z][a-z0-9]{2,39}$")


@dataclass(frozen=True)
class SealedKey:
    """A signing key as the control plane stores it."""

    kid: str
    secret_sealed: bytes
    master_key_id: str
    valid_until: float | None  # epoch seconds; None for the current key


@dataclass(frozen=True)
class TenantRecord:
    """A control.tenants row with its signing keys, secrets still sealed."""

    ref: str
    name: str
    db_url: str | None
    db_name: str
    owner_role: str
    app_role: str
    app_role_password_sealed: bytes | None
    master_key_id: str | None
    jwt_issuer: str | None
    jwks_url: str | None
    jwks: dict[str, Any] | None
    status: str
    embedding_dims: int | None
    fts_config: str | None
    mem_schema_version: int | None
    keys_version: int
    created_at: datetime
    cors_origins: tuple[str, ...]
    limits: dict[str, int]
    keys: tuple[SealedKey, ...]  # the current key first


@dataclass(frozen=True)
class Tenant:
    """A tenant with its secrets opened: held in process memory only, never written back."""

    ref: str
    name: str
    db_url: str | None
    db_name: str
    owner_role: str
    app_role: str
    app_role_password: str = field(repr=False)
    keys: KeyRing
    jwks_url: str | None
    jwks: dict[str, Any] | None
    status: str
    embedding_dims: int | None
    fts_config: str | None
    mem_schema_version: int | None
    keys_version: int
    created_at: datetime
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to use this tenant's keys
    # The tenant's own limits (control.tenants.limits); absent keys use the platform defaults.
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def has_mem_schema(self) -> bool:
        return self.mem_schema_version is not None

    @property
    def jwt_secret(self) -> str:
        """The current HS256 secret: what new keys are signed with, and users' tokens by default."""
        return self.keys.current.secret

    @property
    def kid(self) -> str:
        return self.keys.current.kid

    def public_view(self) -> dict[str, Any]:
        """What the admin API shows: no secrets beyond the tenant's own keys."""
        return {
            "ref": self.ref,
            "name": self.name,
            "status": self.status,
            "database": self.db_name,
            "embedding_dimensions": self.embedding_dims,
            "fts_config": self.fts_config,
            "mem_schema_version": self.mem_schema_version,
            "created_at": self.created_at.isoformat(),
            "cors_origins": list(self.cors_origins),
        }


@dataclass(frozen=True)
class NewTenant:
    """A tenant about to be created: validated, with its secret, role password and keys generated."""

    ref: str
    name: str
    db_name: str
    owner_role: str
    app_role: str
    app_role_password: str = field(repr=False)
    jwt_secret: str = field(repr=False)
    kid: str
    jwt_issuer: str | None
    jwks_url: str | None
    jwks: dict[str, Any] | None
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class MemSchemaParams:
    """What the mem migrations of one tenant are rendered with; fixed at the tenant's first init."""

    owner_role: str
    app_role: str
    dims: int
    fts_config: str


@dataclass(frozen=True)
class MigrationOutcome:
    version: int
    applied: tuple[str, ...]


@dataclass(frozen=True)
class SchemaInitResult:
    ref: str
    status: str
    schema_version: int | None = None
    applied: tuple[str, ...] = ()
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        # `applied` and `message` appear only when they say something, so a re-run that
        # changes nothing answers exactly as before this field existed.
        out: dict[str, Any] = {"ref": self.ref, "status": self.status, "schema_version": self.schema_version}
        if self.applied:
            out["applied"] = list(self.applied)
        if self.message:
            out["message"] = self.message
        return out
