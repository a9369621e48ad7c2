"""/mem0 over plain HTTP: mem0's shapes for each API generation, isolation on every route (another
owner 404, another tenant refused, anonymous refused) and bad input on every route (a clear 4xx or a
501 naming the feature, with mem0's `detail`, and nothing changed in the database).

The official SDK's own run is tests/integration/test_mem0_sdk.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.access import tenant_transaction
from app.core.jobs import service as jobs
from app.runtime import Runtime
from app.settings import QueueSettings
from app.worker.runner import SUCCEEDED, run_job, service_scope
from tests.conftest import TenantKeys, new_tenant, table_counts, tenant_conn

P = "/mem0"
MISSING = "00000000-0000-4000-8000-000000000000"


def token(key: str) -> dict[str, str]:
    return {"authorization": f"Token {key}"}


async def add(client: httpx.AsyncClient, keys: TenantKeys, text: str, **body: Any) -> str:
    payload = {"messages": [{"role": "user", "content": text}], "infer": False, "async_mode": False, **body}
    r = await client.post(f"{P}/v3/memories/add/", json=payload, headers=token(keys.service_role_key))
    assert r.status_code == 200, r.text
    (item,) = r.json()["results"]
    return str(item["id"])


@dataclass(frozen=True)
class World:
    keys: TenantKeys
    other: TenantKeys
    alice: str  # a memory of alice's
    bob: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(client: httpx.AsyncClient, runtime: Runtime) -> World:
    keys = await new_tenant(runtime, "mem0 isolation")
    other = await new_tenant(runtime, "mem0 other tenant")
    alice = await add(client, keys, "Alice likes green tea", user_id="alice", metadata={"topic": "food"})
    bob = await add(client, keys, "Bob likes black coffee", user_id="bob")
    return World(keys, other, alice, bob)


async def snapshot(runtime: Runtime, keys: TenantKeys) -> list[Any]:
    conn = await tenant_conn(runtime, keys)
    try:
        rows = await conn.fetch(
            "SELECT id, memory, user_id, metadata::text, deleted_at FROM mem.memories ORDER BY id"
        )
        return [tuple(r) for r in rows] + [await table_counts(runtime, keys)]
    finally:
        await conn.close()


# --- shapes of each generation ------------------------------------------------------------


async def test_v3_add_v1_add_and_their_output_formats(client: httpx.AsyncClient, runtime: Runtime, tenant):
    h = token(tenant.service_role_key)
    body = {"messages": "Frank bakes bread", "user_id": "frank", "app_id": "kitchen", "infer": False}
    v3 = await client.post(f"{P}/v3/memories/add", json={**body, "async_mode": False}, headers=h)
    assert v3.status_code == 200, v3.text
    (item,) = v3.json()["results"]
    assert (item["event"], item["memory"]) == ("ADD", "Frank bakes bread")

    v1 = await client.post(
        f"{P}/v1/memories/", json={**body, "messages": "Frank bakes cake", "async_mode": False}, headers=h
    )
    assert isinstance(v1.json(), list) and v1.json()[0]["data"] == {"memory": "Frank bakes cake"}
    v11 = await client.post(
        f"{P}/v1/memories/",
        json={**body, "messages": "Frank bakes pie", "async_mode": False, "output_format": "v1.1"},
        headers=h,
    )
    assert v11.json()["results"][0]["memory"] == "Frank bakes pie"

    conn = await tenant_conn(runtime, tenant)
    try:
        rows = await conn.fetch(
            "SELECT memory, user_id, metadata->>'app_id' AS app FROM mem.memories ORDER BY memory"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("Frank bakes bread", "frank", "kitchen"),
        ("Frank bakes cake", "frank", "kitchen"),
        ("Frank bakes pie", "frank", "kitchen"),
    ]
    listed = await client.post(f"{P}/v3/memories/", json={"filters": {"app_id": "kitchen"}}, headers=h)
    assert listed.json()["count"] == 3 and {m["app_id"] for m in listed.json()["results"]} == {"kitchen"}


async def test_the_async_default_is_queued_and_its_event_ends_with_mem0s_results(
    client: httpx.AsyncClient, runtime: Runtime, tenant
):
    """No async_mode (mem0's default is true): a PENDING job at once, no memory yet; once a
    worker has run it, the event answers SUCCEEDED with `{id, event, memory}`."""
    h = token(tenant.service_role_key)
    r = await client.post(
        f"{P}/v3/memories/add/", json={"messages": "Gina hikes", "user_id": "gina", "infer": False}, headers=h
    )
    assert r.status_code == 200, r.text
    (item,) = r.json()["results"]
    assert (item["status"], set(item)) == ("PENDING", {"message", "status", "event_id"})
    v1 = await client.post(
        f"{P}/v1/memories/", json={"messages": "Gina climbs", "user_id": "gina", "infer": False}, headers=h
    )
    assert v1.status_code == 200 and v1.json()[0]["status"] == "PENDING"  # v1.0: a bare list
    conn = await tenant_conn(runtime, tenant)
    try:
        jobs_in_db = await conn.fetch("SELECT id, status, user_id FROM mem.jobs ORDER BY created_at")
        assert [(str(j["id"]), j["status"], j["user_id"]) for j in jobs_in_db] == [
            (item["event_id"], "PENDING", "gina"),
            (v1.json()[0]["event_id"], "PENDING", "gina"),
        ]
        assert await conn.fetchval("SELECT count(*) FROM mem.memories") == 0

        pending = (await client.get(f"{P}/v1/event/{item['event_id']}/", headers=h)).json()
        assert (pending["status"], pending["results"], pending["error"]) == ("PENDING", [], None)
        assert pending["payload"]["messages"] == "Gina hikes"

        assert await run_next_job(runtime, tenant.ref) == item["event_id"]  # oldest first
        done = (await client.get(f"{P}/v1/event/{item['event_id']}", headers=h)).json()
        memory_id = await conn.fetchval("SELECT id::text FROM mem.memories WHERE memory = 'Gina hikes'")
    finally:
        await conn.close()
    assert done["status"] == "SUCCEEDED"
    assert done["results"] == [{"id": memory_id, "event": "ADD", "memory": "Gina hikes"}]
    listed = (await client.get(f"{P}/v1/events/", headers=h)).json()
    assert [(e["id"], e["status"]) for e in listed["results"]] == [
        (v1.json()[0]["event_id"], "PENDING"),
        (item["event_id"], "SUCCEEDED"),
    ]
    assert (listed["count"], listed["next"], listed["previous"]) == (2, None, None)


async def run_next_job(runtime: Runtime, ref: str) -> str:
    """What a queue worker does with the tenant's next job (this app runs no workers): its id."""
    async with tenant_transaction(runtime, service_scope(ref)) as db:
        job = await jobs.claim(db, ref, lease_seconds=30)
    assert job is not None
    assert await run_job(runtime, job, QueueSettings()) == SUCCEEDED
    return str(job.id)


async def test_list_and_search_generations(client: httpx.AsyncClient, world: World):
    h = token(world.keys.service_role_key)
    v2 = await client.post(f"{P}/v2/memories/", json={"filters": {"user_id": "alice"}}, headers=h)
    assert [m["id"] for m in v2.json()] == [world.alice]
    v2_11 = await client.post(
        f"{P}/v2/memories/", json={"filters": {"user_id": "alice"}, "output_format": "v1.1"}, headers=h
    )
    assert [m["id"] for m in v2_11.json()["results"]] == [world.alice]
    v1 = await client.get(f"{P}/v1/memories/", params={"user_id": "bob"}, headers=h)
    assert [m["id"] for m in v1.json()] == [world.bob]
    v1_paged = await client.get(
        f"{P}/v1/memories/", params={"user_id": "bob", "page": 1, "page_size": 5}, headers=h
    )
    assert v1_paged.json()["count"] == 1 and v1_paged.json()["next"] is None

    by_metadata = await client.post(
        f"{P}/v3/memories/", json={"filters": {"user_id": "alice", "metadata": {"topic": "food"}}}, headers=h
    )
    assert by_metadata.json()["count"] == 1
    tenant_wide = await client.post(
        f"{P}/v3/memories/", json={"filters": {"user_id": {"in": ["alice", "bob"]}}}, headers=h
    )
    assert {m["id"] for m in tenant_wide.json()["results"]} == {world.alice, world.bob}

    s1 = await client.post(f"{P}/v1/memories/search/", json={"query": "tea", "user_id": "alice"}, headers=h)
    assert [m["id"] for m in s1.json()] == [world.alice]
    s2 = await client.post(
        f"{P}/v2/memories/search/",
        json={"query": "tea", "filters": {"user_id": "alice"}, "output_format": "v1.1"},
        headers=h,
    )
    assert [m["id"] for m in s2.json()["results"]] == [world.alice]
    s3 = await client.post(
        f"{P}/v3/memories/search",
        json={"query": "coffee", "filters": {"AND": [{"user_id": "bob"}]}},
        headers=h,
    )
    assert [m["id"] for m in s3.json()["results"]] == [world.bob]
    assert set(s3.json()["results"][0]["score_breakdown"]) == {"semantic", "bm25", "entity", "graph"}


async def test_apikey_header_and_a_signed_in_user_work_too(client: httpx.AsyncClient, world: World):
    r = await client.get(f"{P}/v1/memories/{world.alice}/", headers=world.keys.service)
    assert r.status_code == 200 and r.json()["user_id"] == "alice"
    r = await client.post(f"{P}/v3/memories/", json={}, headers=world.keys.user("alice"))
    assert [m["id"] for m in r.json()["results"]] == [world.alice]  # the user is the owner
    r = await client.get(f"{P}/v1/entities/", headers=world.keys.user("alice"))
    assert [(e["type"], e["name"]) for e in r.json()["results"]] == [("user", "alice")]


# --- isolation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # {id}: alice's memory
    body: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    by_id: bool = False  # another owner / tenant is "not found" (404) rather than shown nothing

    @property
    def names_alice(self) -> bool:
        return "alice" in f"{self.path} {self.body} {self.params}"

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ADD = {"messages": "Mallory was here", "user_id": "alice", "infer": False, "async_mode": False}
ASYNC_ADD = {"messages": "Mallory was here", "user_id": "alice", "infer": False}
CALLS = [
    Call("GET", "/v1/ping/"),
    Call("POST", "/v3/memories/add/", ADD),
    Call("POST", "/v1/memories/", ADD),
    Call("POST", "/v3/memories/", {"filters": {"user_id": "alice"}}),
    Call("POST", "/v2/memories/", {"filters": {"user_id": "alice"}}),
    Call("GET", "/v1/memories/", params={"user_id": "alice"}),
    Call("DELETE", "/v1/memories/", params={"user_id": "alice"}),
    Call("POST", "/v3/memories/search/", {"query": "tea", "filters": {"user_id": "alice"}}),
    Call("POST", "/v2/memories/search/", {"query": "tea", "filters": {"user_id": "alice"}}),
    Call("POST", "/v1/memories/search/", {"query": "tea", "user_id": "alice"}),
    Call("GET", "/v1/memories/{id}/", by_id=True),
    Call("PUT", "/v1/memories/{id}/", {"text": "Mallory was here"}, by_id=True),
    Call("DELETE", "/v1/memories/{id}/", by_id=True),
    Call("GET", "/v1/memories/{id}/history/", by_id=True),
    Call("PUT", "/v1/batch/", {"memories": [{"memory_id": "{id}", "text": "Mallory"}]}, by_id=True),
    Call("DELETE", "/v1/batch/", {"memories": [{"memory_id": "{id}"}]}, by_id=True),
    Call("GET", "/v1/entities/"),
    Call("DELETE", "/v2/entities/user/alice/", by_id=True),
    Call("DELETE", "/v1/entities/user/alice/", by_id=True),
    Call("POST", "/v3/memories/add", ASYNC_ADD),  # mem0's default: queued
    Call("GET", f"/v1/event/{MISSING}/", by_id=True),
    Call("GET", "/v1/events/"),
    Call("POST", "/v1/exports/", {"schema": "{}"}),
]


def _body(call: Call, memory_id: str) -> Any:
    if call.body is None:
        return None
    import json

    return json.loads(json.dumps(call.body).replace("{id}", memory_id))


async def send(
    client: httpx.AsyncClient, call: Call, memory_id: str, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(
        call.method,
        P + call.path.format(id=memory_id),
        json=_body(call, memory_id),
        params=call.params,
        headers=headers,
    )


def refused(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if code is not None:
        assert body["code"] == code, body


@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_anonymous_and_forged_callers_are_refused_and_change_nothing(
    client: httpx.AsyncClient, runtime: Runtime, world: World, call: Call
):
    before = await snapshot(runtime, world.keys)
    refused(await send(client, call, world.alice, {}), 401, "missing_api_key")
    refused(await send(client, call, world.alice, token(world.keys.anon_key)), 403, "anonymous_not_allowed")
    refused(
        await send(client, call, world.alice, {"apikey": world.keys.anon_key}), 403, "anonymous_not_allowed"
    )
    refused(await send(client, call, world.alice, token(world.keys.service_role_key + "x")), 401)
    assert await snapshot(runtime, world.keys) == before


@pytest.mark.parametrize("call", [c for c in CALLS if c.by_id], ids=str)
async def test_another_owner_and_another_tenant_find_nothing_by_id(
    client: httpx.AsyncClient, runtime: Runtime, world: World, call: Call
):
    before = await snapshot(runtime, world.keys)
    if not call.names_alice:  # naming alice is refused outright (below)
        refused(await send(client, call, world.alice, world.keys.user("mallory")), 404)
    refused(await send(client, call, world.alice, token(world.other.service_role_key)), 404)
    assert await snapshot(runtime, world.keys) == before


@pytest.mark.parametrize("call", [c for c in CALLS if c.names_alice], ids=str)
async def test_a_user_may_not_name_another_user(
    client: httpx.AsyncClient, runtime: Runtime, world: World, call: Call
):
    before = await snapshot(runtime, world.keys)
    refused(await send(client, call, world.alice, world.keys.user("mallory")), 403, "user_scope_violation")
    assert await snapshot(runtime, world.keys) == before


async def test_another_tenant_sees_none_of_these_memories(client: httpx.AsyncClient, world: World):
    h = token(world.other.service_role_key)
    r = await client.post(f"{P}/v3/memories/", json={"filters": {"user_id": "alice"}}, headers=h)
    assert r.json()["count"] == 0
    r = await client.post(
        f"{P}/v3/memories/search/", json={"query": "tea", "filters": {"user_id": "alice"}}, headers=h
    )
    assert r.json()["results"] == []
    assert (await client.get(f"{P}/v1/entities/", headers=h)).json()["results"] == []
    assert (await client.get(f"{P}/v1/ping/", headers=h)).json()["org_id"] == world.other.ref


# --- bad input ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    method: str
    path: str
    body: Any
    status: int
    code: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.code}"


ALICE = {"user_id": "alice"}
BAD = [
    Bad("POST", "/v3/memories/add/", b'{"messages": ', 400, "malformed_json"),
    Bad("POST", "/v3/memories/add/", {**ADD, "user": "alice"}, 400, "unknown_field"),
    Bad("POST", "/v3/memories/add/", {**ADD, "infer": "yes"}, 422, "validation_failed"),
    Bad("POST", "/v3/memories/add/", {**ADD, "user_id": None}, 400, "owner_required"),
    Bad(
        "POST",
        "/v3/memories/add/",
        {**ADD, "custom_instructions": "x" * 4001},
        400,
        "custom_instructions_too_long",
    ),
    Bad("POST", "/v3/memories/add/", {**ADD, "custom_instructions": " "}, 400, "invalid_custom_instructions"),
    Bad("POST", "/v3/memories/add/", {**ADD, "custom_instructions": 5}, 422, "validation_failed"),
    Bad("POST", "/v3/memories/add/", {**ADD, "immutable": "yes"}, 422, "validation_failed"),
    # enable_graph is honoured now (tests/integration/test_graph_compat.py); a non-boolean is not.
    Bad("POST", "/v3/memories/add/", {**ADD, "enable_graph": "yes"}, 422, "validation_failed"),
    Bad("POST", "/v3/memories/", {"filters": ALICE, "enable_graph": 1}, 422, "validation_failed"),
    Bad("POST", "/v3/memories/search/", {"query": "tea", "enable_graph": True}, 400, "owner_required"),
    Bad("GET", "/v1/memories/?user_id=alice&enable_graph=maybe", None, 400, "invalid_parameter"),
    Bad("POST", "/v3/memories/add/", {**ADD, "expiration_date": "yesterday"}, 400, "invalid_expiration_date"),
    Bad("POST", "/v3/memories/add/", {**ADD, "filters": "alice"}, 400, "invalid_filter"),
    Bad("POST", "/v1/memories/", {**ADD, "output_format": "v2"}, 400, "invalid_output_format"),
    # Async adds (the default) are checked before they are queued: no job row (snapshot counts jobs).
    Bad("POST", "/v3/memories/add", {**ASYNC_ADD, "user_id": None}, 400, "owner_required"),
    Bad("POST", "/v3/memories/add", {**ASYNC_ADD, "expiration_date": "x"}, 400, "invalid_expiration_date"),
    Bad("POST", "/v3/memories/add", {**ASYNC_ADD, "immutable": 1}, 422, "validation_failed"),
    Bad(
        "POST",
        "/v3/memories/add",
        {**ASYNC_ADD, "custom_instructions": "x" * 4001},
        400,
        "custom_instructions_too_long",
    ),
    Bad("POST", "/v1/memories/", {**ASYNC_ADD, "messages": "x" * 30_000}, 400, "message_too_long"),
    Bad("POST", "/v1/memories/", {**ASYNC_ADD, "messages": []}, 400, "empty_messages"),
    Bad("POST", "/v3/memories/", {"filters": {}}, 400, "owner_required"),
    Bad("POST", "/v3/memories/", {"filters": {"user_id": {"regex": "a.*"}}}, 400, "invalid_filter"),
    Bad("POST", "/v3/memories/", {"filters": ALICE, "page_size": 100000}, 400, "invalid_page_size"),
    Bad("POST", "/v3/memories/", {"filters": ALICE, "keywords": "tea"}, 501, "mem0_field_not_supported"),
    Bad("POST", "/v2/memories/", {"filters": ALICE, "fields": ["id"]}, 501, "mem0_field_not_supported"),
    Bad("POST", "/v3/memories/search/", {"query": " ", "filters": ALICE}, 400, "empty_query"),
    Bad("POST", "/v3/memories/search/", {"query": "tea"}, 400, "owner_required"),
    Bad("POST", "/v3/memories/search/", {"query": "tea", "filters": ALICE, "top_k": 0}, 400, "invalid_top_k"),
    Bad(
        "POST",
        "/v3/memories/search/",
        {"query": "tea", "filters": ALICE, "threshold": 2},
        400,
        "invalid_threshold",
    ),
    Bad(
        "POST",
        "/v2/memories/search/",
        {"query": "tea", "filters": ALICE, "reference_date": 1},
        501,
        "mem0_field_not_supported",
    ),
    Bad("POST", "/v1/memories/search/", {"query": 5, "user_id": "alice"}, 422, "validation_failed"),
    Bad("GET", "/v1/memories/not-a-uuid/", None, 400, "invalid_id"),
    Bad("PUT", "/v1/memories/{id}/", {}, 400, "empty_update"),
    Bad(
        "PUT",
        "/v1/memories/{id}/",
        {"text": "x", "expiration_date": "2030-01-01"},
        501,
        "mem0_field_not_supported",
    ),
    Bad("PUT", "/v1/memories/{id}/", {"txt": "x"}, 400, "unknown_field"),
    Bad("DELETE", "/v1/memories/{id}/?delete_linked=true", None, 501, "not_supported"),
    Bad("DELETE", "/v1/memories/", None, 400, "owner_required"),
    Bad("PUT", "/v1/batch/", {"memories": []}, 400, "invalid_batch_size"),
    Bad("DELETE", "/v1/batch/", {"memories": [{"memory_id": MISSING}] * 1001}, 400, "invalid_batch_size"),
    Bad(
        "DELETE",
        "/v1/batch/",
        {"memories": [{"memory_id": "{id}"}, {"memory_id": "{id}"}]},
        400,
        "duplicate_memory_id",
    ),
    Bad("PUT", "/v1/batch/", {"memories": [{"memory_id": "{id}", "text": ""}]}, 400, "empty_text"),
    Bad("DELETE", "/v2/entities/team/alice/", None, 400, "invalid_entity_type"),
    Bad("GET", "/v1/event/nope/", None, 400, "invalid_id"),
    Bad(
        "POST",
        "/v1/feedback/",
        {"memory_id": MISSING, "feedback": "POSITIVE"},
        501,
        "mem0_feature_not_supported",
    ),
    Bad("GET", "/api/v1/webhooks/projects/p1/", None, 501, "mem0_feature_not_supported"),
    Bad("PATCH", "/api/v1/orgs/organizations/o/projects/p/", {}, 501, "mem0_feature_not_supported"),
    Bad("GET", "/v2/entities/user/alice/profile/", None, 501, "mem0_feature_not_supported"),
    Bad("GET", "/v1/memories/{id}/history/x", None, 404, "route_not_found"),
    Bad("GET", "/v9/nothing-here/", None, 404, "route_not_found"),
    Bad("PATCH", "/v1/memories/{id}/", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize("case", BAD, ids=str)
async def test_bad_input_is_refused_with_detail_and_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, world: World, case: Bad
):
    before = await snapshot(runtime, world.keys)
    headers = token(world.keys.service_role_key)
    kwargs: dict[str, Any] = {"headers": headers}
    if isinstance(case.body, bytes):
        kwargs["content"] = case.body
        headers["content-type"] = "application/json"
    elif case.body is not None:
        kwargs["content"] = httpx.Request("POST", "/", json=case.body).content.replace(
            b"{id}", world.alice.encode()
        )
        headers["content-type"] = "application/json"
    r = await client.request(case.method, P + case.path.format(id=world.alice), **kwargs)
    refused(r, case.status, case.code)
    assert await snapshot(runtime, world.keys) == before


async def test_two_different_keys_are_refused(client: httpx.AsyncClient, world: World):
    headers = {**token(world.keys.service_role_key), "apikey": world.other.service_role_key}
    refused(await client.get(f"{P}/v1/ping/", headers=headers), 401, "conflicting_api_keys")
    same = {**token(world.keys.service_role_key), "apikey": world.keys.service_role_key}
    assert (await client.get(f"{P}/v1/ping/", headers=same)).json()["org_id"] == world.keys.ref


async def test_adds_through_mem0_count_against_the_add_rate_limit(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
):
    await runtime.platform.set_tenant_limits(tenant.ref, {"service_adds_per_second": 1})
    h = token(tenant.service_role_key)
    body = {"messages": "Hana swims", "user_id": "hana", "infer": False, "async_mode": False}
    statuses = [
        (await client.post(f"{P}/v3/memories/add/", json=body, headers=h)).status_code for _ in range(3)
    ]
    assert statuses[0] == 200 and 429 in statuses
    # Reads are not adds: the add limit leaves them alone.
    assert (await client.get(f"{P}/v1/ping/", headers=h)).status_code == 200


async def test_paths_outside_mem0_keep_the_usual_error_body(client: httpx.AsyncClient):
    r = await client.get("/mem/v1/nothing-here")
    assert r.status_code == 404 and set(r.json()) == {"code", "message"}
    r = await client.get("/mem0x/v1/ping")
    assert r.status_code == 404 and "detail" not in r.json()


# --- immutable memories ---------------------------------------------------------------------


async def test_an_immutable_memory_is_shown_refuses_updates_atomically_and_can_be_deleted(
    client: httpx.AsyncClient, runtime: Runtime, tenant
):
    h = token(tenant.service_role_key)
    frozen = await add(client, tenant, "Was born in Lyon", user_id="ivy", immutable=True)
    loose = await add(client, tenant, "Likes jazz", user_id="ivy")
    shown = (await client.get(f"{P}/v1/memories/{frozen}/", headers=h)).json()
    assert shown["immutable"] is True
    assert (await client.get(f"{P}/v1/memories/{loose}/", headers=h)).json()["immutable"] is False
    listed = await client.post(f"{P}/v3/memories/", json={"filters": {"user_id": "ivy"}}, headers=h)
    assert {m["id"]: m["immutable"] for m in listed.json()["results"]} == {frozen: True, loose: False}
    conn = await tenant_conn(runtime, tenant)
    try:
        assert await conn.fetchval("SELECT immutable FROM mem.memories WHERE id = $1", frozen) is True
    finally:
        await conn.close()

    before = await snapshot(runtime, tenant)
    r = await client.put(f"{P}/v1/memories/{frozen}/", json={"text": "Was born in Paris"}, headers=h)
    refused(r, 409, "memory_immutable")
    # The batch is all or none: the mutable memory before the immutable one is not changed either.
    batch = {"memories": [{"memory_id": loose, "text": "Likes blues"}, {"memory_id": frozen, "text": "x"}]}
    refused(await client.put(f"{P}/v1/batch/", json=batch, headers=h), 409, "memory_immutable")
    assert await snapshot(runtime, tenant) == before

    # Erasing stays the user's right, as on mem0's platform.
    assert (await client.delete(f"{P}/v1/memories/{frozen}/", headers=h)).status_code == 200
    assert (await client.get(f"{P}/v1/memories/{frozen}/", headers=h)).status_code == 404


async def test_an_async_add_carries_immutable_and_custom_instructions_in_its_job(
    client: httpx.AsyncClient, runtime: Runtime, tenant
):
    h = token(tenant.service_role_key)
    body = {"messages": "Hana was born in Kyoto", "user_id": "hana", "infer": False}
    r = await client.post(
        f"{P}/v3/memories/add/",
        json={**body, "immutable": True, "custom_instructions": "Dates only"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    (item,) = r.json()["results"]
    pending = (await client.get(f"{P}/v1/event/{item['event_id']}/", headers=h)).json()
    assert (pending["payload"]["immutable"], pending["payload"]["custom_instructions"]) == (
        True,
        "Dates only",
    )
    assert await run_next_job(runtime, tenant.ref) == item["event_id"]
    conn = await tenant_conn(runtime, tenant)
    try:
        row = await conn.fetchrow("SELECT id::text, immutable FROM mem.memories WHERE user_id = 'hana'")
    finally:
        await conn.close()
    assert row["immutable"] is True
    shown = (await client.get(f"{P}/v1/memories/{row['id']}/", headers=h)).json()
    assert shown["immutable"] is True
