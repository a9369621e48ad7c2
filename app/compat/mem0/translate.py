"""mem0 requests into ours: owner ids out of `filters`, `app_id` into metadata, paging links.

mem0 names the owner either at the top level of a body (`user_id`, ...) or, in the v3 API, inside
`filters` (`{"user_id": "alice"}` or `{"AND": [{"user_id": "alice"}, ...]}`). Plain ids found there
narrow the owner, exactly as /mem/v1's `user_id` does; the whole filter object still goes to the
filter compiler, so an id named any other way (`in`, under `OR`) is applied as a filter. mem0 has no
app_id column here: it is the metadata key `app_id`, in filters and on add.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import msgspec

from app.auth.scope import TENANT_SCOPE, MemoryAuthScope
from app.compat.mem0.schemas import Mem0AddRequest, Mem0ListRequest, Mem0SearchRequest, refuse_unsupported
from app.compat.mem0.views import APP_ID_KEY
from app.db.sql import OWNER_FIELDS
from app.errors import BadRequest, InvalidFilter
from app.http.bodies import decode_body
from app.memories.schemas import AddMemoryRequest
from app.search.schemas import SearchRequest

ENTITY_KEYS = (*OWNER_FIELDS, APP_ID_KEY)


def _plain_ids(node: Mapping[str, Any], found: dict[str, str]) -> None:
    for name in OWNER_FIELDS:
        value = node.get(name)
        if isinstance(value, str) and value != "*":
            found.setdefault(name, value)


def _names_an_entity(node: Any) -> bool:
    if isinstance(node, Mapping):
        return any(k in ENTITY_KEYS or _names_an_entity(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_names_an_entity(item) for item in node)
    return False


def _flatten_metadata(filters: dict[str, Any]) -> dict[str, Any]:
    """mem0's `{"metadata": {"k": v}}` inside filters means conditions on those metadata keys."""
    nested = filters.get("metadata")
    if not isinstance(nested, Mapping):
        return filters
    rest = {k: v for k, v in filters.items() if k != "metadata"}
    conditions = [{k: v} for k, v in nested.items()]
    return {"AND": [rest, *conditions]} if rest else {"AND": conditions} if conditions else {}


def with_top_level(request: msgspec.Struct, filters: Any) -> dict[str, Any] | None:
    """The body's filters, with its top-level owner ids and app_id ANDed in (v1/v2 bodies)."""
    if filters is not None and not isinstance(filters, dict):
        raise InvalidFilter("filters must be a JSON object.", details={"path": "filters"})
    named = {k: getattr(request, k) for k in ENTITY_KEYS if getattr(request, k, None) is not None}
    if not named:
        return filters
    return {"AND": [filters, named]} if filters else named


def owner_and_filters(
    scope: MemoryAuthScope, filters: Any, *, require_entity: bool = True
) -> tuple[dict[str, str | None], dict[str, Any] | None]:
    """The owner ids a read names (plus `scope: tenant` for service_role when it names none plainly)
    and the filter object to compile."""
    if filters is None:
        filters = {}
    if not isinstance(filters, dict):
        raise InvalidFilter("filters must be a JSON object.", details={"path": "filters"})
    if require_entity and not _names_an_entity(filters) and scope.is_service:
        raise BadRequest(
            "filters must name at least one of user_id, agent_id, app_id or run_id.",
            code="owner_required",
            hint='e.g. {"filters": {"user_id": "alice"}}',
        )
    found: dict[str, str] = {}
    _plain_ids(filters, found)
    for item in filters.get("AND") or []:
        if isinstance(item, Mapping):
            _plain_ids(item, found)
    owner: dict[str, str | None] = {name: found.get(name) for name in OWNER_FIELDS}
    # Named only through app_id or operators: every owner of the tenant, narrowed by the filter.
    owner["scope"] = TENANT_SCOPE if scope.is_service and not found else None
    translated = _flatten_metadata(filters)
    return owner, translated or None


def add_request(data: Mem0AddRequest) -> AddMemoryRequest:
    """Our add, from mem0's: owner ids from the top level or from `filters`, app_id into metadata."""
    refuse_unsupported(data)
    ids: dict[str, str] = {}
    if data.filters is not None:
        if not isinstance(data.filters, dict):
            raise InvalidFilter("filters must be a JSON object.", details={"path": "filters"})
        _plain_ids(data.filters, ids)
    metadata = dict(data.metadata or {})
    app_id = data.app_id or (data.filters or {}).get(APP_ID_KEY)
    if app_id is not None:
        metadata[APP_ID_KEY] = app_id
    messages = data.messages if isinstance(data.messages, str) else msgspec.to_builtins(data.messages)
    return decode_body(
        {
            "messages": messages,
            "user_id": data.user_id or ids.get("user_id"),
            "agent_id": data.agent_id or ids.get("agent_id"),
            "run_id": data.run_id or ids.get("run_id"),
            "metadata": metadata or None,
            "infer": data.infer,
            "expiration_date": data.expiration_date,
            "immutable": data.immutable,
            "custom_instructions": data.custom_instructions,
        },
        AddMemoryRequest,
    )


def search_request(scope: MemoryAuthScope, data: Mem0SearchRequest) -> SearchRequest:
    refuse_unsupported(data)
    filters = with_top_level(data, data.filters)
    if data.metadata:
        filters = {"AND": [filters, dict(data.metadata)]} if filters else dict(data.metadata)
    owner, compiled = owner_and_filters(scope, filters)
    return SearchRequest(
        query=data.query,
        user_id=owner["user_id"],
        agent_id=owner["agent_id"],
        run_id=owner["run_id"],
        scope=owner["scope"],
        top_k=data.top_k if data.top_k is not None else data.limit,
        threshold=data.threshold,
        filters=compiled,
        include_expired=data.show_expired,
        include_relations=bool(data.enable_graph),
    )


def list_parts(
    scope: MemoryAuthScope, data: Mem0ListRequest
) -> tuple[dict[str, str | None], dict[str, Any] | None]:
    refuse_unsupported(data)
    return owner_and_filters(scope, with_top_level(data, data.filters))


def page_links(url: str, page: int, page_size: int, total: int) -> tuple[str | None, str | None]:
    """mem0's `next` / `previous` URLs: this route, the other page."""
    base = url.split("?", 1)[0]

    def link(n: int) -> str:
        return f"{base}?{urlencode({'page': n, 'page_size': page_size})}"

    return (link(page + 1) if page * page_size < total else None, link(page - 1) if page > 1 else None)
