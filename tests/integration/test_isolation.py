"""Owner and tenant isolation on /mem/v1, and the owner clause of the repository underneath it.

Refused requests are checked twice: the answer (status and stable `code`) and the data
(row counts and the target memory as the service_role sees it are unchanged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio

from app.auth.scope import Owner
from app.auth.tokens import mint_api_key
from app.core.filters import NO_FILTER
from app.core.linking import repo as linking_repo
from app.db.pools import init_connection
from app.entities import repo as entities_repo
from app.memories import repo
from app.runtime import Runtime
from tests.conftest import TenantKeys, add, new_tenant, set_row_claims, table_counts, tenant_conn

MEM = "/mem/v1"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["results"]}


@dataclass(frozen=True)
class Seeded:
    """A tenant holding memories of alice (one linked to a known entity), bob and an agent with no user."""

    keys: TenantKeys
    alice_id: str
    alice_second_id: str
    bob_id: str
    agent_only_id: str
    entity_id: str


async def seed(client: httpx.AsyncClient, runtime: Runtime, keys: TenantKeys) -> Seeded:
    alice = await add(client, keys.service, "Alice likes green tea", user_id="alice")
    alice_second = await add(client, keys.service, "Alice lives in Lisbon", user_id="alice")
    bob = await add(client, keys.service, "Bob likes green tea", user_id="bob")
    agent_only = await add(
        client, keys.service, "The helper prefers green tea", user_id=None, agent_id="helper"
    )
    # Adding may link entities of its own; one more, linked directly, doesn't depend on how it finds them.
    conn = await tenant_conn(runtime, keys)
    try:
        entity_id = await conn.fetchval(
            "INSERT INTO mem.entities (user_id, text, entity_type)"
            " VALUES ('alice', 'Isolation marker', 'other') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO mem.entity_links (entity_id, memory_id) VALUES ($1, $2)",
            entity_id,
            UUID(alice_second["id"]),
        )
    finally:
        await conn.close()
    return Seeded(keys, alice["id"], alice_second["id"], bob["id"], agent_only["id"], str(entity_id))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded(client: httpx.AsyncClient, runtime: Runtime) -> Seeded:
    """Shared by the tests that only read or must be refused: each checks that nothing changed."""
    return await seed(client, runtime, await new_tenant(runtime, "Isolation"))


async def entity_owners(runtime: Runtime, keys: TenantKeys) -> dict[str | None, int]:
    """How many entities each user owns, read as the superuser."""
    conn = await tenant_conn(runtime, keys)
    try:
        rows = await conn.fetch("SELECT user_id, count(*) AS n FROM mem.entities GROUP BY user_id")
    finally:
        await conn.close()
    return {r["user_id"]: int(r["n"]) for r in rows}


async def snapshot(
    client: httpx.AsyncClient, runtime: Runtime, keys: TenantKeys, memory_id: str
) -> dict[str, Any]:
    """Row counts plus one memory and its history as the service_role sees them."""
    memory = await client.get(f"{MEM}/memories/{memory_id}", headers=keys.service)
    history = await client.get(f"{MEM}/memories/{memory_id}/history", headers=keys.service)
    return {
        "counts": await table_counts(runtime, keys),
        "memory": (memory.status_code, memory.json()),
        "history": (history.status_code, history.json()),
    }


# --- 1. one user against another -------------------------------------------------------------------------


async def test_owner_reaches_its_memory_through_every_per_memory_route(client, seeded):
    """The control for the 404s below: the same requests succeed for the memory's owner."""
    alice = seeded.keys.user("alice")
    got = await client.get(f"{MEM}/memories/{seeded.alice_second_id}", headers=alice)
    assert got.status_code == 200 and got.json()["memory"] == "Alice lives in Lisbon"
    history = await client.get(f"{MEM}/memories/{seeded.alice_second_id}/history", headers=alice)
    assert [h["event"] for h in history.json()] == ["ADD"]
    entities = await client.get(f"{MEM}/memories/{seeded.alice_second_id}/entities", headers=alice)
    assert seeded.entity_id in {e["id"] for e in entities.json()["results"]}
    entity = await client.get(f"{MEM}/entities/{seeded.entity_id}", headers=alice)
    assert entity.status_code == 200 and entity.json()["text"] == "Isolation marker"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        pytest.param("GET", "", None, id="read"),
        pytest.param("PUT", "", {"text": "Bob was here"}, id="update-text"),
        pytest.param("PUT", "", {"metadata": {"owner": "bob"}}, id="update-metadata"),
        pytest.param("DELETE", "", None, id="delete"),
        pytest.param("GET", "/history", None, id="history"),
        pytest.param("GET", "/entities", None, id="entities"),
    ],
)
async def test_user_cannot_reach_another_users_memory(client, runtime, seeded, method, suffix, body):
    before = await snapshot(client, runtime, seeded.keys, seeded.alice_second_id)
    response = await client.request(
        method, f"{MEM}/memories/{seeded.alice_second_id}{suffix}", json=body, headers=seeded.keys.user("bob")
    )
    assert_error(response, 404, "memory_not_found")
    after = await snapshot(client, runtime, seeded.keys, seeded.alice_second_id)
    assert after == before
    assert after["memory"][1]["memory"] == "Alice lives in Lisbon"
    assert [h["event"] for h in after["history"][1]] == ["ADD"]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_user_cannot_reach_another_users_entity(client, runtime, seeded, method):
    before = await snapshot(client, runtime, seeded.keys, seeded.alice_second_id)
    response = await client.request(
        method, f"{MEM}/entities/{seeded.entity_id}", headers=seeded.keys.user("bob")
    )
    assert_error(response, 404, "entity_not_found")
    assert await snapshot(client, runtime, seeded.keys, seeded.alice_second_id) == before
    kept = await client.get(f"{MEM}/entities/{seeded.entity_id}", headers=seeded.keys.service)
    assert kept.status_code == 200 and kept.json()["user_id"] == "alice"


async def test_user_lists_only_its_own_entities(client, runtime, seeded):
    listed = await client.get(f"{MEM}/entities", headers=seeded.keys.user("bob"))
    assert listed.status_code == 200, listed.text
    assert {e["user_id"] for e in listed.json()["results"]} <= {"bob"}
    assert listed.json()["total"] == (await entity_owners(runtime, seeded.keys)).get("bob", 0)
    theirs = await client.get(f"{MEM}/entities", headers=seeded.keys.user("alice"))
    assert seeded.entity_id in {e["id"] for e in theirs.json()["results"]}


async def test_user_gets_the_same_404_for_another_users_memory_and_an_unknown_id(client, seeded):
    """Not-yours and not-found are indistinguishable, so ids don't leak."""
    bob = seeded.keys.user("bob")
    theirs = await client.get(f"{MEM}/memories/{seeded.alice_id}", headers=bob)
    unknown = await client.get(f"{MEM}/memories/00000000-0000-4000-8000-000000000000", headers=bob)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json()


def _filters(value: dict[str, Any]) -> str:
    return json.dumps(value)


NAMING_ANOTHER_USER = [
    pytest.param(
        "POST", "/memories", None, {"messages": "hi", "infer": False, "user_id": "alice"}, id="add-body"
    ),
    pytest.param(
        "POST", "/memories", None, {"messages": "hi", "infer": False, "userId": "alice"}, id="add-camel"
    ),
    pytest.param("GET", "/memories", {"user_id": "alice"}, None, id="list-query"),
    pytest.param("GET", "/memories", {"userId": "alice"}, None, id="list-camel-query"),
    pytest.param("GET", "/memories", {"filters": _filters({"user_id": "alice"})}, None, id="list-filters-eq"),
    pytest.param(
        "GET", "/memories", {"filters": _filters({"OR": [{"user_id": "alice"}]})}, None, id="list-filters-or"
    ),
    pytest.param(
        "GET",
        "/memories",
        {"filters": _filters({"user_id": {"in": ["bob", "alice"]}})},
        None,
        id="list-filters-in",
    ),
    pytest.param("POST", "/search", None, {"query": "green tea", "user_id": "alice"}, id="search-body"),
    pytest.param(
        "POST",
        "/search",
        None,
        {"query": "green tea", "filters": {"user_id": "alice"}},
        id="search-filters-eq",
    ),
    pytest.param(
        "POST",
        "/search",
        None,
        {"query": "green tea", "filters": {"OR": [{"user_id": "bob"}, {"user_id": "alice"}]}},
        id="search-filters-or",
    ),
    pytest.param(
        "POST",
        "/search",
        None,
        {"query": "green tea", "metadataFilters": {"AND": [{"user_id": {"eq": "alice"}}]}},
        id="search-camel-filters-and",
    ),
    pytest.param("DELETE", "/memories", {"user_id": "alice"}, None, id="delete-all-query"),
    pytest.param(
        "DELETE", "/memories", {"filters": _filters({"user_id": "alice"})}, None, id="delete-all-filters"
    ),
    pytest.param("GET", "/stats", {"user_id": "alice"}, None, id="stats-query"),
    pytest.param("GET", "/entities", {"user_id": "alice"}, None, id="entities-query"),
]


@pytest.mark.parametrize(("method", "path", "params", "body"), NAMING_ANOTHER_USER)
async def test_user_naming_another_user_is_refused(client, runtime, seeded, method, path, params, body):
    before = await snapshot(client, runtime, seeded.keys, seeded.alice_id)
    response = await client.request(
        method, MEM + path, params=params, json=body, headers=seeded.keys.user("bob")
    )
    assert_error(response, 403, "user_scope_violation")
    assert await snapshot(client, runtime, seeded.keys, seeded.alice_id) == before


async def test_user_list_search_and_stats_show_only_its_own_memories(client, runtime, seeded):
    bob, alice = seeded.keys.user("bob"), seeded.keys.user("alice")

    listed = await client.get(f"{MEM}/memories", headers=bob)
    assert ids(listed) == {seeded.bob_id}
    assert listed.json()["total"] == 1
    assert ids(await client.get(f"{MEM}/memories", headers=alice)) == {
        seeded.alice_id,
        seeded.alice_second_id,
    }

    found = await client.post(
        f"{MEM}/search", json={"query": "Alice likes green tea", "top_k": 10}, headers=bob
    )
    assert ids(found) == {seeded.bob_id}
    # An agent-only memory has no user: a user narrowing by that agent still sees nothing.
    narrowed = await client.post(
        f"{MEM}/search", json={"query": "green tea", "agent_id": "helper"}, headers=bob
    )
    assert ids(narrowed) == set()

    stats = await client.get(f"{MEM}/stats", headers=bob)
    assert stats.status_code == 200, stats.text
    assert stats.json()["memories"] == 1
    assert stats.json()["entities"] == (await entity_owners(runtime, seeded.keys)).get("bob", 0)
    assert stats.json()["last_24h"]["adds"] == 1
    assert "top_users" not in stats.json()
    alice_stats = (await client.get(f"{MEM}/stats", headers=alice)).json()
    assert alice_stats["memories"] == 2
    assert alice_stats["entities"] == (await entity_owners(runtime, seeded.keys))["alice"] >= 1
    # A memory that belongs to an agent and no user is no user's.
    agent_only = await client.get(f"{MEM}/memories/{seeded.agent_only_id}", headers=bob)
    assert_error(agent_only, 404, "memory_not_found")


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"user_id": {"ne": "bob"}}, id="ne-self"),
        pytest.param({"user_id": "*"}, id="any-user"),
        pytest.param({"user_id": {"contains": "ali"}}, id="contains"),
        pytest.param({"OR": [{"user_id": {"nin": ["bob"]}}, {"memory_type": "LONG_TERM"}]}, id="or-widening"),
        pytest.param({"NOT": {"user_id": {"ne": "alice"}}}, id="double-negation"),
    ],
)
async def test_filters_that_name_no_user_only_narrow_a_users_scope(client, seeded, filters):
    bob = seeded.keys.user("bob")
    listed = await client.get(f"{MEM}/memories", params={"filters": json.dumps(filters)}, headers=bob)
    assert ids(listed) <= {seeded.bob_id}
    found = await client.post(f"{MEM}/search", json={"query": "green tea", "filters": filters}, headers=bob)
    assert ids(found) <= {seeded.bob_id}


async def test_user_may_name_itself_in_filters(client, seeded):
    bob = seeded.keys.user("bob")
    listed = await client.get(
        f"{MEM}/memories", params={"filters": json.dumps({"user_id": "bob"})}, headers=bob
    )
    assert ids(listed) == {seeded.bob_id}
    found = await client.post(f"{MEM}/search", json={"query": "tea", "user_id": "bob"}, headers=bob)
    assert ids(found) == {seeded.bob_id}


async def test_history_of_a_deleted_memory_stays_readable_only_by_its_owner(client, tenant):
    item = await add(client, tenant.service, "Alice's old address", user_id="alice")
    deleted = await client.delete(f"{MEM}/memories/{item['id']}", headers=tenant.user("alice"))
    assert deleted.status_code == 200, deleted.text
    trail = await client.get(f"{MEM}/memories/{item['id']}/history", headers=tenant.user("alice"))
    assert [(h["event"], h["actor"]) for h in trail.json()] == [
        ("ADD", "service_role"),
        ("DELETE", "user:alice"),
    ]
    snooped = await client.get(f"{MEM}/memories/{item['id']}/history", headers=tenant.user("bob"))
    assert_error(snooped, 404, "memory_not_found")


async def test_user_adds_for_itself_with_or_without_naming_its_user_id(client, runtime, tenant):
    bob = tenant.user("bob")
    implicit = await add(client, bob, "Bob drinks coffee", user_id=None)
    explicit = await add(client, bob, "Bob runs on Sundays", user_id="bob")
    # Identity keys inside metadata never re-scope a memory.
    disguised = await add(client, bob, "Bob reads at night", user_id=None, metadata={"user_id": "alice"})

    for item in (implicit, explicit, disguised):
        stored = await client.get(f"{MEM}/memories/{item['id']}", headers=tenant.service)
        assert stored.json()["user_id"] == "bob"
        history = await client.get(f"{MEM}/memories/{item['id']}/history", headers=bob)
        assert [(h["event"], h["actor"]) for h in history.json()] == [("ADD", "user:bob")]
    assert (
        ids(await client.get(f"{MEM}/memories", params={"user_id": "alice"}, headers=tenant.service)) == set()
    )
    assert ids(await client.get(f"{MEM}/memories", headers=bob)) == {
        implicit["id"],
        explicit["id"],
        disguised["id"],
    }


async def test_users_delete_all_removes_only_its_own_memories(client, runtime, tenant):
    alice_item = await add(client, tenant.service, "Alice keeps this", user_id="alice")
    await add(client, tenant.service, "Bob loses this", user_id="bob")
    response = await client.delete(f"{MEM}/memories", headers=tenant.user("bob"))
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] == 1
    assert (
        ids(await client.get(f"{MEM}/memories", params={"user_id": "bob"}, headers=tenant.service)) == set()
    )
    kept = await client.get(f"{MEM}/memories/{alice_item['id']}", headers=tenant.service)
    assert kept.status_code == 200 and kept.json()["memory"] == "Alice keeps this"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/config", None, id="read-config"),
        pytest.param("PUT", "/config", {"settings": {"search.default-top-k": 5}}, id="change-config"),
        pytest.param("POST", "/reset", None, id="reset"),
    ],
)
async def test_user_cannot_reach_config_or_reset(client, runtime, seeded, method, path, body):
    before = await snapshot(client, runtime, seeded.keys, seeded.alice_id)
    response = await client.request(method, MEM + path, json=body, headers=seeded.keys.user("alice"))
    assert_error(response, 403, "service_role_required")
    assert await snapshot(client, runtime, seeded.keys, seeded.alice_id) == before
    config = await client.get(f"{MEM}/config", headers=seeded.keys.service)
    assert config.status_code == 200 and config.json()["overrides"] == {}


# --- 3. one tenant against another -----------------------------------------------------------------------


@dataclass(frozen=True)
class TwoTenants:
    a: TenantKeys
    b: TenantKeys
    b_memory_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def two_tenants(client: httpx.AsyncClient, runtime: Runtime) -> TwoTenants:
    a = await new_tenant(runtime, "Tenant A")
    b = await new_tenant(runtime, "Tenant B")
    await add(client, a.service, "A's own memory", user_id="alice")
    b_item = await add(client, b.service, "B's secret memory", user_id="alice")
    return TwoTenants(a, b, b_item["id"])


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        pytest.param("GET", "", None, id="read"),
        pytest.param("PUT", "", {"text": "overwritten by A"}, id="update"),
        pytest.param("DELETE", "", None, id="delete"),
        pytest.param("GET", "/history", None, id="history"),
        pytest.param("GET", "/entities", None, id="entities"),
    ],
)
async def test_service_key_of_one_tenant_never_reaches_another_tenants_memory(
    client, runtime, two_tenants, method, suffix, body
):
    t = two_tenants
    before = await snapshot(client, runtime, t.b, t.b_memory_id)
    response = await client.request(
        method, f"{MEM}/memories/{t.b_memory_id}{suffix}", json=body, headers=t.a.service
    )
    assert_error(response, 404, "memory_not_found")
    after = await snapshot(client, runtime, t.b, t.b_memory_id)
    assert after == before
    assert after["memory"][1]["memory"] == "B's secret memory"


async def test_listing_and_searching_with_one_tenants_key_shows_none_of_another_tenants_memories(
    client, two_tenants
):
    t = two_tenants
    listed = await client.get(f"{MEM}/memories", params={"scope": "tenant"}, headers=t.a.service)
    assert t.b_memory_id not in ids(listed)
    assert [m["memory"] for m in listed.json()["results"]] == ["A's own memory"]
    found = await client.post(
        f"{MEM}/search", json={"query": "B's secret memory", "scope": "tenant"}, headers=t.a.service
    )
    assert found.status_code == 200, found.text
    assert "B's secret memory" not in {m["memory"] for m in found.json()["results"]}


async def test_user_token_signed_by_another_tenant_is_refused(client, runtime, two_tenants):
    t = two_tenants
    headers = {**t.a.anon, "authorization": f"Bearer {t.b.user_token('alice')}"}
    before = await table_counts(runtime, t.a)
    assert_error(await client.get(f"{MEM}/memories", headers=headers), 401, "invalid_token")
    assert_error(await client.delete(f"{MEM}/memories", headers=headers), 401, "invalid_token")
    assert await table_counts(runtime, t.a) == before
    # Control: the same token is good at home.
    home = await client.get(
        f"{MEM}/memories", headers={**t.b.anon, "authorization": headers["authorization"]}
    )
    assert ids(home) == {t.b_memory_id}


@pytest.mark.parametrize("role", ["anon", "service_role"])
async def test_api_key_claiming_another_tenants_ref_is_refused(client, runtime, two_tenants, role):
    """A key signed with A's secret that names B's ref: B's secret doesn't verify it."""
    t = two_tenants
    forged = {"apikey": mint_api_key(t.a.tenant.jwt_secret, t.b.ref, role)}
    if role == "anon":
        forged["authorization"] = f"Bearer {t.b.user_token('alice')}"
    before = await snapshot(client, runtime, t.b, t.b_memory_id)
    assert_error(await client.get(f"{MEM}/memories", headers=forged), 401, "invalid_api_key")
    assert_error(await client.get(f"{MEM}/memories/{t.b_memory_id}", headers=forged), 401, "invalid_api_key")
    assert_error(
        await client.delete(f"{MEM}/memories/{t.b_memory_id}", headers=forged), 401, "invalid_api_key"
    )
    assert await snapshot(client, runtime, t.b, t.b_memory_id) == before


# --- 5. the service role ---------------------------------------------------------------------------------


async def test_service_role_acts_for_any_user(client, tenant):
    alice_item = await add(client, tenant.service, "Alice's note", user_id="alice")
    bob_item = await add(client, tenant.service, "Bob's note", user_id="bob")
    for item, owner in ((alice_item, "alice"), (bob_item, "bob")):
        stored = await client.get(f"{MEM}/memories/{item['id']}", headers=tenant.service)
        assert stored.json()["user_id"] == owner
    updated = await client.put(
        f"{MEM}/memories/{bob_item['id']}", json={"text": "Bob's new note"}, headers=tenant.service
    )
    assert updated.status_code == 200 and updated.json()["memory"] == "Bob's new note"
    history = await client.get(f"{MEM}/memories/{bob_item['id']}/history", headers=tenant.user("bob"))
    assert [(h["event"], h["actor"]) for h in history.json()] == [
        ("ADD", "service_role"),
        ("UPDATE", "service_role"),
    ]
    found = await client.post(
        f"{MEM}/search", json={"query": "note", "user_id": "alice"}, headers=tenant.service
    )
    assert ids(found) == {alice_item["id"]}


async def test_service_role_lists_the_whole_tenant_only_when_it_says_so(client, seeded):
    assert_error(await client.get(f"{MEM}/memories", headers=seeded.keys.service), 400, "owner_required")
    listed = await client.get(f"{MEM}/memories", params={"scope": "tenant"}, headers=seeded.keys.service)
    everything = {seeded.alice_id, seeded.alice_second_id, seeded.bob_id, seeded.agent_only_id}
    assert ids(listed) == everything
    assert listed.json()["total"] == 4
    stats = (await client.get(f"{MEM}/stats", headers=seeded.keys.service)).json()
    assert stats["memories"] == 4
    assert {u["user_id"]: u["memories"] for u in stats["top_users"]} == {"alice": 2, "bob": 1}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(None, id="no-params"),
        pytest.param({"filters": json.dumps({"memory_type": "LONG_TERM"})}, id="filters-only"),
        pytest.param({"user_id": ""}, id="empty-user-id"),
    ],
)
async def test_service_role_delete_all_without_an_owner_is_refused(client, runtime, seeded, params):
    before = await snapshot(client, runtime, seeded.keys, seeded.bob_id)
    response = await client.delete(f"{MEM}/memories", params=params, headers=seeded.keys.service)
    expected = "invalid_owner_id" if params and "user_id" in params else "owner_required"
    assert_error(response, 400, expected)
    assert await snapshot(client, runtime, seeded.keys, seeded.bob_id) == before
    everything = {seeded.alice_id, seeded.alice_second_id, seeded.bob_id, seeded.agent_only_id}
    tenant_wide = await client.get(f"{MEM}/memories", params={"scope": "tenant"}, headers=seeded.keys.service)
    assert ids(tenant_wide) == everything


async def test_user_bearer_beside_the_service_key_narrows_the_request_to_that_user(client, runtime, tenant):
    """As in Supabase, the Bearer is what the request runs as (SPEC §2): bob's token makes it bob's."""
    alice_item = await add(client, tenant.service, "Alice's secret", user_id="alice")
    bob_item = await add(client, tenant.service, "Bob's secret", user_id="bob")
    headers = {**tenant.service, "authorization": f"Bearer {tenant.user_token('bob')}"}
    assert_error(
        await client.get(f"{MEM}/memories/{alice_item['id']}", headers=headers), 404, "memory_not_found"
    )
    assert ids(await client.get(f"{MEM}/memories", headers=headers)) == {bob_item["id"]}
    assert_error(
        await client.get(f"{MEM}/memories", params={"user_id": "alice"}, headers=headers),
        403,
        "user_scope_violation",
    )
    assert_error(await client.get(f"{MEM}/config", headers=headers), 403, "service_role_required")
    edit = {"text": "Edited"}
    assert_error(
        await client.put(f"{MEM}/memories/{alice_item['id']}", json=edit, headers=headers),
        404,
        "memory_not_found",
    )
    updated = await client.put(f"{MEM}/memories/{bob_item['id']}", json=edit, headers=headers)
    assert updated.status_code == 200, updated.text
    history = await client.get(f"{MEM}/memories/{bob_item['id']}/history", headers=tenant.service)
    assert [h["actor"] for h in history.json()] == ["service_role", "user:bob"]
    alice_history = await client.get(f"{MEM}/memories/{alice_item['id']}/history", headers=tenant.service)
    assert [h["actor"] for h in alice_history.json()] == ["service_role"]
    # A Bearer that is no valid token is refused, as Supabase refuses it, never silently ignored.
    for bearer, code in (
        ("not-a-jwt", "invalid_token"),
        (tenant.user_token("bob", lifetime_seconds=-3600), "token_expired"),
    ):
        broken = {**tenant.service, "authorization": f"Bearer {bearer}"}
        assert_error(
            await client.get(f"{MEM}/memories", params={"user_id": "bob"}, headers=broken), 401, code
        )


# --- 6. defense in depth: the repository's owner clause ----------------------------------------------------


async def test_repository_never_crosses_owners_even_when_asked_directly(client, runtime, tenant):
    s = await seed(client, runtime, tenant)
    alice_id, bob, alice = UUID(s.alice_second_id), Owner(user_id="bob"), Owner(user_id="alice")
    entity_id = UUID(s.entity_id)
    before = await snapshot(client, runtime, tenant, s.alice_second_id)
    conn = await tenant_conn(runtime, tenant, as_app_role=True)
    try:
        await init_connection(conn)
        # Connected as the request role, which is neither superuser nor owner of the tables.
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        # Row-level security opened to the whole tenant: this tests the owner clause alone.
        await set_row_claims(conn, "service_role")
        stored = await repo.find_by_id_for_owner(conn, alice_id, alice)
        assert stored is not None

        assert await repo.find_by_id_for_owner(conn, alice_id, bob) is None
        assert await repo.find_by_id_for_owner(conn, alice_id, bob, include_deleted=True) is None
        assert await repo.find_by_id_for_owner(conn, alice_id, Owner(agent_id="helper")) is None
        assert await repo.find_live_by_hash(conn, bob, stored["hash"]) is None
        assert await repo.history_for_owner(conn, alice_id, bob) == []
        assert await linking_repo.for_memory(conn, alice_id, bob) == []
        assert await entities_repo.find_for_owner(conn, entity_id, bob) is None
        bob_entities, _ = await entities_repo.list_for_owner(conn, bob, entity_type=None, limit=100, offset=0)
        assert entity_id not in {e["id"] for e in bob_entities}
        async with conn.transaction():
            changed = await repo.update_memory(
                conn, alice_id, bob, memory="Bob was here", embedding=None, hash_="x", metadata={"by": "bob"}
            )
            assert changed is None
            assert await repo.soft_delete(conn, alice_id, bob) is None
            assert await entities_repo.delete_for_owner(conn, entity_id, bob, "user:bob") is False
            rows, total = await repo.list_for_owner(
                conn, bob, filters=NO_FILTER, include_expired=True, limit=50, offset=0
            )
            assert ([str(r["id"]) for r in rows], total) == ([s.bob_id], 1)
            swept = await repo.soft_delete_matching(conn, bob, filters=NO_FILTER)
            assert [str(r["id"]) for r in swept] == [s.bob_id]
            stats = await repo.stats_for_owner(conn, bob, top_users=False)
            assert stats["memories"] == 0
            assert stats["entities"] == (await entity_owners(runtime, tenant)).get("bob", 0)
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()

    assert await snapshot(client, runtime, tenant, s.alice_second_id) == before

    # The controls: the same calls with the right owner do find the memory, its history and its entity.
    conn = await tenant_conn(runtime, tenant, as_app_role=True)
    try:
        await init_connection(conn)
        await set_row_claims(conn, "service_role")
        assert [h["event"] for h in await repo.history_for_owner(conn, alice_id, alice)] == ["ADD"]
        assert s.entity_id in {str(e["id"]) for e in await linking_repo.for_memory(conn, alice_id, alice)}
        assert await entities_repo.find_for_owner(conn, entity_id, alice) is not None
        async with conn.transaction():
            assert await repo.soft_delete(conn, alice_id, alice) is not None
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()


class _Rollback(Exception):
    """Raised inside a transaction to roll back what a control or a probe did."""
