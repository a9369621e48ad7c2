"""Response bodies of the platform admin routes.

The routes convert the platform's own views (`Tenant.public_view`, `SchemaInitResult.as_dict`)
into these, so what is public about a tenant stays defined in one place.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType


class TenantView(msgspec.Struct):
    """A tenant as the admin API shows it: no secrets."""

    ref: str
    name: str
    status: str
    database: str
    embedding_dimensions: int | None
    fts_config: str | None
    mem_schema_version: int | None
    created_at: str
    cors_origins: list[str]


class CreatedTenant(TenantView):
    """The answer that carries the tenant's keys and JWT secret: store them now."""

    anon_key: str
    service_role_key: str
    jwt_secret: str
    kid: str  # the signing key's id, in the header of every key signed with it


class TenantKeys(msgspec.Struct):
    """A tenant's API keys, freshly signed with its current secret (which also signs its users'
    HS256 JWTs), and that secret: admin only. Keys are not stored: each call signs new ones."""

    ref: str
    anon_key: str
    service_role_key: str
    jwt_secret: str
    kid: str


class RotatedKeys(TenantKeys):
    """New keys from a new secret. The previous secret verifies until previous_valid_until."""

    previous_kid: str | None
    previous_valid_until: str | None  # ISO 8601; equal to now for a rotation without grace
    keys_version: int


class RevokedKeys(msgspec.Struct):
    """The retired signing keys just deleted: whatever they signed is refused from now on."""

    ref: str
    revoked: list[str]
    keys_version: int


class TenantList(msgspec.Struct):
    tenants: list[TenantView]


class SchemaInitView(msgspec.Struct, omit_defaults=True):
    ref: str
    status: str  # "ok" or "error"
    schema_version: int | None
    applied: list[str] | UnsetType = UNSET  # the migration files this run applied, when any
    message: str | UnsetType = UNSET  # why it failed


class SchemaInitResults(msgspec.Struct):
    tenants: list[SchemaInitView]


class LimitValues(msgspec.Struct, omit_defaults=True):
    user_requests_per_second: int | None = None
    user_adds_per_second: int | None = None
    service_requests_per_second: int | None = None
    service_adds_per_second: int | None = None
    max_in_flight: int | None = None


class TenantLimitsView(msgspec.Struct):
    """A tenant's own limits (`limits`, only what was set) and what applies (`effective`)."""

    ref: str
    limits: LimitValues
    effective: LimitValues
