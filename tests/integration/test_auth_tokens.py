"""Who gets in at all: anonymous callers, forged and broken tokens, and JWKS-verified user tokens.

Every refusal is checked for its status and stable `code`, and for leaving the data as it was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from app.auth.tokens import API_KEY_LIFETIME, mint_api_key
from app.runtime import Runtime
from tests.conftest import TenantKeys, add, new_tenant, table_counts, tenant_conn

MEM = "/mem/v1"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def user_claims(sub: str | None = "bob", **overrides: Any) -> dict[str, Any]:
    """GoTrue-shaped claims; an override of None removes the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "aud": "authenticated",
        "role": "authenticated",
        "session_id": "6a1c3c7e-0000-4000-8000-000000000001",
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    return {k: v for k, v in claims.items() if v is not None}


def unsigned_token(claims: dict[str, Any]) -> str:
    """`alg: none`: a header, a payload and an empty signature, the way an attacker writes it."""
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."


def hmac_token(claims: dict[str, Any], key: bytes, *, kid: str | None = None) -> str:
    """HS256 by hand, so any bytes (a public key's PEM, say) can be the HMAC key; PyJWT refuses that."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{segment(header)}.{segment(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def with_header(token: str, header: dict[str, Any]) -> str:
    return ".".join([segment(header), *token.split(".")[1:]])


def with_payload(token: str, claims: dict[str, Any]) -> str:
    """Swap the claims of a signed token and keep its signature, as a tampering client would."""
    header, _, signature = token.split(".")
    return f"{header}.{segment(claims)}.{signature}"


def bearer(keys: TenantKeys, token: str) -> dict[str, str]:
    return {**keys.anon, "authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Target:
    keys: TenantKeys
    alice_id: str
    entity_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target(client: httpx.AsyncClient, runtime: Runtime) -> Target:
    """One tenant holding alice's memory; shared because every test here must leave it untouched."""
    keys = await new_tenant(runtime, "Auth target")
    item = await add(client, keys.service, "Alice's diary entry", user_id="alice")
    conn = await tenant_conn(runtime, keys)
    try:
        entity_id = await conn.fetchval(
            "INSERT INTO mem.entities (user_id, text, entity_type) VALUES ('alice', 'Diary', 'other') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO mem.entity_links (entity_id, memory_id) VALUES ($1, $2)", entity_id, UUID(item["id"])
        )
    finally:
        await conn.close()
    return Target(keys, item["id"], str(entity_id))


async def snapshot(client: httpx.AsyncClient, runtime: Runtime, t: Target) -> dict[str, Any]:
    memory = await client.get(f"{MEM}/memories/{t.alice_id}", headers=t.keys.service)
    return {"counts": await table_counts(runtime, t.keys), "memory": (memory.status_code, memory.json())}


# --- 2. anonymous callers, on every route ------------------------------------------------------------------

ROUTES = [
    pytest.param("POST", "/memories", None, {"messages": "hi", "infer": False, "user_id": "alice"}, id="add"),
    pytest.param(
        "POST", "/memories", None, {"messages": "hi", "user_id": "alice", "async": True}, id="add-async"
    ),
    pytest.param("GET", "/events", None, None, id="list-events"),
    pytest.param("GET", "/events/{id}", None, None, id="get-event"),
    pytest.param("GET", "/memories", {"user_id": "alice"}, None, id="list"),
    pytest.param("DELETE", "/memories", {"user_id": "alice"}, None, id="delete-all"),
    pytest.param("GET", "/memories/{id}", None, None, id="get"),
    pytest.param("PUT", "/memories/{id}", None, {"text": "changed"}, id="update"),
    pytest.param("DELETE", "/memories/{id}", None, None, id="delete"),
    pytest.param("GET", "/memories/{id}/history", None, None, id="history"),
    pytest.param("GET", "/memories/{id}/entities", None, None, id="entities"),
    pytest.param("POST", "/search", None, {"query": "diary", "user_id": "alice"}, id="search"),
    pytest.param("GET", "/stats", None, None, id="stats"),
    pytest.param("GET", "/config", None, None, id="get-config"),
    pytest.param("PUT", "/config", None, {"settings": {"search.default-top-k": 5}}, id="put-config"),
    pytest.param("POST", "/reset", None, None, id="reset"),
    pytest.param("GET", "/entities", {"user_id": "alice"}, None, id="list-entities"),
    pytest.param("GET", "/entities/{entity}", None, None, id="get-entity"),
    pytest.param("DELETE", "/entities/{entity}", None, None, id="delete-entity"),
]

ANONYMOUS = [
    pytest.param("anon-apikey-only", 403, "anonymous_not_allowed", id="apikey-only"),
    pytest.param("bearer-is-the-apikey", 403, "anonymous_not_allowed", id="bearer-equals-apikey"),
    pytest.param("no-apikey", 401, "missing_api_key", id="no-apikey"),
    pytest.param("no-apikey-user-bearer", 401, "missing_api_key", id="user-bearer-without-apikey"),
    pytest.param("garbage-apikey", 401, "invalid_api_key", id="garbage-apikey"),
    pytest.param("garbage-apikey-user-bearer", 401, "invalid_api_key", id="garbage-apikey-with-user-bearer"),
]


def anonymous_headers(keys: TenantKeys, mode: str) -> dict[str, str]:
    user = f"Bearer {keys.user_token('alice')}"
    return {
        "anon-apikey-only": keys.anon,
        "bearer-is-the-apikey": {**keys.anon, "authorization": f"Bearer {keys.anon_key}"},
        "no-apikey": {},
        "no-apikey-user-bearer": {"authorization": user},
        "garbage-apikey": {"apikey": "garbage"},
        "garbage-apikey-user-bearer": {"apikey": "garbage", "authorization": user},
    }[mode]


@pytest.mark.parametrize(("mode", "status", "code"), ANONYMOUS)
@pytest.mark.parametrize(("method", "path", "params", "body"), ROUTES)
async def test_anonymous_caller_is_refused_on_every_route(
    client, runtime, target, method, path, params, body, mode, status, code
):
    before = await snapshot(client, runtime, target)
    response = await client.request(
        method,
        MEM + path.format(id=target.alice_id, entity=target.entity_id),
        params=params,
        json=body,
        headers=anonymous_headers(target.keys, mode),
    )
    assert_error(response, status, code)
    assert await snapshot(client, runtime, target) == before


@pytest.mark.parametrize(("method", "path", "params", "body"), [r for r in ROUTES if "{" in r.values[1]])
async def test_anonymous_caller_gets_the_same_answer_for_a_real_and_an_unknown_id(
    client, target, method, path, params, body
):
    """The refusal comes before any lookup, so an anonymous caller can't probe which ids exist."""
    real_path = MEM + path.format(id=target.alice_id, entity=target.entity_id)
    unknown_path = MEM + path.format(id=UNKNOWN_ID, entity=UNKNOWN_ID)
    real = await client.request(method, real_path, json=body, headers=target.keys.anon)
    unknown = await client.request(method, unknown_path, json=body, headers=target.keys.anon)
    assert_error(real, 403, "anonymous_not_allowed")
    assert (unknown.status_code, unknown.json()) == (real.status_code, real.json())


# --- 4. attacks on the user token ---------------------------------------------------------------------------


def attack_token(keys: TenantKeys, attack: str) -> str:
    secret = keys.tenant.jwt_secret
    now = int(time.time())
    alice = user_claims("alice")
    return {
        "alg-none": lambda: unsigned_token(alice),
        "alg-none-uppercase": lambda: with_header(unsigned_token(alice), {"alg": "NONE", "typ": "JWT"}),
        "expired": lambda: jwt.encode(user_claims("alice", iat=now - 7200, exp=now - 3600), secret, "HS256"),
        "not-yet-valid": lambda: jwt.encode(user_claims("alice", nbf=now + 600), secret, "HS256"),
        "wrong-secret": lambda: jwt.encode(alice, "another-secret-of-at-least-32-characters!", "HS256"),
        "tampered-payload": lambda: with_payload(jwt.encode(user_claims("bob"), secret, "HS256"), alice),
        "audience-other": lambda: jwt.encode(user_claims("alice", aud="other"), secret, "HS256"),
        "audience-list-without-users": lambda: jwt.encode(
            user_claims("alice", aud=["a", "b"]), secret, "HS256"
        ),
        "audience-not-a-string": lambda: jwt.encode(user_claims("alice", aud=5), secret, "HS256"),
        "no-subject": lambda: jwt.encode(user_claims(None), secret, "HS256"),
        "empty-subject": lambda: jwt.encode(user_claims(""), secret, "HS256"),
        "no-expiry": lambda: jwt.encode(user_claims("alice", exp=None), secret, "HS256"),
        "hs512": lambda: jwt.encode(alice, secret, "HS512"),
        "es256-without-jwks": lambda: jwt.encode(
            alice, ec.generate_private_key(ec.SECP256R1()), "ES256", headers={"kid": "k1"}
        ),
        "not-a-jwt": lambda: "not-a-jwt",
        "service-role-key": lambda: keys.service_role_key,
        "service-role-jwt-with-subject": lambda: jwt.encode(
            user_claims("alice", role="service_role"), secret, "HS256"
        ),
        "other-anon-key": lambda: mint_api_key(secret, keys.ref, "anon", issued_at=now - 60),
        "unknown-role": lambda: jwt.encode(user_claims("alice", role="supabase_admin"), secret, "HS256"),
    }[attack]()


ATTACKS = [
    pytest.param("alg-none", 401, "invalid_token"),
    pytest.param("alg-none-uppercase", 401, "invalid_token"),
    pytest.param("expired", 401, "token_expired"),
    pytest.param("not-yet-valid", 401, "invalid_token"),
    pytest.param("wrong-secret", 401, "invalid_token"),
    pytest.param("tampered-payload", 401, "invalid_token"),
    pytest.param("audience-other", 401, "invalid_token"),
    pytest.param("audience-list-without-users", 401, "invalid_token"),
    pytest.param("audience-not-a-string", 401, "invalid_token"),
    pytest.param("no-subject", 401, "invalid_token"),
    pytest.param("empty-subject", 401, "invalid_token"),
    pytest.param("no-expiry", 401, "invalid_token"),
    pytest.param("hs512", 401, "invalid_token"),
    pytest.param("es256-without-jwks", 401, "invalid_token"),
    pytest.param("not-a-jwt", 401, "invalid_token"),
    pytest.param("service-role-key", 403, "not_a_user_token"),
    pytest.param("service-role-jwt-with-subject", 403, "not_a_user_token"),
    pytest.param("other-anon-key", 403, "not_a_user_token"),
    pytest.param("unknown-role", 403, "not_a_user_token"),
]


@pytest.mark.parametrize(("attack", "status", "code"), ATTACKS)
async def test_forged_or_broken_user_token_gives_no_access(client, runtime, target, attack, status, code):
    headers = bearer(target.keys, attack_token(target.keys, attack))
    before = await snapshot(client, runtime, target)
    assert_error(await client.get(f"{MEM}/memories/{target.alice_id}", headers=headers), status, code)
    assert_error(
        await client.get(f"{MEM}/memories", params={"user_id": "alice"}, headers=headers), status, code
    )
    assert_error(await client.get(f"{MEM}/memories", headers=headers), status, code)
    assert_error(await client.delete(f"{MEM}/memories/{target.alice_id}", headers=headers), status, code)
    assert_error(await client.get(f"{MEM}/config", headers=headers), status, code)
    assert await snapshot(client, runtime, target) == before


async def test_bearer_with_bytes_outside_ascii_is_refused_not_a_server_error(client, runtime, target):
    before = await snapshot(client, runtime, target)
    headers = {"apikey": target.keys.anon_key, "authorization": b"Bearer \xe9t\xe9.\xff.\x00"}
    assert_error(await client.get(f"{MEM}/memories", headers=headers), 401, "invalid_token")
    garbage_key = {"apikey": b"\xe9\xff"}
    assert_error(await client.get(f"{MEM}/memories", headers=garbage_key), 401, "invalid_api_key")
    assert await snapshot(client, runtime, target) == before


async def test_the_users_own_valid_token_is_the_control_for_the_attacks(client, target):
    got = await client.get(f"{MEM}/memories/{target.alice_id}", headers=target.keys.user("alice"))
    assert got.status_code == 200 and got.json()["memory"] == "Alice's diary entry"


def api_key_attack(keys: TenantKeys, attack: str) -> str:
    secret, ref = keys.tenant.jwt_secret, keys.ref
    long_ago = int(time.time()) - API_KEY_LIFETIME - 3600
    return {
        "expired-anon": lambda: mint_api_key(secret, ref, "anon", issued_at=long_ago),
        "expired-service-role": lambda: mint_api_key(secret, ref, "service_role", issued_at=long_ago),
        "wrong-secret": lambda: mint_api_key(
            "another-secret-of-at-least-32-characters!", ref, "service_role"
        ),
        "alg-none": lambda: unsigned_token({"iss": "memory", "ref": ref, "role": "service_role"}),
        "user-role": lambda: jwt.encode(
            {"ref": ref, "role": "authenticated", "sub": "alice"}, secret, "HS256"
        ),
        "no-role": lambda: jwt.encode({"ref": ref, "iat": int(time.time())}, secret, "HS256"),
        "unknown-ref": lambda: mint_api_key(secret, "nosuchtenant", "service_role"),
    }[attack]()


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        ("expired-anon", "api_key_expired"),
        ("expired-service-role", "api_key_expired"),
        ("wrong-secret", "invalid_api_key"),
        ("alg-none", "invalid_api_key"),
        ("user-role", "invalid_api_key"),
        ("no-role", "invalid_api_key"),
        ("unknown-ref", "invalid_api_key"),
    ],
)
async def test_forged_or_expired_api_key_is_refused(client, runtime, target, attack, code):
    headers = {
        "apikey": api_key_attack(target.keys, attack),
        "authorization": f"Bearer {target.keys.user_token('alice')}",
    }
    before = await snapshot(client, runtime, target)
    assert_error(await client.get(f"{MEM}/memories/{target.alice_id}", headers=headers), 401, code)
    assert_error(await client.post(f"{MEM}/reset", headers=headers), 401, code)
    assert await snapshot(client, runtime, target) == before


async def test_service_role_key_in_the_bearer_does_not_reach_other_users_memories(client, runtime, target):
    """A user holding a leaked service key still can't use it through the anon path."""
    headers = bearer(target.keys, target.keys.service_role_key)
    before = await snapshot(client, runtime, target)
    for method, path in (
        ("GET", f"/memories/{target.alice_id}"),
        ("POST", "/reset"),
        ("DELETE", "/memories"),
    ):
        assert_error(await client.request(method, MEM + path, headers=headers), 403, "not_a_user_token")
    assert await snapshot(client, runtime, target) == before


# --- 4. user tokens verified with a JWKS --------------------------------------------------------------------


@dataclass(frozen=True)
class JwksTenant:
    keys: TenantKeys
    ec_key: ec.EllipticCurvePrivateKey
    rsa_key: rsa.RSAPrivateKey

    def pem(self, which: str) -> bytes:
        key = self.ec_key if which == "ec" else self.rsa_key
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def jwks_tenant(runtime: Runtime) -> JwksTenant:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {
        "keys": [
            {
                **ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True),
                "kid": "ec-1",
                "alg": "ES256",
                "use": "sig",
            },
            {
                **RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True),
                "kid": "rsa-1",
                "alg": "RS256",
                "use": "sig",
            },
        ]
    }
    keys = await new_tenant(runtime, "JWKS tenant", jwks=jwks)
    return JwksTenant(keys, ec_key, rsa_key)


@pytest.mark.parametrize(
    ("alg", "kid", "sub"),
    [pytest.param("ES256", "ec-1", "carol", id="es256"), pytest.param("RS256", "rsa-1", "dave", id="rs256")],
)
async def test_user_token_signed_with_a_jwks_key_works(client, jwks_tenant, alg, kid, sub):
    key = jwks_tenant.ec_key if alg == "ES256" else jwks_tenant.rsa_key
    headers = bearer(jwks_tenant.keys, jwt.encode(user_claims(sub), key, alg, headers={"kid": kid}))
    item = await add(client, headers, f"{sub} signs with {alg}", user_id=None)
    listed = await client.get(f"{MEM}/memories", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [(m["id"], m["user_id"]) for m in listed.json()["results"]] == [(item["id"], sub)]


def jwks_attack(t: JwksTenant, attack: str) -> str:
    alice = user_claims("alice")
    now = int(time.time())
    expired = user_claims("alice", iat=now - 7200, exp=now - 3600)
    return {
        "unknown-kid": lambda: jwt.encode(alice, t.ec_key, "ES256", headers={"kid": "ec-2"}),
        "no-kid": lambda: jwt.encode(alice, t.ec_key, "ES256"),
        "hs256-keyed-with-rsa-public-pem": lambda: hmac_token(alice, t.pem("rsa"), kid="rsa-1"),
        "hs256-keyed-with-ec-public-pem": lambda: hmac_token(alice, t.pem("ec"), kid="ec-1"),
        "es256-naming-the-rsa-kid": lambda: jwt.encode(alice, t.ec_key, "ES256", headers={"kid": "rsa-1"}),
        "rs256-naming-the-ec-kid": lambda: jwt.encode(alice, t.rsa_key, "RS256", headers={"kid": "ec-1"}),
        "ps256-with-the-rsa-kid": lambda: jwt.encode(alice, t.rsa_key, "PS256", headers={"kid": "rsa-1"}),
        "another-ec-key-same-kid": lambda: jwt.encode(
            alice, ec.generate_private_key(ec.SECP256R1()), "ES256", headers={"kid": "ec-1"}
        ),
        "alg-none-with-kid": lambda: with_header(unsigned_token(alice), {"alg": "none", "kid": "ec-1"}),
        "expired-es256": lambda: jwt.encode(expired, t.ec_key, "ES256", headers={"kid": "ec-1"}),
    }[attack]()


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        ("unknown-kid", "invalid_token"),
        ("no-kid", "invalid_token"),
        ("hs256-keyed-with-rsa-public-pem", "invalid_token"),
        ("hs256-keyed-with-ec-public-pem", "invalid_token"),
        ("es256-naming-the-rsa-kid", "invalid_token"),
        ("rs256-naming-the-ec-kid", "invalid_token"),
        ("ps256-with-the-rsa-kid", "invalid_token"),
        ("another-ec-key-same-kid", "invalid_token"),
        ("alg-none-with-kid", "invalid_token"),
        ("expired-es256", "token_expired"),
    ],
)
async def test_jwks_tenant_refuses_unknown_keys_and_algorithm_confusion(
    client, runtime, jwks_tenant, attack, code
):
    keys = jwks_tenant.keys
    alice_item = await add(client, keys.service, f"Alice's note before {attack}", user_id="alice")
    headers = bearer(keys, jwks_attack(jwks_tenant, attack))
    before = await table_counts(runtime, keys)
    assert_error(await client.get(f"{MEM}/memories/{alice_item['id']}", headers=headers), 401, code)
    assert_error(await client.get(f"{MEM}/memories", headers=headers), 401, code)
    assert_error(
        await client.post(f"{MEM}/memories", json={"messages": "x", "infer": False}, headers=headers),
        401,
        code,
    )
    assert_error(await client.delete(f"{MEM}/memories/{alice_item['id']}", headers=headers), 401, code)
    assert await table_counts(runtime, keys) == before
    assert (await client.get(f"{MEM}/memories/{alice_item['id']}", headers=keys.service)).status_code == 200


async def test_a_user_token_with_an_overlong_subject_is_refused(client, tenant):
    response = await client.get("/mem/v1/memories", headers=tenant.user("u" * 256))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
