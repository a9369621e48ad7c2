"""Response body of POST /mem/v1/search (the request is in `schemas`)."""

from __future__ import annotations

import msgspec

from app.core.views import ScoredMemory


class SearchResponse(msgspec.Struct):
    """Best first by the fused `score`; which rows `threshold` keeps: see app.core.retrieval.service."""

    results: list[ScoredMemory]
