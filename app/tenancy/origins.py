"""A tenant's CORS allow-list: browser origins, checked and written in one canonical form."""

from __future__ import annotations

import re

from app.tenancy.errors import InvalidTenant

MAX_ORIGINS = 50
# scheme://host[:port], as a browser sends it in Origin: lowercase, no path, no trailing slash.
_ORIGIN = re.compile(r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?)(:[0-9]{1,5})?$")


def normalize_origins(origins: list[str]) -> tuple[str, ...]:
    """Lowercased, de-duplicated origins, or InvalidTenant (400 invalid_cors_origin) naming the bad one.

    No wildcard and no "null": a tenant lists the exact pages that may use its keys.
    """
    if len(origins) > MAX_ORIGINS:
        raise InvalidTenant(f"At most {MAX_ORIGINS} CORS origins per tenant.", code="invalid_cors_origin")
    out: dict[str, None] = {}
    for raw in origins:
        origin = raw.strip().lower()
        port = origin.rpartition(":")[2]
        if not _ORIGIN.fullmatch(origin) or (port.isdigit() and not 1 <= int(port) <= 65535):
            raise InvalidTenant(
                f"{raw!r} is not a browser origin: give scheme://host[:port], e.g. https://app.example.com "
                "(no path, no trailing slash, no wildcard).",
                code="invalid_cors_origin",
            )
        out[origin] = None
    return tuple(out)
