"""The OpenAPI document describes every response body and every error body.

Built from `create_app(Settings())` without starting it: the document needs no database.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.serialization import encode_json

from app.asgi import create_app
from app.settings import Settings

# Operations allowed to go without a JSON response schema, each with its reason.
UNDESCRIBED = {
    ("GET", "/metrics"): "Prometheus text exposition format, not JSON; its errors are Litestar's own.",
}
ERROR_BODY_REF = "#/components/schemas/ErrorBody"
# Compatibility surfaces answer errors in their product's envelope: Tabby's wraps the ErrorBody,
# /mem0 speaks mem0's error body (`detail`, which the mem0 SDKs read, plus our `code`).
ENVELOPED_ERRORS = {"/memory/": "#/components/schemas/TabbyError"}
OTHER_ERROR_BODIES = {"/mem0/": "#/components/schemas/Mem0ErrorBody"}


def error_ref(path: str) -> str:
    bodies = ENVELOPED_ERRORS | OTHER_ERROR_BODIES
    return next((ref for prefix, ref in bodies.items() if path.startswith(prefix)), ERROR_BODY_REF)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(Settings())
    # Through Litestar's encoder and back, as /docs/openapi.json serves it.
    loaded: dict[str, Any] = json.loads(encode_json(app.openapi_schema.to_schema()))
    return loaded


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "patch")
    ]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return resolved


def json_schema(response: dict[str, Any]) -> dict[str, Any] | None:
    schema = (response.get("content") or {}).get("application/json", {}).get("schema")
    return schema or None


def has_known_shape(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    """An object with named properties, or an array of them, or a choice of such shapes (the
    generations of a mem0 route); not a bare `{"type": "object"}`."""
    schema = resolve(document, schema)
    if "oneOf" in schema:
        return all(has_known_shape(document, member) for member in schema["oneOf"])
    if schema.get("type") == "array":
        return has_known_shape(document, schema.get("items") or {})
    return schema.get("type") == "object" and bool(schema.get("properties"))


def test_the_document_lists_the_memory_admin_and_health_routes(document: dict[str, Any]) -> None:
    paths = set(document["paths"])
    assert {"/mem/v1/memories", "/mem/v1/search", "/mem/v1/entities", "/auth/v1/admin/tenants"} <= paths
    assert {"/health", "/ready"} <= paths
    for method, path in UNDESCRIBED:  # an exception for a route that is gone must go too
        assert method.lower() in document["paths"].get(path, {}), (method, path)


def test_the_document_lists_tabbys_memory_routes(document: dict[str, Any]) -> None:
    routes = {(method, path) for method, path, _ in operations(document) if path.startswith("/memory/")}
    assert routes >= {
        ("POST", "/memory/add"),
        ("POST", "/memory/add_image"),
        ("POST", "/memory/search"),
        ("POST", "/memory/get_all"),
        ("GET", "/memory/{memory_id}"),
        ("PUT", "/memory/update"),
        ("DELETE", "/memory/{memory_id}"),
        ("GET", "/memory/history/{memory_id}"),
        ("DELETE", "/memory/user/{user_id}"),
    }


def test_every_operation_describes_its_success_body(document: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in operations(document):
        if (method, path) in UNDESCRIBED:
            continue
        success = [r for status, r in operation["responses"].items() if status.startswith("2")]
        schemas = [json_schema(r) for r in success]
        if not success or not all(s is not None and has_known_shape(document, s) for s in schemas):
            missing.append(f"{method} {path}: {schemas}")
    assert not missing, "operations without a typed response body:\n" + "\n".join(missing)


def test_every_operation_documents_its_errors_as_the_error_body(document: dict[str, Any]) -> None:
    wrong = []
    for method, path, operation in operations(document):
        if (method, path) in UNDESCRIBED:
            continue
        errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
        if not errors:
            wrong.append(f"{method} {path}: no error response")
        for status, response in errors.items():
            # Litestar's default 400 schema ({status_code, detail, extra}) is not what we send.
            if json_schema(response) != {"$ref": error_ref(path)}:
                wrong.append(f"{method} {path} {status}: {json_schema(response)}")
    assert not wrong, "error responses not described by ErrorBody:\n" + "\n".join(wrong)


def test_memory_routes_document_refusals_and_unknown_ids(document: dict[str, Any]) -> None:
    gaps = []
    for method, path, operation in operations(document):
        documented = set(operation["responses"])
        expected = set()
        if path.startswith(("/mem/v1", "/memory/", "/mem0/")):
            expected |= {"400", "401", "403", "409", "422"}
        if path.startswith("/auth/v1/admin"):
            expected |= {"401"}
        if "_id}" in path:
            expected |= {"404"}
        if expected - documented:
            gaps.append(f"{method} {path}: missing {sorted(expected - documented)}")
    assert not gaps, "\n".join(gaps)


def test_the_error_body_schema_names_code_and_message_as_required(document: dict[str, Any]) -> None:
    body = document["components"]["schemas"]["ErrorBody"]
    assert set(body["properties"]) == {"code", "message", "details", "hint"}
    assert set(body["required"]) == {"code", "message"}


def test_a_search_result_documents_its_score_breakdown(document: dict[str, Any]) -> None:
    scored = document["components"]["schemas"]["ScoredMemory"]
    assert {"id", "memory", "score", "score_breakdown", "created_at"} <= set(scored["properties"])
    assert "embedding" not in scored["properties"]
    breakdown = resolve(document, scored["properties"]["score_breakdown"])
    assert set(breakdown["properties"]) == {"semantic", "keyword", "entity", "graph"}


def test_an_enveloped_error_carries_the_error_body(document: dict[str, Any]) -> None:
    for ref in ENVELOPED_ERRORS.values():
        envelope = resolve(document, {"$ref": ref})
        assert envelope["properties"]["error"] == {"$ref": ERROR_BODY_REF}
        assert {"success", "error"} <= set(envelope["required"])
