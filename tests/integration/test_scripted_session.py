"""The product as a user meets it: `python -m app serve` as a real process, the real local
embedder (all-MiniLM-L6-v2), and a scripted session over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.conftest import MASTER_KEY
from testsupport.serve import free_port, new_database, running_service

ROOT = Path(__file__).resolve().parents[2]
# Every `serve` on one server shares the demo tenant's database (mem_demo): under pytest-xdist
# the modules that start one run on the same worker, one after another.
pytestmark = pytest.mark.xdist_group("serve")


@pytest_asyncio.fixture(loop_scope="session")
async def service_env(database_url: str) -> dict[str, str]:
    control_dsn = await new_database(database_url, "memory_e2e")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBASE_", "MEM_"))}
    env.update(
        DATABASE_URL=control_dsn,
        HOST="127.0.0.1",
        PORT=str(free_port()),
        MEM_ADMIN_KEY="e2e-admin-" + secrets.token_hex(16),
        MEM_MASTER_KEY=MASTER_KEY,
        MEM_CREATE_DEMO="1",
        NUBASE_MEM_EMBEDDING_PROVIDER="local",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def service(service_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with running_service(service_env, tmp_path / "service.log") as running:
        yield running


def test_a_scripted_session_against_the_running_service(service, service_env, tmp_path):
    url, proc = service
    status = subprocess.run(
        [sys.executable, "-m", "app", "status", "--json"],
        cwd=ROOT,
        env=service_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    keys = json.loads(status.stdout)
    assert set(keys) >= {"api_url", "anon_key", "service_role_key", "jwt_secret", "admin_key"}
    assert keys["api_url"] == url
    assert keys["admin_key"] == service_env["MEM_ADMIN_KEY"]
    banner = (tmp_path / "service.log").read_text()
    assert keys["service_role_key"] in banner and keys["anon_key"] in banner, (
        "MEM_CREATE_DEMO=1 prints its keys"
    )
    # With DATABASE_URL stdout is the deployment's logs: never the platform admin key or a JWT secret.
    assert keys["admin_key"] not in banner and keys["jwt_secret"] not in banner

    h = {"apikey": keys["service_role_key"]}
    with httpx.Client(base_url=url, headers=h, timeout=30) as c:
        added = []
        for text in ("Alice is allergic to peanuts", "Alice's favourite programming language is Rust"):
            r = c.post(
                "/mem/v1/memories",
                json={"messages": [{"role": "user", "content": text}], "user_id": "alice", "infer": False},
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"]
            (item,) = r.json()["results"]
            assert item["event"] == "ADD" and item["memory"] == text
            added.append(item["id"])

        listing = c.get("/mem/v1/memories", params={"user_id": "alice"}).json()
        assert listing["total"] == 2
        assert {m["id"] for m in listing["results"]} == set(added)

        # The real MiniLM model must rank the peanut fact first for a food question.
        found = c.post(
            "/mem/v1/search", json={"query": "What food can't Alice eat?", "user_id": "alice"}
        ).json()
        assert next(m["id"] for m in found["results"]) == added[0]
        assert 0 < found["results"][0]["score"] <= 1

        updated = c.put(f"/mem/v1/memories/{added[1]}", json={"text": "Alice's favourite language is Python"})
        assert updated.status_code == 200, updated.text
        assert updated.json()["memory"] == "Alice's favourite language is Python"
        history = c.get(f"/mem/v1/memories/{added[1]}/history").json()
        assert [e["event"] for e in history] == ["ADD", "UPDATE"]
        assert history[1]["old_memory"] == "Alice's favourite programming language is Rust"
        assert history[1]["new_memory"] == "Alice's favourite language is Python"

        assert c.delete(f"/mem/v1/memories/{added[1]}").status_code == 200
        history = c.get(f"/mem/v1/memories/{added[1]}/history").json()
        assert [e["event"] for e in history] == ["ADD", "UPDATE", "DELETE"]
        assert c.get(f"/mem/v1/memories/{added[1]}").status_code == 404

        deleted = c.delete("/mem/v1/memories", params={"user_id": "alice"})
        assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
        assert c.get("/mem/v1/memories", params={"user_id": "alice"}).json() == {
            "results": [],
            "total": 0,
            "page": 1,
            "page_size": 50,
        }

        # /metrics counts every tenant's traffic: the operator's key only.
        assert httpx.get(f"{url}/metrics").status_code == 401
        admin = {"Authorization": f"Bearer {service_env['MEM_ADMIN_KEY']}"}
        metrics = httpx.get(f"{url}/metrics", headers=admin).text
        assert 'memory_pipeline_events_total{event="ADD"} 2.0' in metrics
        # With DATABASE_URL (a deployment) /docs is behind the admin key unless MEM_PUBLIC_DOCS=true.
        assert httpx.get(f"{url}/docs/openapi.json").status_code == 401
        assert httpx.get(f"{url}/docs/openapi.json", headers=admin).json()["info"]["title"] == "Memory"

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    log_text = (tmp_path / "service.log").read_text()
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    finished = [line for line in lines if line.get("event") == "request_finished"]
    assert finished and all("request_id" in line and "duration_ms" in line for line in finished)
    assert any(line.get("tenant") == "demo" for line in finished)
    # The banner prints the keys once; no log line carries a key or a token.
    assert not any(
        keys["service_role_key"] in line or keys["anon_key"] in line for line in map(json.dumps, lines)
    )
