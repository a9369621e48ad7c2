"""Graph memory: relations written with the facts (one LLM call), closed by UPDATE and DELETE,
read back as a graph (now and as of a past time), used by search, and never across owners.

Each scenario checks mem.relations / mem.graph_history rows, not only the answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from app.runtime import Runtime
from tests.conftest import TenantKeys, add, new_tenant, table_counts, tenant_conn
from tests.integration.test_pipeline import _stack, temp_id_of
from testsupport.provider_server import FakeProviderServer, fact, relation

MEM = "/mem/v1"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def llm(platform_dsn, fake_provider) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    async with _stack(platform_dsn, fake_provider, "openai") as stack:
        yield stack


@pytest_asyncio.fixture(loop_scope="session")
async def keys(llm, fake_provider) -> TenantKeys:
    return await new_tenant(llm[0])


def script(fake: FakeProviderServer, build) -> None:
    fake.chat_responder = lambda payload: json.dumps({"facts": build(payload)})


async def say(
    client: httpx.AsyncClient, keys: TenantKeys, text: str, user_id: str = "alice"
) -> dict[str, Any]:
    response = await client.post(
        f"{MEM}/memories",
        json={"messages": [{"role": "user", "content": text}], "user_id": user_id},
        headers=keys.service,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def relation_rows(runtime: Runtime, keys: TenantKeys) -> list[dict[str, Any]]:
    conn = await tenant_conn(runtime, keys)
    try:
        rows = await conn.fetch(
            """SELECT r.id, s.text AS source, r.relation, t.text AS target, r.memory_id, r.origin, r.weight,
                      r.user_id, r.valid_from, r.valid_to, r.invalidated_at
               FROM mem.relations r JOIN mem.entities s ON s.id = r.source_entity_id
               JOIN mem.entities t ON t.id = r.target_entity_id ORDER BY r.learned_at, r.relation, t.text"""
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


async def graph_events(runtime: Runtime, keys: TenantKeys) -> list[tuple[str, dict[str, Any]]]:
    conn = await tenant_conn(runtime, keys)
    try:
        rows = await conn.fetch("SELECT event, detail FROM mem.graph_history ORDER BY id")
        return [(r["event"], json.loads(r["detail"])) for r in rows]
    finally:
        await conn.close()


async def get_graph(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> httpx.Response:
    return await client.get(f"{MEM}/graph", params=params, headers=headers)


def edges_of(response: httpx.Response) -> set[tuple[str, str, str]]:
    assert response.status_code == 200, response.text
    return {(e["source_name"], e["relationship"], e["target_name"]) for e in response.json()["edges"]}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text


async def test_relations_are_written_with_the_facts_in_the_one_llm_call(llm, keys, fake_provider):
    runtime, client = llm
    script(
        fake_provider,
        lambda p: [
            fact(
                "Works at Acme with Maria",
                entities=[("Acme", "organization"), ("Maria", "person")],
                relations=[relation("user", "works at", "Acme"), relation("Maria", "colleague_of", "user")],
            )
        ],
    )
    (result,) = (await say(client, keys, "I work at Acme, with Maria"))["results"]

    assert fake_provider.count("chat") == 1
    assert "relations" in json.dumps(fake_provider.last_request("chat").json)
    rows = await relation_rows(runtime, keys)
    assert [(r["source"], r["relation"], r["target"], r["origin"], r["user_id"]) for r in rows] == [
        ("Maria", "colleague_of", "alice", "model", "alice"),
        ("alice", "works_at", "Acme", "model", "alice"),
    ]
    assert {str(r["memory_id"]) for r in rows} == {result["id"]}
    assert all(r["valid_to"] is None for r in rows)
    assert [e for e, _ in await graph_events(runtime, keys)] == ["RELATION_ADD", "RELATION_ADD"]

    graph = (await get_graph(client, keys.service, user_id="alice")).json()
    assert {(n["name"], n["type"], n["memory_count"]) for n in graph["nodes"]} == {
        ("alice", "person", 1),
        ("Acme", "organization", 1),
        ("Maria", "person", 1),
    }
    assert {(e["source_name"], e["relationship"], e["target_name"]) for e in graph["edges"]} == {
        ("alice", "works_at", "Acme"),
        ("Maria", "colleague_of", "alice"),
    }
    assert graph["truncated"] is False


async def test_a_move_closes_berlin_opens_paris_and_as_of_still_shows_berlin(llm, keys, fake_provider):
    runtime, client = llm
    script(
        fake_provider,
        lambda p: [fact("Lives in Berlin", [("Berlin", "place")], [relation("user", "lives_in", "Berlin")])],
    )
    (berlin,) = (await say(client, keys, "I live in Berlin"))["results"]
    script(
        fake_provider,
        lambda p: [
            fact(
                "Lives in Paris (moved from Berlin)",
                [("Paris", "place"), ("Berlin", "place")],
                [relation("user", "lives_in", "Paris"), relation("user", "moved_from", "Berlin")],
                event="UPDATE",
                target=temp_id_of(p, "Lives in Berlin"),
            )
        ],
    )
    (moved,) = (await say(client, keys, "I moved from Berlin to Paris"))["results"]
    assert (moved["event"], moved["id"]) == ("UPDATE", berlin["id"])

    rows = {(r["relation"], r["target"]): r for r in await relation_rows(runtime, keys)}
    assert set(rows) == {("lives_in", "Berlin"), ("lives_in", "Paris"), ("moved_from", "Berlin")}
    closed = rows[("lives_in", "Berlin")]
    assert closed["valid_to"] is not None and closed["invalidated_at"] is not None  # closed, not deleted
    assert rows[("lives_in", "Paris")]["valid_to"] is None
    events = [(e, d["relation"], d["target"]) for e, d in await graph_events(runtime, keys)]
    assert ("RELATION_CLOSE", "lives_in", "Berlin") in events
    assert ("RELATION_ADD", "lives_in", "Paris") in events

    now = await get_graph(client, keys.service, user_id="alice")
    assert edges_of(now) == {("alice", "lives_in", "Paris"), ("alice", "moved_from", "Berlin")}
    before_move = await get_graph(
        client, keys.service, user_id="alice", as_of=closed["valid_from"].isoformat()
    )
    assert edges_of(before_move) == {("alice", "lives_in", "Berlin")}
    assert before_move.json()["as_of"] is not None

    searched = await client.post(
        f"{MEM}/search",
        json={"query": "Where does alice live?", "user_id": "alice", "include_relations": True},
        headers=keys.service,
    )
    relations = searched.json()["relations"]
    assert {(r["source"], r["relationship"], r["target"]) for r in relations} == {
        ("alice", "lives_in", "Paris"),
        ("alice", "moved_from", "Berlin"),
    }
    assert all(r["valid_to"] is None and r["memory_id"] == berlin["id"] for r in relations)
    plain = await client.post(
        f"{MEM}/search", json={"query": "Paris", "user_id": "alice"}, headers=keys.service
    )
    assert "relations" not in plain.json()


async def test_deleting_a_memory_closes_its_relations_and_the_past_keeps_them(llm, keys, fake_provider):
    runtime, client = llm
    script(
        fake_provider,
        lambda p: [fact("Loves steak", [("steak", "product")], [relation("user", "loves", "steak")])],
    )
    (steak,) = (await say(client, keys, "I love steak"))["results"]
    script(
        fake_provider,
        lambda p: [
            fact("Loves steak", event="DELETE", target=temp_id_of(p, "Loves steak")),
            fact("Does not eat meat", [("meat", "product")], [relation("user", "avoids", "meat")]),
        ],
    )
    await say(client, keys, "I don't eat meat any more")

    rows = {r["relation"]: r for r in await relation_rows(runtime, keys)}
    assert rows["loves"]["valid_to"] is not None and str(rows["loves"]["memory_id"]) == steak["id"]
    assert rows["avoids"]["valid_to"] is None
    assert edges_of(await get_graph(client, keys.service, user_id="alice")) == {("alice", "avoids", "meat")}
    then = await get_graph(
        client, keys.service, user_id="alice", as_of=rows["loves"]["valid_from"].isoformat()
    )
    assert edges_of(then) == {("alice", "loves", "steak")}

    # The HTTP delete of a memory closes what it asserted, too.
    avoid_memory = str(rows["avoids"]["memory_id"])
    deleted = await client.delete(f"{MEM}/memories/{avoid_memory}", headers=keys.service)
    assert deleted.status_code == 200, deleted.text
    assert all(r["valid_to"] is not None for r in await relation_rows(runtime, keys))
    assert edges_of(await get_graph(client, keys.service, user_id="alice")) == set()


async def test_the_model_naming_an_alias_merges_the_entities_with_history(llm, keys, fake_provider):
    runtime, client = llm
    chess = await add(client, keys.service, "We play chess with Bob on Sundays, Carla too")
    script(
        fake_provider,
        lambda p: [
            fact(
                "Robert Smith (Bob) is an old friend",
                [("Robert Smith", "person"), {"text": "Bob", "type": "other", "same_as": "Robert Smith"}],
                [relation("user", "friend_of", "Bob")],
            )
        ],
    )
    await say(client, keys, "Bob, I mean Robert Smith, is an old friend")

    conn = await tenant_conn(runtime, keys)
    try:
        entities = {r["text"]: r for r in await conn.fetch("SELECT id, text, aliases FROM mem.entities")}
        linked = await conn.fetch(
            """SELECT e.text FROM mem.entity_links l JOIN mem.entities e ON e.id = l.entity_id
               WHERE l.memory_id = $1""",
            __import__("uuid").UUID(chess["id"]),
        )
    finally:
        await conn.close()
    # The heuristic saw Bob (type other); the model's alias of that type is folded into Robert Smith.
    assert "Bob" not in entities and "bob" in entities["Robert Smith"]["aliases"]
    assert {r["text"] for r in linked} >= {"Robert Smith", "Carla"}
    rows = await relation_rows(runtime, keys)
    assert ("alice", "friend_of", "Robert Smith") in {(r["source"], r["relation"], r["target"]) for r in rows}
    assert ("Robert Smith", "related_to", "Carla") in {
        (r["source"], r["relation"], r["target"]) for r in rows
    }
    merges = [d for e, d in await graph_events(runtime, keys) if e == "ENTITY_MERGE"]
    assert [(m["alias"], m["into"]) for m in merges] == [("Bob", "Robert Smith")]
    # The alias finds the canonical entity as a graph start.
    around = await get_graph(client, keys.service, user_id="alice", entity="bob", depth=1)
    assert ("alice", "friend_of", "Robert Smith") in edges_of(around)


async def test_two_call_mode_carries_relations_through_the_decision(platform_dsn, fake_provider):
    async with _stack(platform_dsn, fake_provider, "openai", pipeline_mode="two-call") as (runtime, client):
        keys = await new_tenant(runtime)
        fake_provider.script_chat(
            json.dumps(
                {
                    "facts": [
                        fact("Sister of Ana", [("Ana", "person")], [relation("user", "sister of", "Ana")])
                    ]
                }
            )
        )
        script(
            fake_provider,
            lambda p: [fact("Sister of Ana", [("Ana", "person")], [relation("user", "sister_of", "Ana")])],
        )
        await say(client, keys, "Ana is my sister")
        assert fake_provider.count("chat") == 2
        assert [(r["source"], r["relation"], r["target"]) for r in await relation_rows(runtime, keys)] == [
            ("alice", "sister_of", "Ana")
        ]


# Offline: no chat provider, the heuristic's co-mention edges (session client).


async def test_without_a_model_co_mentioned_entities_get_weighted_heuristic_edges(client, runtime, tenant):
    memory = await add(client, tenant.service, "I met Maria in Lisbon, then Tomas in Porto")
    rows = await relation_rows(runtime, tenant)
    assert {(r["source"], r["target"]) for r in rows} == {
        ("Maria", "Lisbon"),
        ("Maria", "Tomas"),
        ("Maria", "Porto"),
        ("Lisbon", "Tomas"),
        ("Lisbon", "Porto"),
        ("Tomas", "Porto"),
    }
    assert {(r["relation"], r["origin"], round(r["weight"], 3)) for r in rows} == {
        ("related_to", "heuristic", 0.333)
    }
    assert {str(r["memory_id"]) for r in rows} == {memory["id"]}
    # A text with one entity makes no edge.
    await add(client, tenant.service, "Lisbon is sunny")
    assert len(await relation_rows(runtime, tenant)) == 6


async def test_the_graph_signal_finds_a_memory_through_a_neighbour_and_can_be_switched_off(
    client, runtime, tenant
):
    await add(client, tenant.service, "My friend Maria works at Acme Corp")
    oslo = await add(client, tenant.service, "Acme Corp is based in Oslo")
    await add(client, tenant.service, "The weather was grey all week")
    query = "Where is the company of Maria?"

    only_graph = await client.post(
        f"{MEM}/search",
        json={"query": query, "user_id": "alice", "signals": ["graph"]},
        headers=tenant.service,
    )
    assert only_graph.status_code == 200, only_graph.text
    found = {r["id"]: r for r in only_graph.json()["results"]}
    # Oslo's memory names neither Maria nor any query word: only the walk Maria -> Acme Corp reaches it.
    assert oslo["id"] in found and found[oslo["id"]]["score_breakdown"]["graph"] > 0
    default = await client.post(
        f"{MEM}/search", json={"query": query, "user_id": "alice"}, headers=tenant.service
    )
    by_id = {r["id"]: r for r in default.json()["results"]}
    assert by_id[oslo["id"]]["score_breakdown"]["graph"] > 0
    switched_off = await client.post(
        f"{MEM}/search",
        json={"query": query, "user_id": "alice", "signals": ["semantic", "keyword", "entity"]},
        headers=tenant.service,
    )
    assert all(r["score_breakdown"]["graph"] == 0 for r in switched_off.json()["results"])


# Isolation and bad input on every graph route and include_relations.


async def _two_owners(client, runtime, tenant) -> tuple[dict[str, Any], str]:
    alice = await add(client, tenant.service, "I saw Alice meet Maria in Lisbon")
    await add(client, tenant.service, "I saw Bob meet Pedro in Porto", user_id="bob")
    rows = await relation_rows(runtime, tenant)
    alice_relation = next(str(r["id"]) for r in rows if r["user_id"] == "alice")
    return alice, alice_relation


async def test_another_owners_graph_is_never_reachable(client, runtime, tenant, other_tenant):
    _, alice_relation = await _two_owners(client, runtime, tenant)
    before = await relation_rows(runtime, tenant)
    bob = tenant.user("bob")

    assert edges_of(await get_graph(client, bob)) == {
        ("Bob", "related_to", "Pedro"),
        ("Bob", "related_to", "Porto"),
        ("Pedro", "related_to", "Porto"),
    }
    names = {n["name"] for n in (await get_graph(client, bob)).json()["nodes"]}
    assert names.isdisjoint({"Alice", "Maria", "Lisbon"})
    assert_error(await get_graph(client, bob, user_id="alice"), 403, "user_scope_violation")
    assert_error(await get_graph(client, bob, entity="Maria"), 404, "entity_not_found")
    conn = await tenant_conn(runtime, tenant)
    try:
        maria_id = await conn.fetchval("SELECT id FROM mem.entities WHERE text = 'Maria'")
    finally:
        await conn.close()
    assert_error(await get_graph(client, bob, entity=str(maria_id)), 404, "entity_not_found")
    assert_error(
        await get_graph(client, tenant.service, user_id="bob", entity=str(maria_id)), 404, "entity_not_found"
    )
    assert edges_of(await get_graph(client, tenant.service, user_id="nobody")) == set()
    # Another tenant's service key: its own (empty) graph, and no relation of this tenant.
    assert edges_of(await get_graph(client, other_tenant.service, user_id="alice")) == set()
    assert_error(
        await client.delete(f"{MEM}/relations/{alice_relation}", headers=bob), 404, "relation_not_found"
    )
    assert_error(
        await client.delete(f"{MEM}/relations/{alice_relation}", headers=other_tenant.service),
        404,
        "relation_not_found",
    )
    assert_error(await get_graph(client, tenant.anon, user_id="alice"), 403, "anonymous_not_allowed")
    assert (await client.delete(f"{MEM}/relations/{alice_relation}", headers=tenant.anon)).status_code == 403

    searched = await client.post(
        f"{MEM}/search", json={"query": "Maria Lisbon", "include_relations": True}, headers=bob
    )
    assert all(r["source"] in {"Bob", "Pedro", "Porto"} for r in searched.json()["relations"])
    listed = await client.get(f"{MEM}/memories", params={"include_relations": "true"}, headers=bob)
    assert {(r["source"], r["target"]) for r in listed.json()["relations"]} == {
        ("Bob", "Pedro"),
        ("Bob", "Porto"),
        ("Pedro", "Porto"),
    }
    assert await relation_rows(runtime, tenant) == before

    # The owner (here the service role) may delete it; the history keeps its words.
    removed = await client.delete(f"{MEM}/relations/{alice_relation}", headers=tenant.user("alice"))
    assert removed.status_code == 200, removed.text
    assert alice_relation not in {str(r["id"]) for r in await relation_rows(runtime, tenant)}
    assert [e for e, _ in await graph_events(runtime, tenant)].count("RELATION_DELETE") == 1


async def test_bad_graph_input_is_a_clear_400_and_changes_nothing(client, runtime, tenant):
    await _two_owners(client, runtime, tenant)
    before = await table_counts(runtime, tenant)
    service = tenant.service
    assert_error(
        await get_graph(client, service, user_id="alice", as_of="last tuesday"), 400, "invalid_as_of"
    )
    assert_error(
        await get_graph(client, service, user_id="alice", depth=0, entity="Maria"), 400, "invalid_depth"
    )
    assert_error(
        await get_graph(client, service, user_id="alice", depth=4, entity="Maria"), 400, "invalid_depth"
    )
    assert_error(await get_graph(client, service, user_id="alice", limit=501), 400, "invalid_limit")
    assert_error(await get_graph(client, service), 400, "owner_required")
    assert (await get_graph(client, service, user_id="alice", depth="two")).status_code == 400
    assert_error(await client.delete(f"{MEM}/relations/not-a-uuid", headers=service), 400, "invalid_id")
    assert_error(
        await client.delete(f"{MEM}/relations/00000000-0000-0000-0000-000000000000", headers=service),
        404,
        "relation_not_found",
    )
    bad_flag = await client.get(
        f"{MEM}/memories", params={"user_id": "alice", "include_relations": "maybe"}, headers=service
    )
    assert_error(bad_flag, 400, "invalid_parameter")
    bad_body = await client.post(
        f"{MEM}/search", json={"query": "x", "user_id": "alice", "include_relations": "yes"}, headers=service
    )
    assert_error(bad_body, 422, "validation_failed")
    bad_signal = await client.post(
        f"{MEM}/search", json={"query": "x", "user_id": "alice", "signals": ["graphs"]}, headers=service
    )
    assert_error(bad_signal, 400, "invalid_signals")
    assert await table_counts(runtime, tenant) == before


async def test_deleting_an_entity_removes_its_relations_and_the_history_keeps_their_words(
    client, runtime, tenant
):
    await add(client, tenant.service, "I saw Alice meet Maria in Lisbon")
    conn = await tenant_conn(runtime, tenant)
    try:
        maria = await conn.fetchval("SELECT id FROM mem.entities WHERE text = 'Maria'")
    finally:
        await conn.close()
    deleted = await client.delete(f"{MEM}/entities/{maria}", headers=tenant.service)
    assert deleted.status_code == 200, deleted.text
    assert {(r["source"], r["target"]) for r in await relation_rows(runtime, tenant)} == {("Alice", "Lisbon")}
    gone = [d for e, d in await graph_events(runtime, tenant) if e == "RELATION_DELETE"]
    assert sorted((d["source"], d["target"]) for d in gone) == [("Alice", "Maria"), ("Maria", "Lisbon")]
    assert all(d["entity_deleted"] for d in gone)
