"""Async adds on the durable queue: enqueue, workers, retries, failures, scope and isolation.

A runtime of this module's own with a chat provider (the fake, generic/OpenAI wire format), and
queue workers started per test with short backoffs, so retries are quick. Every outcome is
checked in the tenant database (mem.jobs, memories, history), not only in the answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.access import tenant_transaction
from app.asgi import build_runtime, close_runtime, create_app
from app.core.jobs import service as jobs
from app.runtime import Runtime
from app.settings import QueueSettings
from app.worker.runner import LOST, run_job, service_scope
from app.worker.workers import QueueWorkers
from tests.conftest import ADMIN_KEY, TenantKeys, make_settings, new_tenant, table_counts, tenant_conn
from testsupport.provider_server import FakeProviderServer, Fault

MEM = "/mem/v1"
QUEUE = QueueSettings(
    workers=2,
    max_attempts=3,
    lease_seconds=5,
    retry_base_seconds=0.05,
    retry_max_seconds=0.2,
    scan_seconds=0.5,
)
_NEW = re.compile(r"NEW MESSAGES:\n(.*)$", re.DOTALL)


def one_fact_per_user_line(payload: dict[str, Any]) -> str:
    """A model that extracts each user line as one fact to ADD."""
    prompt = "\n".join(str(m.get("content")) for m in payload.get("messages", []))
    found = _NEW.search(prompt)
    lines = [line for line in (found.group(1) if found else "").splitlines() if line.startswith("user")]
    facts = [{"text": line.split(": ", 1)[1], "event": "ADD", "memory_type": "LONG_TERM"} for line in lines]
    return json.dumps({"facts": facts})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    platform_dsn: str, fake_provider: FakeProviderServer
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    settings = make_settings(
        platform_dsn,
        fake_provider,
        chat_provider="generic",
        chat_base_url=fake_provider.openai_base_url,
        chat_api_key="test",
        chat_model="fake-chat",
        provider_timeout_seconds=2.0,
    )
    runtime = await build_runtime(settings)
    app = create_app(settings, runtime=runtime)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://memory.test")
    try:
        yield runtime, client
    finally:
        await client.aclose()
        await close_runtime(runtime)


@pytest.fixture
def runtime_(stack: tuple[Runtime, httpx.AsyncClient]) -> Runtime:
    return stack[0]


@pytest.fixture
def api(stack: tuple[Runtime, httpx.AsyncClient], fake_provider: FakeProviderServer) -> httpx.AsyncClient:
    fake_provider.chat_responder = one_fact_per_user_line
    return stack[1]


@pytest_asyncio.fixture(loop_scope="session")
async def keys(runtime_: Runtime) -> TenantKeys:
    return await new_tenant(runtime_)


@pytest_asyncio.fixture(loop_scope="session")
async def workers(runtime_: Runtime) -> AsyncIterator[QueueWorkers]:
    started = QueueWorkers(runtime_, QUEUE)
    await started.start()
    try:
        yield started
    finally:
        await started.stop(grace_seconds=2)


async def async_add(
    api: httpx.AsyncClient, headers: dict[str, str], text: str, **body: Any
) -> dict[str, Any]:
    payload = {"messages": [{"role": "user", "content": text}], "async": True, **body}
    response = await api.post(f"{MEM}/memories", json=payload, headers=headers)
    assert response.status_code == 202, response.text
    event: dict[str, Any] = response.json()
    assert event["status"] == "PENDING" and event["attempts"] == 0
    return event


async def wait_for(
    api: httpx.AsyncClient, headers: dict[str, str], event_id: str, statuses: set[str], within: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await api.get(f"{MEM}/events/{event_id}", headers=headers)
        assert response.status_code == 200, response.text
        event: dict[str, Any] = response.json()
        if event["status"] in statuses:
            return event
        assert time.monotonic() < deadline, f"still {event['status']} after {within} s: {event}"
        await asyncio.sleep(0.05)


async def job_rows(runtime: Runtime, keys: TenantKeys) -> list[dict[str, Any]]:
    conn = await tenant_conn(runtime, keys)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM mem.jobs ORDER BY created_at")]
    finally:
        await conn.close()


async def memories(runtime: Runtime, keys: TenantKeys) -> list[dict[str, Any]]:
    conn = await tenant_conn(runtime, keys)
    try:
        rows = await conn.fetch("SELECT id, memory, user_id FROM mem.memories WHERE deleted_at IS NULL")
        return [dict(r) for r in rows]
    finally:
        await conn.close()


# --- the happy path -----------------------------------------------------------------------------------


async def test_an_async_add_answers_202_at_once_and_its_event_ends_succeeded_with_the_memories(
    api, runtime_, keys, workers, fake_provider
):
    event = await async_add(api, keys.service, "I moved to Lisbon last month", user_id="alice")
    assert event["user_id"] == "alice" and event["event_type"] == "ADD"
    assert event["payload"]["messages"][0]["content"] == "I moved to Lisbon last month"
    assert "async" not in event["payload"]

    done = await wait_for(api, keys.service, event["id"], {"SUCCEEDED", "FAILED"})
    assert done["status"] == "SUCCEEDED", done
    assert done["attempts"] == 1 and done["finished_at"] and done["latency"] >= 0
    (result,) = done["results"]
    assert (result["event"], result["memory"]) == ("ADD", "I moved to Lisbon last month")
    stored = await memories(runtime_, keys)
    assert [(str(m["id"]), m["memory"], m["user_id"]) for m in stored] == [
        (result["id"], "I moved to Lisbon last month", "alice")
    ]
    (row,) = await job_rows(runtime_, keys)
    assert (row["status"], row["claim_token"], row["lease_until"]) == ("SUCCEEDED", None, None)
    assert json.loads(row["result"])["results"] == done["results"]
    assert fake_provider.count("chat") == 1


async def test_a_sync_add_is_unchanged_and_leaves_no_job(api, runtime_, keys):
    response = await api.post(
        f"{MEM}/memories",
        json={"messages": "Alice likes tea", "user_id": "alice", "infer": False},
        headers=keys.service,
    )
    assert response.status_code == 200 and response.json()["results"][0]["event"] == "ADD"
    assert await job_rows(runtime_, keys) == []


async def test_events_list_newest_first_filters_by_status_and_pages(api, runtime_, keys, workers):
    first = await async_add(api, keys.service, "Alice likes green tea", user_id="alice", infer=False)
    await wait_for(api, keys.service, first["id"], {"SUCCEEDED"})
    second = await async_add(api, keys.service, "Bob likes coffee", user_id="bob", infer=False)
    await wait_for(api, keys.service, second["id"], {"SUCCEEDED"})

    page = (await api.get(f"{MEM}/events", headers=keys.service)).json()
    assert [e["id"] for e in page["results"]] == [second["id"], first["id"]] and page["total"] == 2
    only_bob = (await api.get(f"{MEM}/events", params={"user_id": "bob"}, headers=keys.service)).json()
    assert [e["id"] for e in only_bob["results"]] == [second["id"]]
    paged = (await api.get(f"{MEM}/events", params={"page": 2, "page_size": 1}, headers=keys.service)).json()
    assert ([e["id"] for e in paged["results"]], paged["total"]) == ([first["id"]], 2)
    failed = (await api.get(f"{MEM}/events", params={"status": "failed"}, headers=keys.service)).json()
    assert failed["results"] == [] and failed["total"] == 0


# --- scope: a user's job runs as that user ---------------------------------------------------------------


async def test_a_users_async_add_runs_under_that_users_scope(api, runtime_, keys, workers):
    event = await async_add(api, keys.user("alice"), "I am allergic to peanuts")
    assert event["user_id"] == "alice"
    (row,) = await job_rows(runtime_, keys)
    assert (row["scope_role"], row["scope_user_id"], row["user_id"]) == ("authenticated", "alice", "alice")

    done = await wait_for(api, keys.user("alice"), event["id"], {"SUCCEEDED", "FAILED"})
    assert done["status"] == "SUCCEEDED", done
    conn = await tenant_conn(runtime_, keys)
    try:
        history = await conn.fetch("SELECT actor, user_id FROM mem.memory_history")
    finally:
        await conn.close()
    assert [(h["actor"], h["user_id"]) for h in history] == [("user:alice", "alice")]


async def test_a_users_job_whose_payload_names_another_user_fails_and_writes_nothing(
    api, runtime_, keys, workers
):
    # Written behind the API's back (the API refuses it with 403): the worker must refuse it too,
    # because it rebuilds alice's scope, pinned to her sub, and runs the add's own checks under it.
    conn = await tenant_conn(runtime_, keys)
    try:
        job_id = await conn.fetchval(
            """INSERT INTO mem.jobs (scope_role, scope_user_id, user_id, payload)
               VALUES ('authenticated', 'alice', 'alice', $1::jsonb) RETURNING id""",
            json.dumps({"messages": "Mallory owes me money", "user_id": "mallory", "infer": False}),
        )
    finally:
        await conn.close()
    await workers.scan()
    done = await wait_for(api, keys.service, str(job_id), {"SUCCEEDED", "FAILED"})
    assert (done["status"], done["attempts"], done["error"]["code"]) == ("FAILED", 1, "user_scope_violation")
    assert await memories(runtime_, keys) == []


async def test_a_tenant_with_one_job_is_not_stuck_behind_a_tenant_with_many(
    api, runtime_, keys, workers, fake_provider
):
    fake_provider.set_fault(Fault(delay=0.15), family="chat")
    small = await new_tenant(runtime_, "Small")
    many = [await async_add(api, keys.service, f"Alice fact number {i}", user_id="alice") for i in range(20)]
    (one,) = [await async_add(api, small.service, "Bob has one fact", user_id="bob")]
    done = await wait_for(api, small.service, one["id"], {"SUCCEEDED"})
    finished = [await wait_for(api, keys.service, e["id"], {"SUCCEEDED"}) for e in many]
    at = datetime.fromisoformat
    # Round robin: the small tenant's job is taken by the next free worker or the one after it, not
    # after the big tenant's queue (FIFO would run every job of it that was still waiting first).
    overtook = [
        e
        for e in finished
        if at(e["started_at"]) > at(one["created_at"]) and at(e["finished_at"]) < at(done["finished_at"])
    ]
    assert len(overtook) <= 3, [e["started_at"] for e in overtook]
    assert sum(at(e["started_at"]) > at(one["created_at"]) for e in finished) >= 4, (
        "the big queue was still long"
    )


# --- retries and failures -----------------------------------------------------------------------------


async def test_a_provider_503_is_retried_with_backoff_until_the_add_succeeds(
    api, runtime_, keys, workers, fake_provider
):
    fake_provider.fail_next("chat", Fault(status=503), times=2)
    event = await async_add(api, keys.service, "I work as a nurse", user_id="alice")
    done = await wait_for(api, keys.service, event["id"], {"SUCCEEDED", "FAILED"})
    assert (done["status"], done["attempts"]) == ("SUCCEEDED", 3), done
    assert "error" not in done
    assert fake_provider.count("chat") == 3
    assert [m["memory"] for m in await memories(runtime_, keys)] == ["I work as a nurse"]


async def test_a_job_still_failing_after_max_attempts_is_failed_with_its_reason(
    api, runtime_, keys, workers, fake_provider
):
    fake_provider.set_fault(Fault(status=503), family="chat")
    event = await async_add(api, keys.service, "I play the cello", user_id="alice")
    done = await wait_for(api, keys.service, event["id"], {"SUCCEEDED", "FAILED"})
    assert (done["status"], done["attempts"]) == ("FAILED", QUEUE.max_attempts), done
    assert done["error"]["code"] == "provider_error"
    assert done["error"]["message"].startswith("Gave up after 3 attempts.")
    assert "HTTP 503" in done["error"]["message"]
    assert fake_provider.count("chat") == QUEUE.max_attempts
    assert await memories(runtime_, keys) == []
    counts = await table_counts(runtime_, keys)
    assert counts["memory_history"] == counts["session_messages"] == 0


async def test_a_running_job_whose_lease_ran_out_is_taken_again(api, runtime_, keys, workers):
    conn = await tenant_conn(runtime_, keys)
    try:
        job_id = await conn.fetchval(
            """INSERT INTO mem.jobs (scope_role, user_id, payload, status, attempts, claim_token, lease_until)
               VALUES ('service_role', 'alice', $1::jsonb, 'RUNNING', 1, gen_random_uuid(),
                       now() - interval '1 second') RETURNING id""",
            json.dumps({"messages": "Alice sings in a choir", "user_id": "alice", "infer": False}),
        )
    finally:
        await conn.close()
    await workers.scan()
    done = await wait_for(api, keys.service, str(job_id), {"SUCCEEDED", "FAILED"})
    assert (done["status"], done["attempts"]) == ("SUCCEEDED", 2)
    assert [m["memory"] for m in await memories(runtime_, keys)] == ["Alice sings in a choir"]


async def test_an_attempt_that_lost_its_claim_rolls_its_writes_back(api, runtime_, keys):
    # No workers here: this test claims the job itself, then another attempt takes it over.
    event = await async_add(api, keys.service, "Alice keeps bees", user_id="alice", infer=False)
    async with tenant_transaction(runtime_, service_scope(keys.ref)) as db:
        job = await jobs.claim(db, keys.ref, 30)
    assert job is not None and str(job.id) == event["id"]
    conn = await tenant_conn(runtime_, keys)
    try:
        await conn.execute("UPDATE mem.jobs SET claim_token = $1", uuid.uuid4())
    finally:
        await conn.close()

    assert await run_job(runtime_, job, QUEUE) == LOST
    assert await memories(runtime_, keys) == []
    counts = await table_counts(runtime_, keys)
    assert counts["memory_history"] == counts["session_messages"] == 0
    (row,) = await job_rows(runtime_, keys)
    assert row["status"] == "RUNNING" and row["claim_token"] != job.token


async def test_stopping_the_workers_hands_a_running_job_back(api, runtime_, keys, fake_provider):
    fake_provider.set_fault(Fault(delay=3), family="chat")
    started = QueueWorkers(runtime_, QUEUE)
    await started.start()
    event = await async_add(api, keys.service, "Alice rides a red bike", user_id="alice")
    await wait_for(api, keys.service, event["id"], {"RUNNING"})
    await started.stop(grace_seconds=0.2)
    (row,) = await job_rows(runtime_, keys)
    assert (row["status"], row["attempts"], row["claim_token"]) == ("PENDING", 0, None)
    assert await memories(runtime_, keys) == []


# --- isolation and bad input ----------------------------------------------------------------------------


async def test_events_are_owner_scoped_and_tenant_scoped(api, runtime_, keys, workers):
    alice = await async_add(api, keys.user("alice"), "Alice runs marathons", infer=False)
    bob = await async_add(api, keys.user("bob"), "Bob collects stamps", infer=False)
    await wait_for(api, keys.service, alice["id"], {"SUCCEEDED"})
    await wait_for(api, keys.service, bob["id"], {"SUCCEEDED"})

    # Another owner: 404, the same answer as an unknown id.
    other = await api.get(f"{MEM}/events/{alice['id']}", headers=keys.user("bob"))
    unknown = await api.get(f"{MEM}/events/{uuid.uuid4()}", headers=keys.user("bob"))
    assert (other.status_code, other.json()["code"]) == (404, "event_not_found")
    assert (unknown.status_code, unknown.json()) == (404, other.json())
    listed = (await api.get(f"{MEM}/events", headers=keys.user("bob"))).json()
    assert [e["id"] for e in listed["results"]] == [bob["id"]]
    naming_alice = await api.get(f"{MEM}/events", params={"user_id": "alice"}, headers=keys.user("bob"))
    assert (naming_alice.status_code, naming_alice.json()["code"]) == (403, "user_scope_violation")
    # service_role sees the whole tenant.
    everyone = (await api.get(f"{MEM}/events", headers=keys.service)).json()
    assert {e["id"] for e in everyone["results"]} == {alice["id"], bob["id"]}

    # Another tenant, with its own service key or a token it signed: nothing of this one.
    other_tenant = await new_tenant(runtime_, "Other")
    foreign = await api.get(f"{MEM}/events/{alice['id']}", headers=other_tenant.service)
    assert (foreign.status_code, foreign.json()["code"]) == (404, "event_not_found")
    assert (await api.get(f"{MEM}/events", headers=other_tenant.service)).json()["total"] == 0
    forged = {**keys.anon, "authorization": f"Bearer {other_tenant.user_token('alice')}"}
    assert (await api.get(f"{MEM}/events/{alice['id']}", headers=forged)).status_code == 401

    # Anonymous callers.
    for headers, status in ((keys.anon, 403), ({}, 401), ({"apikey": "garbage"}, 401)):
        for path in (f"{MEM}/events/{alice['id']}", f"{MEM}/events"):
            assert (await api.get(path, headers=headers)).status_code == status
        refused = await api.post(f"{MEM}/memories", json={"messages": "x", "async": True}, headers=headers)
        assert refused.status_code == status
    assert len(await job_rows(runtime_, keys)) == 2


BAD_ASYNC_ADDS = [
    pytest.param({"messages": "", "user_id": "alice"}, "service", 400, "empty_messages", id="empty"),
    pytest.param({"messages": "hi"}, "service", 400, "owner_required", id="no-owner"),
    pytest.param({"messages": "hi", "user_id": "bob"}, "alice", 403, "user_scope_violation", id="other-user"),
    pytest.param(
        {"messages": "hi", "user_id": "a", "memory_type": "NOPE"},
        "service",
        422,
        "invalid_memory_type",
        id="type",
    ),
    pytest.param(
        {"messages": "hi", "user_id": "a", "expiration_date": "2001-01-01"},
        "service",
        400,
        "invalid_expiration_date",
        id="past-expiry",
    ),
    pytest.param(
        {"messages": "a" * 20_001, "user_id": "a", "infer": False},
        "service",
        400,
        "message_too_long",
        id="long",
    ),
    pytest.param({"messages": "hi", "user_id": "a", "asynk": True}, "service", 400, None, id="unknown-field"),
    pytest.param(
        {"messages": "hi", "user_id": "a", "async": "yes"}, "service", {400, 422}, None, id="async-type"
    ),
    pytest.param(
        {"messages": [{"role": "robot", "content": "x"}], "user_id": "a"},
        "service",
        400,
        "invalid_message_role",
        id="role",
    ),
]


@pytest.mark.parametrize(("body", "who", "status", "code"), BAD_ASYNC_ADDS)
async def test_a_bad_async_add_is_refused_at_once_and_enqueues_nothing(
    api, runtime_, keys, body, who, status, code
):
    before = await table_counts(runtime_, keys)
    headers = keys.service if who == "service" else keys.user(who)
    response = await api.post(
        f"{MEM}/memories", json={**body, "async": body.get("async", True)}, headers=headers
    )
    assert response.status_code in (status if isinstance(status, set) else {status}), response.text
    if code is not None:
        assert response.json()["code"] == code
    assert await job_rows(runtime_, keys) == []
    assert await table_counts(runtime_, keys) == before


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        pytest.param("/events/not-a-uuid", None, "invalid_id", id="bad-id"),
        pytest.param("/events", {"status": "DONE"}, "invalid_status", id="bad-status"),
        pytest.param("/events", {"page_size": "100000"}, "invalid_page_size", id="page-size"),
        pytest.param("/events", {"user_id": " "}, "invalid_owner_id", id="blank-owner"),
    ],
)
async def test_bad_event_reads_are_refused_with_a_code(api, keys, path, params, code):
    response = await api.get(MEM + path, params=params, headers=keys.service)
    assert (response.status_code, response.json()["code"]) == (400, code), response.text


# --- metrics --------------------------------------------------------------------------------------------


async def test_queue_depth_latency_and_outcomes_are_on_metrics(api, keys, workers):
    event = await async_add(api, keys.service, "Alice paints", user_id="alice", infer=False)
    await wait_for(api, keys.service, event["id"], {"SUCCEEDED"})
    await workers.scan()
    text = (await api.get("/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})).text
    assert re.search(r'^memory_queue_jobs\{status="PENDING"\} \d', text, re.M)
    assert re.search(r'^memory_queue_jobs\{status="RUNNING"\} \d', text, re.M)
    latency = re.search(r"^memory_queue_job_latency_seconds_count (\d+)", text, re.M)
    assert latency is not None and float(latency.group(1)) >= 1
    assert re.search(r'^memory_queue_job_attempts_total\{outcome="succeeded"\} [1-9]', text, re.M)
    assert re.search(r"^memory_queue_jobs_enqueued_total [1-9]", text, re.M)


# --- reset ----------------------------------------------------------------------------------------------


async def test_a_reset_empties_the_queue_so_no_queued_add_comes_back_afterwards(api, runtime_, keys):
    # No workers yet: the adds wait, PENDING, when the reset comes.
    queued = [await async_add(api, keys.service, f"Alice fact {i}", user_id="alice") for i in range(3)]
    assert (await table_counts(runtime_, keys))["jobs"] == 3

    response = await api.post(f"{MEM}/reset", headers=keys.service)

    assert response.status_code == 200, response.text
    assert response.json()["removed"]["jobs"] == 3
    (record,) = await runtime_.platform.resets(keys.ref)
    assert record["removed"]["jobs"] == 3
    assert await job_rows(runtime_, keys) == []
    for event in queued:
        gone = await api.get(f"{MEM}/events/{event['id']}", headers=keys.service)
        assert (gone.status_code, gone.json()["code"]) == (404, "event_not_found")
    # Workers start and run what is queued: only the add made after the reset.
    started = QueueWorkers(runtime_, QUEUE)
    await started.start()
    try:
        after = await async_add(api, keys.service, "Alice fact after the reset", user_id="alice")
        await wait_for(api, keys.service, after["id"], {"SUCCEEDED"})
        await started.scan()
        await asyncio.sleep(QUEUE.scan_seconds * 2)
    finally:
        await started.stop(grace_seconds=2)
    assert [m["memory"] for m in await memories(runtime_, keys)] == ["Alice fact after the reset"]
    assert [(str(r["id"]), r["status"]) for r in await job_rows(runtime_, keys)] == [
        (after["id"], "SUCCEEDED")
    ]


async def test_a_job_running_when_the_reset_commits_writes_nothing(api, runtime_, keys):
    # The attempt claimed its job before the reset and runs its add after it: its SUCCEEDED update
    # finds no job, so its writes roll back (a reset is never undone by a job already running).
    event = await async_add(api, keys.service, "Alice keeps goats", user_id="alice", infer=False)
    async with tenant_transaction(runtime_, service_scope(keys.ref)) as db:
        job = await jobs.claim(db, keys.ref, 30)
    assert job is not None and str(job.id) == event["id"]

    response = await api.post(f"{MEM}/reset", headers=keys.service)
    assert response.status_code == 200 and response.json()["removed"]["jobs"] == 1

    assert await run_job(runtime_, job, QUEUE) == LOST
    counts = await table_counts(runtime_, keys)
    assert (counts["memories"], counts["memory_history"], counts["session_messages"], counts["jobs"]) == (
        0,
        0,
        0,
        0,
    )


async def test_resets_beside_running_workers_never_deadlock_and_leave_nothing_half_done(
    api, runtime_, keys, workers
):
    """Adds (writes, then the job row) and resets (the memory tables, then the job rows) take their
    locks in one order: each reset beside running jobs answers 200, and after the last one nothing of
    the adds it removed comes back (a job still running then rolls its writes back)."""
    for round_ in range(3):
        for i in range(6):
            await async_add(api, keys.service, f"Round {round_} fact {i}", user_id=f"u{i % 2}", infer=False)
        if round_:
            await asyncio.sleep(0.05 * round_)  # let some jobs be running, some done, some waiting
        response = await api.post(f"{MEM}/reset", headers=keys.service)
        assert response.status_code == 200, response.text
    await workers.scan()
    await asyncio.sleep(QUEUE.scan_seconds * 2)
    counts = await table_counts(runtime_, keys)
    assert (counts["memories"], counts["memory_history"], counts["jobs"]) == (0, 0, 0), counts
