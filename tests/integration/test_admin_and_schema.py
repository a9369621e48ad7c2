"""The platform admin API, mem schema init and backfill, the disabled module, and database roles."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio

from app.asgi import build_runtime, close_runtime, create_app
from app.db import sqlfiles
from app.db.dsn import database_of, with_database
from app.runtime import Runtime
from tests.conftest import ADMIN_KEY, add, make_settings, set_row_claims, tenant_conn

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MEM_FILES = sqlfiles.numbered_files(sqlfiles.directory("mem"))
NEWEST_MEM_VERSION = max(f.version for f in MEM_FILES)


def _ref() -> str:
    return "t" + secrets.token_hex(6)


async def _create_via_api(
    client: httpx.AsyncClient, name: str = "Acme", ref: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/auth/v1/admin/tenants", json={"name": name, "ref": ref or _ref()}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _superuser_conn(runtime: Runtime, db_name: str) -> asyncpg.Connection:
    return await asyncpg.connect(with_database(runtime.platform.server_dsn, db_name))


# --- admin API -----------------------------------------------------------------------


async def test_admin_creates_a_tenant_whose_keys_are_hs256_jwts_signed_with_its_secret(client):
    ref = _ref()
    body = await _create_via_api(client, "Acme Corp", ref)

    assert body["ref"] == ref
    assert body["name"] == "Acme Corp"
    assert body["status"] == "active"
    assert body["mem_schema_version"] == NEWEST_MEM_VERSION
    assert body["embedding_dimensions"] == 384
    secret = body["jwt_secret"]
    for key_name, role in (("anon_key", "anon"), ("service_role_key", "service_role")):
        assert jwt.get_unverified_header(body[key_name])["alg"] == "HS256"
        claims = jwt.decode(body[key_name], secret, algorithms=["HS256"])
        assert claims["ref"] == ref
        assert claims["role"] == role
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(body[key_name], secret + "x", algorithms=["HS256"])


async def test_a_tenant_created_through_the_admin_api_can_add_and_list_memories(client):
    body = await _create_via_api(client)
    service = {"apikey": body["service_role_key"]}

    item = await add(client, service, "I prefer TypeScript", user_id="alice")
    listed = await client.get("/mem/v1/memories", params={"user_id": "alice"}, headers=service)

    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()["results"]] == [item["id"]]
    assert listed.json()["results"][0]["memory"] == "I prefer TypeScript"


async def test_the_tenant_list_shows_the_tenant_without_its_secrets(client, runtime):
    body = await _create_via_api(client)
    stored = await runtime.platform.find_tenant(body["ref"])
    assert stored is not None

    response = await client.get("/auth/v1/admin/tenants", headers=ADMIN)

    assert response.status_code == 200
    listed = {t["ref"]: t for t in response.json()["tenants"]}
    assert listed[body["ref"]]["name"] == "Acme"
    for tenant in listed.values():
        assert "jwt_secret" not in tenant
        assert "app_role_password" not in tenant
    assert body["jwt_secret"] not in response.text
    assert stored.app_role_password not in response.text


async def test_creating_a_tenant_with_a_taken_ref_is_a_conflict_and_keeps_the_first_tenant(client):
    body = await _create_via_api(client)
    service = {"apikey": body["service_role_key"]}
    await add(client, service, "survives the duplicate attempt")

    response = await client.post(
        "/auth/v1/admin/tenants", json={"name": "Again", "ref": body["ref"]}, headers=ADMIN
    )

    assert response.status_code == 409
    assert response.json()["code"] == "tenant_exists"
    listed = await client.get("/mem/v1/memories", params={"user_id": "alice"}, headers=service)
    assert listed.status_code == 200
    assert [m["memory"] for m in listed.json()["results"]] == ["survives the duplicate attempt"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"name": "Acme", "ref": "Bad-Ref"}, "invalid_tenant_ref"),
        ({"name": "Acme", "ref": "ab"}, "invalid_tenant_ref"),
        ({"name": "Acme", "ref": "1starts-with-digit"}, "invalid_tenant_ref"),
        ({"name": "Acme", "ref": "a" * 41}, "invalid_tenant_ref"),
        ({"name": ""}, "invalid_tenant_name"),
        ({"name": "   "}, "invalid_tenant_name"),
        ({"name": "x" * 201}, "invalid_tenant_name"),
    ],
    ids=[
        "uppercase-and-dash",
        "too-short",
        "leading-digit",
        "too-long",
        "empty-name",
        "blank-name",
        "long-name",
    ],
)
async def test_creating_a_tenant_with_a_bad_ref_or_name_is_a_bad_request(client, payload, code):
    response = await client.post("/auth/v1/admin/tenants", json=payload, headers=ADMIN)

    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    "how",
    ["no-key", "wrong-key", "basic-scheme", "tenant-service-key-as-bearer", "tenant-service-key-as-apikey"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/v1/admin/tenants"),
        ("GET", "/auth/v1/admin/tenants"),
        ("POST", "/auth/v1/admin/init/mem-schema"),
    ],
)
async def test_admin_routes_refuse_anything_but_the_platform_admin_key(client, tenant, how, method, path):
    service_key = tenant.service_role_key
    headers = {
        "no-key": {},
        "wrong-key": {"authorization": f"Bearer {ADMIN_KEY}x"},
        "basic-scheme": {"authorization": f"Basic {ADMIN_KEY}"},
        "tenant-service-key-as-bearer": {"apikey": service_key, "authorization": f"Bearer {service_key}"},
        "tenant-service-key-as-apikey": {"apikey": service_key},
    }[how]
    ref = _ref()

    response = await client.request(method, path, headers=headers, json={"name": "Nope", "ref": ref})

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_admin_key"
    listed = await client.get("/auth/v1/admin/tenants", headers=ADMIN)
    assert ref not in {t["ref"] for t in listed.json()["tenants"]}


# --- mem schema init -----------------------------------------------------------------


async def test_init_of_one_tenant_is_idempotent(client, runtime, tenant):
    before = await runtime.platform.fingerprint(tenant.ref)
    url = f"/auth/v1/admin/init/mem-schema?dbKey={tenant.ref}"

    first = await client.post(url, headers=ADMIN)
    second = await client.post(url, headers=ADMIN)

    assert first.status_code == 200, first.text
    assert first.json() == {
        "tenants": [{"ref": tenant.ref, "status": "ok", "schema_version": NEWEST_MEM_VERSION}]
    }
    assert second.status_code == 200
    assert second.json() == first.json()
    after = await runtime.platform.fingerprint(tenant.ref)
    assert after == before
    assert ("trigger", "memory_history_append_only") in after


async def test_init_keeps_existing_memories_and_config(client, tenant):
    item = await add(client, tenant.service, "kept across a re-init")
    put = await client.put(
        "/mem/v1/config", json={"settings": {"search.default-top-k": 3}}, headers=tenant.service
    )
    assert put.status_code == 200, put.text

    response = await client.post(f"/auth/v1/admin/init/mem-schema?dbKey={tenant.ref}", headers=ADMIN)

    assert response.status_code == 200
    got = await client.get(f"/mem/v1/memories/{item['id']}", headers=tenant.service)
    assert got.status_code == 200
    assert got.json()["memory"] == "kept across a re-init"
    config = await client.get("/mem/v1/config", headers=tenant.service)
    assert config.json()["overrides"] == {"search.default-top-k": 3}


async def test_init_without_db_key_reports_a_status_for_every_tenant(client, tenant):
    response = await client.post("/auth/v1/admin/init/mem-schema", headers=ADMIN)

    assert response.status_code == 200, response.text
    results = response.json()["tenants"]
    by_ref = {r["ref"]: r for r in results}
    assert by_ref[tenant.ref]["status"] == "ok"
    assert by_ref[tenant.ref]["schema_version"] == NEWEST_MEM_VERSION
    listed = await client.get("/auth/v1/admin/tenants", headers=ADMIN)
    assert set(by_ref) == {t["ref"] for t in listed.json()["tenants"]}
    assert all(r["status"] in ("ok", "error") for r in results)


async def test_init_of_an_unknown_tenant_is_not_found(client):
    response = await client.post(f"/auth/v1/admin/init/mem-schema?dbKey={_ref()}", headers=ADMIN)

    assert response.status_code == 404
    assert response.json()["code"] == "tenant_not_found"


# --- the module switched off ------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def disabled(platform_dsn, fake_provider) -> AsyncIterator[httpx.AsyncClient]:
    """A second service on the same control plane with nubase.mem.enabled = false."""
    settings = make_settings(platform_dsn, fake_provider).replace_mem(enabled=False)
    rt = await build_runtime(settings)
    try:
        app = create_app(settings, runtime=rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            yield c
    finally:
        await close_runtime(rt)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/mem/v1/memories"),
        ("GET", "/mem/v1/memories"),
        ("POST", "/mem/v1/search"),
        ("GET", "/mem/v1/config"),
        ("POST", "/mem/v1/reset"),
    ],
)
async def test_with_the_module_disabled_the_mem_api_does_not_exist(disabled, tenant, method, path):
    body = {"messages": "hello", "user_id": "alice", "query": "hello"} if method == "POST" else None

    response = await disabled.request(method, path, headers=tenant.service, json=body)

    assert response.status_code == 404, response.text
    assert response.json()["code"] == "route_not_found"


async def test_with_the_module_disabled_init_is_refused(disabled, tenant):
    one = await disabled.post(f"/auth/v1/admin/init/mem-schema?dbKey={tenant.ref}", headers=ADMIN)
    every = await disabled.post("/auth/v1/admin/init/mem-schema", headers=ADMIN)

    for response in (one, every):
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "mem_module_disabled"


async def test_a_tenant_created_while_disabled_gets_its_mem_schema_from_the_init_endpoint(
    disabled, client, runtime, tenant
):
    body = await _create_via_api(disabled, "Predates memory")
    ref = body["ref"]
    service = {"apikey": body["service_role_key"]}

    # Created without the module: no schema in its database, none recorded in the registry.
    assert body["mem_schema_version"] is None
    assert body["embedding_dimensions"] is None
    conn = await _superuser_conn(runtime, body["database"])
    try:
        assert await conn.fetchval("SELECT to_regnamespace('mem')") is None
    finally:
        await conn.close()

    # The enabled service knows the tenant but cannot serve it yet.
    missing = await client.post(
        "/mem/v1/memories", json={"messages": "hi", "user_id": "alice", "infer": False}, headers=service
    )
    assert missing.status_code == 409, missing.text
    assert missing.json()["code"] == "mem_schema_missing"

    init = await client.post(f"/auth/v1/admin/init/mem-schema?dbKey={ref}", headers=ADMIN)

    assert init.status_code == 200, init.text
    assert init.json() == {
        "tenants": [
            {
                "ref": ref,
                "status": "ok",
                "schema_version": NEWEST_MEM_VERSION,
                "applied": [f.name for f in MEM_FILES],
            }
        ]
    }
    assert await runtime.platform.fingerprint(ref) == await runtime.platform.fingerprint(tenant.ref)
    item = await add(client, service, "backfilled tenants work", user_id="alice")
    listed = await client.get("/mem/v1/memories", params={"user_id": "alice"}, headers=service)
    assert [m["id"] for m in listed.json()["results"]] == [item["id"]]
    config = await client.get("/mem/v1/config", headers=service)
    assert config.json()["embedding_dimensions"] == 384


# --- roles and the append-only history, in the database -----------------------------------


async def test_the_request_role_is_neither_superuser_nor_owner_of_the_mem_tables(runtime, tenant):
    conn = await tenant_conn(runtime, tenant, as_app_role=True)
    try:
        me = await conn.fetchval("SELECT current_user")
        assert me == tenant.tenant.app_role
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        owners = await conn.fetch("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'mem'")
        assert {r["tablename"] for r in owners} >= {"memories", "memory_history", "entities", "config"}
        assert all(r["tableowner"] != me for r in owners)
        assert all(r["tableowner"] == tenant.tenant.owner_role for r in owners)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE mem.intruder (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DROP TRIGGER memory_history_append_only ON mem.memory_history")
        # Becoming the owner would undo all of the above (and any row-level security later).
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f'SET ROLE "{tenant.tenant.owner_role}"')
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE mem.memory_history SET new_memory = 'rewritten'",
        "DELETE FROM mem.memory_history",
        "TRUNCATE mem.memory_history",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_the_request_role_cannot_rewrite_history(client, runtime, tenant, statement):
    await add(client, tenant.service, "a fact with history")
    conn = await tenant_conn(runtime, tenant, as_app_role=True)
    try:
        # Claims that let every row through: the refusal comes from the grants, not the policies.
        await set_row_claims(conn, "service_role")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM mem.memory_history") == 1
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE mem.memory_history SET new_memory = 'rewritten'", "DELETE FROM mem.memory_history"],
    ids=["update", "delete"],
)
async def test_even_the_superuser_cannot_update_or_delete_history_rows(client, runtime, tenant, statement):
    await add(client, tenant.service, "a fact with history")
    conn = await tenant_conn(runtime, tenant)
    try:
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is True
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT new_memory FROM mem.memory_history") == "a fact with history"
    finally:
        await conn.close()


async def test_a_tenants_request_role_cannot_connect_to_another_tenants_database(
    runtime, tenant, other_tenant
):
    # The embedded server trusts local connections, so this proves the CONNECT privilege, not a password.
    mine = tenant.tenant
    own = await tenant_conn(runtime, tenant, as_app_role=True)
    await own.close()
    foreign_dsn = with_database(
        runtime.platform.server_dsn,
        other_tenant.tenant.db_name,
        user=mine.app_role,
        password=mine.app_role_password,
    )

    with pytest.raises(
        (asyncpg.InsufficientPrivilegeError, asyncpg.InvalidAuthorizationSpecificationError)
    ) as refused:
        conn = await asyncpg.connect(foreign_dsn)
        await conn.close()

    assert other_tenant.tenant.db_name in str(refused.value)


async def test_a_tenants_request_role_cannot_read_the_tenant_registry(runtime, tenant):
    mine = tenant.tenant
    control_dsn = with_database(
        runtime.platform.control_dsn,
        database_of(runtime.platform.control_dsn),
        user=mine.app_role,
        password=mine.app_role_password,
    )
    try:
        conn = await asyncpg.connect(control_dsn)
    except (asyncpg.InsufficientPrivilegeError, asyncpg.InvalidAuthorizationSpecificationError):
        return  # not even allowed in: the registry and its JWT secrets are out of reach
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT jwt_secret FROM control.tenants")
    finally:
        await conn.close()
