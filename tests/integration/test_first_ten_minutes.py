"""A newcomer's first ten minutes, from outside: `python -m app serve` as a real process, and the
command line (`status`, `tenant ...`) run as separate processes against it.

One server for the module (the real local embedder, so start-up takes as long as a newcomer's);
the failure cases start their own processes, which stop before they touch a database.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.cli.main import build_parser
from app.db.dsn import with_database
from tests.conftest import MASTER_KEY
from testsupport.serve import free_port

ROOT = Path(__file__).resolve().parents[2]
# Every `serve` on one server shares the demo tenant's database (mem_demo): under pytest-xdist
# the modules that start one run on the same worker, one after another.
pytestmark = pytest.mark.xdist_group("serve")
BANNER = "Memory is running."
START_SECONDS = 120
# Variables of the developer's shell that would change what the child does.
INHERITED_PREFIXES = ("NUBASE_", "MEM_", "LOG_", "OPENAI_", "ANTHROPIC_")
INHERITED_NAMES = ("DATABASE_URL", "PORT", "HOST", "PUBLIC_URL")


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(INHERITED_PREFIXES) and k not in INHERITED_NAMES
    }
    env.update(PYTHONUNBUFFERED="1", LOG_FORMAT="json", HOST="127.0.0.1")
    env.update(overrides)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Served:
    """The module's server: its URL, environment, and what the test saw when the banner appeared."""

    url: str
    env: dict[str, str]
    proc: subprocess.Popen[str]
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)
    health_at_banner: int | str | None = None
    banner_seen: threading.Event = field(default_factory=threading.Event)

    def read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if BANNER in line and not self.banner_seen.is_set():
                # Right now, as the line arrives: the server must already answer.
                try:
                    self.health_at_banner = httpx.get(f"{self.url}/health", timeout=2).status_code
                except httpx.TransportError as exc:
                    self.health_at_banner = f"{type(exc).__name__}: {exc}"
                self.banner_seen.set()
            self.stdout_lines.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)


async def _drop_demo_tenant_database(conn: asyncpg.Connection) -> None:
    # A tenant's database and roles are named by its ref on the whole server (mem_demo), so
    # every `serve` on the test server shares the demo tenant's: start and leave it fresh,
    # for this module and for test_scripted_session.
    await conn.execute("DROP DATABASE IF EXISTS mem_demo WITH (FORCE)")
    await conn.execute("DROP ROLE IF EXISTS mem_app_demo")
    await conn.execute("DROP ROLE IF EXISTS mem_owner_demo")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server_database_url(database_url: str) -> AsyncIterator[str]:
    """A control-plane database of its own on the test server, and a fresh demo tenant."""
    name = f"memory_newcomer_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(database_url)
    try:
        await _drop_demo_tenant_database(conn)
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield with_database(database_url, name)
    conn = await asyncpg.connect(database_url)
    try:
        await _drop_demo_tenant_database(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def served(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    tmp = tmp_path_factory.mktemp("newcomer")
    env = _clean_env(
        DATABASE_URL=server_database_url,
        PORT=str(port),
        MEM_DATA_DIR=str(tmp / "data"),
        MEM_ADMIN_KEY="newcomer-admin-" + secrets.token_hex(16),
        MEM_MASTER_KEY=MASTER_KEY,
        MEM_CREATE_DEMO="1",
        # As on `make run`'s embedded server, where /docs needs no key (a DATABASE_URL alone would
        # put it behind the admin key).
        MEM_PUBLIC_DOCS="true",
        NUBASE_MEM_EMBEDDING_PROVIDER="local",
    )
    stderr_path = tmp / "stderr.log"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    served = Served(f"http://127.0.0.1:{port}", env, proc, stderr_path)
    reader = threading.Thread(target=served.read_stdout, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_SECONDS
        while not served.banner_seen.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no banner; the server said:\n{stderr_path.read_text()[-3000:]}")
        yield served
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        reader.join(timeout=5)
    assert code == 0, f"Ctrl-C should stop the server cleanly, got exit code {code}"


def _assert_one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(needle in lines[0] for needle in needles), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert BANNER not in result.stdout


def test_the_banner_appears_only_once_the_server_answers(served: Served) -> None:
    assert served.health_at_banner == 200


def test_the_banner_curl_carries_a_service_role_key_the_server_accepts(served: Served) -> None:
    curl_key = next(
        line.split("apikey: ", 1)[1].split("'", 1)[0] for line in served.stdout_lines if "curl -s" in line
    )
    r = httpx.post(
        f"{served.url}/mem/v1/memories",
        headers={"apikey": curl_key},
        json={"messages": "I prefer TypeScript", "user_id": "newcomer-" + secrets.token_hex(4)},
    )
    assert r.status_code == 200, r.text


def test_loading_the_local_model_draws_no_progress_bar_into_the_logs(served: Served) -> None:
    logs = served.stderr_path.read_text()
    assert "local_embedder_loaded" in logs, "the module's server runs the local model"
    assert "Loading weights" not in logs and "it/s]" not in logs


def test_a_second_server_on_the_same_port_fails_in_one_line_naming_the_port(served: Served) -> None:
    result = _cli(served.env, "serve")
    _assert_one_line_failure(result, f"port {served.env['PORT']} is in use", "PORT")


def test_the_openai_chat_provider_without_a_key_fails_in_one_line_naming_the_variable(tmp_path: Path) -> None:
    env = _clean_env(
        PORT=str(free_port()),
        MEM_DATA_DIR=str(tmp_path / "data"),
        NUBASE_MEM_CHAT_PROVIDER="openai",
    )
    result = _cli(env, "serve")
    _assert_one_line_failure(result, "OPENAI_API_KEY")
    assert not (tmp_path / "data" / "pg").exists(), "the check comes before the database starts"


def test_status_without_a_server_says_so_and_creates_no_data_directory(tmp_path: Path) -> None:
    port = free_port()
    env = _clean_env(PORT=str(port), MEM_DATA_DIR=str(tmp_path / "data"))
    for args in (["status"], ["status", "--json"], ["tenant", "list"]):
        result = _cli(env, *args)
        _assert_one_line_failure(result, f"no server at http://127.0.0.1:{port}")
    assert not (tmp_path / "data").exists()


def test_status_json_describes_the_running_server(served: Served) -> None:
    result = _cli(served.env, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["api_url"] == served.url
    assert status["admin_key"] == served.env["MEM_ADMIN_KEY"]
    assert status["service_role_key"] in served.stdout, "the same keys as the banner"
    assert status["admin_key"] not in served.stdout, "with DATABASE_URL the banner hides the admin key"
    assert status["jwt_secret"] not in served.stdout, "and the tenant's JWT secret"
    r = httpx.get(
        f"{served.url}/mem/v1/memories",
        params={"user_id": "newcomer"},
        headers={"apikey": status["service_role_key"]},
    )
    assert r.status_code == 200, r.text
    user = httpx.get(
        f"{served.url}/mem/v1/memories",
        params={"user_id": status["sample_user_id"]},
        headers={"apikey": status["anon_key"], "Authorization": f"Bearer {status['sample_user_jwt']}"},
    )
    assert user.status_code == 200, user.text


def test_status_finds_the_server_by_url_and_the_admin_key_by_option(served: Served, tmp_path: Path) -> None:
    elsewhere = _clean_env(PORT=str(free_port()), MEM_DATA_DIR=str(tmp_path / "data"))
    args = ("--url", served.url, "--admin-key", served.env["MEM_ADMIN_KEY"])
    result = _cli(elsewhere, "status", "--json", *args)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["api_url"] == served.url
    assert not (tmp_path / "data").exists()


def test_a_wrong_admin_key_is_one_line_naming_mem_admin_key(served: Served) -> None:
    result = _cli({**served.env, "MEM_ADMIN_KEY": "not-the-key"}, "tenant", "list")
    _assert_one_line_failure(result, "refused the admin key", "MEM_ADMIN_KEY")


def test_tenant_list_shows_the_demo_tenant(served: Served) -> None:
    listed = _cli(served.env, "tenant", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "demo" in [t["ref"] for t in json.loads(listed.stdout)]
    table = _cli(served.env, "tenant", "list")
    assert table.stdout.splitlines()[0].split() == ["REF", "NAME", "STATUS", "CREATED"]
    assert any(line.split()[0] == "demo" for line in table.stdout.splitlines()[1:])


def test_tenant_keys_prints_keys_the_server_accepts(served: Served) -> None:
    result = _cli(served.env, "tenant", "keys", "demo", "--json")
    assert result.returncode == 0, result.stderr
    keys = json.loads(result.stdout)
    assert keys["tenant_ref"] == "demo"
    r = httpx.get(f"{served.url}/mem/v1/stats", headers={"apikey": keys["service_role_key"]})
    assert r.status_code == 200, r.text
    missing = _cli(served.env, "tenant", "keys", "nosuchtenant")
    _assert_one_line_failure(missing, "nosuchtenant", "404")


def test_tenant_create_makes_a_tenant_whose_keys_work(served: Served) -> None:
    ref = "acme" + secrets.token_hex(3)
    result = _cli(served.env, "tenant", "create", "Acme", "--ref", ref, "--json")
    assert result.returncode == 0, result.stderr
    keys = json.loads(result.stdout)
    assert keys["tenant_ref"] == ref
    r = httpx.get(f"{served.url}/mem/v1/stats", headers={"apikey": keys["service_role_key"]})
    assert r.status_code == 200, r.text
    again = _cli(served.env, "tenant", "keys", ref, "--json")
    assert json.loads(again.stdout)["service_role_key"] == keys["service_role_key"]


def test_only_the_platform_admin_may_read_a_tenants_keys(served: Served) -> None:
    path = f"{served.url}/auth/v1/admin/tenants/demo/keys"
    demo = json.loads(_cli(served.env, "tenant", "keys", "demo", "--json").stdout)
    assert httpx.get(path).status_code == 401
    as_service_role = httpx.get(path, headers={"apikey": demo["service_role_key"]})
    assert as_service_role.status_code in (401, 403)
    as_tenant_bearer = httpx.get(path, headers={"Authorization": f"Bearer {demo['service_role_key']}"})
    assert as_tenant_bearer.status_code in (401, 403)
    admin = {"Authorization": f"Bearer {served.env['MEM_ADMIN_KEY']}"}
    ok = httpx.get(path, headers=admin)
    assert ok.status_code == 200 and ok.json()["service_role_key"] == demo["service_role_key"]
    assert (
        httpx.get(f"{served.url}/auth/v1/admin/tenants/nosuchtenant/keys", headers=admin).status_code == 404
    )


def test_the_root_url_links_to_the_docs(served: Served) -> None:
    r = httpx.get(f"{served.url}/")
    assert r.status_code == 200
    links = r.json()["links"]
    assert links["docs"] == f"{served.url}/docs"
    assert httpx.get(links["openapi"]).json()["info"]["title"] == "Memory"
    assert httpx.get(links["health"]).json() == {"status": "ok"}
    # The docs a newcomer is pointed at need no key; /metrics (every tenant's counts) does.
    assert httpx.get(links["docs"]).status_code == 200
    assert httpx.get(f"{served.url}/metrics").status_code == 401
    admin = {"Authorization": f"Bearer {served.env['MEM_ADMIN_KEY']}"}
    assert "memory_" in httpx.get(f"{served.url}/metrics", headers=admin).text


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def test_every_command_and_option_of_the_cli_has_help() -> None:
    parsers = _parsers(build_parser())
    assert {p.prog.removeprefix("python -m app ") for p in parsers} >= {
        "serve",
        "status",
        "tenant list",
        "tenant keys",
        "tenant create",
    }
    missing = [
        f"{p.prog}: {action.dest}"
        for p in parsers
        for action in p._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert missing == []
