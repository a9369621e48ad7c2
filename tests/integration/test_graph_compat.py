"""Graph memory through the compat surfaces: Tabby's GET /memory/graph (`{nodes, rels}`) and mem0's
`enable_graph` on add, search and list (mem0's `relations` list). Both are translations of the graph
service behind GET /mem/v1/graph and `include_relations`; each answer is checked against the
mem.relations rows, and each refusal against an unchanged database.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.runtime import Runtime
from tests.conftest import TenantKeys, new_tenant, table_counts
from tests.integration.test_graph import relation_rows, say
from tests.integration.test_pipeline import _stack
from testsupport.provider_server import FakeProviderServer, fact, relation

T = "/memory"
P = "/mem0"

# What the scripted model finds in each sentence the tests say (matched on the sentence).
SCRIPT = {
    "I work at Acme and live in Paris": fact(
        "Works at Acme and lives in Paris",
        entities=[("Acme", "organization"), ("Paris", "place")],
        relations=[relation("user", "works_at", "Acme"), relation("user", "lives_in", "Paris")],
    ),
    "I live in Rome": fact(
        "Lives in Rome", entities=[("Rome", "place")], relations=[relation("user", "lives_in", "Rome")]
    ),
    "I live in Oslo": fact(
        "Lives in Oslo", entities=[("Oslo", "place")], relations=[relation("user", "lives_in", "Oslo")]
    ),
    "I drive a Volvo": fact(
        "Drives a Volvo", entities=[("Volvo", "product")], relations=[relation("user", "drives", "Volvo")]
    ),
}


def responder(payload: dict[str, Any]) -> str:
    said = json.dumps(payload)
    return json.dumps({"facts": [f for text, f in SCRIPT.items() if text in said]})


@dataclass(frozen=True)
class World:
    runtime: Runtime
    client: httpx.AsyncClient
    keys: TenantKeys
    other: TenantKeys  # another tenant, whose own "alice" lives in Oslo
    alice_memory: str


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def world(platform_dsn, fake_provider: FakeProviderServer) -> AsyncIterator[World]:
    async with _stack(platform_dsn, fake_provider, "openai") as (runtime, client):
        fake_provider.chat_responder = responder
        keys = await new_tenant(runtime, "graph compat")
        other = await new_tenant(runtime, "graph compat other")
        (added,) = (await say(client, keys, "I work at Acme and live in Paris"))["results"]
        await say(client, keys, "I live in Rome", user_id="bob")
        await say(client, other, "I live in Oslo")
        yield World(runtime, client, keys, other, added["id"])


def triples(
    items: list[dict[str, Any]], source: str = "source", target: str = "target"
) -> set[tuple[str, ...]]:
    return {(r[source], r["relationship"], r[target]) for r in items}


ALICE_TRIPLES = {("alice", "works_at", "Acme"), ("alice", "lives_in", "Paris")}


async def alice_rows(world: World) -> set[tuple[str, ...]]:
    rows = await relation_rows(world.runtime, world.keys)
    return {(r["source"], r["relation"], r["target"]) for r in rows if r["user_id"] == "alice"}


def tabby_refused(response: httpx.Response, status: int, code: str) -> None:
    body = response.json()
    assert (response.status_code, body.get("error", {}).get("code")) == (status, code), response.text
    assert body["success"] is False and body["detail"] == body["error"]["message"]


def mem0_refused(response: httpx.Response, status: int, code: str) -> None:
    body = response.json()
    assert (response.status_code, body.get("code")) == (status, code), response.text
    assert body["detail"]


def token(keys: TenantKeys) -> dict[str, str]:
    return {"authorization": f"Token {keys.service_role_key}"}


# --- Tabby: GET /memory/graph -------------------------------------------------------------------------


async def test_tabby_graph_is_the_users_nodes_and_rels_as_the_database_holds_them(world: World):
    assert await alice_rows(world) == ALICE_TRIPLES
    for params in ({"userId": "alice"}, {"user_id": "alice"}):
        response = await world.client.get(f"{T}/graph", params=params, headers=world.keys.service)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True and body["truncated"] is False and body["as_of"] is None
        assert triples(body["rels"], "source_name", "target_name") == ALICE_TRIPLES
        assert all(r["valid_to"] is None and r["memory_id"] == world.alice_memory for r in body["rels"])
        assert {(n["name"], n["type"]) for n in body["nodes"]} == {
            ("alice", "person"),
            ("Acme", "organization"),
            ("Paris", "place"),
        }
        ids = {n["id"] for n in body["nodes"]}
        assert all(r["source"] in ids and r["target"] in ids for r in body["rels"])
    # A signed-in user's token names its user: no userId needed, and the same graph.
    own = await world.client.get(f"{T}/graph", headers=world.keys.user("alice"))
    assert triples(own.json()["rels"], "source_name", "target_name") == ALICE_TRIPLES


async def test_tabby_graph_is_a_fixed_route_not_a_memory_id(world: World):
    # /memory/{memory_id} would answer 400 invalid_id for "graph"; the fixed route wins.
    response = await world.client.get(f"{T}/graph", headers=world.keys.user("alice"))
    assert response.status_code == 200 and "rels" in response.json()
    one = await world.client.get(f"{T}/{world.alice_memory}", headers=world.keys.user("alice"))
    assert one.status_code == 200 and one.json()["memory"]["id"] == world.alice_memory


async def test_tabby_graph_from_one_entity_and_as_of_a_past_time(world: World):
    near = await world.client.get(
        f"{T}/graph", params={"userId": "alice", "entity": "Paris", "depth": 1}, headers=world.keys.service
    )
    assert ("alice", "lives_in", "Paris") in triples(near.json()["rels"], "source_name", "target_name")
    before = await world.client.get(
        f"{T}/graph", params={"userId": "alice", "as_of": "2000-01-01"}, headers=world.keys.service
    )
    assert before.json()["rels"] == [] and before.json()["as_of"].startswith("2000-01-01")


async def test_tabby_graph_never_shows_another_owners_or_tenants_relations(world: World):
    before = await table_counts(world.runtime, world.keys)
    bob = await world.client.get(f"{T}/graph", headers=world.keys.user("bob"))
    assert triples(bob.json()["rels"], "source_name", "target_name") == {("bob", "lives_in", "Rome")}
    # bob naming alice is refused; alice's entities are not found from bob's graph.
    tabby_refused(
        await world.client.get(f"{T}/graph", params={"userId": "alice"}, headers=world.keys.user("bob")),
        403,
        "user_scope_violation",
    )
    tabby_refused(
        await world.client.get(f"{T}/graph", params={"entity": "Acme"}, headers=world.keys.user("bob")),
        404,
        "entity_not_found",
    )
    # The other tenant's service key sees only its own alice (Oslo), never this tenant's.
    theirs = await world.client.get(f"{T}/graph", params={"userId": "alice"}, headers=world.other.service)
    assert triples(theirs.json()["rels"], "source_name", "target_name") == {("alice", "lives_in", "Oslo")}
    foreign = {**world.keys.anon, "authorization": f"Bearer {world.other.user_token('alice')}"}
    tabby_refused(await world.client.get(f"{T}/graph", headers=foreign), 401, "invalid_token")
    tabby_refused(await world.client.get(f"{T}/graph", params={"userId": "alice"}), 401, "missing_api_key")
    tabby_refused(
        await world.client.get(f"{T}/graph", params={"userId": "alice"}, headers=world.keys.anon),
        403,
        "anonymous_not_allowed",
    )
    assert await table_counts(world.runtime, world.keys) == before


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 400, "owner_required"),
        ({"userId": "alice", "depth": "9", "entity": "Paris"}, 400, "invalid_depth"),
        ({"userId": "alice", "limit": "0"}, 400, "invalid_limit"),
        ({"userId": "alice", "as_of": "last tuesday"}, 400, "invalid_as_of"),
        ({"userId": "alice", "entity": "Atlantis"}, 404, "entity_not_found"),
    ],
)
async def test_tabby_graph_bad_input_is_refused_and_changes_nothing(world: World, params, status, code):
    before = await table_counts(world.runtime, world.keys)
    response = await world.client.get(f"{T}/graph", params=params, headers=world.keys.service)
    tabby_refused(response, status, code)
    assert await table_counts(world.runtime, world.keys) == before


# --- mem0: enable_graph ----------------------------------------------------------------------------------


async def test_mem0_search_with_enable_graph_returns_mem0s_relations(world: World):
    body = {"query": "where does alice live", "filters": {"user_id": "alice"}, "enable_graph": True}
    v3 = await world.client.post(f"{P}/v3/memories/search/", json=body, headers=token(world.keys))
    assert v3.status_code == 200, v3.text
    assert [m["id"] for m in v3.json()["results"]] == [world.alice_memory]
    assert triples(v3.json()["relations"]) == ALICE_TRIPLES == await alice_rows(world)
    assert all(r["valid_to"] is None for r in v3.json()["relations"])
    # v1/v2 answer a bare list; with the graph on they answer mem0's {"results", "relations"}.
    v1 = await world.client.post(
        f"{P}/v1/memories/search/",
        json={"query": "where does alice live", "user_id": "alice", "enable_graph": True},
        headers=token(world.keys),
    )
    assert triples(v1.json()["relations"]) == ALICE_TRIPLES
    plain = await world.client.post(
        f"{P}/v1/memories/search/", json={"query": "where", "user_id": "alice"}, headers=token(world.keys)
    )
    assert isinstance(plain.json(), list)
    off = await world.client.post(
        f"{P}/v3/memories/search/", json={**body, "enable_graph": False}, headers=token(world.keys)
    )
    assert "relations" not in off.json()


async def test_mem0_list_with_enable_graph_returns_mem0s_relations(world: World):
    h = token(world.keys)
    v3 = await world.client.post(
        f"{P}/v3/memories/", json={"filters": {"user_id": "alice"}, "enable_graph": True}, headers=h
    )
    assert v3.status_code == 200, v3.text
    assert triples(v3.json()["relations"]) == ALICE_TRIPLES
    v2 = await world.client.post(
        f"{P}/v2/memories/", json={"filters": {"user_id": "alice"}, "enable_graph": True}, headers=h
    )
    assert triples(v2.json()["relations"]) == ALICE_TRIPLES
    v1 = await world.client.get(
        f"{P}/v1/memories/", params={"user_id": "alice", "enable_graph": "true"}, headers=h
    )
    assert [m["id"] for m in v1.json()["results"]] == [world.alice_memory]
    assert triples(v1.json()["relations"]) == ALICE_TRIPLES
    plain = await world.client.post(f"{P}/v3/memories/", json={"filters": {"user_id": "alice"}}, headers=h)
    assert "relations" not in plain.json()


async def test_mem0_add_with_enable_graph_is_accepted_and_writes_the_relations(world: World, fake_provider):
    fake_provider.chat_responder = responder  # the fake is reset before each test
    calls = fake_provider.count("chat")
    response = await world.client.post(
        f"{P}/v3/memories/add/",
        json={"messages": "I drive a Volvo", "user_id": "carol", "enable_graph": True, "async_mode": False},
        headers=token(world.keys),
    )
    assert response.status_code == 200, response.text
    (item,) = response.json()["results"]
    assert (item["event"], item["memory"]) == ("ADD", "Drives a Volvo")
    assert fake_provider.count("chat") == calls + 1  # still one model call per add
    rows = await relation_rows(world.runtime, world.keys)
    assert [
        (r["source"], r["relation"], r["target"], str(r["memory_id"]))
        for r in rows
        if r["user_id"] == "carol"
    ] == [("carol", "drives", "Volvo", item["id"])]


async def test_mem0_enable_graph_never_shows_another_owners_or_tenants_relations(world: World):
    before = await table_counts(world.runtime, world.keys)
    bob = world.keys.user("bob")
    found = await world.client.post(
        f"{P}/v3/memories/search/", json={"query": "where do I live", "enable_graph": True}, headers=bob
    )
    assert triples(found.json()["relations"]) == {("bob", "lives_in", "Rome")}
    listed = await world.client.post(f"{P}/v3/memories/", json={"enable_graph": True}, headers=bob)
    assert triples(listed.json()["relations"]) == {("bob", "lives_in", "Rome")}
    mem0_refused(
        await world.client.post(
            f"{P}/v3/memories/",
            json={"filters": {"user_id": "alice"}, "enable_graph": True},
            headers=bob,
        ),
        403,
        "user_scope_violation",
    )
    theirs = await world.client.post(
        f"{P}/v3/memories/search/",
        json={"query": "where does alice live", "filters": {"user_id": "alice"}, "enable_graph": True},
        headers=token(world.other),
    )
    assert triples(theirs.json()["relations"]) == {("alice", "lives_in", "Oslo")}
    anonymous = await world.client.post(
        f"{P}/v3/memories/search/", json={"query": "x", "user_id": "alice", "enable_graph": True}
    )
    assert anonymous.status_code == 401
    assert await table_counts(world.runtime, world.keys) == before
