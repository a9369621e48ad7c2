"""Integration fixtures: the `python -m app serve` process of the scripted session.

The process loads the real local embedder and needs about 10 s to become ready. It is started
as soon as the first integration test runs, so that start-up overlaps other tests instead of
being waited out by its own test; the test still waits for /ready and drives it over HTTP.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from app.db.dsn import with_database

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServiceProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def service_env(database_url: str) -> dict[str, str]:
    name = f"memory_e2e_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBASE_", "MEM_"))}
    env.update(
        DATABASE_URL=with_database(database_url, name),
        HOST="127.0.0.1",
        PORT=str(_free_port()),
        MEM_ADMIN_KEY="e2e-admin-" + secrets.token_hex(16),
        NUBASE_MEM_EMBEDDING_PROVIDER="local",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def service_process(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The service as a real process, started but not yet waited for; stopped at session end."""
    log_path = tmp_path_factory.mktemp("service") / "service.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=ROOT,
        env=service_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield ServiceProcess(f"http://127.0.0.1:{service_env['PORT']}", proc, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture(scope="session", autouse=True)
def _start_the_service_early(request: pytest.FixtureRequest) -> None:
    if any("service_process" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("service_process")
