"""infer=true through HTTP, with the real openai/anthropic clients talking to the fake provider.

Each scenario checks the stored rows and the history, not just the response."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.asgi import build_runtime, close_runtime, create_app
from app.runtime import Runtime
from tests.conftest import TenantKeys, add, make_settings, new_tenant, table_counts, tenant_conn
from testsupport.provider_server import FakeProviderServer, Fault

PROVIDERS = ("openai", "anthropic", "generic")
# Long enough for the fake on 127.0.0.1 under a loaded machine; the timeout test waits it out,
# so a shorter one keeps that test quick (it waited 5 s per provider with the default). 2 s, not
# less: on a loaded 2-core machine the fake in this process can take a second to answer.
PROVIDER_TIMEOUT = 2.0


def _family(provider: str) -> str:
    return "anthropic" if provider == "anthropic" else "chat"


@asynccontextmanager
async def _stack(
    platform_dsn: str, fake: FakeProviderServer, provider: str, **mem: Any
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """A runtime and client of their own, with `provider` as the chat provider; closed on exit."""
    base = fake.anthropic_base_url if provider == "anthropic" else fake.openai_base_url
    settings = make_settings(
        platform_dsn,
        fake,
        chat_provider=provider,
        chat_base_url=base,
        chat_api_key="test",
        chat_model="fake-chat",
        **{"provider_timeout_seconds": PROVIDER_TIMEOUT, **mem},
    )
    runtime = await build_runtime(settings)
    app = create_app(settings, runtime=runtime)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://memory.test")
    try:
        yield runtime, client
    finally:
        await client.aclose()
        await close_runtime(runtime)


@pytest_asyncio.fixture(loop_scope="session", scope="module", params=PROVIDERS)
async def stack(
    request, platform_dsn, fake_provider
) -> AsyncIterator[tuple[str, Runtime, httpx.AsyncClient]]:
    async with _stack(platform_dsn, fake_provider, request.param) as (runtime, client):
        yield request.param, runtime, client


@pytest_asyncio.fixture(loop_scope="session")
async def keys(stack, fake_provider) -> TenantKeys:
    return await new_tenant(stack[1])


def prompt_text(payload: dict[str, Any]) -> str:
    """Every piece of text the service sent to the model, system prompt included."""
    chunks = [payload.get("system") or ""]
    for message in payload.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            chunks.append(content)
        else:
            chunks += [part.get("text", "") for part in content if isinstance(part, dict)]
    return "\n".join(c if isinstance(c, str) else json.dumps(c) for c in chunks)


def temp_id_of(payload: dict[str, Any], memory_text: str) -> str:
    match = re.search(rf"- (m\d+): {re.escape(memory_text)} \(type", prompt_text(payload))
    assert match, f"{memory_text!r} was not shown to the model as a candidate"
    return match.group(1)


def answer(facts: list[dict[str, Any]], provider: str) -> str:
    text = json.dumps({"facts": facts})
    # The anthropic provider prefills "{" in JSON mode and prepends it to the completion.
    return text[1:] if provider == "anthropic" else text


def respond(fake: FakeProviderServer, provider: str, build) -> None:
    def responder(payload: dict[str, Any]) -> str:
        return answer(build(payload), provider)

    if provider == "anthropic":
        fake.anthropic_responder = responder
    else:
        fake.chat_responder = responder


async def _add(client, keys, text, **body) -> httpx.Response:
    return await client.post(
        "/mem/v1/memories",
        json={"messages": [{"role": "user", "content": text}], "user_id": "alice", **body},
        headers=keys.service,
    )


async def _memories(runtime, keys) -> dict[str, dict[str, Any]]:
    conn = await tenant_conn(runtime, keys)
    try:
        rows = await conn.fetch(
            "SELECT id, memory, memory_type, user_id, deleted_at FROM mem.memories ORDER BY created_at"
        )
        return {str(r["id"]): dict(r) for r in rows}
    finally:
        await conn.close()


async def _history(client, keys, memory_id) -> list[dict[str, Any]]:
    response = await client.get(f"/mem/v1/memories/{memory_id}/history", headers=keys.service)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_self_introduction_becomes_typed_memories_with_entities_in_one_llm_call(
    stack, keys, fake_provider
):
    provider, runtime, client = stack
    respond(
        fake_provider,
        provider,
        lambda p: [
            {
                "text": "Name is John",
                "event": "ADD",
                "memory_type": "LONG_TERM",
                "entities": [{"text": "John", "type": "person"}],
            },
            {"text": "Is a software engineer", "event": "ADD", "memory_type": "LONG_TERM", "entities": []},
            {
                "text": "Prefers TypeScript",
                "event": "ADD",
                "memory_type": "LONG_TERM",
                "entities": [{"text": "TypeScript", "type": "product"}],
            },
        ],
    )
    response = await _add(client, keys, "My name is John, I'm a software engineer and I prefer TypeScript")

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["event"], r["memory"]) for r in results] == [
        ("ADD", "Name is John"),
        ("ADD", "Is a software engineer"),
        ("ADD", "Prefers TypeScript"),
    ]
    assert fake_provider.count(_family(provider)) == 1, "one LLM call per add"
    # One batched call for the new messages, one for the new fact texts.
    assert fake_provider.count("embeddings") == 2
    sent = prompt_text(fake_provider.last_request(_family(provider)).json)
    assert "My name is John" in sent and "NEW MESSAGES" in sent
    stored = await _memories(runtime, keys)
    assert sorted(m["memory"] for m in stored.values()) == [
        "Is a software engineer",
        "Name is John",
        "Prefers TypeScript",
    ]
    assert {m["memory_type"] for m in stored.values()} == {"LONG_TERM"}
    john = next(r for r in results if r["memory"] == "Name is John")
    entities = (await client.get(f"/mem/v1/memories/{john['id']}/entities", headers=keys.service)).json()
    assert [(e["text"], e["entity_type"]) for e in entities["results"]] == [("John", "person")]
    assert [e["event"] for e in await _history(client, keys, john["id"])] == ["ADD"]


async def test_a_move_updates_the_old_address_with_old_and_new_text_in_history(stack, keys, fake_provider):
    provider, runtime, client = stack
    old = await add(client, keys.service, "Lives in Berlin")
    respond(
        fake_provider,
        provider,
        lambda p: [
            {
                "text": "Lives in Paris (moved from Berlin)",
                "event": "UPDATE",
                "target": temp_id_of(p, "Lives in Berlin"),
                "memory_type": "LONG_TERM",
            }
        ],
    )
    response = await _add(client, keys, "I moved from Berlin to Paris")

    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result == {
        "id": old["id"],
        "memory": "Lives in Paris (moved from Berlin)",
        "event": "UPDATE",
        "previous_memory": "Lives in Berlin",
        "memory_type": "LONG_TERM",
    }
    history = await _history(client, keys, old["id"])
    assert [(h["event"], h["old_memory"], h["new_memory"]) for h in history] == [
        ("ADD", None, "Lives in Berlin"),
        ("UPDATE", "Lives in Berlin", "Lives in Paris (moved from Berlin)"),
    ]
    assert [m["memory"] for m in (await _memories(runtime, keys)).values()] == [
        "Lives in Paris (moved from Berlin)"
    ]


async def test_giving_up_meat_deletes_the_steak_memory(stack, keys, fake_provider):
    provider, runtime, client = stack
    steak = await add(client, keys.service, "Loves steak")
    respond(
        fake_provider,
        provider,
        lambda p: [
            {"text": "Loves steak", "event": "DELETE", "target": temp_id_of(p, "Loves steak")},
            {"text": "Does not eat meat", "event": "ADD", "memory_type": "LONG_TERM"},
        ],
    )
    response = await _add(client, keys, "I don't eat meat any more")

    assert response.status_code == 200, response.text
    events = {(r["event"], r["memory"]) for r in response.json()["results"]}
    assert events == {("DELETE", "Loves steak"), ("ADD", "Does not eat meat")}
    assert [h["event"] for h in await _history(client, keys, steak["id"])] == ["ADD", "DELETE"]
    assert (await client.get(f"/mem/v1/memories/{steak['id']}", headers=keys.service)).status_code == 404
    live = [m["memory"] for m in (await _memories(runtime, keys)).values() if m["deleted_at"] is None]
    assert live == ["Does not eat meat"]


async def test_a_known_fact_again_is_none_and_adds_no_row(stack, keys, fake_provider):
    provider, runtime, client = stack
    known = await add(client, keys.service, "Prefers TypeScript")
    respond(
        fake_provider,
        provider,
        lambda p: [
            {"text": "Prefers TypeScript", "event": "NONE", "target": temp_id_of(p, "Prefers TypeScript")},
            # A model that says ADD for a fact stored word for word still gets NONE.
            {"text": "prefers   typescript", "event": "ADD", "memory_type": "LONG_TERM"},
        ],
    )
    before = await table_counts(runtime, keys)
    response = await _add(client, keys, "As I said, I prefer TypeScript")

    assert response.status_code == 200, response.text
    assert [(r["event"], r["id"]) for r in response.json()["results"]] == [
        ("NONE", known["id"]),
        ("NONE", known["id"]),
    ]
    after = await table_counts(runtime, keys)
    assert after["memories"] == before["memories"] and after["memory_history"] == before["memory_history"]


async def test_ids_outside_the_candidates_never_touch_a_memory(stack, keys, fake_provider):
    provider, runtime, client = stack
    mine = await add(client, keys.service, "Plays chess on Sundays")
    bobs = await add(client, keys.service, "Plays chess on Sundays too", user_id="bob")
    respond(
        fake_provider,
        provider,
        lambda p: [
            {"text": "Hacked", "event": "UPDATE", "target": bobs["id"]},
            {"text": "Hacked", "event": "DELETE", "target": "m99"},
            {"text": "Hacked", "event": "UPDATE", "target": mine["id"]},
            "not an object",
            {"text": "Plays chess every weekend", "event": "ADD", "memory_type": "LONG_TERM"},
        ],
    )
    response = await _add(client, keys, "I play chess every weekend now")

    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["event"], r["memory"]) for r in body["results"]] == [("ADD", "Plays chess every weekend")]
    assert [s["index"] for s in body["skipped"]] == [0, 1, 2, 3]
    stored = await _memories(runtime, keys)
    assert (
        stored[mine["id"]]["memory"] == "Plays chess on Sundays" and stored[mine["id"]]["deleted_at"] is None
    )
    assert (
        stored[bobs["id"]]["memory"] == "Plays chess on Sundays too"
        and stored[bobs["id"]]["deleted_at"] is None
    )
    assert [h["event"] for h in await _history(client, keys, bobs["id"])] == ["ADD"]


async def test_the_model_sees_only_the_owners_memories_as_candidates(stack, keys, fake_provider):
    provider, _, client = stack
    await add(client, keys.service, "Bob's secret: loves karaoke", user_id="bob")
    await add(client, keys.service, "Alice likes karaoke")
    respond(fake_provider, provider, lambda p: [])
    response = await _add(client, keys, "karaoke night was fun")

    assert response.status_code == 200, response.text
    sent = prompt_text(fake_provider.last_request(_family(provider)).json)
    assert "Alice likes karaoke" in sent
    assert "Bob's secret" not in sent


async def test_a_caller_memory_type_wins_and_short_term_memories_expire(stack, keys, fake_provider):
    provider, _, client = stack
    respond(
        fake_provider,
        provider,
        lambda p: [{"text": "Is working on the auth feature", "event": "ADD", "memory_type": "LONG_TERM"}],
    )
    response = await _add(client, keys, "I'm working on the auth feature this week", memory_type="SHORT_TERM")

    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["memory_type"] == "SHORT_TERM"
    got = (await client.get(f"/mem/v1/memories/{result['id']}", headers=keys.service)).json()
    assert got["memory_type"] == "SHORT_TERM" and got["expires_at"] is not None


async def test_the_session_window_is_recorded_and_shown_to_the_model_next_time(stack, keys, fake_provider):
    provider, runtime, client = stack
    respond(fake_provider, provider, lambda p: [])
    await _add(client, keys, "I adopted a cat called Miso")
    await _add(client, keys, "She is three years old")

    sent = prompt_text(fake_provider.last_request(_family(provider)).json)
    assert "EARLIER IN THIS CONVERSATION" in sent and "I adopted a cat called Miso" in sent
    assert (await table_counts(runtime, keys))["session_messages"] == 2


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault(status=500), 502, "provider_error"),
        (Fault(status=429, retry_after=1), 503, "provider_rate_limited"),
        (Fault(body=b"<html>oops</html>", status=200), 502, "provider_error"),
        (Fault(delay=PROVIDER_TIMEOUT * 4), 504, "provider_timeout"),
    ],
)
async def test_provider_failures_answer_5xx_and_leave_the_database_as_it_was(
    stack, keys, fake_provider, fault, status, code
):
    provider, runtime, client = stack
    await add(client, keys.service, "Lives in Berlin")
    before = await table_counts(runtime, keys)
    fake_provider.fail_next(_family(provider), fault)

    response = await _add(client, keys, "I moved to Paris")

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert await table_counts(runtime, keys) == before


async def test_an_answer_without_json_is_a_502_and_nothing_is_written(stack, keys, fake_provider):
    provider, runtime, client = stack
    before = await table_counts(runtime, keys)
    script = fake_provider.script_anthropic if provider == "anthropic" else fake_provider.script_chat
    script("Sorry, I cannot help with that.")

    response = await _add(client, keys, "I moved to Paris")

    assert response.status_code == 502 and response.json()["code"] == "provider_bad_answer"
    assert await table_counts(runtime, keys) == before


async def test_an_answer_in_a_code_fence_with_trailing_text_is_read(stack, keys, fake_provider):
    provider, _, client = stack
    fenced = (
        "```json\n"
        + json.dumps({"facts": [{"text": "Owns a bike", "event": "ADD"}]})
        + "\n```\nHope this helps"
    )
    script = fake_provider.script_anthropic if provider == "anthropic" else fake_provider.script_chat
    script(fenced)

    response = await _add(client, keys, "I bought a bike")

    assert response.status_code == 200, response.text
    assert [(r["event"], r["memory"]) for r in response.json()["results"]] == [("ADD", "Owns a bike")]


async def test_an_embedding_failure_after_the_llm_answered_writes_nothing(stack, keys, fake_provider):
    provider, runtime, client = stack
    respond(fake_provider, provider, lambda p: [{"text": "Owns a boat", "event": "ADD"}])
    before = await table_counts(runtime, keys)
    # First embedding call (the messages) succeeds, the second (the new texts) fails.
    original = fake_provider.count("embeddings")
    fake_provider.fail_next("embeddings", Fault(status=500), times=1)
    first = await _add(client, keys, "I bought a boat")
    assert first.status_code == 502
    assert fake_provider.count("embeddings") == original + 1
    assert await table_counts(runtime, keys) == before


async def test_429_then_success_is_retried_and_stored(platform_dsn, fake_provider):
    async with _stack(platform_dsn, fake_provider, "openai", provider_max_retries=1) as (runtime, client):
        keys = await new_tenant(runtime)
        fake_provider.chat_responder = lambda p: json.dumps(
            {"facts": [{"text": "Likes jazz", "event": "ADD"}]}
        )
        fake_provider.fail_next("chat", Fault(status=429, retry_after=0.1))
        response = await _add(client, keys, "I like jazz")
        assert response.status_code == 200, response.text
        assert [r["memory"] for r in response.json()["results"]] == ["Likes jazz"]
        assert fake_provider.count("chat") == 2


async def test_two_call_mode_extracts_then_decides(platform_dsn, fake_provider):
    async with _stack(platform_dsn, fake_provider, "openai", pipeline_mode="two-call") as (runtime, client):
        keys = await new_tenant(runtime)
        old = await add(client, keys.service, "Lives in Berlin")
        fake_provider.script_chat(
            json.dumps({"facts": [{"text": "Lives in Paris", "memory_type": "LONG_TERM"}]})
        )
        fake_provider.chat_responder = lambda p: json.dumps(
            {
                "facts": [
                    {"text": "Lives in Paris", "event": "UPDATE", "target": temp_id_of(p, "Lives in Berlin")}
                ]
            }
        )
        response = await _add(client, keys, "I live in Paris now")
        assert response.status_code == 200, response.text
        assert [(r["event"], r["id"]) for r in response.json()["results"]] == [("UPDATE", old["id"])]
        assert fake_provider.count("chat") == 2
        decide_prompt = prompt_text(fake_provider.last_request("chat").json)
        assert "NEW FACTS" in decide_prompt and "Lives in Paris" in decide_prompt


async def test_an_image_is_described_by_the_vision_model_and_its_description_remembered(
    platform_dsn, fake_provider
):
    async with _stack(platform_dsn, fake_provider, "openai") as (runtime, client):
        keys = await new_tenant(runtime)
        fake_provider.script_chat("A red road bike leaning on a wall.")
        fake_provider.chat_responder = lambda p: json.dumps(
            {"facts": [{"text": "Owns a red road bike", "event": "ADD"}]}
            if "red road bike" in prompt_text(p)
            else {"facts": []}
        )
        content = [
            {"type": "text", "text": "This is my new bike"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
        response = await client.post(
            "/mem/v1/memories",
            json={"messages": [{"role": "user", "content": content}], "user_id": "alice"},
            headers=keys.service,
        )
        assert response.status_code == 200, response.text
        assert [r["memory"] for r in response.json()["results"]] == ["Owns a red road bike"]
        describe = fake_provider.requests_for("chat")[0].json
        assert any(part.get("type") == "image_url" for part in describe["messages"][0]["content"])


async def test_a_model_without_vision_says_the_image_was_dropped(platform_dsn, fake_provider):
    # generic: no vision by default
    async with _stack(platform_dsn, fake_provider, "generic") as (runtime, client):
        keys = await new_tenant(runtime)
        fake_provider.chat_responder = lambda p: json.dumps(
            {"facts": [{"text": "Has a new bike", "event": "ADD"}]}
        )
        content = [
            {"type": "text", "text": "This is my new bike"},
            {"type": "image_url", "image_url": {"url": "https://example.com/bike.png"}},
        ]
        response = await client.post(
            "/mem/v1/memories",
            json={"messages": [{"role": "user", "content": content}], "user_id": "alice"},
            headers=keys.service,
        )
        assert response.status_code == 200, response.text
        assert any("cannot see images" in note for note in response.json()["notes"])
        assert fake_provider.count("chat") == 1


async def test_without_a_chat_provider_infer_true_stores_verbatim_and_links_entities(
    client, tenant, fake_provider
):
    response = await client.post(
        "/mem/v1/memories",
        json={"messages": "I flew to Lisbon with Maria on 3 March 2024", "user_id": "alice"},
        headers=tenant.service,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["event"] for r in body["results"]] == ["ADD"]
    assert any("No chat provider" in note for note in body["notes"])
    assert fake_provider.count("chat") == 0
    entities = (
        await client.get(f"/mem/v1/memories/{body['results'][0]['id']}/entities", headers=tenant.service)
    ).json()
    assert {e["text"] for e in entities["results"]} >= {"Lisbon", "Maria", "3 March 2024"}


async def test_a_target_deleted_while_the_model_thinks_is_skipped_not_resurrected(stack, keys, fake_provider):
    import asyncio

    import asyncpg

    from app.db.dsn import with_database

    provider, runtime, client = stack
    old = await add(client, keys.service, "Lives in Berlin")
    dsn = with_database(runtime.platform.server_dsn, keys.tenant.db_name)

    def decide_after_a_concurrent_delete(payload: dict[str, Any]) -> list[dict[str, Any]]:
        target = temp_id_of(payload, "Lives in Berlin")

        async def delete_now() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("UPDATE mem.memories SET deleted_at = now() WHERE id = $1", old["id"])
            finally:
                await conn.close()

        # The fake provider answers on its own thread: delete the row there, mid-call.
        asyncio.run(delete_now())
        return [{"text": "Lives in Paris", "event": "UPDATE", "target": target}]

    respond(fake_provider, provider, decide_after_a_concurrent_delete)
    response = await _add(client, keys, "I moved to Paris")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"] == []
    assert body["skipped"] == [{"text": "Lives in Paris", "reason": "the memory was deleted meanwhile"}]
    stored = await _memories(runtime, keys)
    assert stored[old["id"]]["memory"] == "Lives in Berlin" and stored[old["id"]]["deleted_at"] is not None


async def test_an_immutable_memory_is_context_never_a_target_and_refuses_put(stack, keys, fake_provider):
    provider, runtime, client = stack
    berlin = await add(client, keys.service, "Lives in Berlin", immutable=True)
    steak = await add(client, keys.service, "Loves steak", immutable=True)
    family = _family(provider)
    calls = fake_provider.count(family)
    respond(
        fake_provider,
        provider,
        lambda p: [
            {"text": "Lives in Paris", "event": "UPDATE", "target": temp_id_of(p, "Lives in Berlin")},
            {"text": "Loves steak", "event": "DELETE", "target": temp_id_of(p, "Loves steak")},
            {"text": "Does not eat meat", "event": "ADD", "memory_type": "LONG_TERM"},
        ],
    )
    response = await _add(client, keys, "I moved to Paris and gave up meat")

    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["event"], r["memory"]) for r in body["results"]] == [("ADD", "Does not eat meat")]
    assert sorted((s["id"], s["reason"]) for s in body["skipped"]) == sorted(
        [
            (berlin["id"], "the memory is immutable (UPDATE)"),
            (steak["id"], "the memory is immutable (DELETE)"),
        ]
    )
    # The model saw them, marked, as context.
    assert "Lives in Berlin (type LONG_TERM, immutable)" in prompt_text(
        fake_provider.last_request(family).json
    )
    assert fake_provider.count(family) == calls + 1
    stored = await _memories(runtime, keys)
    assert (stored[berlin["id"]]["memory"], stored[berlin["id"]]["deleted_at"]) == ("Lives in Berlin", None)
    assert (stored[steak["id"]]["memory"], stored[steak["id"]]["deleted_at"]) == ("Loves steak", None)
    assert [h["event"] for h in await _history(client, keys, berlin["id"])] == ["ADD"]
    assert [h["event"] for h in await _history(client, keys, steak["id"])] == ["ADD"]

    shown = (await client.get(f"/mem/v1/memories/{berlin['id']}", headers=keys.service)).json()
    assert shown["immutable"] is True
    added = next(r for r in body["results"] if r["event"] == "ADD")
    assert (await client.get(f"/mem/v1/memories/{added['id']}", headers=keys.service)).json()[
        "immutable"
    ] is False

    before = await table_counts(runtime, keys)
    put = await client.put(
        f"/mem/v1/memories/{berlin['id']}", json={"text": "Lives in Rome"}, headers=keys.service
    )
    assert put.status_code == 409, put.text
    assert put.json()["code"] == "memory_immutable"
    assert (await _memories(runtime, keys))[berlin["id"]]["memory"] == "Lives in Berlin"
    assert await table_counts(runtime, keys) == before
    # Deleting by id stays allowed: the user's right to erase.
    gone = await client.delete(f"/mem/v1/memories/{berlin['id']}", headers=keys.service)
    assert gone.status_code == 200, gone.text


async def test_custom_instructions_reach_the_extraction_prompt_in_the_one_call(stack, keys, fake_provider):
    provider, _runtime, client = stack
    family = _family(provider)
    calls = fake_provider.count(family)
    respond(
        fake_provider,
        provider,
        lambda p: [{"text": "Likes sushi", "event": "ADD", "memory_type": "LONG_TERM"}],
    )
    instructions = "Only remember food preferences; ignore {anything} else."
    response = await _add(client, keys, "I like sushi and I work at ACME", custom_instructions=instructions)

    assert response.status_code == 200, response.text
    assert [r["memory"] for r in response.json()["results"]] == ["Likes sushi"]
    assert fake_provider.count(family) == calls + 1
    sent = prompt_text(fake_provider.last_request(family).json)
    section = sent[sent.index("INSTRUCTIONS FROM THE APPLICATION") :]
    assert f"<<<APPLICATION INSTRUCTIONS\n{instructions}\nAPPLICATION INSTRUCTIONS>>>" in section
    # The next add without them sends a prompt without the section.
    respond(fake_provider, provider, lambda p: [])
    assert (await _add(client, keys, "Nothing new")).status_code == 200
    assert "INSTRUCTIONS FROM THE APPLICATION" not in prompt_text(fake_provider.last_request(family).json)


async def test_custom_instructions_without_a_model_are_ignored_with_a_note(stack, keys, fake_provider):
    provider, _runtime, client = stack
    calls = fake_provider.count(_family(provider))
    response = await _add(client, keys, "Likes tea", infer=False, custom_instructions="Be brief")

    assert response.status_code == 200, response.text
    assert any("custom_instructions were ignored" in n for n in response.json()["notes"])
    assert fake_provider.count(_family(provider)) == calls


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        ({"immutable": "yes"}, 422, "validation_failed"),
        ({"custom_instructions": "x" * 4001}, 400, "custom_instructions_too_long"),
        ({"custom_instructions": "   "}, 400, "invalid_custom_instructions"),
        ({"custom_instructions": ["a"]}, 422, "validation_failed"),
        ({"custom_instructions": "x" * 4001, "async": True}, 400, "custom_instructions_too_long"),
    ],
)
async def test_bad_immutable_or_custom_instructions_change_nothing(
    stack, keys, fake_provider, extra, status, code
):
    provider, runtime, client = stack
    calls = fake_provider.count(_family(provider))
    before = await table_counts(runtime, keys)
    response = await _add(client, keys, "Likes tea", **extra)

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert await table_counts(runtime, keys) == before
    assert fake_provider.count(_family(provider)) == calls
