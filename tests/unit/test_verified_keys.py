"""VerifiedKeys: a tenant API key verified once is not decoded again, but only while the answer holds."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

import app.auth.tokens as tokens
from app.auth.tokens import LEEWAY_SECONDS, KeyRing, SigningKey, VerifiedKeys, mint_api_key
from app.errors import Unauthorized

SECRET = "s" * 64
NEW_SECRET = "n" * 64
REF = "tenantone"
RING = KeyRing.single(SECRET)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every jwt.decode the module makes, True when it checked a signature."""
    seen: list[bool] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("options", {}).get("verify_signature", True))
        return real(token, *args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", counting)
    return seen


def test_a_key_seen_again_is_answered_without_decoding(decodes: list[bool]) -> None:
    keys = VerifiedKeys()
    key = mint_api_key(SECRET, REF, "service_role")
    assert keys.ref(key) == REF
    assert keys.role(key, RING, REF) == "service_role"
    assert decodes == [False, True]
    for _ in range(3):
        assert keys.ref(key) == REF
        assert keys.role(key, RING, REF) == "service_role"
    assert decodes == [False, True], "no decode after the first verification"


def test_a_refused_key_is_refused_every_time_and_never_remembered(decodes: list[bool]) -> None:
    keys = VerifiedKeys()
    forged = mint_api_key("f" * 64, REF, "service_role")
    for _ in range(2):
        with pytest.raises(Unauthorized) as caught:
            keys.role(forged, RING, REF)
        assert caught.value.code == "invalid_api_key"
    assert decodes.count(True) == 2, "each attempt checked the signature again"


def test_a_rotated_ring_checks_the_key_again_and_refuses_a_retired_secret() -> None:
    keys = VerifiedKeys()
    old = mint_api_key(SECRET, REF, "service_role", kid="k1")
    assert keys.role(old, RING, REF) == "service_role"
    # The old secret's grace period is over: the new ring has only the new secret.
    rotated = KeyRing(keys=(SigningKey(kid="k2", secret=NEW_SECRET),))
    with pytest.raises(Unauthorized):
        keys.role(old, rotated, REF)


def test_an_answer_ends_with_the_grace_period_of_the_secret_that_signed_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    ring = KeyRing(
        keys=(
            SigningKey(kid="k2", secret=NEW_SECRET),
            SigningKey(kid="k1", secret=SECRET, valid_until=now + 5),
        )
    )
    keys = VerifiedKeys()
    old = mint_api_key(SECRET, REF, "anon", kid="k1")
    assert keys.role(old, ring, REF) == "anon"
    monkeypatch.setattr(tokens.time, "time", lambda: now + 6)
    with pytest.raises(Unauthorized):
        keys.role(old, ring, REF)


def test_an_answer_ends_when_the_key_expires(decodes: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time())
    keys = VerifiedKeys(ttl=3600)
    key = mint_api_key(SECRET, REF, "service_role", issued_at=now, lifetime_seconds=10)
    assert keys.role(key, RING, REF) == "service_role"
    monkeypatch.setattr(tokens.time, "time", lambda: now + 10 + LEEWAY_SECONDS - 1)
    keys.role(key, RING, REF)
    assert decodes.count(True) == 1, "still within exp + leeway: remembered"
    # Past it, the key is checked again (and PyJWT, on its own clock, refuses an expired key).
    monkeypatch.setattr(tokens.time, "time", lambda: now + 10 + LEEWAY_SECONDS + 1)
    keys.role(key, RING, REF)
    assert decodes.count(True) == 2, "verified again once expired"


def test_an_answer_ends_after_the_ttl(decodes: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    keys = VerifiedKeys(ttl=60)
    key = mint_api_key(SECRET, REF, "service_role")
    keys.role(key, RING, REF)
    monkeypatch.setattr(tokens.time, "time", lambda: now + 61)
    assert keys.role(key, RING, REF) == "service_role"
    assert decodes.count(True) == 2, "verified again after the ttl"


def test_a_key_for_another_tenant_is_not_taken_from_the_cache() -> None:
    keys = VerifiedKeys()
    key = mint_api_key(SECRET, REF, "service_role")
    keys.role(key, RING, REF)
    with pytest.raises(Unauthorized):
        keys.role(key, RING, "othertenant")


def test_the_cache_is_bounded_and_forgets_the_least_recently_used_first(decodes: list[bool]) -> None:
    keys = VerifiedKeys(size=2)
    a, b, c = (
        mint_api_key(SECRET, REF, role, kid=kid)
        for role, kid in (("anon", "a"), ("anon", "b"), ("anon", "c"))
    )
    ring = KeyRing(keys=tuple(SigningKey(kid=k, secret=SECRET) for k in "abc"))
    for key in (a, b, a, c):  # c pushes out b, the least recently used
        keys.role(key, ring, REF)
    verified = decodes.count(True)
    keys.role(a, ring, REF)
    keys.role(c, ring, REF)
    assert decodes.count(True) == verified, "a and c were kept"
    keys.role(b, ring, REF)
    assert decodes.count(True) == verified + 1, "b was forgotten"
