"""Request bodies: a parsed JSON object turned into a typed struct, camelCase aliases accepted."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from app.errors import ValidationFailed

# camelCase aliases accepted on input for nubase clients.
ALIASES = {
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
        name: str = ALIASES.get(str(key), str(key))
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
