"""Response body of POST /mem/v1/search (the request is in `schemas`)."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from app.core.views import Relation, ScoredMemory


class SearchResponse(msgspec.Struct):
    """Best first by the fused `score`; which rows `threshold` keeps: see app.core.retrieval.service.

    `relations` only with `include_relations: true`: the open relations the results assert."""

    results: list[ScoredMemory]
    relations: list[Relation] | UnsetType = UNSET
