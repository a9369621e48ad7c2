"""What Studio's new reads (overview counts, owners, the entity graph) let each scope see, and the
Studio routes' refusals without a browser: no session, a tenant session on admin pages."""

from __future__ import annotations

import re

from app.access import resolve_scope, tenant_transaction
from app.entities.service import entity_graph
from app.memories import overview
from app.studio.overview import QueueDepth, queue_depth
from tests.conftest import add, tenant_conn


async def _as(runtime, headers):
    return await resolve_scope(runtime, headers)


async def test_a_user_sees_only_its_own_counts_owners_and_graph(client, runtime, tenant):
    await add(client, tenant.service, "Alice met Bob in Paris", user_id="alice", memory_type="EPISODIC")
    await add(client, tenant.service, "Mallory lives in Oslo", user_id="mallory")
    scope = await _as(runtime, tenant.user("alice"))
    async with tenant_transaction(runtime, scope) as db:
        counts = await overview.type_counts(db, scope, {})
        owners = await overview.owners(db, scope)
        graph = await entity_graph(db, scope, {})
    assert counts["EPISODIC"] == 1 and sum(counts.values()) == 1
    assert owners.user_id == [("alice", 1)]
    labels = {n.label for n in graph.nodes}
    assert "Oslo" not in labels and "Mallory lives in Oslo" not in labels
    service = await _as(runtime, tenant.service)
    async with tenant_transaction(runtime, service) as db:
        assert dict((await overview.owners(db, service)).user_id) == {"alice": 1, "mallory": 1}
        seen = await overview.overview(db, service)
    assert seen.total == 2 and seen.adds_per_day[-1][1] == 2 and len(seen.adds_per_day) == 30


async def _queue_async_add(client, headers, text: str, user_id: str) -> str:
    body = {"messages": text, "user_id": user_id, "infer": False, "async": True}
    r = await client.post("/mem/v1/memories", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def test_the_queue_depth_counts_the_callers_jobs_per_status(client, runtime, tenant, other_tenant):
    # This app runs no queue workers: the adds stay PENDING; one is marked RUNNING, one FAILED.
    for i in range(3):
        await _queue_async_add(client, tenant.service, f"Alice fact {i}", "alice")
    running = await _queue_async_add(client, tenant.service, "Bob fact", "bob")
    failed = await _queue_async_add(client, tenant.service, "Alice bad fact", "alice")
    await _queue_async_add(client, other_tenant.service, "Elsewhere", "alice")
    conn = await tenant_conn(runtime, tenant)
    try:
        await conn.execute(
            """UPDATE mem.jobs SET status = 'RUNNING', claim_token = gen_random_uuid(),
                   lease_until = now() + interval '1 minute' WHERE id = $1::uuid""",
            running,
        )
        await conn.execute(
            "UPDATE mem.jobs SET status = 'FAILED', error_code = 'x' WHERE id = $1::uuid", failed
        )
        in_db = dict(await conn.fetch("SELECT status, count(*) FROM mem.jobs GROUP BY 1"))
        alice_in_db = dict(
            await conn.fetch("SELECT status, count(*) FROM mem.jobs WHERE user_id = 'alice' GROUP BY 1")
        )
    finally:
        await conn.close()
    assert in_db == {"PENDING": 3, "RUNNING": 1, "FAILED": 1}

    service = await _as(runtime, tenant.service)
    async with tenant_transaction(runtime, service) as db:
        assert await queue_depth(db, service) == QueueDepth(pending=3, running=1, failed=1)
    alice = await _as(runtime, tenant.user("alice"))
    async with tenant_transaction(runtime, alice) as db:
        assert await queue_depth(db, alice) == QueueDepth(
            pending=alice_in_db["PENDING"], running=0, failed=alice_in_db["FAILED"]
        )
    elsewhere = await _as(runtime, other_tenant.service)
    async with tenant_transaction(runtime, elsewhere) as db:
        assert await queue_depth(db, elsewhere) == QueueDepth(pending=1, running=0, failed=0)

    login = await client.get("/studio/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    await client.post("/studio/login", data={"csrf_token": csrf, "key": tenant.service_role_key})
    try:
        page = (await client.get("/studio/overview")).text
    finally:
        client.cookies.clear()
    for status, n in (("pending", 3), ("running", 1), ("failed", 1)):
        assert f'<td id="queue-{status}">{n}</td>' in page


async def test_studio_without_a_session_sends_to_sign_in_and_changes_nothing(client, runtime, tenant):
    item = await add(client, tenant.service, "Alice likes tea")
    for path in ("/studio/memories", f"/studio/memories/{item['id']}", "/studio/admin", "/studio/overview"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/studio/login"), path
    r = await client.post(f"/studio/memories/{item['id']}/delete", data={"csrf_token": "x"})
    assert r.status_code == 303
    assert (await client.get(f"/mem/v1/memories/{item['id']}", headers=tenant.service)).status_code == 200


async def test_a_tenant_session_may_not_open_admin_pages(client, runtime, tenant):
    login = await client.get("/studio/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    r = await client.post("/studio/login", data={"csrf_token": csrf, "key": tenant.service_role_key})
    assert r.status_code == 303 and r.headers["location"] == "/studio/overview"
    try:
        page = await client.get("/studio/overview")
        assert page.status_code == 200 and tenant.service_role_key not in page.text
        for path in ("/studio/admin",):
            assert (await client.get(path)).status_code == 404
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = await client.post("/studio/admin/tenants", data={"csrf_token": csrf, "name": "Sneaky"})
        assert r.status_code == 404
        assert "Sneaky" not in {t.name for t in await runtime.platform.list_tenants()}
    finally:
        client.cookies.clear()


async def test_bad_input_is_a_page_with_a_clear_status_and_changes_nothing(client, runtime, tenant):
    item = await add(client, tenant.service, "Alice likes tea")
    login = await client.get("/studio/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    await client.post("/studio/login", data={"csrf_token": csrf, "key": tenant.service_role_key})
    try:
        page = await client.get("/studio/memories/not-a-uuid")
        assert page.status_code == 404 and "memory_not_found" in page.text
        assert page.headers["content-type"].startswith("text/html")
        page = await client.get("/studio/memories?page=abc")
        assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
        page = await client.get("/studio/memories?user_id=alice&meta_key=bad%20key&meta_value=x")
        assert page.status_code == 400 and "notice error" in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = await client.post(f"/studio/memories/{item['id']}", data={"csrf_token": csrf, "text": "  "})
        assert r.status_code == 400 and "text must not be empty" in r.text
        r = await client.post("/studio/memories/not-a-uuid/delete", data={"csrf_token": csrf})
        assert r.status_code == 404
        kept = await client.get(f"/mem/v1/memories/{item['id']}", headers=tenant.service)
        assert kept.status_code == 200 and kept.json()["memory"] == "Alice likes tea"
    finally:
        client.cookies.clear()
