"""Admin API bodies."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


class CreateTenantRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    name: str
    ref: str | None = None
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    # When set, users' tokens must carry exactly this `iss`.
    jwt_issuer: str | None = None
    # Browser origins (scheme://host[:port]) whose pages may call the API with this tenant's keys.
    cors_origins: list[str] | None = None


class SetCorsOrigins(msgspec.Struct, forbid_unknown_fields=True):
    """The tenant's whole CORS allow-list, replacing the old one ([] = no browser origin)."""

    origins: list[str]


_Limit = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class TenantLimitsRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """A tenant's own limits, replacing the previous ones; an absent key uses the platform default."""

    user_requests_per_second: _Limit | None = None
    user_adds_per_second: _Limit | None = None
    service_requests_per_second: _Limit | None = None
    service_adds_per_second: _Limit | None = None
    max_in_flight: _Limit | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}
