"""Tabby's request shapes to the memory services' requests, and memories back to Tabby's view.

Only shapes change here: every check, rule and query stays in the services underneath.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from app.compat.tabby.schemas import TabbyAddImageRequest, TabbyAddRequest
from app.core.schemas import normalise_memory_type
from app.core.views import Memory
from app.errors import BadRequest
from app.memories.schemas import AddMemoryRequest, ContentPart, Message

# What a memory is when nobody classified it (auto_classify false and no type given).
UNCLASSIFIED_TYPE = "LONG_TERM"
# Tabby's add_image labels its memories so when the caller gives no metadata.
IMAGE_METADATA = {"source": "screen_capture"}

M = TypeVar("M", bound=Memory)


def as_tabby(memory: M) -> M:
    """A memory as Tabby shows it: its type also in `metadata.memory_type`, where Tabby kept it
    (its memory panels group by that key). The column stays the one truth; see `add_request`."""
    return msgspec.structs.replace(memory, metadata={**memory.metadata, "memory_type": memory.memory_type})


def _explicit_type(field: str | None, metadata: dict[str, Any]) -> str | None:
    """The caller's own type: the `memory_type` field or, as Tabby sent it, `metadata.memory_type`."""
    in_metadata = metadata.pop("memory_type", None)
    if in_metadata is not None and not isinstance(in_metadata, str):
        raise BadRequest("metadata.memory_type must be a string.", code="invalid_memory_type")
    chosen = normalise_memory_type(field)
    from_metadata = normalise_memory_type(in_metadata)
    if chosen is not None and from_metadata is not None and chosen != from_metadata:
        raise BadRequest(
            "memory_type and metadata.memory_type disagree: give the type once.", code="conflicting_fields"
        )
    return chosen or from_metadata


def add_request(
    data: TabbyAddRequest | TabbyAddImageRequest, messages: str | list[Message], metadata: dict[str, Any]
) -> tuple[AddMemoryRequest, str | None]:
    """The /mem/v1 add for a Tabby add, and the caller's explicit type (None when the caller gave none).

    `metadata.memory_type` moves to the memory's type column, so a stored memory never carries
    two types that could disagree.
    """
    metadata = dict(metadata)
    explicit = _explicit_type(data.memory_type, metadata)
    forced = explicit if explicit is not None or data.auto_classify else UNCLASSIFIED_TYPE
    request = AddMemoryRequest(
        messages=messages, user_id=data.user_id, metadata=metadata or None, memory_type=forced
    )
    return request, explicit


def image_messages(data: TabbyAddImageRequest) -> list[Message]:
    """Tabby's image turn: the context (when given), then the image, both from the user."""
    url = data.image_url.strip()
    if not url:
        raise BadRequest("image_url must not be empty.", code="empty_image_url")
    messages = []
    if data.context is not None and data.context.strip():
        messages.append(Message(role="user", content=data.context))
    messages.append(Message(role="user", content=[ContentPart(type="image_url", image_url={"url": url})]))
    return messages
