"""Secrets at rest and the lifecycle of keys (issue 9, parts 4 and 5).

The control plane holds no tenant secret in plain text and refuses to start with another
master key; rows an older version left in plain text are sealed at start-up. Keys rotate
with a grace period, revocation reaches every replica within MEM_KEY_CHECK_SECONDS, API keys
need an exp, and user tokens need the audience, the tenant's issuer when it has one, and a
lifetime no longer than the maximum.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio

from app.asgi import build_runtime, close_runtime, create_app
from app.auth.tokens import mint_api_key, mint_user_token
from app.cli.admin_key import ensure_admin_key
from app.cli.banner import DEMO_REF
from app.cli.serve import banner_text, wants_demo
from app.db import sqlfiles
from app.db.dsn import with_database
from app.runtime import Runtime
from app.settings import Settings
from app.tenancy import repo
from app.tenancy.crypto import MasterKey, MasterKeyError, development_master_key
from app.tenancy.service import Platform
from tests.conftest import ADMIN_KEY, MASTER_KEY, TenantKeys, add, new_tenant, table_counts

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MEM = "/mem/v1"
OTHER_MASTER_KEY = base64.b64encode(b"o" * 32).decode()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text


async def control_conn(runtime: Runtime) -> asyncpg.Connection:
    return await asyncpg.connect(runtime.platform.control_dsn)


async def stats(client: httpx.AsyncClient, api_key: str) -> httpx.Response:
    return await client.get(f"{MEM}/stats", headers={"apikey": api_key})


async def signing_keys(runtime: Runtime, ref: str) -> list[dict[str, Any]]:
    conn = await control_conn(runtime)
    try:
        rows = await conn.fetch(
            "SELECT kid, retired_at, valid_until FROM control.signing_keys WHERE ref = $1 ORDER BY created_at",
            ref,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


# --- secrets at rest ----------------------------------------------------------------------------------------


async def test_the_control_plane_holds_no_secret_in_plain_text(client, runtime, tenant):
    created = (
        await client.post(
            "/auth/v1/admin/tenants",
            json={"name": "Sealed", "ref": "s" + secrets.token_hex(6)},
            headers=ADMIN,
        )
    ).json()
    conn = await control_conn(runtime)
    try:
        rows = [
            *await conn.fetch(
                "SELECT * FROM control.tenants WHERE ref = ANY($1)", [tenant.ref, created["ref"]]
            ),
            *await conn.fetch(
                "SELECT * FROM control.signing_keys WHERE ref = ANY($1)", [tenant.ref, created["ref"]]
            ),
        ]
    finally:
        await conn.close()
    # Every column as text, and every bytea as text and hex: no way of looking shows a secret.
    dump = " ".join(
        f"{v!r} {v.hex()} {bytes(v).decode('latin-1')}" if isinstance(v, bytes) else repr(v)
        for row in rows
        for v in row.values()
    )
    for plain in (
        tenant.tenant.jwt_secret,
        tenant.tenant.app_role_password,
        created["jwt_secret"],
        created["service_role_key"],
        created["anon_key"],
    ):
        assert plain not in dump
    tenant_rows = [r for r in rows if "db_name" in r]
    assert len(tenant_rows) == 2
    assert all(r["jwt_secret"] is None and r["app_role_password"] is None for r in tenant_rows)
    assert all(
        r["app_role_password_sealed"] and r["master_key_id"] == MasterKey.from_base64(MASTER_KEY).key_id
        for r in tenant_rows
    )
    assert "anon_key" not in tenant_rows[0] and "service_role_key" not in tenant_rows[0], (
        "minted keys are not stored"
    )


async def test_sealed_secrets_open_to_what_was_sealed_and_only_in_their_own_place(runtime, tenant):
    conn = await control_conn(runtime)
    try:
        record = await repo.find_tenant(conn, tenant.ref)
    finally:
        await conn.close()
    assert record is not None
    opened = runtime.platform.vault.open(record)
    assert opened.jwt_secret == tenant.tenant.jwt_secret
    assert opened.app_role_password == tenant.tenant.app_role_password
    master = MasterKey.from_base64(MASTER_KEY)
    (key,) = record.keys
    with pytest.raises(MasterKeyError, match="does not open"):
        master.open(key.secret_sealed, f"jwt_secret:otherref:{key.kid}")
    with pytest.raises(MasterKeyError, match="does not open"):
        master.open(
            key.secret_sealed[:-1] + bytes([key.secret_sealed[-1] ^ 1]),
            f"jwt_secret:{tenant.ref}:{key.kid}",
        )
    assert master.open(key.secret_sealed, f"jwt_secret:{tenant.ref}:{key.kid}") == tenant.tenant.jwt_secret


async def test_a_wrong_master_key_stops_the_start_naming_both_key_ids(settings, tenant):
    wrong = settings.replace(master_key=OTHER_MASTER_KEY)
    platform = Platform(wrong, settings.database_url or "")
    with pytest.raises(MasterKeyError) as caught:
        await platform.start()
    message = caught.value.message
    assert MasterKey.from_base64(MASTER_KEY).key_id in message
    assert MasterKey.from_base64(OTHER_MASTER_KEY).key_id in message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        pytest.param("not base64!", "not base64", id="not-base64"),
        pytest.param(base64.b64encode(b"short").decode(), "32 bytes", id="too-short"),
        pytest.param(None, "MEM_MASTER_KEY", id="missing-with-database-url"),
    ],
)
def test_a_missing_or_malformed_master_key_is_refused_clearly(settings, value, words):
    with pytest.raises(MasterKeyError, match=words):
        Platform(settings.replace(master_key=value), settings.database_url or "")


def test_the_development_master_key_and_admin_key_are_created_private_and_kept(tmp_path: Path):
    first = development_master_key(tmp_path)
    assert stat.S_IMODE((tmp_path / "master_key").stat().st_mode) == 0o600
    assert development_master_key(tmp_path) == first
    settings = Settings(data_dir=tmp_path)
    key = ensure_admin_key(settings).admin_key
    assert stat.S_IMODE((tmp_path / "admin_key").stat().st_mode) == 0o600
    assert key and ensure_admin_key(settings).admin_key == key
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest_asyncio.fixture(loop_scope="session")
async def legacy_control_plane(database_url: str) -> AsyncIterator[str]:
    """A control plane as an older version left it: 001 applied, secrets and keys in plain text."""
    name = f"memory_legacy_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(database_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    dsn = with_database(database_url, name)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute((sqlfiles.directory("control") / "001_tenants.sql").read_text())
        await conn.execute("INSERT INTO control.schema_migrations (version) VALUES ('001_tenants.sql')")
        yield dsn
    finally:
        await conn.close()
        admin = await asyncpg.connect(database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_start_up_seals_the_plain_text_rows_an_older_version_left(legacy_control_plane, settings):
    secret, password = secrets.token_urlsafe(48), secrets.token_hex(24)
    old_key = mint_api_key(secret, "legacyone", "service_role")  # no kid: minted before rotation existed
    conn = await asyncpg.connect(legacy_control_plane)
    try:
        await conn.execute(
            """INSERT INTO control.tenants (ref, name, db_name, owner_role, app_role, app_role_password,
                   jwt_secret, anon_key, service_role_key, status)
               VALUES ('legacyone', 'Legacy', 'mem_legacyone', 'mem_owner_legacyone', 'mem_app_legacyone',
                       $1, $2, 'old-anon', $3, 'active')""",
            password,
            secret,
            old_key,
        )
    finally:
        await conn.close()
    legacy = settings.replace(database_url=legacy_control_plane)
    for _ in range(2):  # a second start (another replica, a restart) finds nothing left to seal
        platform = Platform(legacy, legacy_control_plane)
        await platform.start()
        try:
            tenant = await platform.get_tenant("legacyone")
        finally:
            await platform.stop()
        assert (tenant.jwt_secret, tenant.app_role_password) == (secret, password)
    conn = await asyncpg.connect(legacy_control_plane)
    try:
        row = await conn.fetchrow("SELECT * FROM control.tenants WHERE ref = 'legacyone'")
        keys = await conn.fetch("SELECT * FROM control.signing_keys WHERE ref = 'legacyone'")
    finally:
        await conn.close()
    assert row["jwt_secret"] is None and row["app_role_password"] is None
    assert secret not in repr(dict(row)) and old_key not in repr(dict(row)) and len(keys) == 1
    from app.auth.tokens import verify_api_key

    assert verify_api_key(old_key, tenant.keys, "legacyone") == "service_role", "old keys still verify"


async def test_a_new_master_key_reseals_everything_when_the_old_one_is_named_previous(
    legacy_control_plane, settings
):
    conn = await asyncpg.connect(legacy_control_plane)
    try:
        await conn.execute(
            """INSERT INTO control.tenants (ref, name, db_name, owner_role, app_role, app_role_password,
                   jwt_secret, anon_key, service_role_key, status)
               VALUES ('rekeyone', 'Rekey', 'mem_rekeyone', 'mem_owner_rekeyone', 'mem_app_rekeyone',
                       $1, $2, 'a', 'b', 'active')""",
            secrets.token_hex(24),
            secrets.token_urlsafe(48),
        )
    finally:
        await conn.close()
    old = settings.replace(database_url=legacy_control_plane)
    new = old.replace(master_key=OTHER_MASTER_KEY)

    async def opened(s: Settings) -> tuple[str, str]:
        platform = Platform(s, legacy_control_plane)
        await platform.start()
        try:
            tenant = await platform.get_tenant("rekeyone")
        finally:
            await platform.stop()
        return tenant.jwt_secret, tenant.app_role_password

    before = await opened(old)  # sealed with the session's master key
    with pytest.raises(MasterKeyError) as caught:
        await opened(new)
    assert "MEM_MASTER_KEY_PREVIOUS" in (caught.value.hint or "")
    assert await opened(new.replace(master_key_previous=MASTER_KEY)) == before
    assert await opened(new) == before, "everything was resealed: the old key is no longer needed"
    conn = await asyncpg.connect(legacy_control_plane)
    try:
        ids = await repo.master_key_ids(conn)
    finally:
        await conn.close()
    assert ids == {MasterKey.from_base64(OTHER_MASTER_KEY).key_id}


# --- rotation and revocation --------------------------------------------------------------------------------


async def test_rotation_keeps_the_old_keys_for_the_grace_period_and_revocation_ends_it(
    client, runtime, tenant
):
    old_key, old_kid = tenant.service_role_key, tenant.tenant.kid
    old_user = tenant.user(f"alice-{secrets.token_hex(3)}", kid=old_kid)
    rotated = await client.post(f"/auth/v1/admin/tenants/{tenant.ref}/rotate-keys", headers=ADMIN)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["kid"] != old_kid and body["previous_kid"] == old_kid
    assert body["jwt_secret"] != tenant.tenant.jwt_secret
    assert jwt.get_unverified_header(body["service_role_key"])["kid"] == body["kid"]
    # Both generations work during the grace period.
    assert (await stats(client, old_key)).status_code == 200
    assert (await stats(client, body["service_role_key"])).status_code == 200
    assert (await client.get(f"{MEM}/stats", headers=old_user)).status_code == 200
    new_user = {
        "apikey": body["anon_key"],
        "authorization": f"Bearer {mint_user_token(body['jwt_secret'], 'bob', kid=body['kid'])}",
    }
    assert (await client.get(f"{MEM}/stats", headers=new_user)).status_code == 200
    rows = await signing_keys(runtime, tenant.ref)
    assert [r["kid"] for r in rows] == [old_kid, body["kid"]]
    assert rows[0]["retired_at"] is not None and rows[0]["valid_until"] is not None
    assert rows[1]["retired_at"] is None
    assert (await client.get(f"/auth/v1/admin/tenants/{tenant.ref}/keys", headers=ADMIN)).json()[
        "kid"
    ] == body["kid"]

    revoked = await client.post(f"/auth/v1/admin/tenants/{tenant.ref}/revoke-keys", headers=ADMIN)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] == [old_kid]
    assert_error(await stats(client, old_key), 401, "invalid_api_key")
    assert_error(await client.get(f"{MEM}/stats", headers=old_user), 401, "invalid_api_key")
    assert (await stats(client, body["service_role_key"])).status_code == 200
    assert [r["kid"] for r in await signing_keys(runtime, tenant.ref)] == [body["kid"]]


async def test_rotation_without_grace_refuses_the_old_keys_at_once(client, tenant):
    old_key = tenant.service_role_key
    old_token = tenant.user("alice")
    rotated = await client.post(
        f"/auth/v1/admin/tenants/{tenant.ref}/rotate-keys", params={"grace_seconds": 0}, headers=ADMIN
    )
    assert rotated.status_code == 200, rotated.text
    assert_error(await stats(client, old_key), 401, "invalid_api_key")
    fresh = {"apikey": rotated.json()["anon_key"], "authorization": old_token["authorization"]}
    assert_error(await client.get(f"{MEM}/stats", headers=fresh), 401, "invalid_token")
    assert (await stats(client, rotated.json()["service_role_key"])).status_code == 200


async def test_the_old_keys_stop_when_the_grace_period_ends(client, tenant):
    old_key = tenant.service_role_key
    rotated = await client.post(
        f"/auth/v1/admin/tenants/{tenant.ref}/rotate-keys", params={"grace_seconds": 1}, headers=ADMIN
    )
    assert rotated.status_code == 200, rotated.text
    assert (await stats(client, old_key)).status_code == 200
    await asyncio.sleep(1.5)
    assert_error(await stats(client, old_key), 401, "invalid_api_key")


@pytest_asyncio.fixture(loop_scope="session")
async def second_replica(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another runtime on the same control plane: its own registry and tenant cache."""
    runtime = await build_runtime(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://replica.test") as c:
            yield c
    finally:
        await close_runtime(runtime)


async def test_a_revocation_reaches_another_replica_within_its_key_check_interval(
    client, second_replica, settings, tenant
):
    old_key = tenant.service_role_key
    assert (await stats(second_replica, old_key)).status_code == 200  # now in the replica's cache
    rotated = await client.post(f"/auth/v1/admin/tenants/{tenant.ref}/rotate-keys", headers=ADMIN)
    assert rotated.status_code == 200
    assert (await stats(second_replica, old_key)).status_code == 200, "still in its grace period"
    revoked_at = time.monotonic()
    assert (
        await client.post(f"/auth/v1/admin/tenants/{tenant.ref}/revoke-keys", headers=ADMIN)
    ).status_code == 200
    while (await stats(second_replica, old_key)).status_code == 200:
        assert time.monotonic() - revoked_at < settings.key_check_seconds + 2, "the replica still accepts it"
        await asyncio.sleep(0.1)
    refused_after = time.monotonic() - revoked_at
    assert refused_after < 30, "well before the 30 s tenant cache would have expired"
    assert_error(await stats(second_replica, old_key), 401, "invalid_api_key")
    assert (await stats(second_replica, rotated.json()["service_role_key"])).status_code == 200


async def test_revoking_one_kid_leaves_the_others(client, runtime, tenant):
    first = await client.post(f"/auth/v1/admin/tenants/{tenant.ref}/rotate-keys", headers=ADMIN)
    second = await client.post(f"/auth/v1/admin/tenants/{tenant.ref}/rotate-keys", headers=ADMIN)
    kid0, kid1, kid2 = tenant.tenant.kid, first.json()["kid"], second.json()["kid"]
    revoked = await client.post(
        f"/auth/v1/admin/tenants/{tenant.ref}/revoke-keys", params={"kid": kid0}, headers=ADMIN
    )
    assert revoked.json()["revoked"] == [kid0]
    assert_error(await stats(client, tenant.service_role_key), 401, "invalid_api_key")
    assert (await stats(client, first.json()["service_role_key"])).status_code == 200
    assert sorted(r["kid"] for r in await signing_keys(runtime, tenant.ref)) == sorted([kid1, kid2])


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        pytest.param(
            "revoke-keys", {"kid": "current"}, 409, "current_key_not_revocable", id="revoke-current"
        ),
        pytest.param(
            "revoke-keys", {"kid": "nosuchkid"}, 404, "signing_key_not_found", id="revoke-unknown-kid"
        ),
        pytest.param("rotate-keys", {"grace_seconds": -1}, 400, None, id="negative-grace"),
        pytest.param("rotate-keys", {"grace_seconds": 99_999_999}, 400, None, id="grace-over-30-days"),
        pytest.param("rotate-keys", {"grace_seconds": "soon"}, 400, None, id="grace-not-a-number"),
    ],
)
async def test_bad_key_requests_are_refused_and_change_nothing(
    client, runtime, tenant, path, params, status, code
):
    before = await signing_keys(runtime, tenant.ref)
    if params.get("kid") == "current":
        params = {"kid": tenant.tenant.kid}
    response = await client.post(f"/auth/v1/admin/tenants/{tenant.ref}/{path}", params=params, headers=ADMIN)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["code"] == code
    assert await signing_keys(runtime, tenant.ref) == before
    assert (await stats(client, tenant.service_role_key)).status_code == 200


@pytest.mark.parametrize("path", ["rotate-keys", "revoke-keys"])
@pytest.mark.parametrize("how", ["anonymous", "wrong-admin-key", "tenant-service-key", "unknown-tenant"])
async def test_only_the_platform_admin_rotates_or_revokes(client, runtime, tenant, other_tenant, path, how):
    before = await signing_keys(runtime, tenant.ref)
    ref = "nosuchtenant" if how == "unknown-tenant" else tenant.ref
    headers = {
        "anonymous": {},
        "wrong-admin-key": {"authorization": f"Bearer {ADMIN_KEY}x"},
        "tenant-service-key": {
            "apikey": tenant.service_role_key,
            "authorization": f"Bearer {tenant.service_role_key}",
        },
        "unknown-tenant": ADMIN,
    }[how]
    response = await client.post(f"/auth/v1/admin/tenants/{ref}/{path}", headers=headers)
    if how == "unknown-tenant":
        assert_error(response, 404, "tenant_not_found")
    else:
        assert_error(response, 401, "invalid_admin_key")
    assert await signing_keys(runtime, tenant.ref) == before
    assert len(await signing_keys(runtime, other_tenant.ref)) == 1


# --- what keys and tokens must carry ------------------------------------------------------------------------


def _api_key(keys: TenantKeys, **payload: Any) -> str:
    claims = {"iss": "memory", "ref": keys.ref, "role": "service_role", "iat": int(time.time()), **payload}
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None},
        keys.tenant.jwt_secret,
        "HS256",
        headers={"kid": keys.tenant.kid},
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="no-exp"),
        pytest.param({"exp": str(int(time.time()) + 3600)}, id="exp-a-string"),
    ],
)
async def test_an_api_key_without_a_numeric_exp_is_refused(client, runtime, tenant, payload):
    before = await table_counts(runtime, tenant)
    key = _api_key(tenant, **payload)
    response = await client.post(
        f"{MEM}/memories",
        json={"messages": "hi", "user_id": "alice", "infer": False},
        headers={"apikey": key},
    )
    assert_error(response, 401, "invalid_api_key")
    assert await table_counts(runtime, tenant) == before


def _user_token(keys: TenantKeys, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": "alice",
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, keys.tenant.jwt_secret, "HS256")


USER_TOKEN_CASES = [
    pytest.param({"aud": None}, "invalid_token", id="no-aud"),
    pytest.param({"aud": "someone-else"}, "invalid_token", id="wrong-aud"),
    pytest.param({"exp": str(int(time.time()) + 3600)}, "invalid_token", id="exp-a-string"),
    pytest.param({"iat": None}, "invalid_token", id="no-iat"),
    pytest.param({"exp": 32503680000}, "token_lifetime_too_long", id="exp-in-year-3000"),
    pytest.param({"exp": int(time.time()) + 2 * 86_400}, "token_lifetime_too_long", id="lifetime-two-days"),
]


@pytest.mark.parametrize(("overrides", "code"), USER_TOKEN_CASES)
async def test_a_user_token_missing_what_it_must_carry_is_refused(client, runtime, tenant, overrides, code):
    before = await table_counts(runtime, tenant)
    headers = {"apikey": tenant.anon_key, "authorization": f"Bearer {_user_token(tenant, **overrides)}"}
    response = await client.post(f"{MEM}/memories", json={"messages": "hi", "infer": False}, headers=headers)
    assert_error(response, 401, code)
    assert await table_counts(runtime, tenant) == before
    good = {"apikey": tenant.anon_key, "authorization": f"Bearer {_user_token(tenant)}"}
    assert (await client.get(f"{MEM}/memories", params={"user_id": "alice"}, headers=good)).status_code == 200


async def test_a_tenant_with_an_issuer_accepts_only_tokens_from_it(client, runtime):
    issuer = "https://auth.example.com/auth/v1"
    keys = await new_tenant(runtime, "With issuer", jwt_issuer=issuer)
    for iss, status in ((issuer, 200), ("https://evil.example.com/auth/v1", 401), (None, 401)):
        headers = {"apikey": keys.anon_key, "authorization": f"Bearer {_user_token(keys, iss=iss)}"}
        response = await client.get(f"{MEM}/memories", params={"user_id": "alice"}, headers=headers)
        assert response.status_code == status, (iss, response.text)
        if status == 401:
            assert response.json()["code"] == "invalid_token"
    await add(client, keys.service, "Alice likes tea")
    created = await client.post(
        "/auth/v1/admin/tenants",
        json={"name": "Bad issuer", "ref": "b" + secrets.token_hex(6), "jwtIssuer": ""},
        headers=ADMIN,
    )
    assert_error(created, 400, "invalid_jwt_issuer")


# --- the banner and the demo tenant -------------------------------------------------------------------------


async def test_with_database_url_there_is_no_demo_tenant_and_no_secret_in_the_banner(settings, runtime):
    assert settings.database_url and not wants_demo(settings)
    assert wants_demo(settings.replace(create_demo=True))
    assert wants_demo(settings.replace(database_url=None))
    assert not wants_demo(settings.replace(database_url=None, create_demo=False))
    text = await banner_text(settings, runtime)
    assert "Memory is running." in text and settings.api_url in text
    assert ADMIN_KEY not in text and "key:" not in text.lower()
    assert await runtime.platform.find_tenant(DEMO_REF) is None
