"""A fresh tenant's planner statistics after a bulk add (sql/mem/007, RetrievalCaches.statistics).

Before 007 a new tenant was planned with empty-table statistics until autovacuum analyzed it:
right after adding a LoCoMo-size conversation, search took ~21.6 ms in SQL instead of ~5.2 ms.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.core.retrieval.caches import StatisticsSchedule
from app.runtime import Runtime
from tests.conftest import TenantKeys, tenant_conn

MEM = "/mem/v1"


async def add_verbatim(client: httpx.AsyncClient, keys: TenantKeys, user_id: str, texts: list[str]) -> None:
    payload: dict[str, Any] = {
        "messages": [{"role": "user", "content": t} for t in texts],
        "infer": False,
        "user_id": user_id,
    }
    response = await client.post(f"{MEM}/memories", json=payload, headers=keys.service)
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == len(texts)


async def memories_statistics(runtime: Runtime, keys: TenantKeys) -> tuple[float, int]:
    """(pg_class.reltuples of mem.memories, how many columns have pg_stats rows)."""
    conn = await tenant_conn(runtime, keys)
    try:
        reltuples = await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'mem.memories'::regclass")
        columns = await conn.fetchval(
            "SELECT count(*) FROM pg_stats WHERE schemaname = 'mem' AND tablename = 'memories'"
        )
        return float(reltuples), int(columns)
    finally:
        await conn.close()


async def estimated_rows(runtime: Runtime, keys: TenantKeys, user_id: str) -> float:
    conn = await tenant_conn(runtime, keys)
    try:
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT id FROM mem.memories WHERE user_id = $1", user_id
        )
        return float(json.loads(plan)[0]["Plan"]["Plan Rows"])
    finally:
        await conn.close()


def test_the_schedule_checks_on_the_first_add_and_then_once_per_interval() -> None:
    schedule = StatisticsSchedule(every=10)
    assert schedule.due("t1", 1)
    assert [schedule.due("t1", 1) for _ in range(8)] == [False] * 8  # 2..9
    assert schedule.due("t1", 1)  # 10
    assert not schedule.due("t1", 5)  # 15
    assert schedule.due("t1", 30)  # 45: one check for a batch crossing several intervals
    assert not schedule.due("t1", 0)
    assert schedule.due("t2", 3)  # counted per tenant


@pytest.mark.asyncio(loop_scope="session")
async def test_a_bulk_add_leaves_a_fresh_tenant_with_statistics_the_planner_can_use(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    reltuples, columns = await memories_statistics(runtime, tenant)
    assert reltuples < 0 and columns == 0, "a fresh tenant starts never analyzed"

    # A bulk add like a LoCoMo conversation: one owner with hundreds of turns, in batches.
    for batch in range(12):
        texts = [f"turn {batch}-{i}: alice talked about topic {batch * 20 + i}" for i in range(20)]
        await add_verbatim(client, tenant, "alice", texts)
    await add_verbatim(client, tenant, "bob", ["bob has one memory"])

    reltuples, columns = await memories_statistics(runtime, tenant)
    assert columns > 0, "mem.memories was analyzed by the add path, without waiting for autovacuum"
    assert reltuples > 0
    # With statistics the planner knows alice owns nearly every row; with none it guesses 0.5 %.
    assert await estimated_rows(runtime, tenant, "alice") >= 120


@pytest.mark.asyncio(loop_scope="session")
async def test_the_app_role_refreshes_statistics_only_through_the_function(
    runtime: Runtime, tenant: TenantKeys
) -> None:
    conn = await tenant_conn(runtime, tenant, as_app_role=True)
    try:
        # Fresh and never analyzed: the first call analyzes, the second finds nothing stale.
        assert await conn.fetchval("SELECT mem.refresh_statistics()") is True
        assert await conn.fetchval("SELECT mem.refresh_statistics()") is False
        # The app role is not the tables' owner and has no MAINTAIN privilege: a direct ANALYZE
        # is skipped with a warning, and it cannot lock or vacuum the tables.
        privileges = await conn.fetchval("SELECT has_table_privilege('mem.memories', 'MAINTAIN')")
        assert privileges is False
    finally:
        await conn.close()
    superuser = await tenant_conn(runtime, tenant)
    try:
        options = await superuser.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = 'mem.memories'::regclass"
        )
        assert "autovacuum_analyze_threshold=50" in options
    finally:
        await superuser.close()
