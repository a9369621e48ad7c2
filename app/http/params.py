"""Shared parsing of query parameters: camelCase aliases and JSON-encoded filters."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request
from litestar.params import ParameterKwarg

from app.errors import BadRequest, InvalidFilter
from app.http.safe_json import load_json

_CAMEL = {"user_id": "userId", "agent_id": "agentId", "run_id": "runId"}


def owner_ids(request: Request[Any, Any, Any], **given: str | None) -> dict[str, str | None]:
    """user_id / agent_id / run_id from the declared query parameters or their camelCase aliases,
    and `scope` ("tenant": a service_role read of every owner, on purpose; see MemoryAuthScope.read_owner)."""
    out: dict[str, str | None] = {}
    for name, value in given.items():
        out[name] = value if value is not None else request.query_params.get(_CAMEL[name])
    out["scope"] = request.query_params.get("scope")
    return out


def json_filters(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    value = load_json(
        raw, what="The filters query parameter", malformed="invalid_filter", deep="invalid_filter"
    )
    if not isinstance(value, dict):
        raise InvalidFilter("The filters query parameter must be a JSON object.")
    return value


def flag(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name} must be true or false.", code="invalid_parameter")


def parse_id(raw: str, name: str) -> UUID:
    """A path id: a UUID, or a 400 that says so (not a 404 "no route", which hides the mistake)."""
    try:
        return UUID(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a UUID.", code="invalid_id", details={"field": name}) from None


def id_parameter(name: str) -> ParameterKwarg:
    """The path parameter as the OpenAPI document shows it: a uuid-format string."""
    return ParameterKwarg(format="uuid", description=f"The {name}, a UUID.")
