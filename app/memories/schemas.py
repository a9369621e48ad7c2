"""Request bodies of /mem/v1 and the shapes of its answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

from app.errors import ValidationFailed

MEMORY_TYPES = ("LONG_TERM", "SHORT_TERM", "EPISODIC", "SEMANTIC", "PROCEDURAL")
MAX_MEMORY_CHARS = 20_000
MAX_MESSAGES = 200
MAX_QUERY_CHARS = 4_000


class ContentPart(msgspec.Struct, omit_defaults=True):
    type: str
    text: str | None = None
    image_url: dict[str, Any] | str | None = None


class Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | list[ContentPart]
    name: str | None = None


class AddMemoryRequest(msgspec.Struct, omit_defaults=True):
    messages: str | list[Message]
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] | None = None
    infer: bool = True
    memory_type: str | None = None
    expiration_date: str | None = None


class UpdateMemoryRequest(msgspec.Struct, omit_defaults=True):
    text: str | None = None
    memory: str | None = None  # mem0 alias of text
    metadata: dict[str, Any] | None = None


class DeleteAllRequest(msgspec.Struct, omit_defaults=True):
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    filters: dict[str, Any] | None = None


class SearchRequest(msgspec.Struct, omit_defaults=True):
    query: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    top_k: int | None = None
    limit: int | None = None  # mem0's older name for top_k
    threshold: float | None = None
    # Any, so that a non-object is refused by the filter compiler as invalid_filter, like the query string.
    filters: Any = None
    memory_type: str | None = None
    include_expired: bool = False
    signals: list[str] | None = None  # subset of semantic, keyword, entity; default: all enabled


class ConfigUpdateRequest(msgspec.Struct):
    settings: dict[str, Any]


# camelCase aliases accepted on input for nubase clients.
_ALIASES = {
    "userId": "user_id",
    "agentId": "agent_id",
    "runId": "run_id",
    "topK": "top_k",
    "memoryType": "memory_type",
    "metadataFilters": "filters",
    "expirationDate": "expiration_date",
    "includeExpired": "include_expired",
    "pageSize": "page_size",
    "jwksUrl": "jwks_url",
}

T = TypeVar("T")


def decode_body(data: Any, model: type[T]) -> T:
    """Turn a parsed JSON body into `model`, accepting camelCase aliases; a clear 422 otherwise."""
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.", code="invalid_body")
    normalised: dict[str, Any] = {}
    for key, value in data.items():
        name: str = _ALIASES.get(str(key), str(key))
        if name in normalised:
            raise ValidationFailed(
                f"{name!r} is given twice (as {key!r} and its alias).", code="duplicate_field"
            )
        normalised[name] = value
    try:
        return msgspec.convert(normalised, model, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(_humanise(str(exc)), code="validation_failed") from exc


def _humanise(error: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.top_k`"; keep it, it is precise.
    return error[0].upper() + error[1:] + ("" if error.endswith(".") else ".")


def normalise_memory_type(value: str | None) -> str | None:
    if value is None:
        return None
    upper = value.strip().upper()
    if upper not in MEMORY_TYPES:
        raise ValidationFailed(
            f"memory_type must be one of {', '.join(MEMORY_TYPES)}.", code="invalid_memory_type"
        )
    return upper


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else None


def memory_view(row: Any, *, score: dict[str, Any] | None = None) -> dict[str, Any]:
    """A memory as the API shows it: never its embedding."""
    out = {
        "id": str(row["id"]),
        "memory": row["memory"],
        "user_id": row["user_id"],
        "agent_id": row["agent_id"],
        "run_id": row["run_id"],
        "memory_type": row["memory_type"],
        "metadata": row["metadata"],
        "hash": row["hash"],
        "actor_id": row["actor_id"],
        "role": row["role"],
        "expires_at": iso(row["expires_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if score is not None:
        out.update(score)
    return out


def history_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "memory_id": str(row["memory_id"]),
        "event": row["event"],
        "old_memory": row["old_memory"],
        "new_memory": row["new_memory"],
        "actor": row["actor"],
        "created_at": iso(row["created_at"]),
    }
