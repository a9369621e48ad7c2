"""/mcp: memory as MCP tools, driven by the `mcp` SDK's own client over in-process ASGI.

Same auth scope and services as /mem/v1: these tests check the tools' schemas, a full
add → search → update → history → delete story, isolation, and that bad arguments are coded
tool errors that change nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from structlog.testing import capture_logs

from app.asgi import create_app
from app.logging import configure_logging
from app.runtime import Runtime
from app.settings import Settings
from tests.conftest import ADMIN_KEY, TenantKeys, table_counts, tenant_conn

BASE = "http://memory.test"

REQUIRED = {
    "add_memory": set(),
    "search_memories": {"query"},
    "list_memories": set(),
    "get_memory": {"memory_id"},
    "update_memory": {"memory_id"},
    "delete_memory": {"memory_id"},
    "delete_all_memories": set(),
    "memory_history": {"memory_id"},
    "list_entities": set(),
}


@pytest.fixture
def mcp_app(settings: Settings, runtime: Runtime) -> Litestar:
    # Its own app per test: the MCP session manager runs once, inside the app's lifespan.
    return create_app(settings, runtime=runtime)


@asynccontextmanager
async def mcp_session(app: Litestar, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    """An initialised MCP client session; the app's lifespan must be running (see `serving`)."""
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as http,
        streamable_http_client(f"{BASE}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def payload(result: CallToolResult) -> Any:
    assert result.content, result
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


async def ok(session: ClientSession, tool: str, **arguments: Any) -> Any:
    result = await session.call_tool(tool, arguments)
    assert not result.isError, result.content
    return payload(result)


async def refused(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert result.isError, result.content
    body = payload(result)
    assert set(body) >= {"code", "message"}, body
    return body


async def test_tools_are_listed_with_their_documented_schemas(mcp_app, tenant: TenantKeys):
    async with mcp_app.lifespan():
        async with mcp_session(mcp_app, tenant.service) as session:
            listed = {t.name: t for t in (await session.list_tools()).tools}
            assert set(listed) == set(REQUIRED)
            for name, tool in listed.items():
                schema = tool.inputSchema
                assert schema["type"] == "object"
                assert set(schema.get("required", [])) == REQUIRED[name], name
                assert "ctx" not in schema["properties"], name
                assert tool.description and len(tool.description) > 30, name
                for prop, spec in schema["properties"].items():
                    assert spec.get("description"), f"{name}.{prop} has no description"
            search = listed["search_memories"].inputSchema["properties"]
            assert {"query", "user_id", "filters", "top_k", "threshold"} <= set(search)
            add = listed["add_memory"].inputSchema["properties"]
            assert {"text", "messages", "user_id", "agent_id", "run_id", "metadata", "infer"} <= set(add)
            assert listed["delete_memory"].annotations.destructiveHint is True
            assert listed["search_memories"].annotations.readOnlyHint is True
            templates = (await session.list_resource_templates()).resourceTemplates
            assert [t.uriTemplate for t in templates] == ["memory://{memory_id}"]


async def test_add_search_update_history_delete_through_tools(mcp_app, tenant: TenantKeys, runtime):
    async with mcp_app.lifespan():
        async with mcp_session(mcp_app, tenant.service) as session:
            added = await ok(
                session,
                "add_memory",
                text="Alice is allergic to peanuts",
                user_id="alice",
                metadata={"source": "mcp"},
                infer=False,
            )
            (item,) = added["results"]
            assert item["event"] == "ADD" and item["memory"] == "Alice is allergic to peanuts"
            memory_id = item["id"]
            await ok(
                session,
                "add_memory",
                messages=[{"role": "user", "content": "Bob likes jazz"}],
                user_id="bob",
                infer=False,
            )

            found = await ok(session, "search_memories", query="peanut allergy", user_id="alice", top_k=5)
            assert [r["id"] for r in found["results"]] == [memory_id]  # bob's memory is not alice's
            top = found["results"][0]
            assert 0 < top["score"] <= 1
            assert set(top["score_breakdown"]) == {"semantic", "keyword", "entity", "graph"}

            listed = await ok(session, "list_memories", user_id="alice")
            assert listed["total"] == 1 and listed["results"][0]["metadata"] == {"source": "mcp"}
            assert (await ok(session, "get_memory", memory_id=memory_id))["memory"] == item["memory"]

            updated = await ok(
                session, "update_memory", memory_id=memory_id, text="Alice is allergic to tree nuts"
            )
            assert updated["memory"] == "Alice is allergic to tree nuts"
            resource = await session.read_resource(f"memory://{memory_id}")
            assert json.loads(resource.contents[0].text)["memory"] == "Alice is allergic to tree nuts"  # type: ignore[union-attr]

            assert (await ok(session, "delete_memory", memory_id=memory_id))["id"] == memory_id
            history = (await ok(session, "memory_history", memory_id=memory_id))["results"]
            assert [h["event"] for h in history] == ["ADD", "UPDATE", "DELETE"]
            assert history[1]["old_memory"] == "Alice is allergic to peanuts"

            entities = await ok(session, "list_entities", user_id="bob")
            assert set(entities) >= {"results", "total"}
            assert (await ok(session, "delete_all_memories", user_id="bob"))["deleted"] == 1

        conn = await tenant_conn(runtime, tenant)
        try:
            rows = await conn.fetch(
                "SELECT memory, user_id, deleted_at IS NOT NULL AS gone FROM mem.memories ORDER BY user_id"
            )
        finally:
            await conn.close()
        assert [(r["memory"], r["user_id"], r["gone"]) for r in rows] == [
            ("Alice is allergic to tree nuts", "alice", True),
            ("Bob likes jazz", "bob", True),
        ]


async def test_a_user_reaches_only_its_own_memories_through_every_tool(mcp_app, tenant: TenantKeys, runtime):
    async with mcp_app.lifespan():
        async with mcp_session(mcp_app, tenant.user("alice")) as alice:
            (mine,) = (await ok(alice, "add_memory", text="Alice's secret is blue", infer=False))["results"]
            assert (await ok(alice, "get_memory", memory_id=mine["id"]))["user_id"] == "alice"
        async with mcp_session(mcp_app, tenant.service) as service:
            (bobs,) = (
                await ok(service, "add_memory", text="Bob's secret is red", user_id="bob", infer=False)
            )["results"]
        before = await table_counts(runtime, tenant)

        async with mcp_session(mcp_app, tenant.user("alice")) as alice:
            for tool, arguments in (
                ("get_memory", {}),
                ("update_memory", {"text": "hijacked"}),
                ("delete_memory", {}),
                ("memory_history", {}),
            ):
                body = await refused(alice, tool, memory_id=bobs["id"], **arguments)
                assert body["code"] == "memory_not_found", (tool, body)
            with pytest.raises(Exception, match="memory_not_found"):
                await alice.read_resource(f"memory://{bobs['id']}")
            for tool, arguments in (
                ("search_memories", {"query": "secret"}),
                ("list_memories", {}),
                ("delete_all_memories", {}),
                ("list_entities", {}),
                ("add_memory", {"text": "Bob now likes green", "infer": False}),
            ):
                body = await refused(alice, tool, user_id="bob", **arguments)
                assert body["code"] == "user_scope_violation", (tool, body)
            # Without a user_id the user's own scope applies: bob's memory never shows up.
            found = await ok(alice, "search_memories", query="secret")
            assert [r["id"] for r in found["results"]] == [mine["id"]]
            assert [r["id"] for r in (await ok(alice, "list_memories"))["results"]] == [mine["id"]]
        assert await table_counts(runtime, tenant) == before

        conn = await tenant_conn(runtime, tenant)
        try:
            row = await conn.fetchrow("SELECT memory, deleted_at FROM mem.memories WHERE id = $1", bobs["id"])
        finally:
            await conn.close()
        assert row["memory"] == "Bob's secret is red" and row["deleted_at"] is None


async def test_anonymous_and_foreign_callers_are_refused_before_any_session(
    mcp_app, tenant: TenantKeys, other_tenant: TenantKeys
):
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    cases = [
        ({}, 401, "missing_api_key"),
        (tenant.anon, 403, "anonymous_not_allowed"),
        ({"apikey": "not-a-key"}, 401, "invalid_api_key"),
        # another tenant's user token with this tenant's anon key: the token does not verify
        ({**tenant.anon, "authorization": other_tenant.user("alice")["authorization"]}, 401, None),
    ]
    async with mcp_app.lifespan():
        transport = httpx.ASGITransport(app=mcp_app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            for headers, status, code in cases:
                r = await http.post("/mcp", json=init, headers={**accept, **headers})
                assert r.status_code == status, (headers, r.text)
                assert r.json()["code"] == (code or r.json()["code"]) and r.json()["message"]
                assert "mcp-session-id" not in r.headers
            # The real thing with the right key answers, so the refusals above are about the key.
            r = await http.post("/mcp", json=init, headers={**accept, **tenant.service})
            assert r.status_code == 200, r.text
            assert r.json()["result"]["serverInfo"]["name"] == "memory"
        # And the SDK client sees the refusal as an error, not a session.
        with pytest.raises(Exception):  # noqa: B017
            async with mcp_session(mcp_app, tenant.anon):
                pass


async def test_another_tenants_key_never_reaches_this_tenants_memories(
    mcp_app, tenant: TenantKeys, other_tenant: TenantKeys
):
    async with mcp_app.lifespan():
        async with mcp_session(mcp_app, tenant.service) as mine:
            (item,) = (await ok(mine, "add_memory", text="Tenant one's fact", user_id="alice", infer=False))[
                "results"
            ]
        async with mcp_session(mcp_app, other_tenant.service) as theirs:
            assert (await refused(theirs, "get_memory", memory_id=item["id"]))["code"] == "memory_not_found"
            assert (await ok(theirs, "list_memories", user_id="alice"))["total"] == 0


async def test_bad_arguments_are_coded_tool_errors_that_change_nothing(mcp_app, tenant: TenantKeys, runtime):
    async with mcp_app.lifespan():
        async with mcp_session(mcp_app, tenant.service) as session:
            (item,) = (
                await ok(session, "add_memory", text="Carol drinks tea", user_id="carol", infer=False)
            )["results"]
            before = await table_counts(runtime, tenant)
            cases: list[tuple[str, dict[str, Any], str]] = [
                ("add_memory", {"user_id": "carol"}, "text_or_messages_required"),
                (
                    "add_memory",
                    {"text": "x", "messages": [{"role": "user", "content": "y"}], "user_id": "carol"},
                    "text_or_messages_required",
                ),
                ("add_memory", {"text": "no owner", "infer": False}, "owner_required"),
                (
                    "add_memory",
                    {"messages": [{"role": "robot", "content": "hi"}], "user_id": "carol"},
                    "invalid_arguments",
                ),
                ("add_memory", {"text": "x", "user_id": "carol", "colour": "red"}, "unknown_argument"),
                ("add_memory", {"text": "x", "user_id": "carol", "infer": "perhaps"}, "invalid_arguments"),
                ("search_memories", {"user_id": "carol"}, "invalid_arguments"),
                ("search_memories", {"query": "   ", "user_id": "carol"}, "empty_query"),
                ("search_memories", {"query": "tea", "user_id": "carol", "top_k": 0}, "invalid_top_k"),
                (
                    "search_memories",
                    {"query": "tea", "user_id": "carol", "filters": {"x": {"near": 1}}},
                    "invalid_filter",
                ),
                ("search_memories", {"query": "tea"}, "owner_required"),
                ("get_memory", {"memory_id": "not-a-uuid"}, "invalid_id"),
                ("update_memory", {"memory_id": item["id"]}, "empty_update"),
                ("update_memory", {"memory_id": item["id"], "text": "   "}, "empty_text"),
                ("delete_all_memories", {}, "owner_required"),
                ("list_memories", {"user_id": "carol", "page": 0}, "invalid_page"),
                ("list_entities", {"user_id": "carol", "entity_type": "planet"}, "invalid_arguments"),
                ("list_entities", {"user_id": "carol", "page": 0}, "invalid_page"),
            ]
            for tool, arguments, code in cases:
                body = await refused(session, tool, **arguments)
                assert body["code"] == code, (tool, arguments, body)
            unknown = await session.call_tool("forget_everything", {})
            assert unknown.isError and payload(unknown)["code"] == "unknown_tool"
            assert (await ok(session, "get_memory", memory_id=item["id"]))["memory"] == "Carol drinks tea"
        assert await table_counts(runtime, tenant) == before


def _metric(text: str, tool: str, outcome: str) -> float:
    prefix = f'memory_mcp_tool_calls_total{{outcome="{outcome}",tool="{tool}"}} '
    return sum(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))


async def test_tool_calls_are_logged_and_counted_per_tool_and_outcome(settings, runtime, tenant: TenantKeys):
    # The suite logs at warning; this app logs at info, and the suite's level is restored after.
    mcp_app = create_app(dataclasses.replace(settings, log_level="info"), runtime=runtime)
    try:
        await _logged_and_counted(mcp_app, tenant)
    finally:
        configure_logging(settings.log_format, settings.log_level)


async def _logged_and_counted(mcp_app: Litestar, tenant: TenantKeys) -> None:
    async with mcp_app.lifespan():
        transport = httpx.ASGITransport(app=mcp_app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            before = (await http.get("/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})).text
            with capture_logs() as logs:
                async with mcp_session(mcp_app, tenant.service) as session:
                    await ok(session, "add_memory", text="Dan rides a bike", user_id="dan", infer=False)
                    await refused(session, "get_memory", memory_id="nope")
                    await refused(session, "search_memories", query="bike", user_id="dan", top_k="many")
            after = (await http.get("/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})).text
    calls = [(e["tool"], e["outcome"], e["code"]) for e in logs if e["event"] == "mcp_tool_called"]
    assert calls == [
        ("add_memory", "ok", None),
        ("get_memory", "refused", "invalid_id"),
        ("search_memories", "refused", "invalid_arguments"),
    ]
    assert next(e for e in logs if e["event"] == "mcp_tool_called")["tenant"] == tenant.ref
    posts = [e for e in logs if e["event"] == "request_finished" and e["method"] == "POST"]
    assert {(e["route"], e["tenant"]) for e in posts} == {("/mcp", tenant.ref)}
    # initialize, the "initialized" notification (202), tools/list (the client reads output schemas),
    # then the three calls: 200 each, for a tool error is a result
    assert [e["status"] for e in posts] == [200, 202, 200, 200, 200, 200]
    assert _metric(after, "add_memory", "ok") == _metric(before, "add_memory", "ok") + 1
    assert _metric(after, "get_memory", "refused") == _metric(before, "get_memory", "refused") + 1
    assert _metric(after, "search_memories", "refused") == _metric(before, "search_memories", "refused") + 1
    assert "memory_mcp_tool_duration_seconds_bucket" in after
