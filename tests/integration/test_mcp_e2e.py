"""/mcp on a real `python -m app serve` process, through the SDK's streamable-HTTP client, and the
stdio bridge (`python -m app mcp`) as a desktop client would start it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import pytest_asyncio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

from app.auth.tokens import mint_user_token
from tests.conftest import DIMS
from testsupport.provider_server import FakeProviderServer
from testsupport.serve import INHERITED_PREFIXES, new_database, running_service, service_environment

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(loop_scope="session")
async def service_env(database_url: str, fake_provider: FakeProviderServer) -> dict[str, str]:
    control_dsn = await new_database(database_url, "memory_mcp")
    return service_environment(control_dsn, fake_provider.openai_base_url, DIMS)


@pytest.fixture
def service(service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with running_service(service_env, tmp_path / "service.log") as (url, _):
        yield url


def _own_tenant(url: str, admin_key: str) -> dict[str, Any]:
    """A tenant of this test's own (never the demo tenant)."""
    r = httpx.post(
        f"{url}/auth/v1/admin/tenants",
        json={"name": "MCP e2e", "ref": f"mcpe2e{secrets.token_hex(4)}"},
        headers={"authorization": f"Bearer {admin_key}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _data(result: Any) -> Any:
    assert not result.isError, result.content
    return json.loads(result.content[0].text)


async def _story(session: ClientSession, user_id: str | None) -> None:
    owner = {"user_id": user_id} if user_id else {}
    tools = {t.name for t in (await session.list_tools()).tools}
    assert {"add_memory", "search_memories", "update_memory", "memory_history", "delete_memory"} <= tools
    added = _data(
        await session.call_tool("add_memory", {"text": "Eve plays the cello", "infer": False, **owner})
    )
    memory_id = added["results"][0]["id"]
    found = _data(await session.call_tool("search_memories", {"query": "cello", **owner}))
    assert found["results"][0]["id"] == memory_id and "score_breakdown" in found["results"][0]
    updated = _data(
        await session.call_tool("update_memory", {"memory_id": memory_id, "text": "Eve plays the viola"})
    )
    assert updated["memory"] == "Eve plays the viola"
    history = _data(await session.call_tool("memory_history", {"memory_id": memory_id}))["results"]
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    assert _data(await session.call_tool("delete_memory", {"memory_id": memory_id}))["id"] == memory_id
    gone = await session.call_tool("get_memory", {"memory_id": memory_id})
    assert gone.isError and json.loads(gone.content[0].text)["code"] == "memory_not_found"  # type: ignore[union-attr]


async def test_mcp_over_http_and_through_the_stdio_bridge(service, service_env):
    tenant = _own_tenant(service, service_env["MEM_ADMIN_KEY"])

    headers = {"apikey": tenant["service_role_key"]}
    async with (
        streamablehttp_client(f"{service}/mcp", headers=headers) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        info = await session.initialize()
        assert info.serverInfo.name == "memory" and info.instructions
        await _story(session, "eve")

    async with httpx.AsyncClient(base_url=service) as http:
        r = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"apikey": tenant["anon_key"], "accept": "application/json, text/event-stream"},
        )
        assert r.status_code == 403 and r.json()["code"] == "anonymous_not_allowed"
        admin = {"authorization": f"Bearer {service_env['MEM_ADMIN_KEY']}"}
        metrics = (await http.get("/metrics", headers=admin)).text
    assert 'memory_mcp_tool_calls_total{outcome="ok",tool="add_memory"} 1.0' in metrics

    # The bridge, as Claude Desktop starts it: keys from the environment, a user's token pins the user.
    token = mint_user_token(tenant["jwt_secret"], "eve", ref=tenant["ref"])
    bridge_env = {k: v for k, v in service_env.items() if not k.startswith(INHERITED_PREFIXES)}
    bridge_env.update(MEMORY_API_KEY=tenant["anon_key"], MEMORY_USER_TOKEN=token)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "app", "mcp", "--url", service], env=bridge_env, cwd=str(ROOT)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        info = await session.initialize()
        assert info.serverInfo.name == "memory"
        await _story(session, None)
        refused = await session.call_tool("list_memories", {"user_id": "mallory"})
        assert refused.isError and json.loads(refused.content[0].text)["code"] == "user_scope_violation"  # type: ignore[union-attr]
        templates = (await session.list_resource_templates()).resourceTemplates
        assert [t.uriTemplate for t in templates] == ["memory://{memory_id}"]

    # A wrong key: the bridge stops at once with one line that names the refusal, nothing on stdout.
    proc = await anyio.run_process(
        [sys.executable, "-m", "app", "mcp", "--url", service, "--key", "not-a-key"],
        cwd=ROOT,
        env=bridge_env,
        check=False,
    )
    assert proc.returncode == 1 and proc.stdout == b"", proc
    assert b"401" in proc.stderr and len(proc.stderr.decode().strip().splitlines()) == 1, proc.stderr


def test_the_bridge_without_a_key_says_which_to_set():
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_PREFIXES)}
    bad = subprocess.run(
        [sys.executable, "-m", "app", "mcp", "--url", "http://127.0.0.1:9"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "MEMORY_API_KEY" in bad.stderr and bad.stdout == ""
