"""Request body of POST /mem/v1/search."""

from __future__ import annotations

from typing import Any

import msgspec


class SearchRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    query: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    scope: str | None = None  # "tenant": service_role searches every owner on purpose
    top_k: int | None = None
    limit: int | None = None  # mem0's older name for top_k
    threshold: float | None = None
    # Any, so that a non-object is refused by the filter compiler as invalid_filter, like the query string.
    filters: Any = None
    memory_type: str | None = None
    include_expired: bool = False
    signals: list[str] | None = (
        None  # subset of semantic, keyword, entity, graph; default: the configured ones
    )
    # mem0's graph memory shape: a top-level `relations` list of what the results assert.
    include_relations: bool = False
