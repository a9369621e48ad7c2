"""Admin API bodies."""

from __future__ import annotations

from typing import Any

import msgspec


class CreateTenantRequest(msgspec.Struct, omit_defaults=True):
    name: str
    ref: str | None = None
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
