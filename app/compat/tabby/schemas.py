"""Request bodies of Tabby's /memory routes, with the field names of its FastAPI server.

`user_id` is optional where Tabby requires it: a signed-in user's token names its user, and the
service_role key without one is refused by the scope (400 owner_required), as on /mem/v1.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.memories.schemas import Message


class TabbyAddRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    messages: str | list[Message]
    user_id: str | None = None
    metadata: dict[str, Any] | None = None
    # True: the memory type the pipeline chose for each fact; False: the default type (LONG_TERM).
    auto_classify: bool = True
    # The caller's own type (also read from metadata.memory_type, where Tabby keeps it).
    memory_type: str | None = None


class TabbyAddImageRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    image_url: str
    context: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] | None = None
    auto_classify: bool = True
    memory_type: str | None = None


class TabbySearchRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    query: str
    user_id: str | None = None
    limit: int | None = None  # the tenant's search.default-top-k when absent
    memory_type: str | None = None


class TabbyGetAllRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    user_id: str | None = None
    memory_type: str | None = None
    # Not in Tabby's server, which returned every memory: the page is as large as the service
    # allows, and `memories.total` says when there are more.
    page: int | None = None
    page_size: int | None = None


class TabbyUpdateRequest(msgspec.Struct, forbid_unknown_fields=True):
    memory_id: str
    data: str
