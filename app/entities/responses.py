"""Response bodies of the /mem/v1/entities routes."""

from __future__ import annotations

import msgspec

from app.core.views import Entity


class EntityPage(msgspec.Struct):
    results: list[Entity]
    total: int
    page: int
    page_size: int
