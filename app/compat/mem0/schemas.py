"""Request bodies of the /mem0 routes, as the mem0 SDKs and REST clients send them.

Every field mem0 documents is declared, so a misspelt one is still refused (unknown_field).
Three kinds of field:

* honoured: mapped onto our request (owner ids, messages, metadata, infer, expiration_date, immutable,
  custom_instructions, filters, top_k/limit, threshold, show_expired, page/page_size, output_format,
  async_mode, and `enable_graph` on search and list: the answer gains mem0's graph `relations` list);
* accepted and without effect here: `rerank` (our ranking is always the fused one), `version`,
  `org_id`/`project_id` (the key names the tenant), `enable_graph` on add (relations are always
  extracted with the facts, in the same model call);
* not supported: any other feature field that is set answers 501 naming it (see `unsupported`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.errors import AppError, BadRequest
from app.memories.schemas import Message


class NotSupported(AppError):
    """A mem0 platform feature this service does not have: 501, naming it."""

    status_code = 501
    code = "not_supported"
    message = "This mem0 platform feature is not supported here."


class _Owned(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True, kw_only=True):
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    app_id: str | None = None
    org_id: str | None = None
    project_id: str | None = None
    version: str | None = None
    output_format: str | None = None


class Mem0AddRequest(_Owned, kw_only=True):
    messages: str | list[Message]  # /mem/v1's messages: text, or content parts with images
    filters: Any = None  # the v3 SDK's place for the owner ids
    metadata: dict[str, Any] | None = None
    infer: bool = True
    async_mode: bool = True
    expiration_date: str | None = None
    immutable: bool = False
    custom_instructions: str | None = None
    enable_graph: bool | None = None
    # Not supported when set (501):
    agent_custom_instructions: Any = None
    custom_categories: Any = None
    includes: Any = None
    excludes: Any = None
    structured_data_schema: Any = None
    prompt_profile_id: Any = None
    temporal_reasoning: Any = None
    timezone: Any = None
    observation_datetime: Any = None
    observation_date: Any = None
    timestamp: Any = None


class Mem0ListRequest(_Owned, kw_only=True):
    filters: Any = None
    page: int | None = None
    page_size: int | None = None
    show_expired: bool = False
    enable_graph: bool | None = None  # true: the answer adds `relations`
    # Not supported when set (501):
    start_date: Any = None
    end_date: Any = None
    categories: Any = None
    fields: Any = None
    keywords: Any = None
    latest_only: Any = None


class Mem0SearchRequest(_Owned, kw_only=True):
    query: str
    filters: Any = None
    top_k: int | None = None
    limit: int | None = None
    threshold: float | None = None
    rerank: bool | None = None
    show_expired: bool = False
    metadata: dict[str, Any] | None = None  # metadata to match, ANDed with filters
    enable_graph: bool | None = None  # true: the answer adds `relations`
    # Not supported when set (501):
    reference_date: Any = None
    fields: Any = None
    categories: Any = None
    latest_only: Any = None
    keyword_search: Any = None


class Mem0UpdateRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    text: str | None = None
    metadata: dict[str, Any] | None = None
    # Not supported when set (501):
    expiration_date: Any = None
    timestamp: Any = None


class Mem0BatchItem(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    memory_id: str
    text: str | None = None
    metadata: dict[str, Any] | None = None


class Mem0BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    memories: list[Mem0BatchItem]


# Fields that change what is stored or found and that this service cannot honour.
UNSUPPORTED: dict[type[msgspec.Struct], tuple[str, ...]] = {
    Mem0AddRequest: (
        "agent_custom_instructions",
        "custom_categories",
        "includes",
        "excludes",
        "structured_data_schema",
        "prompt_profile_id",
        "temporal_reasoning",
        "timezone",
        "observation_datetime",
        "observation_date",
        "timestamp",
    ),
    Mem0ListRequest: ("start_date", "end_date", "categories", "fields", "keywords", "latest_only"),
    Mem0SearchRequest: ("reference_date", "fields", "categories", "latest_only", "keyword_search"),
    Mem0UpdateRequest: ("expiration_date", "timestamp"),
}


def refuse_unsupported(request: msgspec.Struct) -> None:
    """501 for the first unsupported feature the request sets; None and false mean "not set"."""
    for name in UNSUPPORTED.get(type(request), ()):
        if getattr(request, name) not in (None, False):
            raise NotSupported(
                f"The mem0 field {name!r} is not supported by this service.",
                code="mem0_field_not_supported",
                details={"field": name},
                hint="Leave it out; README 'Coming from mem0' lists what is and is not supported.",
            )
    output_format = getattr(request, "output_format", None)
    if output_format not in (None, "v1.0", "v1.1"):
        raise BadRequest("output_format must be v1.0 or v1.1.", code="invalid_output_format")
