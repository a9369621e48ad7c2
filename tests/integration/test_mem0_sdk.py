"""The official mem0 Python SDK (mem0ai, pinned in the dev extra), unchanged, against /mem0 on a real
`python -m app serve`: `MemoryClient(api_key=<service_role key>, host="<url>/mem0")`.

Every step is checked in the tenant's database too. The SDK's telemetry is off (MEM0_TELEMETRY,
read when mem0 is imported) and its config directory is a temporary one: nothing leaves 127.0.0.1.
These tests send async_mode=False (processed before the answer); the SDK's default, async adds on
the job queue, is tests/integration/test_mem0_async.py.
"""

from __future__ import annotations

import os
import tempfile

os.environ["MEM0_TELEMETRY"] = "False"
os.environ.setdefault("MEM0_DIR", tempfile.mkdtemp(prefix="mem0-sdk-"))

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from mem0 import AsyncMemoryClient, MemoryClient
from mem0.exceptions import AuthenticationError, MemoryNotFoundError, ValidationError
from mem0.memory.telemetry import client_telemetry

from tests.conftest import DIMS
from testsupport.provider_server import FakeProviderServer
from testsupport.serve import (
    create_tenant,
    new_database,
    running_service,
    service_environment,
    tenant_database,
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service_env(database_url: str, fake_provider: FakeProviderServer) -> dict[str, str]:
    control_dsn = await new_database(database_url, "memory_mem0")
    return service_environment(control_dsn, fake_provider.openai_base_url, DIMS)


@pytest.fixture(scope="module")
def service(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_service(service_env, tmp_path_factory.mktemp("mem0") / "service.log") as (url, _):
        yield url


@pytest.fixture
def tenant(service: str, service_env: dict[str, str]) -> dict[str, Any]:
    return create_tenant(service, service_env["MEM_ADMIN_KEY"], "mem0 SDK")


@pytest_asyncio.fixture(loop_scope="session")
async def db(database_url: str, tenant: dict[str, Any]) -> AsyncIterator[asyncpg.Connection]:
    """The tenant's database, as the superuser: what the SDK's calls really did."""
    async with tenant_database(database_url, tenant) as conn:
        yield conn


def client(service: str, tenant: dict[str, Any]) -> MemoryClient:
    return MemoryClient(api_key=tenant["service_role_key"], host=f"{service}/mem0")


async def live(db: asyncpg.Connection, user_id: str) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT id, memory FROM mem.memories WHERE user_id = $1 AND deleted_at IS NULL", user_id
    )
    return {str(r["id"]): r["memory"] for r in rows}


def add(mem0: MemoryClient, text: str, **kwargs: Any) -> str:
    answer = mem0.add(text, async_mode=False, infer=False, **kwargs)
    (item,) = answer["results"]
    assert item["event"] == "ADD" and item["memory"] == text
    return str(item["id"])


async def test_the_sdk_adds_lists_searches_updates_and_deletes(
    service: str, tenant: dict[str, Any], db: asyncpg.Connection
):
    mem0 = client(service, tenant)
    assert (mem0.org_id, mem0.project_id, mem0.user_email) == (tenant["ref"], tenant["ref"], "mem0 SDK")
    assert client_telemetry.posthog is None  # no telemetry leaves this machine

    tea = add(mem0, "Alice drinks green tea", user_id="alice", metadata={"topic": "food"})
    lisbon = add(mem0, "Alice lives in Lisbon", filters={"user_id": "alice"}, metadata={"topic": "home"})
    bob = add(mem0, "Bob drinks coffee", user_id="bob")
    assert await live(db, "alice") == {tea: "Alice drinks green tea", lisbon: "Alice lives in Lisbon"}

    page = mem0.get_all(filters={"AND": [{"user_id": "alice"}, {"topic": "food"}]})
    assert (page["count"], [m["id"] for m in page["results"]]) == (1, [tea])
    first = mem0.get_all(filters={"user_id": "alice"}, page=1, page_size=1)
    assert first["count"] == 2 and len(first["results"]) == 1 and first["previous"] is None
    assert "page=2" in first["next"]

    found = mem0.search("What does Alice drink?", filters={"user_id": "alice"}, top_k=5, rerank=True)
    assert found["results"][0]["id"] == tea and 0 < found["results"][0]["score"] <= 1
    assert bob not in {m["id"] for m in found["results"]}

    got = mem0.get(tea)
    assert (got["memory"], got["user_id"], got["metadata"]) == (
        "Alice drinks green tea",
        "alice",
        {"topic": "food"},
    )
    mem0.update(tea, text="Alice drinks jasmine tea")
    assert (await live(db, "alice"))[tea] == "Alice drinks jasmine tea"
    history = mem0.history(tea)
    assert [(h["event"], h["new_memory"]) for h in history] == [
        ("ADD", "Alice drinks green tea"),
        ("UPDATE", "Alice drinks jasmine tea"),
    ]

    assert mem0.delete(lisbon)["message"]
    assert set(await live(db, "alice")) == {tea}
    with pytest.raises(MemoryNotFoundError):
        mem0.get(lisbon)

    mem0.delete_all(user_id="alice")
    assert await live(db, "alice") == {}
    assert set(await live(db, "bob")) == {bob}  # another owner untouched


async def test_batches_are_all_or_nothing_through_the_sdk(
    service: str, tenant: dict[str, Any], db: asyncpg.Connection
):
    mem0 = client(service, tenant)
    a = add(mem0, "Carol plays chess", user_id="carol")
    b = add(mem0, "Carol plays go", user_id="carol")

    done = mem0.batch_update(
        [{"memory_id": a, "text": "Carol plays shogi"}, {"memory_id": b, "metadata": {"x": 1}}]
    )
    assert done["message"] == "Successfully updated 2 memories"
    assert await live(db, "carol") == {a: "Carol plays shogi", b: "Carol plays go"}
    assert await db.fetchval("SELECT metadata FROM mem.memories WHERE id = $1", UUID(b)) == '{"x": 1}'

    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(MemoryNotFoundError):
        mem0.batch_update(
            [{"memory_id": a, "text": "Carol plays xiangqi"}, {"memory_id": missing, "text": "x"}]
        )
    assert (await live(db, "carol"))[a] == "Carol plays shogi"  # the first item was rolled back
    with pytest.raises(MemoryNotFoundError):
        mem0.batch_delete([{"memory_id": a}, {"memory_id": missing}])
    assert set(await live(db, "carol")) == {a, b}

    assert (
        mem0.batch_delete([{"memory_id": a}, {"memory_id": b}])["message"]
        == "Successfully deleted 2 memories"
    )
    assert await live(db, "carol") == {}
    with pytest.raises(ValidationError):
        mem0.batch_delete([{"memory_id": "not-a-uuid"}])


async def test_users_and_delete_users(service: str, tenant: dict[str, Any], db: asyncpg.Connection):
    mem0 = client(service, tenant)
    add(mem0, "Dan sails", user_id="dan")
    add(mem0, "Dan rows", user_id="dan", run_id="trip-1")
    add(mem0, "The planner books trains", agent_id="planner")

    entities = mem0.users()
    seen = {(e["type"], e["name"]): e["total_memories"] for e in entities["results"]}
    assert seen == {("user", "dan"): 2, ("run", "trip-1"): 1, ("agent", "planner"): 1}
    assert (entities["total_users"], entities["total_agents"], entities["total_runs"]) == (1, 1, 1)

    mem0.delete_users(agent_id="planner")
    assert await db.fetchval("SELECT count(*) FROM mem.memories WHERE deleted_at IS NULL") == 2
    with pytest.raises(MemoryNotFoundError):
        mem0.delete_users(agent_id="planner")  # nothing left of it

    assert mem0.delete_users()["message"] == "All users, agents, apps and runs deleted."
    assert await db.fetchval("SELECT count(*) FROM mem.memories WHERE deleted_at IS NULL") == 0
    assert mem0.users()["results"] == []


async def test_the_async_client_adds_and_searches(
    service: str, tenant: dict[str, Any], db: asyncpg.Connection
):
    async with AsyncMemoryClient(api_key=tenant["service_role_key"], host=f"{service}/mem0") as mem0:
        added = await mem0.add("Erin collects stamps", user_id="erin", infer=False, async_mode=False)
        (item,) = added["results"]
        found = await mem0.search("stamps", filters={"user_id": "erin"})
    assert found["results"][0]["id"] == item["id"]
    assert await live(db, "erin") == {item["id"]: "Erin collects stamps"}


async def test_the_sdk_refuses_keys_that_are_not_a_service_role_key(service: str, tenant: dict[str, Any]):
    with pytest.raises(ValueError, match="Anonymous callers"):
        MemoryClient(api_key=tenant["anon_key"], host=f"{service}/mem0")
    with pytest.raises(ValueError, match="not valid"):
        MemoryClient(api_key="not-a-key", host=f"{service}/mem0")
    mem0 = client(service, tenant)
    mem0.client.headers["Authorization"] = "Token " + tenant["anon_key"]
    with pytest.raises(AuthenticationError):
        mem0.get_all(filters={"user_id": "alice"})
