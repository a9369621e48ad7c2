"""Admin API bodies."""

from __future__ import annotations

from typing import Any

import msgspec


class CreateTenantRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    name: str
    ref: str | None = None
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    # When set, users' tokens must carry exactly this `iss`.
    jwt_issuer: str | None = None
