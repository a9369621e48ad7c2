"""Memory history through the API, deletes, reset, and the per-tenant config."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.conftest import ADMIN_KEY, TenantKeys, add, table_counts, tenant_conn


def _parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed.astimezone(UTC)


async def _history(
    client: httpx.AsyncClient, headers: dict[str, str], memory_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/mem/v1/memories/{memory_id}/history", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    return body


async def _search(
    client: httpx.AsyncClient, keys: TenantKeys, query: str, **body: Any
) -> list[dict[str, Any]]:
    response = await client.post(
        "/mem/v1/search", json={"query": query, "user_id": "alice", **body}, headers=keys.service
    )
    assert response.status_code == 200, response.text
    return response.json()["results"]


# --- history -----------------------------------------------------------------------------


async def test_history_records_add_update_metadata_update_and_delete_in_order(client, tenant):
    item = await add(client, tenant.service, "I live in Lisbon")
    memory_id = item["id"]

    text = await client.put(
        f"/mem/v1/memories/{memory_id}", json={"text": "I live in Porto"}, headers=tenant.service
    )
    assert text.status_code == 200, text.text
    meta = await client.put(
        f"/mem/v1/memories/{memory_id}", json={"metadata": {"source": "chat"}}, headers=tenant.service
    )
    assert meta.status_code == 200, meta.text
    assert meta.json()["metadata"] == {"source": "chat"}
    assert meta.json()["memory"] == "I live in Porto"
    deleted = await client.delete(f"/mem/v1/memories/{memory_id}", headers=tenant.service)
    assert deleted.status_code == 200, deleted.text

    history = await _history(client, tenant.service, memory_id)

    assert [(h["event"], h["old_memory"], h["new_memory"]) for h in history] == [
        ("ADD", None, "I live in Lisbon"),
        ("UPDATE", "I live in Lisbon", "I live in Porto"),
        ("UPDATE", "I live in Porto", "I live in Porto"),
        ("DELETE", "I live in Porto", None),
    ]
    # The metadata-only update says what it changed.
    assert [(h["old_metadata"], h["new_metadata"]) for h in history] == [
        (None, {}),
        ({}, {}),
        ({}, {"source": "chat"}),
        ({"source": "chat"}, None),
    ]
    assert {h["actor"] for h in history} == {"service_role"}
    assert {h["memory_id"] for h in history} == {memory_id}
    assert len({h["id"] for h in history}) == 4
    stamps = [_parse_iso(h["created_at"]) for h in history]
    assert stamps == sorted(stamps)
    assert all(abs((datetime.now(UTC) - s).total_seconds()) < 300 for s in stamps)


async def test_history_names_the_signed_in_user_as_the_actor(client, tenant):
    sub = str(uuid.uuid4())
    user = tenant.user(sub)
    added = await client.post(
        "/mem/v1/memories", json={"messages": "I drink green tea", "infer": False}, headers=user
    )
    assert added.status_code == 200, added.text
    memory_id = added.json()["results"][0]["id"]
    updated = await client.put(
        f"/mem/v1/memories/{memory_id}", json={"text": "I drink black tea"}, headers=user
    )
    assert updated.status_code == 200, updated.text

    history = await _history(client, user, memory_id)

    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    assert [h["actor"] for h in history] == [f"user:{sub}", f"user:{sub}"]
    # The service sees the same trail, with the user's name on it.
    assert await _history(client, tenant.service, memory_id) == history


async def test_history_of_a_memory_is_hidden_from_other_users_tenants_and_anonymous_callers(
    client, tenant, other_tenant
):
    owner_sub, other_sub = str(uuid.uuid4()), str(uuid.uuid4())
    added = await client.post(
        "/mem/v1/memories",
        json={"messages": "my secret plan", "infer": False},
        headers=tenant.user(owner_sub),
    )
    memory_id = added.json()["results"][0]["id"]
    assert len(await _history(client, tenant.user(owner_sub), memory_id)) == 1

    other_user = await client.get(f"/mem/v1/memories/{memory_id}/history", headers=tenant.user(other_sub))
    other_tenant_service = await client.get(
        f"/mem/v1/memories/{memory_id}/history", headers=other_tenant.service
    )
    anonymous = await client.get(f"/mem/v1/memories/{memory_id}/history", headers=tenant.anon)

    assert other_user.status_code == 404
    assert other_user.json()["code"] == "memory_not_found"
    assert other_tenant_service.status_code == 404
    assert anonymous.status_code == 403
    assert "my secret plan" not in other_user.text + other_tenant_service.text + anonymous.text


async def test_a_deleted_memory_is_gone_from_get_list_and_search_but_its_history_remains(client, tenant):
    kept = await add(client, tenant.service, "Alice enjoys mountain hiking")
    gone = await add(client, tenant.service, "Alice owns a red bicycle")
    assert gone["id"] in {r["id"] for r in await _search(client, tenant, "Alice owns a red bicycle")}

    deleted = await client.delete(f"/mem/v1/memories/{gone['id']}", headers=tenant.service)
    assert deleted.status_code == 200

    got = await client.get(f"/mem/v1/memories/{gone['id']}", headers=tenant.service)
    assert got.status_code == 404
    assert got.json()["code"] == "memory_not_found"
    listed = await client.get("/mem/v1/memories", params={"user_id": "alice"}, headers=tenant.service)
    assert [m["id"] for m in listed.json()["results"]] == [kept["id"]]
    assert listed.json()["total"] == 1
    found = await _search(client, tenant, "Alice owns a red bicycle")
    assert [r["id"] for r in found] == [kept["id"]]
    assert [h["event"] for h in await _history(client, tenant.service, gone["id"])] == ["ADD", "DELETE"]
    again = await client.delete(f"/mem/v1/memories/{gone['id']}", headers=tenant.service)
    assert again.status_code == 404
    updated = await client.put(
        f"/mem/v1/memories/{gone['id']}", json={"text": "revived"}, headers=tenant.service
    )
    assert updated.status_code == 404


async def test_deleting_all_of_an_owners_memories_writes_one_delete_row_per_memory(client, runtime, tenant):
    carols = [await add(client, tenant.service, f"carol fact {i}", user_id="carol") for i in range(3)]
    daves = await add(client, tenant.service, "dave fact", user_id="dave")

    response = await client.delete("/mem/v1/memories", params={"user_id": "carol"}, headers=tenant.service)

    assert response.status_code == 200, response.text
    assert response.json()["deleted"] == 3
    for item in carols:
        assert [h["event"] for h in await _history(client, tenant.service, item["id"])] == ["ADD", "DELETE"]
    conn = await tenant_conn(runtime, tenant)
    try:
        rows = await conn.fetch(
            "SELECT memory_id, user_id, actor, old_memory FROM mem.memory_history WHERE event = 'DELETE'"
        )
    finally:
        await conn.close()
    assert sorted(str(r["memory_id"]) for r in rows) == sorted(i["id"] for i in carols)
    assert {(r["user_id"], r["actor"]) for r in rows} == {("carol", "service_role")}
    assert sorted(r["old_memory"] for r in rows) == ["carol fact 0", "carol fact 1", "carol fact 2"]
    carol_list = await client.get("/mem/v1/memories", params={"user_id": "carol"}, headers=tenant.service)
    assert carol_list.json()["results"] == []
    dave_list = await client.get("/mem/v1/memories", params={"user_id": "dave"}, headers=tenant.service)
    assert [m["id"] for m in dave_list.json()["results"]] == [daves["id"]]


# --- reset ---------------------------------------------------------------------------------


async def _seed_entity(runtime, keys: TenantKeys, memory_id: str) -> None:
    """An entity linked to a memory, written directly: the verbatim path may not extract any."""
    conn = await tenant_conn(runtime, keys)
    try:
        entity_id = await conn.fetchval(
            "INSERT INTO mem.entities (user_id, text, entity_type) VALUES ('alice', 'Lisbon', 'place') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO mem.entity_links (entity_id, memory_id) VALUES ($1, $2)",
            entity_id,
            uuid.UUID(memory_id),
        )
    finally:
        await conn.close()


async def test_reset_empties_every_mem_table_but_keeps_the_config(client, runtime, tenant):
    put = await client.put(
        "/mem/v1/config", json={"settings": {"search.default-top-k": 7}}, headers=tenant.service
    )
    assert put.status_code == 200, put.text
    first = await add(client, tenant.service, "I live in Lisbon")
    await add(client, tenant.service, "I work at Acme with Maria", user_id="bob")
    await client.put(
        f"/mem/v1/memories/{first['id']}", json={"text": "I live in Porto"}, headers=tenant.service
    )
    await _seed_entity(runtime, tenant, first["id"])
    before = await table_counts(runtime, tenant)
    assert before == {
        "memories": 2,
        "memory_history": 3,
        # Lisbon, Acme, Maria, Porto from the heuristic (Lisbon unlinked by the update), plus the seeded one.
        "entities": 5,
        "entity_links": 4,
        # Acme related_to Maria (heuristic co-mention), and its history row.
        "relations": 1,
        "graph_history": 1,
        "session_messages": 2,
        "jobs": 0,
        "config": 1,
    }

    response = await client.post("/mem/v1/reset", headers={**tenant.service, "x-request-id": "reset-audit-1"})

    assert response.status_code == 200, response.text
    removed = {k: v for k, v in before.items() if k != "config"}
    assert response.json()["removed"] == removed
    # The audit trail is in the control plane, out of reach of the reset it records.
    (record,) = await runtime.platform.resets(tenant.ref)
    assert (record["ref"], record["actor"], record["request_id"]) == (
        tenant.ref,
        "service_role",
        "reset-audit-1",
    )
    assert record["removed"] == removed
    assert await table_counts(runtime, tenant) == {
        "memories": 0,
        "memory_history": 0,
        "entities": 0,
        "entity_links": 0,
        "relations": 0,
        "graph_history": 0,
        "session_messages": 0,
        "jobs": 0,
        "config": 1,
    }
    config = await client.get("/mem/v1/config", headers=tenant.service)
    assert config.json()["overrides"] == {"search.default-top-k": 7}
    assert config.json()["settings"]["search.default-top-k"] == 7
    listed = await client.get("/mem/v1/memories", params={"user_id": "alice"}, headers=tenant.service)
    assert listed.json()["results"] == []
    # The tenant keeps working after a reset, history included.
    again = await add(client, tenant.service, "I live in Lisbon")
    assert [h["event"] for h in await _history(client, tenant.service, again["id"])] == ["ADD"]


async def test_reset_touches_only_the_calling_tenant(client, runtime, tenant, other_tenant):
    await add(client, tenant.service, "mine")
    await add(client, other_tenant.service, "theirs")

    response = await client.post("/mem/v1/reset", headers=tenant.service)

    assert response.status_code == 200
    assert (await table_counts(runtime, tenant))["memories"] == 0
    assert (await table_counts(runtime, other_tenant))["memories"] == 1
    assert (await table_counts(runtime, other_tenant))["memory_history"] == 1
    assert len(await runtime.platform.resets(tenant.ref)) == 1
    assert await runtime.platform.resets(other_tenant.ref) == []


async def test_a_reset_is_recorded_even_when_the_store_is_already_empty(client, runtime, tenant):
    for _ in range(2):
        response = await client.post("/mem/v1/reset", headers=tenant.service)
        assert response.status_code == 200, response.text
    records = await runtime.platform.resets(tenant.ref)
    assert [r["removed"]["memories"] for r in records] == [0, 0]


async def test_concurrent_adds_and_resets_never_answer_500_and_leave_a_consistent_store(
    client, runtime, tenant
):
    """Resets lock in the writers' order (mem 003) and retry a deadlock; an add that still
    loses one answers 503 database_busy with Retry-After, never 500."""

    async def one_add(i: int) -> httpx.Response:
        body = {"messages": f"Fact number {i} about tea", "user_id": f"u{i % 4}", "infer": False}
        return await client.post("/mem/v1/memories", json=body, headers=tenant.service)

    async def one_reset() -> httpx.Response:
        return await client.post("/mem/v1/reset", headers=tenant.service)

    # 64 adds with a reset after every 8th, all at once.
    is_reset = [i % 9 == 8 for i in range(72)]
    jobs = [one_reset() if reset else one_add(i) for i, reset in enumerate(is_reset)]
    responses = await asyncio.gather(*jobs)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, [r.text for r in responses if r.status_code not in (200, 503)]
    for response in responses:
        if response.status_code == 503:
            assert response.json()["code"] in ("database_busy", "database_unavailable")
            assert response.headers.get("retry-after")
    resets_done = sum(
        1 for r, reset in zip(responses, is_reset, strict=True) if reset and r.status_code == 200
    )
    assert resets_done >= 1
    assert len(await runtime.platform.resets(tenant.ref)) == resets_done
    # Consistent: every memory has its history and every history row its memory (a reset took both).
    conn = await tenant_conn(runtime, tenant)
    try:
        orphans = await conn.fetchval(
            """SELECT count(*) FROM mem.memories m
               WHERE NOT EXISTS (SELECT 1 FROM mem.memory_history h WHERE h.memory_id = m.id)"""
        )
        stray_history = await conn.fetchval(
            """SELECT count(*) FROM mem.memory_history h
               WHERE NOT EXISTS (SELECT 1 FROM mem.memories m WHERE m.id = h.memory_id)"""
        )
    finally:
        await conn.close()
    assert (orphans, stray_history) == (0, 0)
    counts = await table_counts(runtime, tenant)
    assert counts["memories"] == counts["memory_history"]


async def test_reset_is_refused_to_users_anonymous_callers_and_the_admin_key(client, runtime, tenant):
    await add(client, tenant.service, "must survive")
    callers = {
        "user": (tenant.user(str(uuid.uuid4())), 403, "service_role_required"),
        "anonymous": (tenant.anon, 403, "anonymous_not_allowed"),
        "admin": ({"authorization": f"Bearer {ADMIN_KEY}"}, 401, "missing_api_key"),
    }

    for name, (headers, status, code) in callers.items():
        response = await client.post("/mem/v1/reset", headers=headers)
        assert (name, response.status_code, response.json()["code"]) == (name, status, code)

    assert (await table_counts(runtime, tenant))["memories"] == 1


# --- config --------------------------------------------------------------------------------


def _keys_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value] + [k for v in value.values() for k in _keys_of(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys_of(v)]
    return []


async def test_config_shows_the_fixed_settings_and_no_secrets(client, runtime, tenant):
    response = await client.get("/mem/v1/config", headers=tenant.service)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["embedding_dimensions"] == 384
    assert body["fts_config"] == "simple"
    assert body["settings"]["search.default-top-k"] == runtime.settings.mem.search_default_top_k
    assert body["overrides"] == {}
    for name in _keys_of(body):
        assert not any(word in name.lower() for word in ("key", "token", "password", "secret")), name
    text = json.dumps(body)
    for secret in (
        tenant.tenant.jwt_secret,
        tenant.service_role_key,
        tenant.anon_key,
        tenant.tenant.app_role_password,
        ADMIN_KEY,
    ):
        assert secret not in text


async def test_config_put_merges_overrides_and_null_removes_one(client, tenant):
    first = await client.put(
        "/mem/v1/config", json={"settings": {"search.default-top-k": 4}}, headers=tenant.service
    )
    second = await client.put(
        "/mem/v1/config",
        json={"settings": {"session.window-size": 5, "memory.short-term-ttl-hours": 2}},
        headers=tenant.service,
    )
    assert first.status_code == second.status_code == 200, second.text
    assert second.json()["overrides"] == {
        "search.default-top-k": 4,
        "session.window-size": 5,
        "memory.short-term-ttl-hours": 2,
    }

    removed = await client.put(
        "/mem/v1/config", json={"settings": {"session.window-size": None}}, headers=tenant.service
    )

    assert removed.status_code == 200, removed.text
    assert removed.json()["overrides"] == {"search.default-top-k": 4, "memory.short-term-ttl-hours": 2}
    read = await client.get("/mem/v1/config", headers=tenant.service)
    assert read.json()["overrides"] == removed.json()["overrides"]
    assert read.json()["settings"]["session.window-size"] == 20


async def test_config_refuses_fixed_unknown_and_out_of_range_keys_and_non_service_callers(client, tenant):
    cases = [
        ({"embedding.dimensions": 768}, "config_key_fixed"),
        ({"search.fts-config": "english"}, "config_key_fixed"),
        ({"openai.api-key": "sk-x"}, "unknown_config_key"),
        ({"search.default-top-k": 0}, "invalid_config_value"),
        ({"search.default-top-k": "5"}, "invalid_config_value"),
        ({"session.window-size": 1.5}, "invalid_config_value"),
        # History is the tenant's audit trail: no tenant may switch it off (or on).
        ({"history.enabled": False}, "config_key_fixed"),
        ({"history.enabled": True}, "config_key_fixed"),
        ({"history.enabled": None}, "config_key_fixed"),
    ]
    for change, code in cases:
        response = await client.put("/mem/v1/config", json={"settings": change}, headers=tenant.service)
        assert (change, response.status_code, response.json()["code"]) == (change, 400, code)
    user = tenant.user(str(uuid.uuid4()))
    assert (await client.get("/mem/v1/config", headers=user)).status_code == 403
    put = await client.put("/mem/v1/config", json={"settings": {"search.default-top-k": 1}}, headers=user)
    assert put.status_code == 403
    assert (await client.get("/mem/v1/config", headers=tenant.service)).json()["overrides"] == {}


async def test_a_default_top_k_override_limits_searches_that_name_no_top_k(client, tenant):
    for text in ("tea in the morning", "tea in the evening", "tea at noon"):
        await add(client, tenant.service, text)
    assert len(await _search(client, tenant, "tea")) == 3

    put = await client.put(
        "/mem/v1/config", json={"settings": {"search.default-top-k": 1}}, headers=tenant.service
    )
    assert put.status_code == 200, put.text

    assert len(await _search(client, tenant, "tea")) == 1
    assert len(await _search(client, tenant, "tea", top_k=2)) == 2
