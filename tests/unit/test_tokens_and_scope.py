"""Unit tests for tenant API keys, user-token verification and MemoryAuthScope: no database."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from app.auth.scope import MAX_ID_LENGTH, MemoryAuthScope, Owner
from app.auth.tokens import (
    API_KEY_LIFETIME,
    LEEWAY_SECONDS,
    USER_ROLE,
    KeyRing,
    SigningKey,
    mint_api_key,
    mint_user_token,
    unverified_ref,
    verify_api_key,
    verify_user_token,
)
from app.errors import AppError, BadRequest, Forbidden, Unauthorized

SECRET = "s" * 64
OTHER_SECRET = "o" * 64
REF = "tenantone"
RING = KeyRing.single(SECRET)


def b64url(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    """User claims; an override of None removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "bob",
        "aud": "authenticated",
        "role": USER_ROLE,
        "iat": now,
        "exp": now + 600,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def refusal(kind: type[AppError], call: Any, *args: Any, **kwargs: Any) -> AppError:
    with pytest.raises(kind) as caught:
        call(*args, **kwargs)
    return caught.value


# --- API keys -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["anon", "service_role"])
def test_api_key_round_trips_to_its_role(role):
    key = mint_api_key(SECRET, REF, role)
    assert verify_api_key(key, RING, REF) == role
    assert unverified_ref(key) == REF
    payload = jwt.decode(key, SECRET, algorithms=["HS256"])
    assert payload["exp"] - payload["iat"] == API_KEY_LIFETIME


def test_minting_an_api_key_for_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="unknown key role"):
        mint_api_key(SECRET, REF, "authenticated")


@pytest.mark.parametrize(
    ("key", "code"),
    [
        pytest.param(lambda: mint_api_key(OTHER_SECRET, REF, "anon"), "invalid_api_key", id="wrong-secret"),
        pytest.param(
            lambda: mint_api_key(SECRET, "tenanttwo", "service_role"), "invalid_api_key", id="other-ref"
        ),
        pytest.param(
            lambda: mint_api_key(SECRET, REF, "anon", issued_at=int(time.time()) - API_KEY_LIFETIME - 3600),
            "api_key_expired",
            id="expired",
        ),
        pytest.param(
            lambda: jwt.encode({"ref": REF, "role": "authenticated"}, SECRET, "HS256"),
            "invalid_api_key",
            id="user-role",
        ),
        pytest.param(lambda: jwt.encode({"ref": REF}, SECRET, "HS256"), "invalid_api_key", id="no-role"),
        pytest.param(lambda: jwt.encode({"role": "anon"}, SECRET, "HS256"), "invalid_api_key", id="no-ref"),
        pytest.param(
            lambda: jwt.encode({"ref": REF, "role": "service_role"}, SECRET, "HS512"),
            "invalid_api_key",
            id="hs512",
        ),
        pytest.param(
            lambda: (
                f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url({'ref': REF, 'role': 'service_role'})}."
            ),
            "invalid_api_key",
            id="alg-none",
        ),
        pytest.param(lambda: "garbage", "invalid_api_key", id="garbage"),
    ],
)
def test_api_key_refusals(key, code):
    error = refusal(Unauthorized, verify_api_key, key(), RING, REF)
    assert (error.status_code, error.code) == (401, code)


def test_api_key_expired_within_the_leeway_is_still_accepted():
    issued = int(time.time()) - API_KEY_LIFETIME - LEEWAY_SECONDS // 2
    assert verify_api_key(mint_api_key(SECRET, REF, "anon", issued_at=issued), RING, REF) == "anon"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(mint_api_key(OTHER_SECRET, REF, "anon"), REF, id="any-signature"),
        pytest.param(jwt.encode({"ref": 42}, SECRET, "HS256"), None, id="ref-not-a-string"),
        pytest.param(jwt.encode({"role": "anon"}, SECRET, "HS256"), None, id="no-ref"),
        pytest.param("not.a.jwt", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(f"{b64url({'alg': 'none'})}.{b64url({'ref': 'x'})}.", "x", id="unsigned"),
    ],
)
def test_unverified_ref_reads_the_claim_without_trusting_it(key, expected):
    assert unverified_ref(key) == expected


# --- user tokens --------------------------------------------------------------------------------------------


def test_user_token_round_trips_to_its_claims():
    token = mint_user_token(SECRET, "bob", ref=REF, email="bob@example.com")
    user = verify_user_token(token, keys=RING, jwks=None)
    assert (user.sub, user.role, user.email) == ("bob", USER_ROLE, "bob@example.com")
    assert user.session_id and user.claims["iss"] == f"memory/{REF}/auth/v1"


def test_user_token_with_a_list_audience_naming_ours_is_accepted():
    token = jwt.encode(claims(aud=["x", "authenticated"]), SECRET, "HS256")
    assert verify_user_token(token, keys=RING, jwks=None).sub == "bob"


def _hs(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), SECRET, "HS256")


@pytest.mark.parametrize(
    ("token", "code"),
    [
        pytest.param(
            lambda: f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims())}.", "invalid_token", id="none"
        ),
        pytest.param(lambda: _hs(exp=int(time.time()) - 3600), "token_expired", id="expired"),
        pytest.param(lambda: _hs(nbf=int(time.time()) + 600), "invalid_token", id="not-yet-valid"),
        pytest.param(lambda: jwt.encode(claims(), OTHER_SECRET, "HS256"), "invalid_token", id="wrong-secret"),
        pytest.param(lambda: _hs(aud="other"), "invalid_token", id="wrong-aud"),
        pytest.param(lambda: _hs(aud=["other"]), "invalid_token", id="wrong-aud-list"),
        pytest.param(lambda: _hs(aud=5), "invalid_token", id="aud-not-a-string"),
        pytest.param(lambda: _hs(aud={"authenticated": True}), "invalid_token", id="aud-object"),
        pytest.param(lambda: _hs(sub=None), "invalid_token", id="no-sub"),
        pytest.param(lambda: _hs(sub=""), "invalid_token", id="empty-sub"),
        pytest.param(lambda: _hs(exp=None), "invalid_token", id="no-exp"),
        pytest.param(lambda: _hs(aud=None), "invalid_token", id="no-aud"),
        pytest.param(lambda: _hs(iat=None), "invalid_token", id="no-iat"),
        pytest.param(lambda: _hs(exp=str(int(time.time()) + 600)), "invalid_token", id="exp-a-string"),
        pytest.param(lambda: _hs(exp=32503680000), "token_lifetime_too_long", id="exp-in-year-3000"),
        pytest.param(
            lambda: _hs(iat=int(time.time()) - 86_000, exp=int(time.time()) + 3600),
            "token_lifetime_too_long",
            id="lifetime-over-a-day",
        ),
        pytest.param(
            lambda: jwt.encode(claims(), SECRET, "HS384"), "invalid_token", id="unsupported-alg-hs384"
        ),
        pytest.param(
            lambda: jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), "ES256"),
            "invalid_token",
            id="es256-without-jwks",
        ),
        pytest.param(lambda: "a.b", "invalid_token", id="malformed"),
    ],
)
def test_user_token_refusals(token, code):
    error = refusal(Unauthorized, verify_user_token, token(), keys=RING, jwks=None)
    assert (error.status_code, error.code) == (401, code)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: mint_api_key(SECRET, REF, "service_role"), id="service-role-key"),
        pytest.param(lambda: mint_api_key(SECRET, REF, "anon"), id="anon-key"),
        pytest.param(lambda: _hs(role="service_role"), id="service-role-with-sub"),
    ],
)
def test_tenant_api_key_as_a_user_token_is_not_a_user(token):
    error = refusal(Forbidden, verify_user_token, token(), keys=RING, jwks=None)
    assert (error.status_code, error.code) == (403, "not_a_user_token")


def test_user_token_verifies_against_the_jwks_key_its_kid_and_alg_name():
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = jwt.PyJWKSet.from_dict(
        {
            "keys": [
                {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "e", "alg": "ES256"},
                {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "r", "alg": "RS256"},
            ]
        }
    )
    good_ec = jwt.encode(claims(sub="carol"), ec_key, "ES256", headers={"kid": "e"})
    good_rsa = jwt.encode(claims(sub="dave"), rsa_key, "RS256", headers={"kid": "r"})
    assert verify_user_token(good_ec, keys=RING, jwks=jwks).sub == "carol"
    assert verify_user_token(good_rsa, keys=RING, jwks=jwks).sub == "dave"
    for bad in (
        jwt.encode(claims(), ec_key, "ES256", headers={"kid": "r"}),
        jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "e"}),
        jwt.encode(claims(), ec_key, "ES256", headers={"kid": "unknown"}),
        jwt.encode(claims(), rsa_key, "RS256"),
    ):
        error = refusal(Unauthorized, verify_user_token, bad, keys=RING, jwks=jwks)
        assert error.code == "invalid_token"


# --- key rings: rotation, grace, issuer ----------------------------------------------------------------------


def test_a_key_is_verified_by_the_ring_key_its_kid_names_and_a_kid_less_one_by_any_live_key():
    now = time.time()
    ring = KeyRing(keys=(SigningKey("new", SECRET), SigningKey("old", OTHER_SECRET, valid_until=now + 60)))
    assert verify_api_key(mint_api_key(OTHER_SECRET, REF, "anon", kid="old"), ring, REF) == "anon"
    assert verify_api_key(mint_api_key(SECRET, REF, "anon", kid="new"), ring, REF) == "anon"
    assert verify_api_key(mint_api_key(OTHER_SECRET, REF, "anon"), ring, REF) == "anon"
    # A kid naming the other key, or no key at all, does not verify.
    for key in (
        mint_api_key(OTHER_SECRET, REF, "anon", kid="new"),
        mint_api_key(SECRET, REF, "anon", kid="gone"),
    ):
        assert refusal(Unauthorized, verify_api_key, key, ring, REF).code == "invalid_api_key"


def test_a_retired_key_past_its_grace_verifies_nothing():
    ring = KeyRing(
        keys=(SigningKey("new", SECRET), SigningKey("old", OTHER_SECRET, valid_until=time.time() - 1))
    )
    for key in (mint_api_key(OTHER_SECRET, REF, "anon", kid="old"), mint_api_key(OTHER_SECRET, REF, "anon")):
        assert refusal(Unauthorized, verify_api_key, key, ring, REF).code == "invalid_api_key"
    token = mint_user_token(OTHER_SECRET, "bob", kid="old")
    assert refusal(Unauthorized, verify_user_token, token, keys=ring, jwks=None).code == "invalid_token"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"ref": REF, "role": "anon"}, id="no-exp"),
        pytest.param({"ref": REF, "role": "anon", "exp": str(int(time.time()) + 600)}, id="exp-a-string"),
    ],
)
def test_an_api_key_needs_a_numeric_exp(payload):
    key = jwt.encode(payload, SECRET, "HS256")
    assert refusal(Unauthorized, verify_api_key, key, RING, REF).code == "invalid_api_key"


def test_a_configured_issuer_is_required_and_must_match():
    ring = KeyRing.single(SECRET, issuer="https://auth.example.com")
    good = mint_user_token(SECRET, "bob", issuer="https://auth.example.com")
    assert verify_user_token(good, keys=ring, jwks=None).sub == "bob"
    for bad in (mint_user_token(SECRET, "bob", issuer="https://evil.example.com"), _hs(iss=None)):
        assert refusal(Unauthorized, verify_user_token, bad, keys=ring, jwks=None).code == "invalid_token"


def test_the_audience_and_maximum_lifetime_come_from_the_ring():
    ring = KeyRing.single(SECRET, audience="my-app", max_token_lifetime=600)
    assert verify_user_token(_hs(aud="my-app"), keys=ring, jwks=None).sub == "bob"
    assert refusal(Unauthorized, verify_user_token, _hs(), keys=ring, jwks=None).code == "invalid_token"
    too_long = _hs(aud="my-app", exp=int(time.time()) + 3600)
    assert (
        refusal(Unauthorized, verify_user_token, too_long, keys=ring, jwks=None).code
        == "token_lifetime_too_long"
    )


# --- MemoryAuthScope ----------------------------------------------------------------------------------------

SERVICE = MemoryAuthScope(tenant_ref=REF, role="service_role", user_id=None)
BOB = MemoryAuthScope(tenant_ref=REF, role=USER_ROLE, user_id="bob")


def test_service_role_acts_for_whatever_owner_it_names():
    assert SERVICE.owner("alice", "agent", "run") == Owner("alice", "agent", "run")
    assert SERVICE.owner(agent_id="helper") == Owner(agent_id="helper")
    assert SERVICE.actor == "service_role"


def test_service_role_naming_no_owner_means_the_whole_tenant():
    owner = SERVICE.owner()
    assert owner.is_tenant_wide
    assert owner.as_dict() == {"user_id": None, "agent_id": None, "run_id": None}


def test_user_is_pinned_to_its_subject():
    assert BOB.owner() == Owner(user_id="bob")
    assert BOB.owner("bob") == Owner(user_id="bob")
    assert BOB.owner(agent_id="a", run_id="r") == Owner("bob", "a", "r")
    assert not BOB.owner().is_tenant_wide
    assert BOB.actor == "user:bob"


@pytest.mark.parametrize("other", ["alice", "Bob", "bob ", "*"])
def test_user_naming_another_user_is_forbidden(other):
    error = refusal(Forbidden, BOB.owner, other)
    assert (error.status_code, error.code) == (403, "user_scope_violation")


@pytest.mark.parametrize("scope", [SERVICE, BOB], ids=["service", "user"])
@pytest.mark.parametrize(
    "ids",
    [
        pytest.param({"user_id": ""}, id="empty-user"),
        pytest.param({"agent_id": "   "}, id="blank-agent"),
        pytest.param({"run_id": "r" * (MAX_ID_LENGTH + 1)}, id="too-long-run"),
        pytest.param({"user_id": "u" * (MAX_ID_LENGTH + 1)}, id="too-long-user"),
        pytest.param({"agent_id": 5}, id="not-a-string"),
    ],
)
def test_empty_or_oversized_owner_ids_are_bad_requests(scope, ids):
    error = refusal(BadRequest, scope.owner, **ids)
    assert (error.status_code, error.code) == (400, "invalid_owner_id")


def test_owner_id_of_the_maximum_length_is_accepted():
    assert SERVICE.owner(user_id="u" * MAX_ID_LENGTH).user_id == "u" * MAX_ID_LENGTH


def test_require_owner_refuses_a_tenant_wide_service_scope():
    error = refusal(BadRequest, SERVICE.owner, require_owner=True)
    assert (error.status_code, error.code) == (400, "owner_required")
    assert SERVICE.owner(run_id="r", require_owner=True) == Owner(run_id="r")
    # A user always has an owner: its subject.
    assert BOB.owner(require_owner=True) == Owner(user_id="bob")


def test_check_named_users_refuses_a_user_naming_anyone_else():
    BOB.check_named_users(set())
    BOB.check_named_users({"bob"})
    for named in ({"alice"}, {"bob", "alice"}):
        error = refusal(Forbidden, BOB.check_named_users, named)
        assert (error.status_code, error.code) == (403, "user_scope_violation")


def test_check_named_users_lets_the_service_role_name_anyone():
    SERVICE.check_named_users({"alice", "bob"})


# read_owner: search and list need an owner unless service_role asks for the tenant


def test_a_service_read_without_owner_ids_is_refused_unless_it_asks_for_the_tenant():
    service = MemoryAuthScope(tenant_ref="t", role="service_role", user_id=None)
    assert refusal(BadRequest, service.read_owner).code == "owner_required"
    assert service.read_owner(requested_scope="tenant").is_tenant_wide
    assert service.read_owner("bob", requested_scope="tenant") == Owner(user_id="bob")
    assert refusal(BadRequest, service.read_owner, requested_scope="all").code == "invalid_scope"


def test_a_user_read_is_its_own_and_may_not_ask_for_the_tenant():
    user = MemoryAuthScope(tenant_ref="t", role="authenticated", user_id="alice")
    assert user.read_owner() == Owner(user_id="alice")
    assert refusal(Forbidden, user.read_owner, requested_scope="tenant").code == "service_role_required"
