"""Response body of POST /mem/v1/search (the request is in `schemas`)."""

from __future__ import annotations

import msgspec

from app.core.views import ScoredMemory


class SearchResponse(msgspec.Struct):
    """Best first; `score` is the fused score that `threshold` applies to."""

    results: list[ScoredMemory]
