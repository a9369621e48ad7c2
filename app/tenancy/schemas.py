"""Admin API bodies."""

from __future__ import annotations

from typing import Any

import msgspec


class CreateTenantRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    name: str
    ref: str | None = None
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    # Browser origins (scheme://host[:port]) whose pages may call the API with this tenant's keys.
    cors_origins: list[str] | None = None


class SetCorsOrigins(msgspec.Struct, forbid_unknown_fields=True):
    """The tenant's whole CORS allow-list, replacing the old one ([] = no browser origin)."""

    origins: list[str]
