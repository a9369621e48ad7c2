"""Bad input on every route: a 4xx with a stable code and a human message, never a 500 or a trace,
nothing written, and the service still answers the next good request."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.core.schemas import MAX_MEMORY_CHARS
from app.runtime import Runtime
from tests.conftest import ADMIN_KEY, TenantKeys, add, new_tenant, table_counts
from testsupport.provider_server import FakeProviderServer

CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MAX_BODY = 64 * 1024
JSON_HEADERS = {"content-type": "application/json"}


def assert_refused(
    response: httpx.Response, statuses: set[int] | int, code: str | None = None
) -> dict[str, Any]:
    """A refusal in the house shape: the status, a snake_case code, a sentence, no trace, a request id."""
    expected = {statuses} if isinstance(statuses, int) else statuses
    assert response.status_code in expected, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict), body
    assert CODE.fullmatch(body.get("code", "")), body
    if code is not None:
        assert body["code"] == code, body
    assert isinstance(body.get("message"), str) and len(body["message"]) > 3, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert response.headers.get("x-request-id")
    return body


INPUT = frozenset({400, 422})


@dataclass(frozen=True)
class Bad:
    """One bad request. `{id}` in the path stands for the seeded memory's id."""

    method: str
    path: str
    body: Any
    raw: bytes | None
    params: dict[str, str]
    status: frozenset[int]
    code: str | None

    @property
    def admin(self) -> bool:
        return self.path.startswith("/auth/v1/admin/")


def bad(
    name: str,
    route: str,
    body: Any = None,
    status: int | frozenset[int] = INPUT,
    code: str | None = None,
    *,
    params: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Any:
    method, path = route.split(" ", 1)
    statuses = frozenset({status}) if isinstance(status, int) else status
    return pytest.param(Bad(method, path, body, raw, params or {}, statuses, code), id=name)


ADD = "POST /mem/v1/memories"
LIST = "GET /mem/v1/memories"
DELETE_ALL = "DELETE /mem/v1/memories"
UPDATE = "PUT /mem/v1/memories/{id}"
SEARCH = "POST /mem/v1/search"
PUT_CONFIG = "PUT /mem/v1/config"
CREATE_TENANT = "POST /auth/v1/admin/tenants"
MEM = "/mem/v1/memories"
CONFIG = "/mem/v1/config"
TENANTS = "/auth/v1/admin/tenants"
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"
BODY_ROUTES = {"add": ADD, "update": UPDATE, "search": SEARCH, "config": PUT_CONFIG, "tenant": CREATE_TENANT}
OVERSIZED = {"messages": "a" * (MAX_BODY + 1000), "text": "a", "query": "q", "name": "n", "user_id": "alice"}


def _every_body_route() -> list[Any]:
    cases = []
    for label, route in BODY_ROUTES.items():
        cases += [
            bad(f"{label}-malformed-json", route, raw=b'{"messages": ', status=400, code="malformed_json"),
            bad(
                f"{label}-trailing-garbage", route, raw=b'{"text": "x"} }', status=400, code="malformed_json"
            ),
            bad(f"{label}-not-utf8", route, raw=b'{"text": "\xff\xfe"}', status=400, code="malformed_json"),
            bad(f"{label}-array-body", route, [{"messages": "hi", "text": "x", "query": "q"}]),
            bad(f"{label}-string-body", route, "hello"),
            bad(f"{label}-null-body", route, raw=b"null"),
            bad(f"{label}-oversized-body", route, OVERSIZED, 413, "payload_too_large"),
        ]
    return cases


def msgs(*contents: Any, role: str = "user") -> list[dict[str, Any]]:
    return [{"role": role, "content": c} for c in contents]


def new(**body: Any) -> dict[str, Any]:
    """A valid add body (not a duplicate of the seeded memory), changed by `body`."""
    return {"messages": msgs("I like black tea"), "user_id": "alice", "infer": False, **body}


def query(**body: Any) -> dict[str, Any]:
    """A valid search body, changed by `body`."""
    return {"query": "tea", "user_id": "alice", **body}


def listing(**params: Any) -> dict[str, str]:
    return {"user_id": "alice", **{k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}}


def settings(changes: dict[str, Any]) -> dict[str, Any]:
    return {"settings": changes}


def nested_nots(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {"topic": "tea"}
    for _ in range(depth):
        inner = {"NOT": inner}
    return inner


CASES = [
    *_every_body_route(),
    # POST /memories: wrong types
    bad("add-messages-number", ADD, new(messages=5), code="validation_failed"),
    bad("add-messages-list-of-numbers", ADD, new(messages=[5]), code="validation_failed"),
    bad("add-message-without-content", ADD, new(messages=[{"role": "user"}]), code="validation_failed"),
    bad("add-message-content-number", ADD, new(messages=msgs(5)), code="validation_failed"),
    bad("add-user-id-number", ADD, new(user_id=7), code="validation_failed"),
    bad("add-agent-id-list", ADD, new(agent_id=["a"]), code="validation_failed"),
    bad("add-infer-string", ADD, new(infer="yes"), code="validation_failed"),
    bad("add-metadata-list", ADD, new(metadata=[1]), code="validation_failed"),
    bad("add-metadata-string", ADD, new(metadata="x"), code="validation_failed"),
    bad("add-memory-type-unknown", ADD, new(memory_type="FOREVER"), code="invalid_memory_type"),
    bad("add-memory-type-number", ADD, new(memory_type=3), code="validation_failed"),
    bad("add-expiration-date-number", ADD, new(expiration_date=12345), code="validation_failed"),
    bad("add-user-id-twice-via-alias", ADD, new(userId="bob"), code="duplicate_field"),
    # POST /memories: missing or empty
    bad("add-no-messages", ADD, {"user_id": "alice", "infer": False}, code="validation_failed"),
    bad("add-empty-message-list", ADD, new(messages=[]), 400, "empty_messages"),
    bad("add-empty-message-string", ADD, new(messages=""), 400, "empty_messages"),
    bad("add-blank-message-string", ADD, new(messages="   "), 400, "empty_messages"),
    bad("add-only-blank-messages", ADD, new(messages=msgs("", " \n")), 400, "empty_messages"),
    bad("add-empty-user-id", ADD, new(user_id=""), 400, "invalid_owner_id"),
    bad("add-user-id-too-long", ADD, new(user_id="u" * 256), 400, "invalid_owner_id"),
    # POST /memories: values the rules refuse
    bad(
        "add-expired-timestamp",
        ADD,
        new(expiration_date="2001-01-01T00:00:00Z"),
        400,
        "invalid_expiration_date",
    ),
    bad("add-expired-date", ADD, new(expiration_date="2001-01-01"), 400, "invalid_expiration_date"),
    bad(
        "add-expiration-not-a-date", ADD, new(expiration_date="next tuesday"), 400, "invalid_expiration_date"
    ),
    bad("add-no-owner", ADD, {"messages": "I like tea", "infer": False}, 400, "owner_required"),
    bad("add-unknown-role", ADD, new(messages=msgs("hi", role="wizard")), 400, "invalid_message_role"),
    bad("add-text-too-long", ADD, new(messages="a" * (MAX_MEMORY_CHARS + 1)), 400, "message_too_long"),
    bad(
        "add-one-too-long-among-short",
        ADD,
        new(messages=msgs("short", "b " * 10_001)),
        400,
        "message_too_long",
    ),
    bad("add-too-many-messages", ADD, new(messages=msgs(*["hi"] * 201)), 400, "too_many_messages"),
    # text Postgres cannot store (NUL), wherever the caller can put it
    bad("add-nul-in-text", ADD, new(messages="tea \u0000 time"), 400, "invalid_text"),
    bad("add-nul-in-user-id", ADD, new(user_id="al\u0000ice"), 400, "invalid_text"),
    bad("add-nul-in-metadata-value", ADD, new(metadata={"k": "v\u0000"}), 400, "invalid_text"),
    bad("add-nul-in-metadata-key", ADD, new(metadata={"k\u0000": 1}), 400, "invalid_text"),
    bad("update-nul-in-text", UPDATE, {"text": "tea \u0000 time"}, 400, "invalid_text"),
    bad("update-nul-in-metadata", UPDATE, {"metadata": {"k": "\u0000"}}, 400, "invalid_text"),
    bad("search-nul-in-query", SEARCH, query(query="tea \u0000"), 400, "invalid_text"),
    bad("search-nul-in-filter-value", SEARCH, query(filters={"topic": "t\u0000"}), 400, "invalid_text"),
    bad("list-nul-in-user-id", LIST, params={"user_id": "alice\u0000"}, status=400, code="invalid_text"),
    bad("tenant-nul-in-name", CREATE_TENANT, {"name": "Acme\u0000"}, 400, "invalid_text"),
    bad(
        "add-lone-surrogate",
        ADD,
        raw=b'{"messages": "\\ud800", "user_id": "a"}',
        status=400,
        code="malformed_json",
    ),
    # PUT /memories/{id}
    bad("update-text-number", UPDATE, {"text": 5}, code="validation_failed"),
    bad("update-metadata-list", UPDATE, {"metadata": [1]}, code="validation_failed"),
    bad("update-neither-text-nor-metadata", UPDATE, {}, 400, "empty_update"),
    # Was empty_update while unknown fields were ignored; a stray field is now named before anything else.
    bad("update-only-unknown-fields", UPDATE, {"colour": "red"}, 400, "unknown_field"),
    bad("update-blank-text", UPDATE, {"text": "  "}, 400, "empty_text"),
    bad("update-text-and-memory-disagree", UPDATE, {"text": "a", "memory": "b"}, 400, "conflicting_fields"),
    bad("update-text-too-long", UPDATE, {"text": "a" * (MAX_MEMORY_CHARS + 1)}, 400, "text_too_long"),
    # POST /search
    bad("search-no-query", SEARCH, {"user_id": "alice"}, code="validation_failed"),
    bad("search-empty-query", SEARCH, query(query=""), 400, "empty_query"),
    bad("search-blank-query", SEARCH, query(query="  "), 400, "empty_query"),
    bad("search-query-number", SEARCH, query(query=5), code="validation_failed"),
    bad("search-query-too-long", SEARCH, query(query="q" * 4001), 400, "query_too_long"),
    bad("search-user-id-number", SEARCH, query(user_id=7), code="validation_failed"),
    bad("search-top-k-string", SEARCH, query(top_k="ten"), code="validation_failed"),
    bad("search-top-k-float", SEARCH, query(top_k=2.5), code="validation_failed"),
    bad("search-top-k-zero", SEARCH, query(top_k=0), 400, "invalid_top_k"),
    bad("search-top-k-beyond-max", SEARCH, query(top_k=101), 400, "invalid_top_k"),
    bad("search-limit-beyond-max", SEARCH, query(limit=10_000), 400, "invalid_top_k"),
    bad("search-threshold-string", SEARCH, query(threshold="x"), code="validation_failed"),
    bad("search-threshold-above-one", SEARCH, query(threshold=2), 400, "invalid_threshold"),
    bad("search-threshold-negative", SEARCH, query(threshold=-0.1), 400, "invalid_threshold"),
    bad("search-memory-type-unknown", SEARCH, query(memory_type="FOREVER"), code="invalid_memory_type"),
    # filters: unknown operators, bad keys, not objects; in a body and in the query string
    bad(
        "search-filter-unknown-operator",
        SEARCH,
        query(filters={"user_id": {"regex": "a"}}),
        400,
        "invalid_filter",
    ),
    bad("search-filter-bad-key", SEARCH, query(filters={"bad key!": 1}), 400, "invalid_filter"),
    bad("search-filter-sql-in-key", SEARCH, query(filters={"x') OR 1=1 --": 1}), 400, "invalid_filter"),
    bad("search-filters-string", SEARCH, query(filters="x"), 400, "invalid_filter"),
    bad("search-filters-list", SEARCH, query(filters=[{"user_id": "alice"}]), 400, "invalid_filter"),
    bad("search-filters-number", SEARCH, query(filters=0), 400, "invalid_filter"),
    bad(
        "search-filter-lowercase-or", SEARCH, query(filters={"or": [{"user_id": "a"}]}), 400, "invalid_filter"
    ),
    bad("search-filter-and-not-a-list", SEARCH, query(filters={"AND": "x"}), 400, "invalid_filter"),
    bad("search-filter-too-deep", SEARCH, query(filters=nested_nots(9)), 400, "invalid_filter"),
    bad(
        "list-filter-unknown-operator",
        LIST,
        params=listing(filters={"user_id": {"regex": "a"}}),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "list-filter-bad-key",
        LIST,
        params=listing(filters={"bad key!": 1}),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "list-filters-malformed-json",
        LIST,
        params=listing(filters='{"topic": '),
        status=400,
        code="invalid_filter",
    ),
    bad("list-filters-array", LIST, params=listing(filters=[1, 2]), status=400, code="invalid_filter"),
    bad("list-filters-string", LIST, params=listing(filters='"tea"'), status=400, code="invalid_filter"),
    bad(
        "list-filter-bad-timestamp",
        LIST,
        params=listing(filters={"created_at": {"gt": "yesterday"}}),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "delete-all-filter-unknown-operator",
        DELETE_ALL,
        params=listing(filters={"topic": {"regex": "t"}}),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "delete-all-filters-malformed-json",
        DELETE_ALL,
        params=listing(filters="{nope"),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "delete-all-filters-array", DELETE_ALL, params=listing(filters=[]), status=400, code="invalid_filter"
    ),
    bad("delete-all-without-owner", DELETE_ALL, status=400, code="owner_required"),
    # GET /memories: paging and flags
    bad("list-page-size-zero", LIST, params=listing(page_size="0")),
    bad("list-page-size-huge", LIST, params=listing(page_size="10000"), status=400, code="invalid_page_size"),
    bad(
        "list-page-size-alias-huge",
        LIST,
        params=listing(pageSize="10000"),
        status=400,
        code="invalid_page_size",
    ),
    bad(
        "list-page-size-alias-not-a-number",
        LIST,
        params=listing(pageSize="ten"),
        status=400,
        code="invalid_parameter",
    ),
    bad("list-page-zero", LIST, params=listing(page="0")),
    bad("list-page-not-a-number", LIST, params=listing(page="one")),
    bad(
        "list-page-beyond-any-offset", LIST, params=listing(page=str(10**30)), status=400, code="invalid_page"
    ),
    bad("list-memory-type-unknown", LIST, params=listing(memory_type="FOREVER"), code="invalid_memory_type"),
    bad(
        "list-include-expired-not-a-flag",
        LIST,
        params=listing(include_expired="maybe"),
        status=400,
        code="invalid_parameter",
    ),
    # ids in the path, unknown routes, wrong methods
    bad("get-invalid-uuid", f"GET {MEM}/not-a-uuid", status=400, code="invalid_id"),
    bad("update-invalid-uuid", f"PUT {MEM}/123", {"text": "x"}, 400, "invalid_id"),
    bad(
        "delete-invalid-uuid",
        f"DELETE {MEM}/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
        status=400,
        code="invalid_id",
    ),
    bad("history-invalid-uuid", f"GET {MEM}/nope/history", status=400, code="invalid_id"),
    bad("entities-invalid-uuid", f"GET {MEM}/nope/entities", status=400, code="invalid_id"),
    bad("entity-invalid-uuid", "GET /mem/v1/entities/nope", status=400, code="invalid_id"),
    bad("delete-entity-invalid-uuid", "DELETE /mem/v1/entities/nope", status=400, code="invalid_id"),
    bad("get-unknown-uuid", f"GET {MEM}/{NO_SUCH_ID}", status=404, code="memory_not_found"),
    bad("update-unknown-uuid", f"PUT {MEM}/{NO_SUCH_ID}", {"text": "x"}, 404, "memory_not_found"),
    bad("delete-unknown-uuid", f"DELETE {MEM}/{NO_SUCH_ID}", status=404, code="memory_not_found"),
    bad("history-unknown-uuid", f"GET {MEM}/{NO_SUCH_ID}/history", status=404, code="memory_not_found"),
    bad("unknown-mem-route", "GET /mem/v1/nothing-here", status=404, code="route_not_found"),
    bad("unknown-top-level-route", "POST /nowhere", {}, 404, "route_not_found"),
    bad("patch-memories", f"PATCH {MEM}", {}, 405, "method_not_allowed"),
    bad("get-search", "GET /mem/v1/search", status=405, code="method_not_allowed"),
    bad("delete-config", f"DELETE {CONFIG}", status=405, code="method_not_allowed"),
    bad("post-one-memory", f"POST {MEM}/{{id}}", {"text": "x"}, 405, "method_not_allowed"),
    # PUT /config
    bad("config-unknown-key", PUT_CONFIG, settings({"search.turbo": True}), 400, "unknown_config_key"),
    bad(
        "config-unknown-key-beside-a-good-one",
        PUT_CONFIG,
        settings({"search.default-top-k": 7, "search.turbo": True}),
        400,
        "unknown_config_key",
    ),
    bad(
        "config-fixed-dimensions",
        PUT_CONFIG,
        settings({"embedding.dimensions": 1536}),
        400,
        "config_key_fixed",
    ),
    bad("config-fixed-fts", PUT_CONFIG, settings({"search.fts-config": "english"}), 400, "config_key_fixed"),
    bad("config-top-k-zero", PUT_CONFIG, settings({"search.default-top-k": 0}), 400, "invalid_config_value"),
    bad(
        "config-top-k-too-big",
        PUT_CONFIG,
        settings({"search.default-top-k": 1000}),
        400,
        "invalid_config_value",
    ),
    bad(
        "config-top-k-string",
        PUT_CONFIG,
        settings({"search.default-top-k": "five"}),
        400,
        "invalid_config_value",
    ),
    bad(
        "config-top-k-float", PUT_CONFIG, settings({"search.default-top-k": 2.5}), 400, "invalid_config_value"
    ),
    bad(
        "config-top-k-bool", PUT_CONFIG, settings({"search.default-top-k": True}), 400, "invalid_config_value"
    ),
    bad("config-history-off", PUT_CONFIG, settings({"history.enabled": False}), 400, "config_key_fixed"),
    bad(
        "config-window-negative",
        PUT_CONFIG,
        settings({"session.window-size": -1}),
        400,
        "invalid_config_value",
    ),
    bad("config-settings-not-object", PUT_CONFIG, {"settings": "x"}, code="invalid_body"),
    # POST /auth/v1/admin/tenants
    bad("tenant-no-name", CREATE_TENANT, {"ref": "abcdef"}, code="validation_failed"),
    bad("tenant-name-number", CREATE_TENANT, {"name": 5}, code="validation_failed"),
    bad("tenant-blank-name", CREATE_TENANT, {"name": "  "}, 400, "invalid_tenant_name"),
    bad("tenant-bad-ref", CREATE_TENANT, {"name": "x", "ref": "Bad Ref!"}, 400, "invalid_tenant_ref"),
    # unknown fields, anywhere in a body: named, never ignored
    bad("add-misspelt-metadata", ADD, new(metdata={"k": "v"}), 400, "unknown_field"),
    bad("add-misspelt-user-id-without-owner", ADD, {"messages": "hi", "user_idd": "a"}, 400, "unknown_field"),
    bad(
        "add-unknown-message-key",
        ADD,
        new(messages=[{"role": "user", "content": "hi", "nmae": "x"}]),
        400,
        "unknown_field",
    ),
    bad(
        "add-unknown-content-part-key",
        ADD,
        new(messages=[{"role": "user", "content": [{"type": "text", "text": "hi", "colour": "red"}]}]),
        400,
        "unknown_field",
    ),
    bad("update-misspelt-metadata", UPDATE, {"text": "x", "metadat": {}}, 400, "unknown_field"),
    bad("search-misspelt-top-k", SEARCH, query(topk=3), 400, "unknown_field"),
    bad(
        "config-settings-beside-a-stray-key", PUT_CONFIG, {"settings": {}, "colour": 1}, 400, "unknown_field"
    ),
    bad(
        "tenant-unhonoured-dimensions",
        CREATE_TENANT,
        {"name": "Gamma", "embedding_dimensions": 1536},
        400,
        "unknown_field",
    ),
]


@dataclass(frozen=True)
class Seeded:
    keys: TenantKeys
    memory_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded(client: httpx.AsyncClient, runtime: Runtime, fake_provider: FakeProviderServer) -> Any:
    """One tenant with one memory for the whole table of bad requests.

    Creating a tenant (a database) per case would dominate the runtime; sharing is safe because
    each case proves, by comparing snapshots, that it changed nothing.
    """
    keys = await new_tenant(runtime, "Bad input")
    item = await add(client, keys.service, "I like green tea", metadata={"topic": "tea"})
    yield Seeded(keys, item["id"])
    await runtime.pools.drop(keys.ref)


async def _snapshot(
    client: httpx.AsyncClient, runtime: Runtime, keys: TenantKeys, memory_id: str
) -> dict[str, Any]:
    """Everything a bad request could have changed: row counts, the memory, its history, the config."""
    headers = keys.service
    memory = await client.get(f"{MEM}/{memory_id}", headers=headers)
    history = await client.get(f"{MEM}/{memory_id}/history", headers=headers)
    config = await client.get(CONFIG, headers=headers)
    assert memory.status_code == history.status_code == config.status_code == 200
    return {
        "counts": await table_counts(runtime, keys),
        "memory": memory.json(),
        "history": history.json(),
        "config": config.json(),
        "tenants": await _tenant_count(client),
    }


async def _tenant_count(client: httpx.AsyncClient) -> int:
    response = await client.get(TENANTS, headers=ADMIN)
    assert response.status_code == 200
    return len(response.json()["tenants"])


async def _assert_service_still_works(client: httpx.AsyncClient, keys: TenantKeys, text: str) -> None:
    item = await add(client, keys.service, text, user_id="bob")
    assert item["event"] == "ADD"
    response = await client.get(f"{MEM}/{item['id']}", headers=keys.service)
    assert response.status_code == 200
    assert response.json()["memory"] == text


@pytest.mark.parametrize("case", CASES)
async def test_bad_request_is_refused_with_a_stable_code_and_changes_nothing(
    client: httpx.AsyncClient,
    runtime: Runtime,
    seeded: Seeded,
    fake_provider: FakeProviderServer,
    request: pytest.FixtureRequest,
    case: Bad,
) -> None:
    keys = seeded.keys
    before = await _snapshot(client, runtime, keys, seeded.memory_id)

    headers = dict(ADMIN if case.admin else keys.service)
    kwargs: dict[str, Any] = {"params": case.params, "headers": headers}
    if case.raw is not None:
        kwargs["content"] = case.raw
        headers.update(JSON_HEADERS)
    elif case.body is not None:
        kwargs["json"] = case.body
    response = await client.request(case.method, case.path.format(id=seeded.memory_id), **kwargs)

    assert_refused(response, set(case.status), case.code)
    assert await _snapshot(client, runtime, keys, seeded.memory_id) == before
    await _assert_service_still_works(client, keys, f"Still answering after {request.node.name}")


async def test_a_text_of_exactly_the_maximum_length_is_accepted(
    client: httpx.AsyncClient, tenant: TenantKeys
):
    item = await add(client, tenant.service, "a" * MAX_MEMORY_CHARS)
    assert item["event"] == "ADD"


async def test_a_body_just_under_the_size_limit_is_refused_for_its_text_length_not_its_size(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    # 20001 characters fit well under the 64 KiB cap: the refusal is the length rule, not the body size.
    body = new(messages="a" * (MAX_MEMORY_CHARS + 1))
    assert len(json.dumps(body)) < MAX_BODY
    before = await table_counts(runtime, tenant)
    response = await client.post(MEM, json=body, headers=tenant.service)
    assert_refused(response, 400, "message_too_long")
    assert await table_counts(runtime, tenant) == before


async def test_an_incoming_request_id_is_echoed_on_an_error(client: httpx.AsyncClient, tenant: TenantKeys):
    response = await client.post(
        MEM, content=b"{", headers={**tenant.service, **JSON_HEADERS, "x-request-id": "trace-abc.123"}
    )
    assert_refused(response, 400, "malformed_json")
    assert response.headers["x-request-id"] == "trace-abc.123"


async def test_a_malformed_body_without_an_api_key_is_still_a_clean_refusal(client: httpx.AsyncClient):
    response = await client.post(MEM, content=b'{"messages": ', headers=JSON_HEADERS)
    assert_refused(response, {400, 401})


async def test_a_run_of_bad_requests_leaves_the_tenant_working(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    before = await table_counts(runtime, tenant)
    bodies = (b"{", b"[", b'{"messages": 5}', b"\xff\xfe", b'{"messages": "x", "user_id": 7}', b'"x"')
    for content in bodies * 3:
        response = await client.post(MEM, content=content, headers={**tenant.service, **JSON_HEADERS})
        assert_refused(response, {400, 422})
    assert await table_counts(runtime, tenant) == before
    await _assert_service_still_works(client, tenant, "Still answering after a run of bad requests")
