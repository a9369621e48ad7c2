"""Compile mem0's filter language into a parenthesised SQL WHERE fragment with asyncpg `$n` parameters.

The fragment reads the table `mem.memories` through the alias `m` and only ever narrows: the caller
ANDs it with its own owner clause, and every piece emitted here is wrapped in parentheses.

Semantics worth knowing:

* Every condition means "the row definitely matches". A NOT is the exact complement of what it wraps:
  it is compiled as `NOT COALESCE(inner, FALSE)`, so rows where the inner condition is unknown
  (a NULL column, a missing metadata key) are kept by the NOT rather than silently dropped.
* `ne` and `nin` are the complements of `eq` and `in`: rows whose column is NULL or whose metadata
  lacks the key DO match `{"ne": x}` and `{"nin": [...]}` (SQL `IS DISTINCT FROM`).
* Metadata keys are flat: `{"a.b": 1}` looks up the top-level key named "a.b", never a nested path.
  Keys that name a column (`user_id`, `created_at`, ...) always mean the column.
* `contains` / `icontains` on metadata are a substring match when the stored value is a string and an
  element match when it is an array (`{"tags": {"contains": "x"}}` matches `{"tags": ["x", "y"]}`;
  `icontains` compares the string elements ignoring case).
* `gt`/`gte`/`lt`/`lte` on metadata compare numerically against stored numbers and byte-wise
  (`COLLATE "C"`) against stored strings; a stored value of the other type never matches.
* `*` (`{"f": "*"}` or `{"f": {"*": true}}`) means the column is not NULL / the metadata key is present
  with a non-null value; to match the literal string "*" write `{"f": {"eq": "*"}}`.
* `owner_values` collects the user_id / agent_id / run_id values named by `eq` or `in` anywhere in the
  tree, including under OR and NOT, so the caller can refuse ids its caller may not name.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.auth.scope import MemoryAuthScope
from app.core.schemas import MEMORY_TYPES, normalise_memory_type
from app.db.sql import OWNER_FIELDS
from app.errors import InvalidFilter

MAX_DEPTH = 8
MAX_CONDITIONS = 64
MAX_LIST_ITEMS = 1000

LOGICAL_KEYS = frozenset({"AND", "OR", "NOT"})
TIMESTAMP_FIELDS = ("created_at", "updated_at")
OPERATORS = frozenset({"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "icontains", "*"})
RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}

METADATA_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_PATH_SEGMENT_PATTERN = re.compile(r"[A-Za-z_*][A-Za-z0-9_]*")

_COLUMN_OPERATORS: dict[str, frozenset[str]] = {
    **{name: frozenset({"eq", "ne", "in", "nin", "contains", "icontains", "*"}) for name in OWNER_FIELDS},
    "memory_type": frozenset({"eq", "ne", "in", "nin", "*"}),
    **{
        name: frozenset({"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "*"}) for name in TIMESTAMP_FIELDS
    },
}


@dataclass(frozen=True)
class CompiledFilter:
    """A WHERE fragment, its parameter values, and the owner ids it names."""

    sql: str
    params: list[Any]
    owner_values: dict[str, set[str]]


def compile_filters(filters: Mapping[str, Any] | None, *, first_param: int) -> CompiledFilter:
    """Compile a mem0 filter object into SQL whose placeholders start at `$first_param`."""
    if first_param < 1:
        raise ValueError("first_param must be at least 1")
    compiler = _Compiler(first_param)
    if filters is None:
        return compiler.result("TRUE")
    if not isinstance(filters, Mapping):
        raise _invalid("Filters must be a JSON object.", "filters")
    if not filters:
        return compiler.result("TRUE")
    return compiler.result(compiler.compile_object(filters, "filters", depth=1))


def _invalid(message: str, path: str) -> InvalidFilter:
    return InvalidFilter(message, details={"path": path})


def _child_path(path: str, key: str) -> str:
    if _PATH_SEGMENT_PATTERN.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class _Compiler:
    """Walks one filter object, collecting parameters and owner values as it emits SQL."""

    next_param: int
    params: list[Any] = field(default_factory=list)
    owner_values: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name in OWNER_FIELDS})
    condition_count: int = 0

    def result(self, sql: str) -> CompiledFilter:
        return CompiledFilter(sql=sql, params=self.params, owner_values=self.owner_values)

    def bind(self, value: Any) -> str:
        placeholder = f"${self.next_param}"
        self.params.append(value)
        self.next_param += 1
        return placeholder

    def compile_object(self, filters: Mapping[Any, Any], path: str, *, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise _invalid(f"Filters may nest at most {MAX_DEPTH} levels deep.", path)
        if not filters:
            raise _invalid("A nested filter object must name at least one condition.", path)
        parts: list[str] = []
        for key, value in filters.items():
            if not isinstance(key, str):
                raise _invalid("Filter keys must be strings.", path)
            key_path = _child_path(path, key)
            if key in LOGICAL_KEYS:
                parts.append(self.compile_logical(key, value, key_path, depth=depth))
            elif key.upper() in LOGICAL_KEYS:
                raise _invalid(
                    f"Logical operators are upper-case: use '{key.upper()}', not '{key}'.", key_path
                )
            else:
                parts.append(self.compile_field(key, value, key_path))
        return _and(parts)

    def compile_logical(self, operator: str, value: Any, path: str, *, depth: int) -> str:
        if operator == "NOT" and isinstance(value, Mapping):
            members: list[Any] = [value]
        elif isinstance(value, list):
            if not value:
                raise _invalid(f"'{operator}' needs at least one filter object.", path)
            members = value
        else:
            expected = (
                "a filter object or a list of them" if operator == "NOT" else "a list of filter objects"
            )
            raise _invalid(f"'{operator}' takes {expected}, not {_type_name(value)}.", path)
        compiled: list[str] = []
        for index, member in enumerate(members):
            member_path = f"{path}[{index}]" if isinstance(value, list) else path
            if not isinstance(member, Mapping):
                raise _invalid(f"Each item of '{operator}' must be a filter object.", member_path)
            compiled.append(self.compile_object(member, member_path, depth=depth + 1))
        if operator == "OR":
            return compiled[0] if len(compiled) == 1 else "(" + " OR ".join(compiled) + ")"
        if operator == "NOT":
            # COALESCE makes NOT the exact complement: unknown (NULL) inside counts as "no match".
            return f"(NOT COALESCE({_and(compiled)}, FALSE))"
        return _and(compiled)

    def compile_field(self, name: str, value: Any, path: str) -> str:
        if isinstance(value, Mapping):
            if not value:
                raise _invalid(f"The operator object for '{name}' is empty.", path)
            operations = list(value.items())
        elif isinstance(value, list | tuple):
            raise _invalid(
                f"A list is not a value for '{name}': use {{\"in\": [...]}} to match any of several values"
                ' or {"eq": [...]} to match a JSON array.',
                path,
            )
        elif value == "*":
            operations = [("*", True)]
        else:
            operations = [("eq", value)]
        for operator, _ in operations:
            if not isinstance(operator, str) or operator not in OPERATORS:
                raise _invalid(
                    f"Unknown filter operator '{operator}' for '{name}';"
                    f" use one of {', '.join(sorted(OPERATORS))}.",
                    _child_path(path, str(operator)),
                )
        self.condition_count += len(operations)
        if self.condition_count > MAX_CONDITIONS:
            raise _invalid(f"Filters may hold at most {MAX_CONDITIONS} conditions.", path)
        if name in _COLUMN_OPERATORS:
            return self.compile_column(name, operations, path)
        if not METADATA_KEY_PATTERN.fullmatch(name):
            raise _invalid(
                f"'{name}' is not a valid metadata key: use letters, digits, '_', '.' or '-',"
                " start with a letter or '_', at most 64 characters.",
                path,
            )
        return self.compile_metadata(name, operations, path)

    def compile_column(self, name: str, operations: list[tuple[str, Any]], path: str) -> str:
        allowed = _COLUMN_OPERATORS[name]
        column = f"m.{name}"
        parse: Callable[[Any, str], Any]
        if name in TIMESTAMP_FIELDS:
            parse, array_type = _parse_timestamp, "timestamptz[]"
        elif name == "memory_type":
            parse, array_type = _parse_memory_type, "text[]"
        else:
            parse, array_type = _parse_text, "text[]"
        parts: list[str] = []
        for operator, operand in operations:
            operand_path = _child_path(path, operator)
            if operator not in allowed:
                raise _invalid(f"Operator '{operator}' is not supported for '{name}'.", operand_path)
            if operator == "*":
                _require_wildcard_true(operand, operand_path)
                parts.append(f"({column} IS NOT NULL)")
            elif operator in ("eq", "ne"):
                parsed = parse(operand, operand_path)
                self.note_owner(name, [parsed] if operator == "eq" else [])
                comparison = "=" if operator == "eq" else "IS DISTINCT FROM"
                parts.append(f"({column} {comparison} {self.bind(parsed)})")
            elif operator in ("in", "nin"):
                items = [
                    parse(item, f"{operand_path}[{i}]") for i, item in enumerate(_list(operand, operand_path))
                ]
                self.note_owner(name, items if operator == "in" else [])
                membership = f"{column} = ANY({self.bind(items)}::{array_type})"
                parts.append(
                    f"({membership})" if operator == "in" else f"(NOT COALESCE({membership}, FALSE))"
                )
            elif operator in RANGE_OPERATORS:
                parts.append(
                    f"({column} {RANGE_OPERATORS[operator]} {self.bind(parse(operand, operand_path))})"
                )
            else:
                like = "LIKE" if operator == "contains" else "ILIKE"
                pattern = self.bind(_like_pattern(_parse_text(operand, operand_path)))
                parts.append(f"({column} {like} {pattern} ESCAPE '\\')")
        return _and(parts)

    def compile_metadata(self, name: str, operations: list[tuple[str, Any]], path: str) -> str:
        key = self.bind(name)
        value = f"(m.metadata -> {key})"
        text = f"(m.metadata ->> {key})"
        parts: list[str] = []
        for operator, operand in operations:
            operand_path = _child_path(path, operator)
            if operator == "*":
                _require_wildcard_true(operand, operand_path)
                parts.append(f"(m.metadata ? {key} AND {value} <> 'null'::jsonb)")
            elif operator in ("eq", "ne"):
                # `::text::jsonb` keeps the bound JSON text independent of any jsonb codec on the connection.
                encoded = self.bind(_json(operand, operand_path))
                comparison = "=" if operator == "eq" else "IS DISTINCT FROM"
                parts.append(f"({value} {comparison} {encoded}::text::jsonb)")
            elif operator in ("in", "nin"):
                items = [
                    _json(item, f"{operand_path}[{i}]") for i, item in enumerate(_list(operand, operand_path))
                ]
                membership = f"{value} = ANY({self.bind(items)}::text[]::jsonb[])"
                parts.append(
                    f"({membership})" if operator == "in" else f"(NOT COALESCE({membership}, FALSE))"
                )
            elif operator in RANGE_OPERATORS:
                parts.append(
                    self.metadata_range(value, text, RANGE_OPERATORS[operator], operand, operand_path)
                )
            else:
                parts.append(self.metadata_contains(value, text, operator, operand, operand_path))
        return _and(parts)

    def metadata_range(self, value: str, text: str, comparison: str, operand: Any, path: str) -> str:
        # CASE, unlike AND, guarantees the type test runs before the cast that would raise on "abc"::numeric.
        if _is_number(operand):
            _require_finite(operand, path)
            bound = self.bind(Decimal(str(operand)))
            return (
                f"(CASE WHEN jsonb_typeof({value}) = 'number'"
                f" THEN {text}::numeric {comparison} {bound}::numeric END)"
            )
        if isinstance(operand, str):
            bound = self.bind(operand)
            return (
                f"(CASE WHEN jsonb_typeof({value}) = 'string'"
                f' THEN {text} COLLATE "C" {comparison} {bound}::text END)'
            )
        raise _invalid(f"Range operators take a number or a string, not {_type_name(operand)}.", path)

    def metadata_contains(self, value: str, text: str, operator: str, operand: Any, path: str) -> str:
        if operator == "icontains":
            if not isinstance(operand, str):
                raise _invalid(f"'icontains' takes a string, not {_type_name(operand)}.", path)
            pattern = self.bind(_like_pattern(operand))
            raw = self.bind(operand)
            # Only placeholders and fragments built here are interpolated, never caller text.
            any_element_matches = (
                f"EXISTS (SELECT 1 FROM jsonb_array_elements({value}) AS element(item)"
                f" WHERE jsonb_typeof(element.item) = 'string'"
                f" AND lower(element.item #>> '{{}}') = lower({raw}::text))"
            )
            return (
                f"(CASE jsonb_typeof({value}) WHEN 'string' THEN {text} ILIKE {pattern} ESCAPE '\\'"
                f" WHEN 'array' THEN {any_element_matches} ELSE FALSE END)"
            )
        if isinstance(operand, Mapping | list | tuple) or operand is None:
            raise _invalid(f"'contains' takes a string, number or boolean, not {_type_name(operand)}.", path)
        string_branch = ""
        if isinstance(operand, str):
            pattern = self.bind(_like_pattern(operand))
            string_branch = f" WHEN 'string' THEN {text} LIKE {pattern} ESCAPE '\\'"
        element = self.bind(_json([operand], path))
        return (
            f"(CASE jsonb_typeof({value}){string_branch}"
            f" WHEN 'array' THEN {value} @> {element}::text::jsonb ELSE FALSE END)"
        )

    def note_owner(self, name: str, values: list[Any]) -> None:
        if name in self.owner_values:
            self.owner_values[name].update(values)


def _list(operand: Any, path: str) -> list[Any]:
    if not isinstance(operand, list | tuple):
        raise _invalid(f"This operator takes a list, not {_type_name(operand)}.", path)
    if not operand:
        raise _invalid("This operator needs a non-empty list.", path)
    if len(operand) > MAX_LIST_ITEMS:
        raise _invalid(f"A list may hold at most {MAX_LIST_ITEMS} values.", path)
    return list(operand)


def _require_wildcard_true(operand: Any, path: str) -> None:
    if operand is not True:
        raise _invalid("The '*' operator takes the value true.", path)


def _require_finite(number: int | float, path: str) -> None:
    if isinstance(number, float) and not math.isfinite(number):
        raise _invalid("Numbers in filters must be finite.", path)


def _json(value: Any, path: str) -> str:
    """Encode a filter value as JSON text, rejecting what JSON cannot carry."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise _invalid(f"The value {value!r:.80} is not plain JSON.", path) from None


def _parse_text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"Expected a string, not {_type_name(value)}.", path)
    return value


def _parse_memory_type(value: Any, path: str) -> str:
    if isinstance(value, str) and value.upper() in MEMORY_TYPES:
        return value.upper()
    raise _invalid(f"memory_type must be one of {', '.join(sorted(MEMORY_TYPES))}.", path)


def _parse_timestamp(value: Any, path: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _invalid(f"{value!r:.80} is not an ISO-8601 date or timestamp.", path) from None
    else:
        raise _invalid(f"Expected an ISO-8601 timestamp string, not {_type_name(value)}.", path)
    try:
        # In UTC, as Postgres stores it: a time near year 1 or 9999 may fall outside what exists.
        return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise _invalid(
            f"{str(value)!r:.80} is out of the range of timestamps (years 1 to 9999, in UTC).", path
        ) from None


@dataclass(frozen=True)
class MemoryFilter:
    """A caller's filter object (plus memory_type), checked once and compiled where it is used.

    Repositories compile it at the position its first parameter takes in their statement,
    so no SQL text is ever renumbered.
    """

    tree: Mapping[str, Any] | None = None

    def compile(self, first_param: int) -> CompiledFilter:
        return compile_filters(self.tree, first_param=first_param)


NO_FILTER = MemoryFilter()


def scoped_filter(scope: MemoryAuthScope, filters: Any, memory_type: str | None) -> MemoryFilter:
    """The caller's filters (plus memory_type), validated; a user may not name another user."""
    if filters is not None and not isinstance(filters, dict):
        raise InvalidFilter("Filters must be a JSON object.", details={"path": "filters"})
    combined: dict[str, Any] = dict(filters or {})
    if memory_type is not None:
        typed = {"memory_type": normalise_memory_type(memory_type)}
        combined = {"AND": [combined, typed]} if combined else typed
    tree = combined or None
    compiled = compile_filters(tree, first_param=1)
    scope.check_named_users(compiled.owner_values.get("user_id", set()))
    return MemoryFilter(tree)
