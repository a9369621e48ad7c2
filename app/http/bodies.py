"""Request bodies: JSON turned into a typed struct, camelCase aliases accepted, unknown fields refused.

Handlers declare `data: SomeRequest` with `dto=StrictBody[SomeRequest]`: Litestar then hands us the
raw bytes (so the error codes and statuses are ours, not its validation errors) and takes the body's
OpenAPI schema from the struct (so /docs shows the fields, not `{"type": "object"}`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Generator
from typing import Any, ClassVar, TypeVar

import msgspec
from litestar.dto import AbstractDTO, DTOConfig, DTOFieldDefinition
from litestar.openapi.spec import Reference, Schema
from litestar.typing import FieldDefinition
from msgspec import inspect as mi

from app.errors import BadRequest, ValidationFailed
from app.http.safe_json import load_json

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
    "jwtIssuer": "jwt_issuer",
}

T = TypeVar("T")

_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<field>.*?)`(?: - at `(?P<path>[^`]*)`)?$")
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def decode_body(data: Any, model: type[T]) -> T:
    """Turn a parsed JSON body into `model`, accepting camelCase aliases; a clear 4xx otherwise."""
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.", code="invalid_body")
    known = _top_level_fields(model)
    normalised: dict[str, Any] = {}
    for key, value in data.items():
        name: str = ALIASES.get(str(key), str(key))
        if known is not None and name not in known:
            # Before any type check or rule: a misspelt field is the likeliest cause of what follows.
            raise unknown_field(str(key), _candidates(known, top_level=True))
        if name in normalised:
            raise ValidationFailed(
                f"{name!r} is given twice (as {key!r} and its alias).", code="duplicate_field"
            )
        normalised[name] = value
    try:
        return msgspec.convert(normalised, model, strict=True)
    except msgspec.ValidationError as exc:
        nested = _UNKNOWN_FIELD.match(str(exc))
        if nested is not None:
            path = nested["path"] or "$"
            fields = _field_names(_type_at(mi.type_info(model), path)) or set()
            raise unknown_field(nested["field"], _candidates(fields, top_level=path == "$"), path) from exc
        raise ValidationFailed(_humanise(str(exc)), code="validation_failed") from exc


def unknown_field(field: str, candidates: list[str], path: str = "$") -> BadRequest:
    """The refusal of a field the body does not have, with the closest known name when there is one."""
    where = "" if path == "$" else f" in {path}"
    details: dict[str, Any] = {"field": field}
    if path != "$":
        details["path"] = path
    message = f"Unknown field {field!r}{where}"
    close = difflib.get_close_matches(field, candidates, n=1)
    if close:
        details["suggestion"] = close[0]
        message += f"; did you mean {close[0]!r}?"
    else:
        message += f"; known fields: {', '.join(sorted(set(candidates)))}."
    return BadRequest(message, code="unknown_field", details=details)


def _candidates(fields: set[str] | frozenset[str], *, top_level: bool) -> list[str]:
    aliases = [alias for alias, name in ALIASES.items() if name in fields] if top_level else []
    return sorted(fields) + aliases


_TOP_LEVEL_FIELDS: dict[type[Any], frozenset[str] | None] = {}


def _top_level_fields(model: type[Any]) -> frozenset[str] | None:
    """A body model's field names, worked out once per model (msgspec.inspect walks the whole
    type each time: a measurable part of a search's CPU time, issue 13)."""
    if model not in _TOP_LEVEL_FIELDS:
        names = _field_names(mi.type_info(model))
        _TOP_LEVEL_FIELDS[model] = frozenset(names) if names is not None else None
    return _TOP_LEVEL_FIELDS[model]


def _field_names(info: mi.Type | None) -> set[str] | None:
    struct = _member(info, mi.StructType)
    return {f.encode_name for f in struct.fields} if isinstance(struct, mi.StructType) else None


def _member(info: mi.Type | None, kind: type[mi.Type]) -> mi.Type | None:
    """`info` itself, or its member of `kind` when it is a union (`str | list[Message]`)."""
    if isinstance(info, mi.UnionType):
        return next((t for t in info.types if isinstance(t, kind)), None)
    return info if isinstance(info, kind) else None


def _type_at(info: mi.Type | None, path: str) -> mi.Type | None:
    """The type msgspec was decoding at `path` (`$.messages[0].content[1]`)."""
    for name, index in _PATH_STEP.findall(path):
        if index:
            listed = _member(info, mi.ListType)
            info = listed.item_type if isinstance(listed, mi.ListType) else None
        else:
            struct = _member(info, mi.StructType)
            fields = struct.fields if isinstance(struct, mi.StructType) else ()
            info = next((f.type for f in fields if f.encode_name == name), None)
    return info


def _humanise(error: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.top_k`"; keep it, it is precise.
    return error[0].upper() + error[1:] + ("" if error.endswith(".") else ".")


def parse_json(raw: bytes) -> Any:
    return load_json(raw, what="The request body", malformed="malformed_json", deep="invalid_body")


class StrictBody(AbstractDTO[T]):
    """Decodes the body with `decode_body` and documents it with the struct's schema.

    Not a field-mapping DTO: it keeps no backend, so Litestar's own decoding and its validation
    errors never run on these bodies. Use with `return_dto=None`.
    """

    config: ClassVar[DTOConfig] = DTOConfig()

    def decode_bytes(self, value: bytes) -> Any:
        return self.convert(parse_json(value))

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        return self.convert(value)

    def convert(self, parsed: Any) -> Any:
        return decode_body(parsed, self.model_type)

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition]:
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        return None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        annotated = FieldDefinition.from_annotation(
            cls.model_type, kwarg_definition=field_definition.kwarg_definition
        )
        schema: Reference | Schema = schema_creator.for_field_definition(annotated)
        return schema
