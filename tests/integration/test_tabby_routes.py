"""Tabby's memory routes under /memory: every route's answer in Tabby's envelope, checked against
the rows it wrote or read; the memory type the pipeline chose as `classified_type`, with the fake
model at the HTTP boundary; and Tabby's adds counted as adds by the tenant's rate limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import httpx

from app.asgi import build_runtime, close_runtime, create_app
from app.runtime import Runtime
from tests.conftest import ADMIN_KEY, TenantKeys, add, make_settings, new_tenant, table_counts, tenant_conn
from testsupport.provider_server import FakeProviderServer

T = "/memory"


def ok(response: httpx.Response) -> dict[str, Any]:
    """A success in Tabby's envelope."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True, body
    return body


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def rows(runtime: Runtime, keys: TenantKeys, *, live_only: bool = False) -> dict[str, dict[str, Any]]:
    """Every memory row of the tenant as the superuser sees it, by id."""
    conn = await tenant_conn(runtime, keys)
    try:
        found = await conn.fetch(
            "SELECT id, user_id, memory, memory_type, metadata, expires_at, deleted_at FROM mem.memories"
            + (" WHERE deleted_at IS NULL" if live_only else "")
        )
    finally:
        await conn.close()
    # A plain connection has no jsonb codec: metadata comes back as its JSON text.
    return {str(r["id"]): {**dict(r), "metadata": json.loads(r["metadata"])} for r in found}


async def history_events(runtime: Runtime, keys: TenantKeys, memory_id: str) -> list[str]:
    conn = await tenant_conn(runtime, keys)
    try:
        found = await conn.fetch(
            "SELECT event FROM mem.memory_history WHERE memory_id = $1 ORDER BY created_at, id",
            UUID(memory_id),
        )
    finally:
        await conn.close()
    return [r["event"] for r in found]


# --- add ------------------------------------------------------------------------------------------------


async def test_add_stores_the_turn_and_answers_what_it_wrote_with_its_type(client, runtime, tenant):
    body = ok(
        await client.post(
            f"{T}/add",
            json={
                "messages": user_turn("I prefer dark mode"),
                "user_id": "alice",
                "metadata": {"source": "chat"},
            },
            headers=tenant.service,
        )
    )
    (result,) = body["result"]["results"]
    assert (result["event"], result["memory"]) == ("ADD", "I prefer dark mode")
    # No chat provider here: the turn is stored verbatim, with the default type, and says so.
    assert body["classified_type"] == "LONG_TERM"
    assert body["result"]["notes"]
    stored = (await rows(runtime, tenant))[result["id"]]
    assert (stored["user_id"], stored["memory"], stored["memory_type"]) == (
        "alice",
        "I prefer dark mode",
        "LONG_TERM",
    )
    assert stored["metadata"] == {"source": "chat"}
    assert await history_events(runtime, tenant, result["id"]) == ["ADD"]


async def test_a_type_given_in_metadata_as_tabby_sends_it_becomes_the_memorys_type(client, runtime, tenant):
    body = ok(
        await client.post(
            f"{T}/add",
            json={
                "messages": user_turn("To deploy, run npm run build first"),
                "user_id": "alice",
                "metadata": {"memory_type": "procedural", "source": "chat"},
            },
            headers=tenant.service,
        )
    )
    assert body["classified_type"] == "PROCEDURAL"
    (result,) = body["result"]["results"]
    stored = (await rows(runtime, tenant))[result["id"]]
    # One truth: the type column. Tabby still reads it back from metadata (see get_all).
    assert stored["memory_type"] == "PROCEDURAL"
    assert stored["metadata"] == {"source": "chat"}
    listed = ok(await client.post(f"{T}/get_all", json={"user_id": "alice"}, headers=tenant.service))
    (memory,) = listed["memories"]["results"]
    assert memory["metadata"] == {"source": "chat", "memory_type": "PROCEDURAL"}
    assert memory["memory_type"] == "PROCEDURAL"


async def test_the_memory_type_field_and_auto_classify_off(client, runtime, tenant):
    typed = ok(
        await client.post(
            f"{T}/add",
            json={
                "messages": user_turn("Yesterday I met Ana"),
                "user_id": "alice",
                "memory_type": "EPISODIC",
            },
            headers=tenant.service,
        )
    )
    unclassified = ok(
        await client.post(
            f"{T}/add",
            json={"messages": user_turn("I like jazz"), "user_id": "alice", "auto_classify": False},
            headers=tenant.service,
        )
    )
    assert typed["classified_type"] == "EPISODIC"
    assert unclassified["classified_type"] is None
    stored = await rows(runtime, tenant)
    assert stored[typed["result"]["results"][0]["id"]]["memory_type"] == "EPISODIC"
    assert stored[unclassified["result"]["results"][0]["id"]]["memory_type"] == "LONG_TERM"


async def test_a_signed_in_user_adds_for_itself_with_or_without_naming_itself(client, runtime, tenant):
    implicit = ok(await client.post(f"{T}/add", json={"messages": "I run daily"}, headers=tenant.user("bob")))
    explicit = ok(
        await client.post(
            f"{T}/add", json={"messages": "I swim too", "userId": "bob"}, headers=tenant.user("bob")
        )
    )
    stored = await rows(runtime, tenant)
    for body in (implicit, explicit):
        assert stored[body["result"]["results"][0]["id"]]["user_id"] == "bob"


async def test_add_image_without_a_vision_model_keeps_the_context_and_says_the_image_was_dropped(
    client, runtime, tenant
):
    body = ok(
        await client.post(
            f"{T}/add_image",
            json={
                "image_url": "https://example.com/screen.png",
                "context": "Editing the billing page in VS Code",
                "user_id": "alice",
            },
            headers=tenant.service,
        )
    )
    (result,) = body["result"]["results"]
    assert any("image" in note for note in body["result"]["notes"])
    stored = (await rows(runtime, tenant))[result["id"]]
    assert stored["memory"] == "Editing the billing page in VS Code"
    # Tabby's label for a capture when the caller gives no metadata.
    assert stored["metadata"] == {"source": "screen_capture"}
    assert body["classified_type"] == stored["memory_type"] == "LONG_TERM"


# --- reads ----------------------------------------------------------------------------------------------


async def test_search_answers_mems0_nested_results_with_scores_and_filters_by_type(client, runtime, tenant):
    tea = await add(client, tenant.service, "Alice drinks green tea every morning")
    await add(client, tenant.service, "Alice is fixing the login bug", memory_type="SHORT_TERM")
    await add(client, tenant.service, "Bob drinks green tea", user_id="bob")
    body = ok(
        await client.post(
            f"{T}/search", json={"query": "green tea", "user_id": "alice", "limit": 5}, headers=tenant.service
        )
    )
    found = body["results"]["results"]
    assert found[0]["id"] == tea["id"]
    assert {m["user_id"] for m in found} == {"alice"}
    assert 0 < found[0]["score"] <= 1
    assert found[0]["metadata"]["memory_type"] == "LONG_TERM"
    only_short = ok(
        await client.post(
            f"{T}/search",
            json={"query": "green tea login bug", "user_id": "alice", "memory_type": "SHORT_TERM"},
            headers=tenant.service,
        )
    )
    assert [m["memory"] for m in only_short["results"]["results"]] == ["Alice is fixing the login bug"]


async def test_get_all_lists_an_owners_memories_with_the_total_the_database_holds(client, runtime, tenant):
    for text in ("Alice likes tea", "Alice likes chess", "Alice likes jazz"):
        await add(client, tenant.service, text)
    await add(client, tenant.service, "Alice is packing", memory_type="SHORT_TERM")
    await add(client, tenant.service, "Bob likes tea", user_id="bob")
    body = ok(await client.post(f"{T}/get_all", json={"user_id": "alice"}, headers=tenant.service))
    alice_rows = {i for i, r in (await rows(runtime, tenant)).items() if r["user_id"] == "alice"}
    assert {m["id"] for m in body["memories"]["results"]} == alice_rows
    assert body["memories"]["total"] == len(alice_rows) == 4
    typed = ok(
        await client.post(
            f"{T}/get_all", json={"user_id": "alice", "memory_type": "SHORT_TERM"}, headers=tenant.service
        )
    )
    assert [m["memory"] for m in typed["memories"]["results"]] == ["Alice is packing"]
    paged = ok(
        await client.post(f"{T}/get_all", json={"user_id": "alice", "page_size": 2}, headers=tenant.service)
    )
    assert (len(paged["memories"]["results"]), paged["memories"]["total"]) == (2, 4)


async def test_get_one_and_history(client, runtime, tenant):
    item = await add(client, tenant.service, "Alice lives in Porto")
    got = ok(await client.get(f"{T}/{item['id']}", headers=tenant.user("alice")))
    assert got["memory"]["memory"] == "Alice lives in Porto"
    assert got["memory"]["metadata"] == {"memory_type": "LONG_TERM"}
    ok(
        await client.put(
            f"{T}/update",
            json={"memory_id": item["id"], "data": "Alice lives in Lisbon"},
            headers=tenant.service,
        )
    )
    history = ok(await client.get(f"{T}/history/{item['id']}", headers=tenant.user("alice")))["history"]
    assert [(h["event"], h["old_memory"], h["new_memory"]) for h in history] == [
        ("ADD", None, "Alice lives in Porto"),
        ("UPDATE", "Alice lives in Porto", "Alice lives in Lisbon"),
    ]
    assert [h["event"] for h in history] == await history_events(runtime, tenant, item["id"])


# --- writes by id and by user ---------------------------------------------------------------------------


async def test_update_replaces_the_text_and_re_embeds(client, runtime, tenant, fake_provider):
    item = await add(client, tenant.service, "Alice likes tea")
    embeddings_before = fake_provider.count("embeddings")
    body = ok(
        await client.put(
            f"{T}/update",
            json={"memory_id": item["id"], "data": "Alice likes coffee"},
            headers=tenant.user("alice"),
        )
    )
    assert body["result"]["message"] == "Memory updated successfully!"
    assert body["result"]["memory"]["memory"] == "Alice likes coffee"
    assert (await rows(runtime, tenant))[item["id"]]["memory"] == "Alice likes coffee"
    assert fake_provider.count("embeddings") == embeddings_before + 1
    assert await history_events(runtime, tenant, item["id"]) == ["ADD", "UPDATE"]


async def test_delete_soft_deletes_one_memory_and_records_it(client, runtime, tenant):
    item = await add(client, tenant.service, "Alice likes tea")
    kept = await add(client, tenant.service, "Alice likes chess")
    body = ok(await client.delete(f"{T}/{item['id']}", headers=tenant.user("alice")))
    assert body["result"] == {"id": item["id"], "message": "Memory deleted successfully!"}
    stored = await rows(runtime, tenant)
    assert stored[item["id"]]["deleted_at"] is not None
    assert stored[kept["id"]]["deleted_at"] is None
    assert await history_events(runtime, tenant, item["id"]) == ["ADD", "DELETE"]


async def test_delete_user_removes_that_users_memories_only(client, runtime, tenant):
    alice = [await add(client, tenant.service, t) for t in ("Alice likes tea", "Alice likes chess")]
    bob = await add(client, tenant.service, "Bob likes tea", user_id="bob")
    body = ok(await client.delete(f"{T}/user/alice", headers=tenant.service))
    assert body["result"] == {"message": "Memories deleted successfully!", "deleted": 2}
    assert set(await rows(runtime, tenant, live_only=True)) == {bob["id"]}
    for item in alice:
        assert await history_events(runtime, tenant, item["id"]) == ["ADD", "DELETE"]
    # A signed-in user may clear its own memories.
    ok(await client.delete(f"{T}/user/bob", headers=tenant.user("bob")))
    assert await rows(runtime, tenant, live_only=True) == {}


# --- the pipeline's type, from the fake model -----------------------------------------------------------


@asynccontextmanager
async def chat_stack(
    platform_dsn: str, fake: FakeProviderServer, **mem: Any
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, TenantKeys]]:
    """A runtime with the fake's OpenAI chat API as the model, its client, and a fresh tenant."""
    settings = make_settings(
        platform_dsn,
        fake,
        chat_provider="openai",
        chat_base_url=fake.openai_base_url,
        chat_api_key="test",
        chat_model="fake-chat",
        **mem,
    )
    runtime = await build_runtime(settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings, runtime=runtime)),
        base_url="http://memory.test",
    )
    try:
        yield runtime, client, await new_tenant(runtime)
    finally:
        await client.aclose()
        await close_runtime(runtime)


def facts(*items: tuple[str, str]) -> str:
    return json.dumps(
        {
            "facts": [
                {"text": t, "event": "ADD", "target": None, "memory_type": k, "entities": []}
                for t, k in items
            ]
        }
    )


async def test_auto_classify_answers_the_type_the_model_chose_in_its_one_call(platform_dsn, fake_provider):
    async with chat_stack(platform_dsn, fake_provider) as (runtime, client, keys):
        fake_provider.chat_responder = lambda payload: facts(("Is working on the auth feature", "SHORT_TERM"))
        body = ok(
            await client.post(
                f"{T}/add",
                json={"messages": user_turn("I'm currently working on the auth feature"), "user_id": "alice"},
                headers=keys.service,
            )
        )
        assert body["classified_type"] == "SHORT_TERM"
        assert fake_provider.count("chat") == 1  # classified in the extraction call, not a second one
        (result,) = body["result"]["results"]
        stored = (await rows(runtime, keys))[result["id"]]
        assert (stored["memory"], stored["memory_type"]) == ("Is working on the auth feature", "SHORT_TERM")
        assert stored["expires_at"] is not None  # SHORT_TERM memories expire

        # auto_classify false: the model's type is not used, and nothing is reported as classified.
        fake_provider.chat_responder = lambda payload: facts(("Prefers dark mode", "SEMANTIC"))
        plain = ok(
            await client.post(
                f"{T}/add",
                json={
                    "messages": user_turn("I prefer dark mode"),
                    "user_id": "alice",
                    "auto_classify": False,
                },
                headers=keys.service,
            )
        )
        assert plain["classified_type"] is None
        stored = (await rows(runtime, keys))[plain["result"]["results"][0]["id"]]
        assert (stored["memory"], stored["memory_type"]) == ("Prefers dark mode", "LONG_TERM")


async def test_add_image_is_described_by_the_vision_model_then_classified(platform_dsn, fake_provider):
    async with chat_stack(platform_dsn, fake_provider) as (runtime, client, keys):
        fake_provider.script_chat("A code editor showing a failing test in billing.py.")
        fake_provider.chat_responder = lambda payload: facts(
            ("Is debugging a failing billing test", "SHORT_TERM")
        )
        body = ok(
            await client.post(
                f"{T}/add_image",
                json={
                    "image_url": "data:image/png;base64,iVBORw0KGgo=",
                    "context": "What is the user working on?",
                    "user_id": "alice",
                    "metadata": {"source": "screen_capture", "captured_at": "2026-01-01T10:00:00Z"},
                },
                headers=keys.service,
            )
        )
        assert body["classified_type"] == "SHORT_TERM"
        describe = fake_provider.requests_for("chat")[0].json
        assert any(part.get("type") == "image_url" for part in describe["messages"][0]["content"])
        (result,) = body["result"]["results"]
        stored = (await rows(runtime, keys))[result["id"]]
        assert stored["memory"] == "Is debugging a failing billing test"
        assert stored["metadata"] == {"source": "screen_capture", "captured_at": "2026-01-01T10:00:00Z"}


# --- limits ---------------------------------------------------------------------------------------------


async def test_tabby_adds_count_against_the_tenants_add_rate(client, runtime, tenant):
    limits = await client.put(
        f"/auth/v1/admin/tenants/{tenant.ref}/limits",
        json={"service_adds_per_second": 1},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert limits.status_code == 200, limits.text
    ok(
        await client.post(
            f"{T}/add", json={"messages": "I like tea", "user_id": "alice"}, headers=tenant.service
        )
    )
    before = await table_counts(runtime, tenant)
    for path, body in (
        ("add", {"messages": "I like coffee", "user_id": "alice"}),
        ("add_image", {"image_url": "https://example.com/a.png", "context": "coffee", "user_id": "alice"}),
    ):
        refused = await client.post(f"{T}/{path}", json=body, headers=tenant.service)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.json()["success"] is False
        assert refused.headers["retry-after"]
    assert await table_counts(runtime, tenant) == before
    # Reads are not adds.
    ok(await client.post(f"{T}/get_all", json={"user_id": "alice"}, headers=tenant.service))
