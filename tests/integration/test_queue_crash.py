"""The crash test: a real `python -m app serve` accepts 200 async adds, is SIGKILLed while jobs run,
and is started again on the same databases. Every accepted add must end SUCCEEDED exactly once:
no job lost, no memory missing or stored twice, checked in the tenant database."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.db.dsn import with_database
from tests.conftest import DIMS, MASTER_KEY
from tests.integration.test_queue import one_fact_per_user_line
from testsupport.provider_server import FakeProviderServer, Fault
from testsupport.serve import free_port, new_database, running_service

pytestmark = pytest.mark.xdist_group("serve")

ADDS = 200
LLM_DELAY = 0.1  # each job holds a worker this long: several are RUNNING at any moment


@pytest_asyncio.fixture(loop_scope="session")
async def service_env(database_url: str, fake_provider: FakeProviderServer) -> dict[str, str]:
    control_dsn = await new_database(database_url, "memory_crash")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBASE_", "MEM_", "LIMITS_"))}
    env.update(
        DATABASE_URL=control_dsn,
        HOST="127.0.0.1",
        PORT=str(free_port()),
        MEM_ADMIN_KEY="crash-admin-" + secrets.token_hex(16),
        MEM_MASTER_KEY=MASTER_KEY,
        MEM_CREATE_DEMO="0",
        NUBASE_MEM_CHAT_PROVIDER="generic",
        NUBASE_MEM_CHAT_BASE_URL=fake_provider.openai_base_url,
        NUBASE_MEM_CHAT_MODEL="fake-chat",
        NUBASE_MEM_CHAT_API_KEY="test",
        NUBASE_MEM_EMBEDDING_PROVIDER="generic",
        NUBASE_MEM_EMBEDDING_BASE_URL=fake_provider.openai_base_url,
        NUBASE_MEM_EMBEDDING_MODEL="fake-embed",
        NUBASE_MEM_EMBEDDING_DIMENSIONS=str(DIMS),
        NUBASE_MEM_EMBEDDING_API_KEY="test",
        NUBASE_MEM_PROVIDER_MAX_RETRIES="0",
        MEM_QUEUE_WORKERS="8",
        # A short lease, so the jobs the killed process held are taken again within seconds.
        MEM_QUEUE_LEASE_SECONDS="2",
        MEM_QUEUE_SCAN_SECONDS="0.5",
        LIMITS_SERVICE_ADDS_PER_SECOND="100000",
        LIMITS_SERVICE_REQUESTS_PER_SECOND="100000",
        LIMITS_MAX_IN_FLIGHT="1000",
        LOG_FORMAT="json",
        LOG_LEVEL="info",
        PYTHONUNBUFFERED="1",
    )
    return env


async def statuses(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM mem.jobs GROUP BY status")
    finally:
        await conn.close()
    return {r["status"]: r["n"] for r in rows}


async def accept_adds(url: str, key: str) -> list[str]:
    """ADDS async adds, 16 in flight; the ids of their events."""
    gate = asyncio.Semaphore(16)

    async def one(client: httpx.AsyncClient, i: int) -> str:
        body = {
            "messages": f"I have exactly {i} paintings of boat number {i}",
            "user_id": f"u{i % 7}",
            "async": True,
        }
        async with gate:
            response = await client.post("/mem/v1/memories", json=body)
        assert response.status_code == 202, response.text
        event_id: str = response.json()["id"]
        return event_id

    async with httpx.AsyncClient(base_url=url, headers={"apikey": key}, timeout=30) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(ADDS))))


async def wait_until(dsn: str, done: Any, within: float) -> dict[str, int]:
    deadline = time.monotonic() + within
    while True:
        counts = await statuses(dsn)
        if done(counts) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.05)


async def test_a_killed_service_finishes_every_accepted_add_exactly_once_after_a_restart(
    service_env, database_url, fake_provider, tmp_path: Path
):
    fake_provider.chat_responder = one_fact_per_user_line
    fake_provider.set_fault(Fault(delay=LLM_DELAY), family="chat")
    admin = {"authorization": f"Bearer {service_env['MEM_ADMIN_KEY']}"}

    with running_service(service_env, tmp_path / "first.log") as (url, proc):
        async with httpx.AsyncClient(base_url=url, headers=admin, timeout=60) as client:
            created = await client.post("/auth/v1/admin/tenants", json={"name": "Crash"})
        assert created.status_code == 201, created.text
        tenant = created.json()
        dsn = with_database(database_url, tenant["database"])
        event_ids = await accept_adds(url, tenant["service_role_key"])
        at_kill = await wait_until(dsn, lambda c: c.get("SUCCEEDED", 0) >= 20 and c.get("RUNNING", 0) > 0, 30)
        proc.kill()
        proc.wait()
    at_kill = await statuses(dsn)
    assert sum(at_kill.values()) == ADDS, "every accepted add is a job row, committed before its 202"
    assert at_kill.get("RUNNING", 0) > 0 and at_kill.get("PENDING", 0) > 0, f"killed too late: {at_kill}"

    with running_service(service_env, tmp_path / "second.log"):
        final = await wait_until(dsn, lambda c: c.get("SUCCEEDED", 0) == ADDS, 45)
    assert final == {"SUCCEEDED": ADDS}, final

    conn = await asyncpg.connect(dsn)
    try:
        jobs = await conn.fetch("SELECT id, payload, result, attempts FROM mem.jobs")
        live = await conn.fetch("SELECT id, memory FROM mem.memories WHERE deleted_at IS NULL")
        added = await conn.fetchval("SELECT count(*) FROM mem.memory_history WHERE event = 'ADD'")
        all_rows = await conn.fetchval("SELECT count(*) FROM mem.memories")
    finally:
        await conn.close()
    assert {str(j["id"]) for j in jobs} == set(event_ids)
    memory_by_id = {str(m["id"]): m["memory"] for m in live}
    assert all_rows == len(live) == added == ADDS, "no memory stored twice, none missing"
    for job in jobs:
        (result,) = json.loads(job["result"])["results"]
        assert result["event"] == "ADD"
        assert memory_by_id[result["id"]] == json.loads(job["payload"])["messages"]
    retaken = [j for j in jobs if j["attempts"] > 1]
    assert len(retaken) >= at_kill["RUNNING"], "the jobs running at the kill were taken again"
