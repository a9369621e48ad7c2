"""Admin API bodies."""

from __future__ import annotations

from typing import Any

import msgspec


class CreateTenantRequest(msgspec.Struct, omit_defaults=True):
    name: str
    ref: str | None = None
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None


class TenantKeysResponse(msgspec.Struct):
    """A tenant's API keys and the secret that signs them (and its users' HS256 JWTs)."""

    ref: str
    anon_key: str
    service_role_key: str
    jwt_secret: str
