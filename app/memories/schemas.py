"""Request bodies of the /mem/v1 memory routes."""

from __future__ import annotations

from typing import Any

import msgspec


class ContentPart(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    type: str
    text: str | None = None
    image_url: dict[str, Any] | str | None = None


class Message(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    role: str
    content: str | list[ContentPart]
    name: str | None = None


class AddMemoryRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    messages: str | list[Message]
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] | None = None
    infer: bool = True
    memory_type: str | None = None
    expiration_date: str | None = None
    # true: the memories this add writes are never changed by a later add or a PUT.
    immutable: bool = False
    # Extra guidance for the model's extraction, for this add only (at most 4000 characters).
    custom_instructions: str | None = None
    # true: answer 202 at once with a PENDING event; a worker runs the add (GET /mem/v1/events/{id}).
    async_: bool = msgspec.field(default=False, name="async")


class UpdateMemoryRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    text: str | None = None
    memory: str | None = None  # mem0 alias of text
    metadata: dict[str, Any] | None = None


class ConfigUpdateRequest(msgspec.Struct, forbid_unknown_fields=True):
    settings: dict[str, Any]
