"""Numbered mem migrations: each file applied once per tenant, in order, even with two runners at once."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.asgi import create_app
from app.db import sqlfiles
from app.runtime import Runtime
from app.settings import Settings
from app.tenancy.errors import MigrationOutOfOrder
from app.tenancy.migrations import MemMigrations
from app.tenancy.models import MemSchemaParams, Tenant
from app.tenancy.provisioning import new_tenant
from app.tenancy.service import Platform
from tests.conftest import ADMIN_KEY, TenantKeys, add, tenant_conn

# Counts its own runs: a second application would leave two rows, not an error.
PROBE = """-- Test migration: a table that counts how often this file ran, and a new column.
CREATE TABLE IF NOT EXISTS mem.migration_probe (id int GENERATED ALWAYS AS IDENTITY, dims int NOT NULL);
INSERT INTO mem.migration_probe (dims) VALUES ({{dims}});
ALTER TABLE mem.memories ADD COLUMN IF NOT EXISTS importance smallint;
"""


# Test files are numbered after the shipped ones, whatever those are.
SHIPPED = sqlfiles.numbered_files(sqlfiles.directory("mem"))
SHIPPED_VERSIONS = [f.version for f in SHIPPED]
NEWEST = max(SHIPPED_VERSIONS)


def numbered(offset: int, name: str) -> str:
    """A test migration's file name, `offset` versions after the newest shipped one."""
    return f"{NEWEST + offset:03d}_{name}.sql"


PROBE_FILE = numbered(1, "probe")


def migrations_dir(tmp_path: Path, extra: dict[str, str]) -> Path:
    """A copy of sql/mem (the numbered files and the grants) plus the given files."""
    folder = tmp_path / "mem"
    folder.mkdir(parents=True)
    for path in sqlfiles.directory("mem").glob("*.sql"):
        shutil.copy(path, folder / path.name)
    for name, text in extra.items():
        (folder / name).write_text(text)
    return folder


def params_of(tenant: Tenant, dims: int = 384) -> MemSchemaParams:
    return MemSchemaParams(
        owner_role=tenant.owner_role,
        app_role=tenant.app_role,
        dims=tenant.embedding_dims or dims,
        fts_config=tenant.fts_config or "simple",
    )


async def run(folder: Path, runtime: Runtime, keys: TenantKeys):
    conn = await tenant_conn(runtime, keys)
    try:
        return await MemMigrations(folder).apply(conn, params_of(keys.tenant))
    finally:
        await conn.close()


async def versions(runtime: Runtime, keys: TenantKeys) -> list[int]:
    conn = await tenant_conn(runtime, keys)
    try:
        return [
            r["version"] for r in await conn.fetch("SELECT version FROM mem.schema_migrations ORDER BY 1")
        ]
    finally:
        await conn.close()


async def probe_rows(runtime: Runtime, keys: TenantKeys) -> int:
    conn = await tenant_conn(runtime, keys)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM mem.migration_probe"))
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def platform_with_probe(settings: Settings, tmp_path: Path) -> AsyncIterator[Platform]:
    """A second platform on the same control plane whose mem migrations include PROBE_FILE."""
    platform = Platform(
        settings,
        settings.database_url or "",
        mem_migrations=MemMigrations(migrations_dir(tmp_path, {PROBE_FILE: PROBE})),
    )
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


async def test_a_new_tenant_is_at_the_newest_version_with_every_file_recorded(runtime, tenant):
    assert tenant.tenant.mem_schema_version == NEWEST
    assert await versions(runtime, tenant) == SHIPPED_VERSIONS


async def test_a_new_migration_is_applied_once_and_a_second_run_applies_nothing(runtime, tenant, tmp_path):
    folder = migrations_dir(tmp_path, {PROBE_FILE: PROBE})

    first = await run(folder, runtime, tenant)
    second = await run(folder, runtime, tenant)

    assert (first.version, first.applied) == (NEWEST + 1, (PROBE_FILE,))
    assert (second.version, second.applied) == (NEWEST + 1, ())
    assert await versions(runtime, tenant) == [*SHIPPED_VERSIONS, NEWEST + 1]
    assert await probe_rows(runtime, tenant) == 1
    conn = await tenant_conn(runtime, tenant)
    try:
        owner = await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'migration_probe'")
        assert owner == tenant.tenant.owner_role
        column = "SELECT 1 FROM information_schema.columns WHERE table_name = 'memories' AND column_name = $1"
        assert await conn.fetchval(column, "importance") == 1
    finally:
        await conn.close()


async def test_after_a_migration_the_request_role_keeps_its_grants_and_gets_no_new_ones(
    client, runtime, tenant, tmp_path
):
    await run(migrations_dir(tmp_path, {PROBE_FILE: PROBE}), runtime, tenant)

    item = await add(client, tenant.service, "still writable after a migration")

    assert item["memory"] == "still writable after a migration"
    conn = await tenant_conn(runtime, tenant, as_app_role=True)
    try:
        # grants.sql lists what the app role may touch; a table it does not list stays closed.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM mem.migration_probe")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM mem.memory_history")
    finally:
        await conn.close()


async def test_the_init_endpoint_reports_the_files_it_applied_and_the_new_version(
    settings, runtime, tenant, platform_with_probe
):
    app = create_app(settings, runtime=dataclasses.replace(runtime, platform=platform_with_probe))
    url = f"/auth/v1/admin/init/mem-schema?dbKey={tenant.ref}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        first = await c.post(url, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        second = await c.post(url, headers={"authorization": f"Bearer {ADMIN_KEY}"})

    assert first.status_code == 200, first.text
    assert first.json() == {
        "tenants": [
            {"ref": tenant.ref, "status": "ok", "schema_version": NEWEST + 1, "applied": [PROBE_FILE]}
        ]
    }
    assert second.json() == {"tenants": [{"ref": tenant.ref, "status": "ok", "schema_version": NEWEST + 1}]}
    registered = await platform_with_probe.find_tenant(tenant.ref)
    assert registered is not None and registered.mem_schema_version == NEWEST + 1
    assert await probe_rows(runtime, tenant) == 1


async def test_two_runners_at_once_on_a_bare_tenant_apply_each_file_exactly_once(runtime, tmp_path):
    slow = "-- Test migration: holds the lock a while so the runners overlap.\nSELECT pg_sleep(0.3);\n"
    slow_file = numbered(2, "slow")
    folder = migrations_dir(tmp_path, {PROBE_FILE: PROBE, slow_file: slow})
    new = new_tenant("Bare", ref="bare" + secrets.token_hex(6))
    await runtime.platform.provisioner.create(new)  # a database with no mem schema yet
    keys = TenantKeys(await runtime.platform.registry.get(new.ref))

    first, second = await asyncio.gather(run(folder, runtime, keys), run(folder, runtime, keys))

    assert sorted(first.applied + second.applied) == [*(f.name for f in SHIPPED), PROBE_FILE, slow_file]
    assert first.version == second.version == NEWEST + 2
    assert await versions(runtime, keys) == [*SHIPPED_VERSIONS, NEWEST + 1, NEWEST + 2]
    assert await probe_rows(runtime, keys) == 1


async def test_a_failing_migration_rolls_back_alone_and_is_applied_once_fixed(runtime, tenant, tmp_path):
    broken = "ALTER TABLE mem.memories ADD COLUMN half_done int;\nSELECT 1 / 0;\n"
    broken_file = numbered(2, "broken")
    bad = migrations_dir(tmp_path / "bad", {PROBE_FILE: PROBE, broken_file: broken})

    with pytest.raises(asyncpg.DivisionByZeroError):
        await run(bad, runtime, tenant)

    assert await versions(runtime, tenant) == [*SHIPPED_VERSIONS, NEWEST + 1]
    conn = await tenant_conn(runtime, tenant)
    try:
        column = "SELECT 1 FROM information_schema.columns WHERE table_name = 'memories' AND column_name = $1"
        assert await conn.fetchval(column, "half_done") is None
    finally:
        await conn.close()
    fixed = migrations_dir(tmp_path / "fixed", {PROBE_FILE: PROBE, broken_file: broken.replace("1 / 0", "1")})
    outcome = await run(fixed, runtime, tenant)
    assert (outcome.version, outcome.applied) == (NEWEST + 2, (broken_file,))


async def test_a_migration_numbered_below_an_applied_one_is_refused(runtime, tenant, tmp_path):
    probe_file = numbered(2, "probe")
    await run(migrations_dir(tmp_path / "a", {probe_file: PROBE}), runtime, tenant)
    late = migrations_dir(tmp_path / "b", {numbered(1, "late"): "SELECT 1;\n", probe_file: PROBE})

    with pytest.raises(MigrationOutOfOrder):
        await run(late, runtime, tenant)

    assert await versions(runtime, tenant) == [*SHIPPED_VERSIONS, NEWEST + 2]


async def test_a_ref_with_a_trailing_newline_is_a_bad_request_not_a_server_error(client):
    response = await client.post(
        "/auth/v1/admin/tenants",
        json={"name": "Acme", "ref": "acme" + secrets.token_hex(3) + "\n"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_tenant_ref"


async def test_a_data_migration_reaches_every_row_though_the_owner_is_subject_to_row_security(
    client, runtime, tenant, tmp_path
):
    """Owner tables FORCE row-level security (003): the runner states the tenant-wide claim,
    or an UPDATE run as the owner would silently touch no row."""
    await add(client, tenant.service, "Alice's fact", user_id="alice")
    await add(client, tenant.service, "An agent's fact", user_id=None, agent_id="helper")
    touch = "UPDATE mem.memories SET metadata = metadata || '{\"migrated\": true}'::jsonb;\n"

    await run(migrations_dir(tmp_path, {numbered(1, "touch"): touch}), runtime, tenant)

    conn = await tenant_conn(runtime, tenant)
    try:
        rows = await conn.fetch("SELECT metadata->>'migrated' AS migrated FROM mem.memories")
    finally:
        await conn.close()
    assert [r["migrated"] for r in rows] == ["true", "true"]
