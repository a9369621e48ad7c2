"""Issue 14: owner ids required on reads, a user's Bearer narrows the service key, thresholds a
mem0 user can set, and what an add without a chat model keeps."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from app.auth.tokens import mint_api_key
from app.runtime import Runtime
from tests.conftest import TenantKeys, add, tenant_conn
from tests.integration.test_search import assert_error, at_similarity, axis, results
from testsupport.provider_server import FakeProviderServer

MEM = "/mem/v1"


# Point 4: an owner id is required unless service_role asks for the tenant


async def test_a_search_without_any_owner_id_is_refused(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    await add(client, tenant.service, "Alice keeps bees on the roof", user_id="alice")
    refused = await client.post(f"{MEM}/search", json={"query": "bees on the roof"}, headers=tenant.service)
    assert_error(refused, 400, "owner_required")
    assert "scope" in refused.json()["hint"]


async def test_a_list_without_any_owner_id_is_refused(client: httpx.AsyncClient, tenant: TenantKeys) -> None:
    await add(client, tenant.service, "Alice keeps bees in the garden", user_id="alice")
    assert_error(await client.get(f"{MEM}/memories", headers=tenant.service), 400, "owner_required")


async def test_service_role_reads_the_whole_tenant_only_when_it_says_so(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    alice = await add(client, tenant.service, "Alice collects old maps", user_id="alice")
    bob = await add(client, tenant.service, "Bob collects old maps too", user_id="bob")
    listed = await client.get(f"{MEM}/memories", params={"scope": "tenant"}, headers=tenant.service)
    assert listed.status_code == 200, listed.text
    assert {m["id"] for m in listed.json()["results"]} == {alice["id"], bob["id"]}
    found = await client.post(
        f"{MEM}/search", json={"query": "collects old maps", "scope": "tenant"}, headers=tenant.service
    )
    assert {r["id"] for r in results(found)} == {alice["id"], bob["id"]}


async def test_an_unknown_scope_value_is_refused(client: httpx.AsyncClient, tenant: TenantKeys) -> None:
    search = await client.post(
        f"{MEM}/search", json={"query": "maps", "scope": "everything"}, headers=tenant.service
    )
    assert_error(search, 400, "invalid_scope")
    listed = await client.get(f"{MEM}/memories", params={"scope": "all"}, headers=tenant.service)
    assert_error(listed, 400, "invalid_scope")


async def test_a_user_may_not_ask_for_the_whole_tenant(client: httpx.AsyncClient, tenant: TenantKeys) -> None:
    await add(client, tenant.service, "Bob hides a spare key", user_id="bob")
    alice = tenant.user("alice")
    search = await client.post(f"{MEM}/search", json={"query": "spare key", "scope": "tenant"}, headers=alice)
    assert_error(search, 403, "service_role_required")
    listed = await client.get(f"{MEM}/memories", params={"scope": "tenant"}, headers=alice)
    assert_error(listed, 403, "service_role_required")


async def test_a_user_without_owner_ids_reads_its_own_memories(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    mine = await add(client, tenant.service, "Alice plays the cello", user_id="alice")
    await add(client, tenant.service, "Bob plays the cello", user_id="bob")
    alice = tenant.user("alice")
    listed = await client.get(f"{MEM}/memories", headers=alice)
    assert [m["id"] for m in listed.json()["results"]] == [mine["id"]]
    found = await client.post(f"{MEM}/search", json={"query": "plays the cello"}, headers=alice)
    assert [r["id"] for r in results(found)] == [mine["id"]]


async def test_delete_all_needs_an_owner_id_even_with_scope_tenant(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    kept = await add(client, tenant.service, "Alice owns a red kayak", user_id="alice")
    refused = await client.delete(f"{MEM}/memories", params={"scope": "tenant"}, headers=tenant.service)
    assert_error(refused, 400, "owner_required")
    still = await client.get(f"{MEM}/memories/{kept['id']}", headers=tenant.service)
    assert still.status_code == 200


# Point 5: a user's access token in the Bearer narrows the service_role key


def service_as(tenant: TenantKeys, bearer: str) -> dict[str, str]:
    return {**tenant.service, "authorization": f"Bearer {bearer}"}


async def test_a_users_bearer_narrows_the_service_key_to_that_user(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    mine = await add(client, tenant.service, "Alice reads sagas", user_id="alice")
    bobs = await add(client, tenant.service, "Bob reads sagas", user_id="bob")
    headers = service_as(tenant, tenant.user_token("alice"))
    assert_error(
        await client.get(f"{MEM}/memories", params={"user_id": "bob"}, headers=headers),
        403,
        "user_scope_violation",
    )
    assert_error(
        await client.post(f"{MEM}/search", json={"query": "reads sagas", "user_id": "bob"}, headers=headers),
        403,
        "user_scope_violation",
    )
    assert (await client.get(f"{MEM}/memories/{bobs['id']}", headers=headers)).status_code == 404
    listed = await client.get(f"{MEM}/memories", headers=headers)
    assert [m["id"] for m in listed.json()["results"]] == [mine["id"]]
    # Writes run as the user too: naming bob is refused, and the user's own add is its own.
    refused = await client.post(
        f"{MEM}/memories",
        json={"messages": "Bob likes rye", "user_id": "bob", "infer": False},
        headers=headers,
    )
    assert_error(refused, 403, "user_scope_violation")


@pytest.mark.parametrize("bearer", ["apikey", "service_role", "anon"])
async def test_a_tenant_key_in_the_bearer_leaves_the_service_key_as_it_is(
    client: httpx.AsyncClient, tenant: TenantKeys, bearer: str
) -> None:
    bobs = await add(client, tenant.service, "Bob brews kombucha", user_id="bob")
    t = tenant.tenant
    token = {
        "apikey": tenant.service_role_key,
        # A freshly minted key of the same tenant: a tenant key, but not the apikey itself.
        "service_role": mint_api_key(t.jwt_secret, t.ref, "service_role", issued_at=int(time.time()) - 60),
        "anon": tenant.anon_key,
    }[bearer]
    listed = await client.get(f"{MEM}/memories", params={"user_id": "bob"}, headers=service_as(tenant, token))
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()["results"]] == [bobs["id"]]


async def test_an_invalid_bearer_beside_the_service_key_is_refused(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    expired = tenant.user_token("alice", lifetime_seconds=-3600)
    headers = service_as(tenant, expired)
    assert_error(
        await client.get(f"{MEM}/memories", params={"user_id": "bob"}, headers=headers), 401, "token_expired"
    )


# Point 6: thresholds on the semantic similarity; zero-score rows are not results


async def test_a_semantic_match_of_0_42_clears_a_threshold_of_0_3(
    client: httpx.AsyncClient, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    text = "the quarterly offsite happens in Lisbon"
    fake_provider.set_embedding(text, at_similarity(0.42, 1))
    query = "issue14 threshold probe question"
    fake_provider.set_embedding(query, axis(0))
    item = await add(client, tenant.service, text, user_id="alice")
    found = results(
        await client.post(
            f"{MEM}/search",
            json={"query": query, "user_id": "alice", "threshold": 0.3},
            headers=tenant.service,
        )
    )
    assert [r["id"] for r in found] == [item["id"]]
    (hit,) = found
    assert hit["score_breakdown"]["semantic"] == pytest.approx(0.42, abs=1e-4)
    assert hit["score_breakdown"]["keyword"] == 0
    # Ranking is unchanged: the fused score still counts every enabled weight.
    assert hit["score"] < 0.3
    above = await client.post(
        f"{MEM}/search", json={"query": query, "user_id": "alice", "threshold": 0.5}, headers=tenant.service
    )
    assert results(above) == []


async def test_rows_scoring_zero_are_not_returned(
    client: httpx.AsyncClient, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    related = "a note about glaciers and fjords"
    unrelated = "a note about sourdough starters"
    fake_provider.set_embedding(related, at_similarity(0.6, 1))
    # Opposite direction: cosine similarity below 0, clamped to a semantic score of 0.
    fake_provider.set_embedding(unrelated, -1.0 * axis(0))
    query = "issue14 zero score probe"
    fake_provider.set_embedding(query, axis(0))
    kept = await add(client, tenant.service, related, user_id="alice")
    await add(client, tenant.service, unrelated, user_id="alice")
    found = results(
        await client.post(f"{MEM}/search", json={"query": query, "user_id": "alice"}, headers=tenant.service)
    )
    assert [r["id"] for r in found] == [kept["id"]]
    assert all(r["score"] > 0 for r in found)


# Point 7: without a chat model, infer keeps what the user said


def conversation(infer: bool) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "I work twelve-hour shifts at the hospital"},
            {"role": "assistant", "content": "That sounds demanding!"},
            {"role": "tool", "content": "calendar: 3 night shifts this week"},
        ],
        "user_id": "alice",
        "infer": infer,
    }


async def test_infer_without_a_chat_model_stores_only_the_users_messages(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    response = await client.post(f"{MEM}/memories", json=conversation(True), headers=tenant.service)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["memory"] for r in body["results"]] == ["I work twelve-hour shifts at the hospital"]
    assert any(
        "assistant and tool messages were kept only as conversation context" in n for n in body["notes"]
    )
    listed = await client.get(f"{MEM}/memories", params={"user_id": "alice"}, headers=tenant.service)
    assert [m["memory"] for m in listed.json()["results"]] == ["I work twelve-hour shifts at the hospital"]
    conn = await tenant_conn(runtime, tenant)
    try:
        window = await conn.fetch("SELECT role, content FROM mem.session_messages ORDER BY id")
    finally:
        await conn.close()
    assert [(r["role"], r["content"]) for r in window] == [
        ("user", "I work twelve-hour shifts at the hospital"),
        ("assistant", "That sounds demanding!"),
        ("tool", "calendar: 3 night shifts this week"),
    ]


async def test_infer_false_stores_every_non_system_message(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    response = await client.post(f"{MEM}/memories", json=conversation(False), headers=tenant.service)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["memory"] for r in body["results"]] == [
        "I work twelve-hour shifts at the hospital",
        "That sounds demanding!",
        "calendar: 3 night shifts this week",
    ]
    assert "notes" not in body
