"""Caller JSON decoded safely: what could crash later code is a 400 with a code here.

Refused: nesting deeper than MAX_JSON_DEPTH (decoding stops on Python's recursion limit and a
non-recursive walk checks the rest, before any of our code recurses into it), integers longer
than Python's int/str conversion limit (msgspec refuses those itself), and text with no UTF-8
form (a lone UTF-16 surrogate such as \\ud800), which asyncpg cannot send to Postgres.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.errors import BadRequest

# Objects and arrays inside one another: far more than any real body or filter needs.
MAX_JSON_DEPTH = 64


def load_json(raw: bytes | str, *, what: str, malformed: str, deep: str) -> Any:
    """JSON from a caller, refused with a 400 when it could hurt later: nested deeper than
    MAX_JSON_DEPTH (refused before any of our code recurses into it), an integer too long to convert,
    or text that cannot be stored (a lone UTF-16 surrogate such as \\ud800 has no UTF-8 form)."""
    try:
        value = msgspec.json.decode(raw)
    except RecursionError:
        raise _too_deep(what, deep) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec refuses integers past Python's int/str digit limit here (a ValidationError).
        raise BadRequest(f"{what} is not valid JSON: {exc}.", code=malformed) from exc
    check_json_tree(value, what=what, deep=deep)
    return value


def check_json_tree(value: Any, *, what: str, deep: str) -> None:
    """Walk decoded JSON without recursion: refuse deep nesting and text Postgres cannot encode."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            check_text(node)
            continue
        if isinstance(node, dict):
            for key in node:
                check_text(str(key))
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(what, deep)
        stack.extend((child, depth + 1) for child in children)


def check_text(text: str) -> None:
    """Refuse text with no UTF-8 form (a lone surrogate): asyncpg could not send it to Postgres."""
    if text.isascii():
        return
    try:
        text.encode()
    except UnicodeEncodeError:
        raise BadRequest(
            "Text may not contain lone UTF-16 surrogates (such as \\ud800): they have no UTF-8 form.",
            code="invalid_text",
        ) from None


def _too_deep(what: str, code: str) -> BadRequest:
    return BadRequest(f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels).", code=code)
