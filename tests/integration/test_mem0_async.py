"""mem0's default: async adds. The official SDK (mem0ai), unchanged, against a real `python -m app serve`
whose queue workers run (MEM_QUEUE_WORKERS): `add` answers PENDING with an `event_id` at once, and
the event, polled through GET /mem0/v1/event/{id}/ with the SDK's own authenticated client, ends
SUCCEEDED with mem0's `{id, event, memory}` results. Every step is checked in the tenant database.

The queue itself (retries, leases, crashes) is tests/integration/test_queue*.py; this file is the
mem0 surface over it: shapes, the events list, bad input refused before a job exists, isolation.
"""

from __future__ import annotations

import os
import tempfile

os.environ["MEM0_TELEMETRY"] = "False"
os.environ.setdefault("MEM0_DIR", tempfile.mkdtemp(prefix="mem0-sdk-"))

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
import pytest_asyncio
from mem0 import AsyncMemoryClient, MemoryClient
from mem0.exceptions import ValidationError

from app.auth.tokens import mint_user_token
from tests.conftest import DIMS
from tests.integration.test_queue import one_fact_per_user_line
from testsupport.provider_server import FakeProviderServer
from testsupport.serve import (
    create_tenant,
    new_database,
    running_service,
    service_environment,
    tenant_database,
)

QUEUED = "Memory processing has been queued for background execution"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service_env(database_url: str, fake_provider: FakeProviderServer) -> dict[str, str]:
    control_dsn = await new_database(database_url, "memory_mem0_async")
    return service_environment(
        control_dsn,
        fake_provider.openai_base_url,
        DIMS,
        # Workers on (tests/conftest.py turns them off for in-process apps; a serve reads these).
        MEM_QUEUE_WORKERS="2",
        MEM_QUEUE_SCAN_SECONDS="0.5",
        NUBASE_MEM_CHAT_PROVIDER="generic",
        NUBASE_MEM_CHAT_BASE_URL=fake_provider.openai_base_url,
        NUBASE_MEM_CHAT_MODEL="fake-chat",
        NUBASE_MEM_CHAT_API_KEY="test",
        NUBASE_MEM_PROVIDER_MAX_RETRIES="0",
    )


@pytest.fixture(scope="module")
def service(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_service(service_env, tmp_path_factory.mktemp("mem0-async") / "service.log") as (url, _):
        yield url


@pytest.fixture
def tenant(service: str, service_env: dict[str, str]) -> dict[str, Any]:
    return create_tenant(service, service_env["MEM_ADMIN_KEY"], "mem0 async")


@pytest_asyncio.fixture(loop_scope="session")
async def db(database_url: str, tenant: dict[str, Any]) -> AsyncIterator[asyncpg.Connection]:
    """The tenant's database, as the superuser: what the SDK's calls really did."""
    async with tenant_database(database_url, tenant) as conn:
        yield conn


def client(service: str, tenant: dict[str, Any]) -> MemoryClient:
    return MemoryClient(api_key=tenant["service_role_key"], host=f"{service}/mem0")


def queued(answer: dict[str, Any]) -> str:
    """The event id of an add the service accepted for later: mem0's PENDING item, nothing else."""
    (item,) = answer["results"]
    assert item == {"message": QUEUED, "status": "PENDING", "event_id": item["event_id"]}, item
    UUID(item["event_id"])
    return str(item["event_id"])


def poll(get: Callable[[str], httpx.Response], event_id: str, within: float = 30) -> dict[str, Any]:
    """GET /v1/event/{id}/ until the event is SUCCEEDED or FAILED."""
    deadline = time.monotonic() + within
    while True:
        r = get(f"/v1/event/{event_id}/")
        assert r.status_code == 200, r.text
        event: dict[str, Any] = r.json()
        if event["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            return event
        time.sleep(0.1)


async def apoll(
    get: Callable[[str], Awaitable[httpx.Response]], event_id: str, within: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        r = await get(f"/v1/event/{event_id}/")
        assert r.status_code == 200, r.text
        event: dict[str, Any] = r.json()
        if event["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            return event
        await asyncio.sleep(0.1)


async def memories_of(db: asyncpg.Connection, user_id: str) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT id, memory FROM mem.memories WHERE user_id = $1 AND deleted_at IS NULL", user_id
    )
    return {str(r["id"]): r["memory"] for r in rows}


async def job(db: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT status, user_id, result FROM mem.jobs WHERE id = $1", UUID(event_id))


async def test_the_sdk_default_add_is_queued_then_succeeds_with_exactly_one_memory(
    service: str, tenant: dict[str, Any], db: asyncpg.Connection
):
    mem0 = client(service, tenant)
    event_id = queued(mem0.add("Ivy paints watercolours", user_id="ivy", infer=False))
    row = await job(db, event_id)
    assert row is not None and row["user_id"] == "ivy"  # committed before the answer left

    event = poll(mem0.client.get, event_id)

    assert event["status"] == "SUCCEEDED", event
    (result,) = event["results"]
    assert result == {"id": result["id"], "event": "ADD", "memory": "Ivy paints watercolours"}
    assert (event["id"], event["event_type"], event["error"]) == (event_id, "ADD", None)
    assert event["payload"]["user_id"] == "ivy" and event["payload"]["infer"] is False
    assert await memories_of(db, "ivy") == {result["id"]: "Ivy paints watercolours"}
    assert (await job(db, event_id))["status"] == "SUCCEEDED"
    assert mem0.get(result["id"])["memory"] == "Ivy paints watercolours"


async def test_the_async_client_add_is_queued_then_succeeds(
    service: str, tenant: dict[str, Any], db: asyncpg.Connection
):
    async with AsyncMemoryClient(api_key=tenant["service_role_key"], host=f"{service}/mem0") as mem0:
        event_id = queued(await mem0.add("Jon keeps bees", user_id="jon", infer=False, metadata={"k": 1}))
        event = await apoll(mem0.async_client.get, event_id)
    assert event["status"] == "SUCCEEDED", event
    (result,) = event["results"]
    assert (result["event"], result["memory"]) == ("ADD", "Jon keeps bees")
    assert await memories_of(db, "jon") == {result["id"]: "Jon keeps bees"}
    metadata = await db.fetchval("SELECT metadata FROM mem.memories WHERE id = $1", UUID(result["id"]))
    assert metadata == '{"k": 1}'


async def test_an_inferred_async_add_runs_the_model_and_succeeds(
    service: str, tenant: dict[str, Any], db: asyncpg.Connection, fake_provider: FakeProviderServer
):
    fake_provider.chat_responder = one_fact_per_user_line
    mem0 = client(service, tenant)
    event_id = queued(mem0.add([{"role": "user", "content": "Kim plays the cello"}], user_id="kim"))

    event = poll(mem0.client.get, event_id)

    assert event["status"] == "SUCCEEDED", event
    assert [(r["event"], r["memory"]) for r in event["results"]] == [("ADD", "Kim plays the cello")]
    assert await memories_of(db, "kim") == {event["results"][0]["id"]: "Kim plays the cello"}
    assert fake_provider.count("chat") >= 1  # the worker asked the model, as a sync infer add does


async def test_the_events_list_pages_newest_first(
    service: str, tenant: dict[str, Any], db: asyncpg.Connection
):
    mem0 = client(service, tenant)
    ids = [queued(mem0.add(f"Lea fact {i}", user_id="lea", infer=False)) for i in range(3)]
    for event_id in ids:
        assert poll(mem0.client.get, event_id)["status"] == "SUCCEEDED"

    first = mem0.client.get("/v1/events/", params={"page": 1, "page_size": 2}).json()
    second = mem0.client.get("/v1/events/", params={"page": 2, "page_size": 2}).json()

    in_db = [str(r["id"]) for r in await db.fetch("SELECT id FROM mem.jobs ORDER BY created_at DESC, id")]
    assert sorted(in_db) == sorted(ids)
    assert (first["count"], second["count"]) == (3, 3)
    assert [e["id"] for e in first["results"] + second["results"]] == in_db
    assert first["previous"] is None and "page=2" in first["next"] and "page_size=2" in first["next"]
    assert second["next"] is None and "page=1" in second["previous"]
    assert {e["status"] for e in first["results"]} == {"SUCCEEDED"}
    assert all(e["results"][0]["event"] == "ADD" for e in first["results"])


async def test_a_bad_async_add_is_refused_at_once_and_leaves_no_job(
    service: str, tenant: dict[str, Any], db: asyncpg.Connection
):
    mem0 = client(service, tenant)
    with pytest.raises(ValidationError):
        mem0.add("Nobody's fact", infer=False)  # no owner
    with pytest.raises(ValidationError):
        mem0.add("Mo's fact", user_id="mo", infer=False, expiration_date="yesterday")
    bad = mem0.client.post("/v3/memories/add/", json={"messages": [], "user_id": "mo"})
    assert bad.status_code in (400, 422) and bad.json()["detail"], bad.text
    assert await db.fetchval("SELECT count(*) FROM mem.jobs") == 0
    assert await db.fetchval("SELECT count(*) FROM mem.memories") == 0


async def test_an_event_is_seen_only_by_its_owner_and_its_tenant(
    service: str, service_env: dict[str, str], tenant: dict[str, Any], db: asyncpg.Connection
):
    mem0 = client(service, tenant)
    event_id = queued(mem0.add("Alice's secret", user_id="alice", infer=False))
    assert poll(mem0.client.get, event_id)["status"] == "SUCCEEDED"
    other = create_tenant(service, service_env["MEM_ADMIN_KEY"], "mem0 async other")

    def user(sub: str) -> dict[str, str]:
        jwt = mint_user_token(tenant["jwt_secret"], sub, ref=tenant["ref"])
        return {"apikey": tenant["anon_key"], "authorization": f"Bearer {jwt}"}

    one, listing = f"/v1/event/{event_id}/", "/v1/events/"
    async with httpx.AsyncClient(base_url=f"{service}/mem0") as http:
        mine = await http.get(one, headers=user("alice"))
        assert mine.json()["results"][0]["memory"] == "Alice's secret"
        assert (await http.get(listing, headers=user("alice"))).json()["count"] == 1

        mallory = await http.get(one, headers=user("mallory"))
        assert (mallory.status_code, mallory.json()["code"]) == (404, "event_not_found")
        assert "Alice" not in mallory.text
        empty = {"count": 0, "next": None, "previous": None, "results": []}
        assert (await http.get(listing, headers=user("mallory"))).json() == empty

        elsewhere = {"authorization": f"Token {other['service_role_key']}"}
        assert (await http.get(one, headers=elsewhere)).status_code == 404
        assert (await http.get(listing, headers=elsewhere)).json() == empty
        for path in (one, listing):
            assert (await http.get(path)).status_code == 401
            anon = {"authorization": f"Token {tenant['anon_key']}"}
            assert (await http.get(path, headers=anon)).status_code == 403
            assert (await http.get(path, headers={"apikey": tenant["anon_key"]})).status_code == 403
    # Reads only: the event and its memory are as they were.
    assert (await job(db, event_id))["status"] == "SUCCEEDED"
    assert list((await memories_of(db, "alice")).values()) == ["Alice's secret"]
