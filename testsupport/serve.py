"""A real `python -m app serve` for tests that need the service as a process of its own."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.db.dsn import with_database

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 120


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def new_database(database_url: str, prefix: str) -> str:
    """A fresh database on the test server (a served process's own control plane): its DSN."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(database_url, name)


# Settings a served process must not inherit from the environment of the test run.
INHERITED_PREFIXES = ("NUBASE_", "MEM_", "LOG_", "OPENAI_", "ANTHROPIC_", "MEMORY_")


def service_environment(control_dsn: str, embedding_base_url: str, dims: int, **extra: str) -> dict[str, str]:
    """The environment of a served process on 127.0.0.1 and a free port: its own control plane, a
    fresh admin key and master key, and the fake provider for embeddings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_PREFIXES)}
    env.update(
        DATABASE_URL=control_dsn,
        HOST="127.0.0.1",
        PORT=str(free_port()),
        MEM_ADMIN_KEY="serve-admin-" + secrets.token_hex(16),
        # Seals the tenants' secrets in the control plane; required with DATABASE_URL.
        MEM_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        NUBASE_MEM_EMBEDDING_PROVIDER="generic",
        NUBASE_MEM_EMBEDDING_MODEL="fake-embed",
        NUBASE_MEM_EMBEDDING_DIMENSIONS=str(dims),
        NUBASE_MEM_EMBEDDING_BASE_URL=embedding_base_url,
        NUBASE_MEM_EMBEDDING_API_KEY="test",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def create_tenant(url: str, admin_key: str, name: str) -> dict[str, Any]:
    """A tenant of the served process, through its admin API: its ref, keys and database name."""
    r = httpx.post(
        f"{url}/auth/v1/admin/tenants",
        json={"name": name, "ref": f"t{secrets.token_hex(6)}"},
        headers={"authorization": f"Bearer {admin_key}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


@asynccontextmanager
async def tenant_database(database_url: str, tenant: dict[str, Any]) -> AsyncIterator[asyncpg.Connection]:
    """The database of a tenant made by create_tenant(), as the superuser: what calls really did."""
    conn = await asyncpg.connect(with_database(database_url, tenant["database"]))
    try:
        yield conn
    finally:
        await conn.close()


@contextmanager
def running_service(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the service with `env` (its PORT included), wait until /ready answers, and stop it
    with SIGINT (then SIGKILL) when the block ends; its output goes to log_path."""
    url = f"http://127.0.0.1:{env['PORT']}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_ready(url, proc, log_path)
            yield url, proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the service exited early:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the service did not become ready in {READY_SECONDS} s")
