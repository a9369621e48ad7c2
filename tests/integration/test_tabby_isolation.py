"""Tabby's /memory routes join the isolation and bad-input suites: on every route, another owner
gets 404 (or 403 where it names that owner), another tenant's credentials are refused, anonymous
callers are refused, and bad input gets a clear 4xx in Tabby's error envelope; each refusal is
checked against the database, which must be exactly as it was."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio

from app.auth.tokens import mint_api_key
from app.core.schemas import MAX_MEMORY_CHARS
from app.runtime import Runtime
from tests.conftest import TenantKeys, add, new_tenant, table_counts, tenant_conn

T = "/memory"
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"
CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
MAX_BODY = 64 * 1024


def assert_tabby_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A refusal in Tabby's envelope, carrying the house error body; no trace, a request id."""
    assert (response.status_code, response.json().get("error", {}).get("code")) == (status, code), (
        response.text
    )
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert CODE.fullmatch(body["error"]["code"])
    assert isinstance(body["error"]["message"], str) and len(body["error"]["message"]) > 3
    assert body["detail"] == body["error"]["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert response.headers.get("x-request-id")
    return body


@dataclass(frozen=True)
class Seeded:
    keys: TenantKeys
    alice_id: str
    bob_id: str
    other: TenantKeys  # a second tenant, with a memory of its own "alice"
    other_alice_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded(client: httpx.AsyncClient, runtime: Runtime) -> Seeded:
    """Shared by tests that are only refused or only read: each checks that nothing changed."""
    keys = await new_tenant(runtime, "Tabby isolation")
    alice = await add(client, keys.service, "Alice likes green tea", user_id="alice")
    bob = await add(client, keys.service, "Bob likes green tea", user_id="bob")
    other = await new_tenant(runtime, "Tabby other tenant")
    other_alice = await add(client, other.service, "Other tenant's Alice likes green tea", user_id="alice")
    return Seeded(keys, alice["id"], bob["id"], other, other_alice["id"])


async def state(runtime: Runtime, keys: TenantKeys) -> dict[str, Any]:
    """Every memory row and history row of the tenant, as the superuser sees them."""
    conn = await tenant_conn(runtime, keys)
    try:
        memories = await conn.fetch(
            "SELECT id, user_id, memory, memory_type, metadata::text, updated_at, deleted_at"
            " FROM mem.memories ORDER BY id"
        )
        history = await conn.fetch("SELECT id, memory_id, event FROM mem.memory_history ORDER BY id")
    finally:
        await conn.close()
    return {
        "counts": await table_counts(runtime, keys),
        "memories": [dict(r) for r in memories],
        "history": [dict(r) for r in history],
    }


def route(method: str, path: str, body: Any = None) -> Any:
    return pytest.param(method, path, body, id=f"{method} {path}")


# Every Tabby route, aimed at alice's memory (`{id}`) or naming alice.
EVERY_ROUTE = [
    route("POST", "/add", {"messages": "I like black tea", "user_id": "alice"}),
    route(
        "POST", "/add_image", {"image_url": "https://example.com/a.png", "context": "tea", "user_id": "alice"}
    ),
    route("POST", "/search", {"query": "green tea", "user_id": "alice"}),
    route("POST", "/get_all", {"user_id": "alice"}),
    route("GET", "/{id}"),
    route("PUT", "/update", {"memory_id": "{id}", "data": "Alice likes coffee"}),
    route("DELETE", "/{id}"),
    route("GET", "/history/{id}"),
    route("DELETE", "/user/alice"),
    route("GET", "/graph?userId=alice"),  # graph answers: tests/integration/test_graph_compat.py
]
BY_ID = [r for r in EVERY_ROUTE if "{id}" in json.dumps(r.values)]


def aimed(path: str, body: Any, memory_id: str) -> tuple[str, Any]:
    fill = json.dumps(body).replace("{id}", memory_id) if body is not None else None
    return T + path.replace("{id}", memory_id), json.loads(fill) if fill is not None else None


async def call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, memory_id: str, headers: dict[str, str]
) -> httpx.Response:
    url, payload = aimed(path, body, memory_id)
    return await client.request(method, url, json=payload, headers=headers)


# --- anonymous and other tenants --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ROUTE)
async def test_anonymous_callers_are_refused_on_every_route(client, runtime, seeded, method, path, body):
    before = await state(runtime, seeded.keys)
    no_key = await call(client, method, path, body, seeded.alice_id, {})
    assert_tabby_error(no_key, 401, "missing_api_key")
    anon_only = await call(client, method, path, body, seeded.alice_id, seeded.keys.anon)
    assert_tabby_error(anon_only, 403, "anonymous_not_allowed")
    # supabase-js with nobody signed in sends the anon key as the Bearer too: still no user.
    as_bearer = {**seeded.keys.anon, "authorization": f"Bearer {seeded.keys.anon_key}"}
    assert_tabby_error(
        await call(client, method, path, body, seeded.alice_id, as_bearer), 403, "anonymous_not_allowed"
    )
    assert await state(runtime, seeded.keys) == before


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ROUTE)
async def test_another_tenants_credentials_are_refused_on_every_route(
    client, runtime, seeded, method, path, body
):
    before = await state(runtime, seeded.keys)
    foreign_user = {**seeded.keys.anon, "authorization": f"Bearer {seeded.other.user_token('alice')}"}
    assert_tabby_error(
        await call(client, method, path, body, seeded.alice_id, foreign_user), 401, "invalid_token"
    )
    # A key signed with the other tenant's secret that claims this tenant's ref.
    forged = {"apikey": mint_api_key(seeded.other.tenant.jwt_secret, seeded.keys.ref, "service_role")}
    assert_tabby_error(
        await call(client, method, path, body, seeded.alice_id, forged), 401, "invalid_api_key"
    )
    assert await state(runtime, seeded.keys) == before


@pytest.mark.parametrize(("method", "path", "body"), BY_ID)
async def test_another_tenants_service_key_never_reaches_this_tenants_memory(
    client, runtime, seeded, method, path, body
):
    before = await state(runtime, seeded.keys)
    response = await call(client, method, path, body, seeded.alice_id, seeded.other.service)
    assert_tabby_error(response, 404, "memory_not_found")
    assert await state(runtime, seeded.keys) == before


async def test_another_tenants_service_key_reads_and_deletes_only_its_own_alice(client, runtime, seeded):
    before = await state(runtime, seeded.keys)
    other = seeded.other.service
    found = await client.post(
        f"{T}/search", json={"query": "Alice likes green tea", "user_id": "alice"}, headers=other
    )
    listed = await client.post(f"{T}/get_all", json={"user_id": "alice"}, headers=other)
    assert [m["id"] for m in found.json()["results"]["results"]] == [seeded.other_alice_id]
    assert [m["id"] for m in listed.json()["memories"]["results"]] == [seeded.other_alice_id]
    # The last test of the module to touch the other tenant: it may clear its own alice.
    cleared = await client.delete(f"{T}/user/alice", headers=other)
    assert cleared.json()["result"]["deleted"] == 1
    assert await state(runtime, seeded.keys) == before


# --- one user against another ---------------------------------------------------------------------------


async def test_owner_reaches_its_memory_through_every_read_route(client, seeded):
    """The control for the refusals below: the same requests succeed for the memory's owner."""
    alice = seeded.keys.user("alice")
    got = await client.get(f"{T}/{seeded.alice_id}", headers=alice)
    assert got.status_code == 200 and got.json()["memory"]["memory"] == "Alice likes green tea"
    history = await client.get(f"{T}/history/{seeded.alice_id}", headers=alice)
    assert [h["event"] for h in history.json()["history"]] == ["ADD"]
    listed = await client.post(f"{T}/get_all", json={}, headers=alice)
    assert [m["id"] for m in listed.json()["memories"]["results"]] == [seeded.alice_id]


@pytest.mark.parametrize(("method", "path", "body"), BY_ID)
async def test_user_cannot_reach_another_users_memory(client, runtime, seeded, method, path, body):
    before = await state(runtime, seeded.keys)
    theirs = await call(client, method, path, body, seeded.alice_id, seeded.keys.user("bob"))
    unknown = await call(client, method, path, body, NO_SUCH_ID, seeded.keys.user("bob"))
    assert_tabby_error(theirs, 404, "memory_not_found")
    # Not-yours and not-found are indistinguishable, so ids don't leak.
    assert theirs.json() == unknown.json()
    assert await state(runtime, seeded.keys) == before


@pytest.mark.parametrize(
    ("method", "path", "body"), [r for r in EVERY_ROUTE if "alice" in json.dumps(r.values) and r not in BY_ID]
)
async def test_user_naming_another_user_is_refused(client, runtime, seeded, method, path, body):
    before = await state(runtime, seeded.keys)
    response = await call(client, method, path, body, seeded.alice_id, seeded.keys.user("bob"))
    assert_tabby_error(response, 403, "user_scope_violation")
    assert await state(runtime, seeded.keys) == before


async def test_user_camel_case_user_id_naming_another_user_is_refused(client, runtime, seeded):
    before = await state(runtime, seeded.keys)
    response = await client.post(
        f"{T}/add", json={"messages": "hi", "userId": "alice"}, headers=seeded.keys.user("bob")
    )
    assert_tabby_error(response, 403, "user_scope_violation")
    assert await state(runtime, seeded.keys) == before


async def test_user_reads_only_its_own_memories(client, seeded):
    bob = seeded.keys.user("bob")
    found = await client.post(
        f"{T}/search", json={"query": "Alice likes green tea", "limit": 10}, headers=bob
    )
    listed = await client.post(f"{T}/get_all", json={}, headers=bob)
    assert [m["id"] for m in found.json()["results"]["results"]] == [seeded.bob_id]
    assert [m["id"] for m in listed.json()["memories"]["results"]] == [seeded.bob_id]
    assert listed.json()["memories"]["total"] == 1


async def test_a_users_bearer_beside_the_service_key_narrows_it_to_that_user(client, runtime, seeded):
    before = await state(runtime, seeded.keys)
    narrowed = {**seeded.keys.service, "authorization": f"Bearer {seeded.keys.user_token('bob')}"}
    response = await client.delete(f"{T}/user/alice", headers=narrowed)
    assert_tabby_error(response, 403, "user_scope_violation")
    assert_tabby_error(await client.get(f"{T}/{seeded.alice_id}", headers=narrowed), 404, "memory_not_found")
    assert await state(runtime, seeded.keys) == before


# --- bad input ------------------------------------------------------------------------------------------


def bad(
    name: str, method: str, path: str, body: Any, status: int, code: str, *, raw: bytes | None = None
) -> Any:
    return pytest.param(method, path, body, raw, status, code, id=name)


ADD = {"messages": "I like black tea", "user_id": "alice"}
IMAGE = {"image_url": "https://example.com/a.png", "context": "tea", "user_id": "alice"}
SEARCH = {"query": "tea", "user_id": "alice"}
GET_ALL = {"user_id": "alice"}
UPDATE = {"memory_id": "{id}", "data": "Alice likes coffee"}
BODY_ROUTES = {"add": "/add", "add-image": "/add_image", "search": "/search", "get-all": "/get_all"}


def _every_body_route() -> list[Any]:
    cases = []
    for label, path in {**BODY_ROUTES, "update": "/update"}.items():
        method = "PUT" if label == "update" else "POST"
        cases += [
            bad(f"{label}-malformed-json", method, path, None, 400, "malformed_json", raw=b'{"messages": '),
            bad(f"{label}-array-body", method, path, [ADD], 422, "invalid_body"),
            bad(
                f"{label}-oversized",
                method,
                path,
                {**ADD, "pad": "a" * (MAX_BODY + 10)},
                413,
                "payload_too_large",
            ),
            bad(
                f"{label}-unknown-field",
                method,
                path,
                {**ADD, **SEARCH, **UPDATE, "topk": 3},
                400,
                "unknown_field",
            ),
        ]
    return cases


BAD_INPUT = [
    *_every_body_route(),
    # add
    bad("add-empty-messages", "POST", "/add", {**ADD, "messages": []}, 400, "empty_messages"),
    bad("add-messages-number", "POST", "/add", {**ADD, "messages": 5}, 422, "validation_failed"),
    bad(
        "add-auto-classify-string", "POST", "/add", {**ADD, "auto_classify": "yes"}, 422, "validation_failed"
    ),
    bad("add-unknown-type", "POST", "/add", {**ADD, "memory_type": "FOREVER"}, 422, "invalid_memory_type"),
    bad(
        "add-unknown-type-in-metadata",
        "POST",
        "/add",
        {**ADD, "metadata": {"memory_type": "FOREVER"}},
        422,
        "invalid_memory_type",
    ),
    bad(
        "add-type-in-metadata-number",
        "POST",
        "/add",
        {**ADD, "metadata": {"memory_type": 5}},
        400,
        "invalid_memory_type",
    ),
    bad(
        "add-two-types-disagree",
        "POST",
        "/add",
        {**ADD, "memory_type": "EPISODIC", "metadata": {"memory_type": "SEMANTIC"}},
        400,
        "conflicting_fields",
    ),
    bad("add-no-owner", "POST", "/add", {"messages": "I like tea"}, 400, "owner_required"),
    bad("add-user-id-too-long", "POST", "/add", {**ADD, "user_id": "u" * 256}, 400, "invalid_owner_id"),
    bad(
        "add-unknown-role",
        "POST",
        "/add",
        {**ADD, "messages": [{"role": "wizard", "content": "hi"}]},
        400,
        "invalid_message_role",
    ),
    bad("add-nul-in-text", "POST", "/add", {**ADD, "messages": "tea \u0000 time"}, 400, "invalid_text"),
    # add_image
    bad(
        "image-no-url", "POST", "/add_image", {"context": "tea", "user_id": "alice"}, 422, "validation_failed"
    ),
    bad("image-blank-url", "POST", "/add_image", {**IMAGE, "image_url": "  "}, 400, "empty_image_url"),
    bad("image-url-number", "POST", "/add_image", {**IMAGE, "image_url": 5}, 422, "validation_failed"),
    bad(
        "image-unknown-type",
        "POST",
        "/add_image",
        {**IMAGE, "memory_type": "FOREVER"},
        422,
        "invalid_memory_type",
    ),
    bad(
        "image-no-owner",
        "POST",
        "/add_image",
        {"image_url": "https://example.com/a.png"},
        400,
        "owner_required",
    ),
    # search
    bad("search-no-query", "POST", "/search", {"user_id": "alice"}, 422, "validation_failed"),
    bad("search-empty-query", "POST", "/search", {**SEARCH, "query": "  "}, 400, "empty_query"),
    bad("search-limit-zero", "POST", "/search", {**SEARCH, "limit": 0}, 400, "invalid_top_k"),
    bad("search-limit-huge", "POST", "/search", {**SEARCH, "limit": 100_000}, 400, "invalid_top_k"),
    bad(
        "search-unknown-type",
        "POST",
        "/search",
        {**SEARCH, "memory_type": "FOREVER"},
        422,
        "invalid_memory_type",
    ),
    bad("search-no-owner", "POST", "/search", {"query": "tea"}, 400, "owner_required"),
    # get_all
    bad("get-all-no-owner", "POST", "/get_all", {}, 400, "owner_required"),
    bad("get-all-page-zero", "POST", "/get_all", {**GET_ALL, "page": 0}, 400, "invalid_page"),
    bad("get-all-page-size-zero", "POST", "/get_all", {**GET_ALL, "page_size": 0}, 400, "invalid_page_size"),
    bad(
        "get-all-page-size-huge",
        "POST",
        "/get_all",
        {**GET_ALL, "page_size": 10_000},
        400,
        "invalid_page_size",
    ),
    bad(
        "get-all-unknown-type",
        "POST",
        "/get_all",
        {**GET_ALL, "memory_type": "FOREVER"},
        422,
        "invalid_memory_type",
    ),
    # update
    bad("update-malformed-id", "PUT", "/update", {**UPDATE, "memory_id": "nope"}, 400, "invalid_id"),
    bad("update-unknown-id", "PUT", "/update", {**UPDATE, "memory_id": NO_SUCH_ID}, 404, "memory_not_found"),
    bad("update-no-data", "PUT", "/update", {"memory_id": "{id}"}, 422, "validation_failed"),
    bad("update-empty-data", "PUT", "/update", {**UPDATE, "data": "  "}, 400, "empty_text"),
    bad(
        "update-data-too-long",
        "PUT",
        "/update",
        {**UPDATE, "data": "a" * (MAX_MEMORY_CHARS + 1)},
        400,
        "text_too_long",
    ),
    bad("update-data-number", "PUT", "/update", {**UPDATE, "data": 5}, 422, "validation_failed"),
    # by id and by user
    bad("get-malformed-id", "GET", "/nope", None, 400, "invalid_id"),
    bad("get-unknown-id", "GET", f"/{NO_SUCH_ID}", None, 404, "memory_not_found"),
    bad("delete-malformed-id", "DELETE", "/nope", None, 400, "invalid_id"),
    bad("delete-unknown-id", "DELETE", f"/{NO_SUCH_ID}", None, 404, "memory_not_found"),
    bad("history-malformed-id", "GET", "/history/nope", None, 400, "invalid_id"),
    bad("history-unknown-id", "GET", f"/history/{NO_SUCH_ID}", None, 404, "memory_not_found"),
    bad("delete-user-too-long", "DELETE", "/user/" + "u" * 256, None, 400, "invalid_owner_id"),
    bad("delete-user-blank", "DELETE", "/user/%20", None, 400, "invalid_owner_id"),
]


@pytest.mark.parametrize(("method", "path", "body", "raw", "status", "code"), BAD_INPUT)
async def test_bad_input_is_refused_clearly_and_changes_nothing(
    client, runtime, seeded, method, path, body, raw, status, code
):
    before = await state(runtime, seeded.keys)
    url, payload = aimed(path, body, seeded.alice_id)
    if raw is not None:
        response = await client.request(
            method, url, content=raw, headers={**seeded.keys.service, "content-type": "application/json"}
        )
    else:
        response = await client.request(method, url, json=payload, headers=seeded.keys.service)
    assert_tabby_error(response, status, code)
    assert await state(runtime, seeded.keys) == before
    # The service still answers the next good request.
    assert (await client.get(f"{T}/{seeded.alice_id}", headers=seeded.keys.service)).status_code == 200


async def test_a_misspelt_field_names_the_one_it_was_meant_to_be(client, seeded):
    response = await client.post(f"{T}/add", json={**ADD, "auto_clasify": False}, headers=seeded.keys.service)
    body = assert_tabby_error(response, 400, "unknown_field")
    assert body["error"]["details"] == {"field": "auto_clasify", "suggestion": "auto_classify"}


async def test_the_memory_id_in_a_path_is_never_taken_from_the_history_or_user_routes(client, seeded):
    """/memory/history/{id} and /memory/user/{user_id} are their own routes, not ids of /memory/{id}."""
    history = await client.get(f"{T}/history/{seeded.alice_id}", headers=seeded.keys.service)
    assert history.status_code == 200 and "history" in history.json()
    user_id = UUID(seeded.alice_id)  # a user id that looks like a memory id is still a user id
    cleared = await client.delete(f"{T}/user/{user_id}", headers=seeded.keys.service)
    assert cleared.status_code == 200 and cleared.json()["result"]["deleted"] == 0
