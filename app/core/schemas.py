"""What every memory feature shares: the memory types, size limits, and time formatting."""

from __future__ import annotations

from datetime import datetime
from typing import overload

from app.errors import ValidationFailed

MEMORY_TYPES = ("LONG_TERM", "SHORT_TERM", "EPISODIC", "SEMANTIC", "PROCEDURAL")
MAX_MEMORY_CHARS = 20_000
MAX_MESSAGES = 200
MAX_QUERY_CHARS = 4_000


def normalise_memory_type(value: str | None) -> str | None:
    if value is None:
        return None
    upper = value.strip().upper()
    if upper not in MEMORY_TYPES:
        raise ValidationFailed(
            f"memory_type must be one of {', '.join(MEMORY_TYPES)}.", code="invalid_memory_type"
        )
    return upper


@overload
def iso(dt: datetime) -> str: ...
@overload
def iso(dt: None) -> None: ...
def iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else None
