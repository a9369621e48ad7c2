"""Row-level security, the third isolation layer (sql/mem/003): the database itself keeps a
user's transaction to that user's rows, even for a query that forgets its owner filter.

Every probe connects as the tenant's request role (neither superuser nor table owner) and
states claims the way TenantSession does, with app.db.session.set_claims inside a transaction.
Counts are compared with what the superuser, who bypasses the policies, reads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.asgi import build_runtime, close_runtime, create_app
from app.db.pools import init_connection, keep_session
from app.db.session import USER_ROLE, RowClaims, TenantSession, set_claims
from app.runtime import Runtime
from tests.conftest import TenantKeys, add, make_settings, new_tenant, set_row_claims, tenant_conn
from testsupport.provider_server import FakeProviderServer

OWNER_TABLES = (
    "memories",
    "memory_history",
    "entities",
    "entity_links",
    "relations",
    "graph_history",
    "session_messages",
    "jobs",
)
TENANT_TABLES = ("config", "schema_migrations")
ALICE = RowClaims("authenticated", "alice")
SERVICE = RowClaims.service()
# Each owner table's rows as (row key, owning user); links have their memory's owner.
ROWS = {
    "memories": "SELECT id::text AS key, user_id FROM mem.memories",
    "memory_history": "SELECT id::text AS key, user_id FROM mem.memory_history",
    "entities": "SELECT id::text AS key, user_id FROM mem.entities",
    "relations": "SELECT id::text AS key, user_id FROM mem.relations",
    "graph_history": "SELECT id::text AS key, user_id FROM mem.graph_history",
    "session_messages": "SELECT id::text AS key, user_id FROM mem.session_messages",
    "jobs": "SELECT id::text AS key, user_id FROM mem.jobs",
    "entity_links": "SELECT l.entity_id::text || '/' || l.memory_id::text AS key, m.user_id"
    " FROM mem.entity_links l JOIN mem.memories m ON m.id = l.memory_id",
}
# The same rows read without the join: what a user's query on entity_links alone returns.
LINK_KEYS = "SELECT entity_id::text || '/' || memory_id::text AS key FROM mem.entity_links"


@dataclass(frozen=True)
class Seeded:
    runtime: Runtime
    client: httpx.AsyncClient
    keys: TenantKeys
    superuser_rows: dict[str, list[tuple[str, str | None]]]

    def all_keys(self, table: str) -> set[str]:
        return {k for k, _ in self.superuser_rows[table]}

    def keys_of(self, table: str, user_id: str) -> set[str]:
        return {k for k, u in self.superuser_rows[table] if u == user_id}


def _facts(text: str, entity: str) -> str:
    return json.dumps(
        {
            "facts": [
                {
                    "text": text,
                    "event": "ADD",
                    "memory_type": "LONG_TERM",
                    "entities": [{"text": entity, "type": "person"}],
                    "relations": [{"source": "user", "relation": "knows", "target": entity}],
                }
            ]
        }
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def seeded(platform_dsn: str, fake_provider: FakeProviderServer) -> AsyncIterator[Seeded]:
    """A runtime with a chat model (so adds keep a session window), and a tenant where alice, bob
    and an agent with no user each own memories, history, entities, links and session messages,
    all written through the API by the users' own tokens."""
    # A module fixture runs before the per-test reset: clear what an earlier module left scripted.
    fake_provider.reset()
    settings = make_settings(
        platform_dsn,
        fake_provider,
        chat_provider="openai",
        chat_base_url=fake_provider.openai_base_url,
        chat_api_key="test",
        chat_model="fake-chat",
    )
    runtime = await build_runtime(settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings, runtime=runtime)),
        base_url="http://memory.test",
    )
    try:
        keys = await new_tenant(runtime, "Row security")
        for user, text, entity in (
            ("alice", "Alice plays chess with Maria", "Maria"),
            ("alice", "Alice visits Maria in Porto", "Maria"),
            ("bob", "Bob plays chess with Tomas", "Tomas"),
        ):
            fake_provider.chat_responder = lambda _p, t=text, e=entity: _facts(t, e)
            response = await client.post(
                "/mem/v1/memories",
                json={"messages": [{"role": "user", "content": text}]},
                headers=keys.user(user),
            )
            assert response.status_code == 200, response.text
        await add(
            client, keys.service, "The helper agent was told about Maria", user_id=None, agent_id="helper"
        )
        for user in ("alice", "bob"):  # async adds: job rows (no workers here, so they stay PENDING)
            queued = await client.post(
                "/mem/v1/memories",
                json={"messages": f"{user} queued this", "async": True},
                headers=keys.user(user),
            )
            assert queued.status_code == 202, queued.text
        conn = await tenant_conn(runtime, keys)
        try:
            rows = {t: [(r["key"], r["user_id"]) for r in await conn.fetch(sql)] for t, sql in ROWS.items()}
        finally:
            await conn.close()
        yield Seeded(runtime, client, keys, rows)
    finally:
        fake_provider.reset()
        await client.aclose()
        await close_runtime(runtime)


def test_the_seed_gives_every_owner_table_rows_of_alice_bob_and_an_ownerless_agent(seeded):
    """The control for everything below: without rows of several owners, 'only alice' proves nothing."""
    for table in OWNER_TABLES:
        owners = {u for _, u in seeded.superuser_rows[table]}
        assert {"alice", "bob"} <= owners, table
    assert None in {u for _, u in seeded.superuser_rows["memories"]}
    assert None in {u for _, u in seeded.superuser_rows["memory_history"]}


async def _app_conn(seeded: Seeded) -> asyncpg.Connection:
    conn = await tenant_conn(seeded.runtime, seeded.keys, as_app_role=True)
    assert await conn.fetchval("SELECT current_user") == seeded.keys.tenant.app_role
    return conn


async def _read(conn: asyncpg.Connection, table: str) -> list[tuple[str, str | None]]:
    if table == "entity_links":
        return [(r["key"], None) for r in await conn.fetch(LINK_KEYS)]
    return [(r["key"], r["user_id"]) for r in await conn.fetch(ROWS[table])]


async def _read_as(seeded: Seeded, claims: RowClaims | None, table: str) -> list[tuple[str, str | None]]:
    conn = await _app_conn(seeded)
    try:
        async with conn.transaction():
            if claims is not None:
                await set_claims(conn, claims)
            return await _read(conn, table)
    finally:
        await conn.close()


# --- reads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", OWNER_TABLES)
async def test_a_users_claims_show_only_that_users_rows_even_without_a_where_clause(seeded, table):
    rows = await _read_as(seeded, ALICE, table)

    assert {k for k, _ in rows} == seeded.keys_of(table, "alice")
    assert len(rows) == len(seeded.keys_of(table, "alice")) > 0
    if table != "entity_links":
        assert {u for _, u in rows} == {"alice"}


@pytest.mark.parametrize("table", OWNER_TABLES)
async def test_service_role_claims_show_every_row_of_the_tenant(seeded, table):
    rows = await _read_as(seeded, SERVICE, table)

    assert sorted(k for k, _ in rows) == sorted(k for k, _ in seeded.superuser_rows[table])


@pytest.mark.parametrize("table", OWNER_TABLES)
async def test_without_claims_no_owned_row_is_visible(seeded, table):
    assert await _read_as(seeded, None, table) == []


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_the_tenant_wide_tables_need_no_claims(seeded, table):
    conn = await _app_conn(seeded)
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM mem.{table}") > 0
    finally:
        await conn.close()


async def test_claims_end_with_their_transaction_so_a_pooled_connection_keeps_none(seeded):
    conn = await _app_conn(seeded)
    try:
        async with conn.transaction():
            await set_claims(conn, SERVICE)
            assert await conn.fetchval("SELECT count(*) FROM mem.memories") > 0
        assert await conn.fetchval("SELECT count(*) FROM mem.memories") == 0
        # An authenticated role with an empty user id (what a cleared setting reads as) matches no row.
        await conn.execute("SELECT set_config('mem.role', 'authenticated', false)")
        assert await conn.fetchval("SELECT count(*) FROM mem.memories") == 0
        # And a user id under the service role is ignored, not read as a user claim.
        await set_row_claims(conn, "service_role", "alice")
        assert await conn.fetchval("SELECT count(DISTINCT user_id) FROM mem.memories") >= 2
    finally:
        await conn.close()


async def test_a_released_pool_connection_keeps_no_claims_nor_transaction(seeded):
    """The tenant pools skip asyncpg's reset query (app/db/pools.py keep_session): what a request
    leaves on its connection must end with its transaction, committed or not."""
    pool = await asyncpg.create_pool(
        await seeded.runtime.platform.tenant_dsn(seeded.keys.ref),
        min_size=1,
        max_size=1,
        init=init_connection,
        reset=keep_session,
    )
    try:
        for commit in (True, False):
            session = TenantSession(pool, RowClaims(USER_ROLE, "alice"))
            conn = await session.connection()
            assert await conn.fetchval("SELECT count(*) FROM mem.memories") > 0
            await session.finish(commit=commit)
            async with pool.acquire() as again:  # the same connection: the pool holds one
                assert not again.is_in_transaction()
                assert await again.fetchval("SELECT current_setting('mem.role', true)") in ("", None)
                assert await again.fetchval("SELECT count(*) FROM mem.memories") == 0
        # A request that died inside its transaction: the release rolls it back.
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await set_claims(conn, SERVICE)
        async with pool.acquire() as again:
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM mem.memories") == 0
    finally:
        await pool.close()


async def test_tenant_pools_reuse_generic_plans_and_the_claims_still_decide_the_rows(seeded):
    """The tenant pools plan a prepared statement once (plan_cache_mode = force_generic_plan,
    app/db/pools.py). A generic plan must not carry one transaction's claims into the next: the
    policies read them when the statement runs."""
    pool = await seeded.runtime.pools.get(seeded.keys.ref)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        statement = await conn.prepare(
            "SELECT DISTINCT user_id FROM mem.memories WHERE user_id = ANY($1::text[])"
        )
        seen = {}
        for _ in range(3):  # past the five custom plans PostgreSQL would try first
            for who in ("alice", "bob", "alice"):
                async with conn.transaction():
                    await set_claims(conn, RowClaims(USER_ROLE, who))
                    seen[who] = {r["user_id"] for r in await statement.fetch(["alice", "bob"])}
                    assert seen[who] == {who}
        async with conn.transaction():
            await set_claims(conn, SERVICE)
            assert {r["user_id"] for r in await statement.fetch(["alice", "bob"])} == {"alice", "bob"}


def test_row_claims_refuse_an_unknown_role_or_a_user_without_an_id():
    with pytest.raises(ValueError, match="row-security role"):
        RowClaims("anon")
    with pytest.raises(ValueError, match="user_id"):
        RowClaims("authenticated", "")
    assert RowClaims("authenticated", "alice").user_id == "alice"


# --- writes -----------------------------------------------------------------------------------


def _bob_rows(seeded: Seeded) -> dict[str, tuple[str, list[Any]]]:
    bob_memory = UUID(next(iter(seeded.keys_of("memories", "bob"))))
    alice_entity = UUID(next(iter(seeded.keys_of("entities", "alice"))))
    bob_source, bob_target = sorted(UUID(k) for k in seeded.keys_of("entities", "bob"))[:2]
    return {
        "memories": (
            "INSERT INTO mem.memories (user_id, memory, embedding, hash)"
            " VALUES ('bob', 'planted', array_fill(0.1, ARRAY[384])::public.vector, 'x')",
            [],
        ),
        "memory_history": (
            "INSERT INTO mem.memory_history (memory_id, user_id, event, new_memory, actor)"
            " VALUES ($1, 'bob', 'ADD', 'planted', 'user:alice')",
            [bob_memory],
        ),
        "entities": ("INSERT INTO mem.entities (user_id, text) VALUES ('bob', 'Planted')", []),
        "session_messages": (
            "INSERT INTO mem.session_messages (user_id, role, content) VALUES ('bob', 'user', 'planted')",
            [],
        ),
        "jobs": (
            "INSERT INTO mem.jobs (scope_role, user_id, payload) VALUES ('service_role', 'bob', '{}')",
            [],
        ),
        "relations": (
            "INSERT INTO mem.relations (user_id, source_entity_id, relation, target_entity_id, memory_id)"
            " VALUES ('bob', $1, 'planted', $2, $3)",
            [bob_source, bob_target, bob_memory],
        ),
        "graph_history": (
            "INSERT INTO mem.graph_history (user_id, event, actor) VALUES ('bob', 'RELATION_ADD', 'user:alice')",
            [],
        ),
        # alice's own entity on bob's memory: the link is not alice's to make.
        "entity_links": (
            "INSERT INTO mem.entity_links (entity_id, memory_id) VALUES ($1, $2)",
            [alice_entity, bob_memory],
        ),
    }


@pytest.mark.parametrize("table", OWNER_TABLES)
@pytest.mark.parametrize("claims", [ALICE, None], ids=["alice", "no-claims"])
async def test_a_row_for_bob_is_refused_under_alices_claims_or_none(seeded, table, claims):
    sql, args = _bob_rows(seeded)[table]
    conn = await _app_conn(seeded)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with conn.transaction():
                if claims is not None:
                    await set_claims(conn, claims)
                await conn.execute(sql, *args)
    finally:
        await conn.close()
    assert await _superuser_keys(seeded, table) == seeded.all_keys(table)


@pytest.mark.parametrize("table", OWNER_TABLES)
async def test_the_same_row_is_accepted_under_service_role_claims(seeded, table):
    """The control for the refusals: the statements themselves are valid."""
    sql, args = _bob_rows(seeded)[table]
    conn = await _app_conn(seeded)
    try:
        async with conn.transaction():
            await set_claims(conn, SERVICE)
            assert await conn.execute(sql, *args) == "INSERT 0 1"
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()


async def test_a_user_can_neither_hand_a_row_to_bob_nor_touch_bobs_rows(seeded):
    alice_memory = UUID(next(iter(seeded.keys_of("memories", "alice"))))
    conn = await _app_conn(seeded)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with conn.transaction():
                await set_claims(conn, ALICE)
                await conn.execute("UPDATE mem.memories SET user_id = 'bob' WHERE id = $1", alice_memory)
        async with conn.transaction():
            await set_claims(conn, ALICE)
            updated = await conn.fetch("UPDATE mem.memories SET memory = 'x' RETURNING user_id")
            deleted = await conn.fetch("DELETE FROM mem.session_messages RETURNING user_id")
            assert {r["user_id"] for r in updated} == {"alice"}
            assert {r["user_id"] for r in deleted} == {"alice"}
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    assert await _superuser_keys(seeded, "session_messages") == seeded.all_keys("session_messages")


async def _superuser_keys(seeded: Seeded, table: str) -> set[str]:
    conn = await tenant_conn(seeded.runtime, seeded.keys)
    try:
        return {r["key"] for r in await conn.fetch(ROWS[table])}
    finally:
        await conn.close()


class _Rollback(Exception):
    """Raised inside a transaction to undo a control write."""


# --- the schema, the owner and the request paths ------------------------------------------------


async def test_every_owner_table_enables_and_forces_row_security_with_a_policy(seeded):
    conn = await tenant_conn(seeded.runtime, seeded.keys)
    try:
        flags = {
            r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"])
            for r in await conn.fetch(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'mem' AND c.relkind = 'r'"
            )
        }
        policies = {
            r["tablename"]: r["cmd"]
            for r in await conn.fetch("SELECT tablename, cmd FROM pg_policies WHERE schemaname = 'mem'")
        }
        with_owner = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.columns"
                " WHERE table_schema = 'mem' AND column_name = 'user_id'"
            )
        }
    finally:
        await conn.close()
    assert set(flags) == set(OWNER_TABLES) | set(TENANT_TABLES), "a new mem table needs a decision here"
    assert with_owner <= set(OWNER_TABLES)
    for table in OWNER_TABLES:
        assert flags[table] == (True, True), table
        assert policies[table] == "ALL", table
    for table in TENANT_TABLES:
        assert flags[table] == (False, False), table
        assert table not in policies


async def test_the_owner_role_is_subject_too_and_reset_still_empties_the_store(seeded):
    keys = await new_tenant(seeded.runtime, "Row security reset")
    await add(seeded.client, keys.service, "Alice likes tea", user_id="alice")
    await add(seeded.client, keys.service, "Bob likes tea", user_id="bob")
    conn = await tenant_conn(seeded.runtime, keys)
    try:
        await conn.execute(f'SET ROLE "{keys.tenant.owner_role}"')
        assert await conn.fetchval("SELECT count(*) FROM mem.memories") == 0
        await set_row_claims(conn, "service_role")
        assert await conn.fetchval("SELECT count(*) FROM mem.memories") == 2
        await conn.execute("RESET ROLE")
    finally:
        await conn.close()

    # Reset empties the whole store (TRUNCATE is not row-checked), as before.
    reset = await seeded.client.post("/mem/v1/reset", headers=keys.service)
    assert reset.status_code in (200, 204), reset.text
    conn = await tenant_conn(seeded.runtime, keys)
    try:
        assert await conn.fetchval("SELECT count(*) FROM mem.memories") == 0
    finally:
        await conn.close()


async def test_the_owner_index_stays_usable_under_a_users_policy(seeded):
    """The repository's owner filter still drives the owner index: the policy is an extra filter
    on the rows found (texteq is leakproof, so the planner may use it ahead of the policy)."""
    conn = await _app_conn(seeded)
    try:
        async with conn.transaction():
            await set_claims(conn, ALICE)
            await conn.execute("SET LOCAL enable_seqscan = off")
            # A handful of rows, analyzed by the add path (sql/mem/007): a bitmap scan of any live
            # index costs the same; the point is that the owner index can drive the scan at all.
            await conn.execute("SET LOCAL enable_bitmapscan = off")
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    "EXPLAIN SELECT id FROM mem.memories WHERE user_id = 'alice' AND deleted_at IS NULL"
                    " ORDER BY created_at DESC LIMIT 10"
                )
            )
    finally:
        await conn.close()
    assert "Index Scan using memories_user_live" in plan, plan
    assert "Index Cond: (user_id = 'alice'::text)" in plan, plan


async def _estimated_rows(conn: asyncpg.Connection, sql: str) -> float:
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}")
    return float(json.loads(plan)[0]["Plan"]["Plan Rows"])


@pytest.mark.parametrize(
    ("claims", "sql"),
    [
        (ALICE, "SELECT id FROM mem.memories WHERE user_id = 'alice'"),
        (SERVICE, "SELECT id FROM mem.memories WHERE user_id = 'alice'"),
        (SERVICE, "SELECT id FROM mem.memories"),
    ],
    ids=["user", "service-owner", "service-tenant"],
)
async def test_the_policies_leave_the_planners_row_estimates_as_the_query_makes_them(seeded, claims, sql):
    """A policy the planner guesses to be selective shrinks every estimate under it, and the
    hybrid search then picks nested loops over its CTEs (twice as slow, measured)."""
    su = await tenant_conn(seeded.runtime, seeded.keys)
    try:
        await su.execute("ANALYZE mem.memories")
        without_policy = await _estimated_rows(su, sql)
    finally:
        await su.close()
    conn = await _app_conn(seeded)
    try:
        async with conn.transaction():
            await set_claims(conn, claims)
            under_policy = await _estimated_rows(conn, sql)
    finally:
        await conn.close()

    assert under_policy >= 0.9 * without_policy, (under_policy, without_policy)


async def test_a_users_add_sees_its_own_memories_and_window_through_the_reader(seeded, fake_provider):
    """The reads before the model call run on a connection of their own: without claims there
    the model would see no candidates and no earlier messages at all."""
    keys = await new_tenant(seeded.runtime, "Row security reader")
    await add(seeded.client, keys.service, "Alice plays chess with Maria", user_id="alice")
    await add(seeded.client, keys.service, "Bob plays chess with Tomas", user_id="bob")
    fake_provider.chat_responder = lambda _p: '{"facts": []}'
    for text in ("I played chess on Sunday", "I play chess again today"):
        response = await seeded.client.post(
            "/mem/v1/memories",
            json={"messages": [{"role": "user", "content": text}]},
            headers=keys.user("alice"),
        )
        assert response.status_code == 200, response.text

    sent = json.dumps(fake_provider.last_request("chat").json)
    assert "Alice plays chess with Maria" in sent
    assert "EARLIER IN THIS CONVERSATION" in sent and "I played chess on Sunday" in sent
    assert "Bob plays chess" not in sent
