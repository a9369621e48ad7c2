"""The OpenAPI document teaches a client: typed request bodies with examples, how to authenticate,
and ids that are uuid-format strings."""

from __future__ import annotations

from typing import Any

from tests.unit.test_openapi import document, operations, resolve

__all__ = ["document"]  # the module-scoped fixture, shared with test_openapi

BODY_METHODS = {"POST", "PUT", "PATCH"}


def body_schema(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    body = operation.get("requestBody")
    if body is None:
        return None
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    if "allOf" in schema:  # Litestar wraps a $ref this way when the body carries examples
        (schema,) = schema["allOf"]
    return resolve(document, schema)


def test_every_request_body_has_named_properties(document: dict[str, Any]) -> None:
    untyped = []
    for method, path, operation in operations(document):
        if method not in BODY_METHODS or "requestBody" not in operation:
            continue
        schema = body_schema(document, operation)
        if not schema or schema.get("type") != "object" or not schema.get("properties"):
            untyped.append(f"{method} {path}: {schema}")
    assert not untyped, "request bodies without a typed schema:\n" + "\n".join(untyped)


def test_the_body_routes_all_declare_a_body(document: dict[str, Any]) -> None:
    for method, path in [
        ("post", "/mem/v1/memories"),
        ("put", "/mem/v1/memories/{memory_id}"),
        ("post", "/mem/v1/search"),
        ("put", "/mem/v1/config"),
        ("post", "/auth/v1/admin/tenants"),
    ]:
        assert "requestBody" in document["paths"][path][method], (method, path)


def test_add_and_search_bodies_show_their_fields_and_examples(document: dict[str, Any]) -> None:
    add = document["paths"]["/mem/v1/memories"]["post"]
    assert {"messages", "user_id", "metadata", "infer"} <= set(body_schema(document, add)["properties"])  # type: ignore[index]
    search = document["paths"]["/mem/v1/search"]["post"]
    assert {"query", "user_id", "top_k", "filters"} <= set(body_schema(document, search)["properties"])  # type: ignore[index]
    for operation in (add, search):
        examples = operation["requestBody"]["content"]["application/json"]["schema"].get("examples")
        assert examples and all(isinstance(e, dict) for e in examples)
    message = document["components"]["schemas"]["Message"]
    assert set(message["properties"]) == {"role", "content", "name"}


def test_the_security_schemes_exist(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["apikey"] == {**schemes["apikey"], "type": "apiKey", "in": "header", "name": "apikey"}
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert schemes["bearer"]["bearerFormat"] == "JWT"
    assert schemes["adminKey"]["type"] == "http" and schemes["adminKey"]["scheme"] == "bearer"


def test_every_memory_operation_requires_the_apikey_and_admin_requires_a_bearer(
    document: dict[str, Any],
) -> None:
    wrong = []
    for method, path, operation in operations(document):
        security = operation.get("security")
        if path.startswith(("/mem/v1", "/memory/")):
            if not security or not all("apikey" in alternative for alternative in security):
                wrong.append(f"{method} {path}: {security}")
        elif path.startswith("/auth/v1/admin"):
            if security != [{"adminKey": []}]:
                wrong.append(f"{method} {path}: {security}")
        elif security:
            wrong.append(f"{method} {path} needs no key but declares {security}")
    assert not wrong, "\n".join(wrong)


def test_path_ids_are_documented_as_uuid_strings(document: dict[str, Any]) -> None:
    ids = [
        (path, parameter)
        for path, item in document["paths"].items()
        for operation in item.values()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        # user_id is free text (SPEC section 4), never a UUID: DELETE /memory/user/{user_id} names one.
        if parameter["in"] == "path" and parameter["name"].endswith("_id") and parameter["name"] != "user_id"
    ]
    assert ids
    for path, parameter in ids:
        assert parameter["schema"] == {**parameter["schema"], "type": "string", "format": "uuid"}, path


def test_request_bodies_say_they_refuse_unknown_fields(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in (
        "AddMemoryRequest",
        "Message",
        "ContentPart",
        "SearchRequest",
        "CreateTenantRequest",
        "TabbyAddRequest",
        "TabbyAddImageRequest",
        "TabbySearchRequest",
        "TabbyGetAllRequest",
        "TabbyUpdateRequest",
    ):
        assert schemas[name]["additionalProperties"] is False, name
    assert "additionalProperties" not in schemas["Memory"]  # responses may grow fields


def _surely_disjoint(document: dict[str, Any], first: dict[str, Any], second: dict[str, Any]) -> bool:
    """True when no JSON value can match both schemas: different JSON types, or one requires a
    property that the other neither declares nor allows as an extra."""
    first, second = resolve(document, first), resolve(document, second)
    if first.get("type") != second.get("type"):
        return True
    if first.get("type") != "object":
        return False
    for one, other in ((first, second), (second, first)):
        undeclared = set(one.get("required", [])) - set(other["properties"])
        if other.get("additionalProperties") is False and undeclared:
            return True
    return False


def test_a_choice_of_response_shapes_is_one_of_exactly_one(document: dict[str, Any]) -> None:
    # `oneOf` promises that an answer matches exactly one alternative; a validator (or a generated
    # client) rejects an answer that matches two, as mem0's `{"count", "results", ...}` page did
    # when `{"results"}` accepted extra keys.
    overlapping = []
    for method, path, operation in operations(document):
        for status, response in operation.get("responses", {}).items():
            schema = (response.get("content") or {}).get("application/json", {}).get("schema") or {}
            choices = schema.get("oneOf", [])
            for index, first in enumerate(choices):
                for second in choices[index + 1 :]:
                    if not _surely_disjoint(document, first, second):
                        overlapping.append(f"{method} {path} {status}: {first} / {second}")
    assert not overlapping, "\n".join(overlapping)
