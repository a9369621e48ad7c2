"""The service under test: an embedded PostgreSQL, a fresh control database, and
`python -m app serve` as a subprocess on 127.0.0.1 (as tests/integration/test_scripted_session.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import psutil

from app.db.dsn import with_database
from app.db.embedded import EmbeddedPostgres, start_embedded
from app.tenancy import repo as tenancy_repo
from bench.progress import log

ROOT = Path(__file__).resolve().parents[1]


# A bench tenant's own limits: far above anything the bench sends.
BENCH_LIMITS = {
    "user_requests_per_second": 1_000_000,
    "user_adds_per_second": 1_000_000,
    "service_requests_per_second": 1_000_000,
    "service_adds_per_second": 1_000_000,
    "max_in_flight": 10_000,
}


@dataclass
class Tenant:
    ref: str
    name: str
    db_name: str
    service_role_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"apikey": self.service_role_key}


@dataclass
class Service:
    """A running service: where it listens, how to administer it, and its process (when ours)."""

    url: str
    admin_key: str
    server_dsn: str | None  # a superuser DSN on the PostgreSQL server holding the tenant databases
    pid: int | None = None
    log_path: Path | None = None
    startup_seconds: float | None = None
    _pg: EmbeddedPostgres | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _control_db: str | None = None
    _log_file: IO[bytes] | None = None

    async def create_tenant(self, name: str, *, default_limits: bool = False) -> Tenant:
        """A new tenant; its rate limits raised to BENCH_LIMITS unless `default_limits` (the noisy
        neighbour bench, where the platform's defaults are what protects the other tenant)."""
        admin = {"Authorization": f"Bearer {self.admin_key}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=120) as client:
            r = await client.post("/auth/v1/admin/tenants", json={"name": name}, headers=admin)
            if r.status_code != 201:
                raise RuntimeError(f"creating tenant {name!r} failed: {r.status_code} {r.text[:500]}")
            body = r.json()
            if not default_limits:
                # The bench measures the service, not its per-tenant rate limits (20 adds/s by
                # default): on a quiet machine the LoCoMo adds outran them and were answered 429.
                limits = await client.put(
                    f"/auth/v1/admin/tenants/{body['ref']}/limits", json=BENCH_LIMITS, headers=admin
                )
                if limits.status_code != 200:
                    raise RuntimeError(
                        f"raising {name!r}'s limits failed: {limits.status_code} {limits.text[:500]}"
                    )
        return Tenant(
            ref=body["ref"], name=name, db_name=body["database"], service_role_key=body["service_role_key"]
        )

    def tenant_dsn(self, tenant: Tenant) -> str:
        if not self.server_dsn:
            raise RuntimeError("seeding needs --database-url (a superuser DSN) for an external service")
        return with_database(self.server_dsn, tenant.db_name)

    def rss_bytes(self) -> int | None:
        if self.pid is None:
            return None
        try:
            proc = psutil.Process(self.pid)
            return int(proc.memory_info().rss) + sum(
                int(c.memory_info().rss) for c in proc.children(recursive=True)
            )
        except psutil.Error:
            return None

    def postgres_pss_bytes(self) -> int | None:
        """Proportional set size of the embedded server's processes (shared buffers split fairly)."""
        if self._pg is None:
            return None
        data_dir = str(ROOT / "bench" / ".data")
        total, found = 0, False
        for p in psutil.process_iter(["cmdline"]):
            try:
                if data_dir not in " ".join(p.info["cmdline"] or []):
                    continue
                for proc in [p, *p.children(recursive=True)]:
                    found = True
                    info = proc.memory_full_info()
                    total += int(getattr(info, "pss", info.rss))
            except psutil.Error:
                continue
        return total if found else None

    async def stop(self, *, keep_data: bool = False) -> None:
        if self._proc is not None:
            await asyncio.to_thread(_stop_process, self._proc)
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._pg is not None:
            if not keep_data:
                try:
                    await self._drop_databases()
                except (OSError, asyncpg.PostgresError) as exc:
                    log(f"cleanup: could not drop the bench databases: {exc!r}")
            await asyncio.to_thread(self._pg.stop)
            self._pg = None

    async def _drop_databases(self) -> None:
        """Every tenant the control database knows (a half-created one too), then the control database."""
        if self.server_dsn is None or self._control_db is None:
            return
        control = await asyncpg.connect(with_database(self.server_dsn, self._control_db))
        try:
            tenants = await tenancy_repo.list_tenants(control)
        finally:
            await control.close()
        conn = await asyncpg.connect(self.server_dsn)
        try:
            for tenant in tenants:
                await tenancy_repo.drop_database_and_roles(
                    conn, db_name=tenant.db_name, roles=[tenant.app_role, tenant.owner_role]
                )
            await conn.execute(f'DROP DATABASE IF EXISTS "{self._control_db}" WITH (FORCE)')
        finally:
            await conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spawn(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    return proc, log_file


LOCAL_EMBEDDER_SETTINGS = (
    "NUBASE_MEM_EMBEDDING_RUNTIME",
    "NUBASE_MEM_EMBEDDING_QUERY_RUNTIME",
    "NUBASE_MEM_EMBEDDING_THREADS",
    "NUBASE_MEM_EMBEDDING_WORKERS",
    "NUBASE_MEM_EMBEDDING_BATCH_WINDOW_MS",
)


def service_environ(extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The managed service's environment, less where it listens and its database: ours without any
    NUBASE_/MEM_ setting (but the local model's runtime settings), the local embedder, then
    `extra_env`. The corpus embedder reads its settings from the same environment, so its vectors
    are the ones the service computes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUBASE_", "MEM_"))}
    # The local model's runtime settings do pass, so that its options can be compared.
    env.update({k: v for k, v in os.environ.items() if k.startswith(LOCAL_EMBEDDER_SETTINGS)})
    env.update(NUBASE_MEM_EMBEDDING_PROVIDER="local", LOG_LEVEL="warning", PYTHONUNBUFFERED="1")
    env.update(extra_env or {})
    return env


async def start_managed(
    data_dir: Path,
    log_path: Path,
    *,
    ready_timeout: float = 180.0,
    extra_env: Mapping[str, str] | None = None,
) -> Service:
    """Embedded PostgreSQL in data_dir, a fresh control database, and `python -m app serve`."""
    started = time.monotonic()
    log(f"service: starting the embedded PostgreSQL in {data_dir}")
    pg = await asyncio.to_thread(start_embedded, data_dir)
    service = Service(url="", admin_key="", server_dsn=pg.dsn, _pg=pg)
    try:
        control_db = f"memory_bench_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{control_db}"')
        finally:
            await conn.close()
        service._control_db = control_db
        port = _free_port()
        service.url = f"http://127.0.0.1:{port}"
        service.admin_key = "bench-admin-" + secrets.token_hex(16)
        env = service_environ(extra_env)
        env.update(
            DATABASE_URL=with_database(pg.dsn, control_db),
            HOST="127.0.0.1",
            PORT=str(port),
            MEM_ADMIN_KEY=service.admin_key,
            # Required with DATABASE_URL: seals the bench tenants' secrets (a fresh control plane each run).
            MEM_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
            # Off by default (it shows query-embedding cache hits); the bench reads it.
            MEM_SERVER_TIMING="true",
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        proc, log_file = await asyncio.to_thread(_spawn, env, log_path)
        service._proc, service._log_file = proc, log_file
        service.pid, service.log_path = proc.pid, log_path
        log(f"service: python -m app serve (pid {proc.pid}) on {service.url}, log {log_path}")
        await wait_ready(service, proc, ready_timeout)
        service.startup_seconds = round(time.monotonic() - started, 2)
        log(f"service: ready after {service.startup_seconds}s")
        return service
    except BaseException:
        await service.stop()
        raise


async def wait_ready(service: Service, proc: subprocess.Popen[bytes] | None, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = service.log_path.read_text(errors="replace")[-3000:] if service.log_path else ""
                raise RuntimeError(f"the service exited early (code {proc.returncode}):\n{tail}")
            try:
                if (await client.get(f"{service.url}/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"the service did not become ready in {limit_s:.0f}s")


async def attach_external(url: str, admin_key: str, database_url: str | None, pid: int | None) -> Service:
    service = Service(url=url.rstrip("/"), admin_key=admin_key, server_dsn=database_url, pid=pid)
    await wait_ready(service, None, 30)
    return service
