"""The examples as an app runs them: `python -m app serve` as a real process with the real local
embedder, and `examples/chat_loop.py` talking to it over HTTP (search before answering, add after)."""

from __future__ import annotations

import os
import secrets
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
ADMIN_KEY = "examples-admin-" + secrets.token_hex(16)


@pytest_asyncio.fixture(loop_scope="session")
async def service_env(database_url: str) -> dict[str, str]:
    control_dsn = await new_database(database_url, "memory_examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBASE_", "MEM_", "OPENAI_"))}
    env.update(
        DATABASE_URL=control_dsn,
        HOST="127.0.0.1",
        PORT=str(free_port()),
        MEM_ADMIN_KEY=ADMIN_KEY,
        MEM_MASTER_KEY=MASTER_KEY,
        NUBASE_MEM_EMBEDDING_PROVIDER="local",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def service_url(service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with running_service(service_env, tmp_path / "service.log") as (url, _):
        yield url


def turns_of(output: str) -> list[str]:
    """The chat loop's output, one block per turn (each starts with `you: `)."""
    return [block for block in output.split("you: ") if block.strip()]


def run_chat_loop(env: dict[str, str], *turns: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, "examples/chat_loop.py", *turns],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return turns_of(run.stdout)


def test_the_python_chat_loop_searches_before_answering_and_adds_after(
    service_url, service_env, fake_provider
):
    created = httpx.post(
        f"{service_url}/auth/v1/admin/tenants",
        json={"name": "Examples", "ref": "ex" + secrets.token_hex(5)},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    service_key = created.json()["service_role_key"]
    user_id = "user-" + secrets.token_hex(4)
    env = {k: v for k, v in service_env.items() if k not in ("DATABASE_URL", "MEM_ADMIN_KEY")}
    env.update(
        MEMORY_URL=service_url, MEMORY_SERVICE_KEY=service_key, MEMORY_USER_ID=user_id, MEMORY_TOP_K="3"
    )

    # Offline: no model configured, the answer is an echo of the memories used.
    first, second = run_chat_loop(env, "I am allergic to peanuts", "What should I avoid eating?")
    assert first.startswith("I am allergic to peanuts\nmemories used (0):")
    assert "assistant: (offline echo)" in first and "ADD 'I am allergic to peanuts'" in first
    # The second turn's search ran before its answer and found the first turn's fact by meaning.
    assert second.startswith("What should I avoid eating?\nmemories used (")
    used, answered = second.split("assistant: ")
    assert "  - I am allergic to peanuts (score " in used
    assert '"I am allergic to peanuts"' in answered, "the offline answer quotes what it used"

    # With an OpenAI-compatible endpoint, the memories reach the model in the system message.
    fake_provider.script_chat("Better not: you are allergic to peanuts.")
    env.update(OPENAI_BASE_URL=fake_provider.openai_base_url, OPENAI_API_KEY="test-key")
    (third,) = run_chat_loop(env, "Can I have a peanut butter sandwich?")
    assert "assistant: Better not: you are allergic to peanuts." in third
    request = fake_provider.last_request("chat")
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.json["model"] == "gpt-4o-mini"
    system, user = request.json["messages"]
    assert "- I am allergic to peanuts" in system["content"]
    assert user == {"role": "user", "content": "Can I have a peanut butter sandwich?"}

    with httpx.Client(base_url=service_url, headers={"apikey": service_key}, timeout=30) as c:
        listing = c.get("/mem/v1/memories", params={"user_id": user_id}).json()
        stored = {m["memory"] for m in listing["results"]}
        # The service has no chat model: infer=true keeps what the user said, and the assistant's
        # answers stay in the session window only.
        assert stored == {
            "I am allergic to peanuts",
            "What should I avoid eating?",
            "Can I have a peanut butter sandwich?",
        }
        assert listing["total"] == 3
        assert c.get("/mem/v1/memories", params={"user_id": "someone-else"}).json()["total"] == 0


def test_the_python_chat_loop_refuses_to_start_without_a_service_key():
    env = {k: v for k, v in os.environ.items() if k != "MEMORY_SERVICE_KEY"}
    run = subprocess.run(
        [sys.executable, "examples/chat_loop.py", "hello"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "MEMORY_SERVICE_KEY" in run.stderr
