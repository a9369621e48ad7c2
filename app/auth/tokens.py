"""Tenant API keys and user JWTs: minting (for tenants, the demo and tests) and verification.

A tenant signs with a key ring: its current HS256 secret, plus the secrets it rotated away
from, each valid until the end of its grace period. Keys and tokens name the secret that
signed them in the JWT header (`kid`); one without a `kid` (minted before rotation existed,
or by an issuer that does not set it) is tried against every live secret of the ring.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt

from app.errors import Forbidden, Unauthorized

API_KEY_ROLES = ("anon", "service_role")
USER_ROLE = "authenticated"
# The refusal of a genuine token that names no signed-in user (a tenant API key in the Bearer).
NOT_A_USER_TOKEN = "not_a_user_token"
TOKEN_TOO_LONG = "token_lifetime_too_long"
ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
ONE_DAY = 24 * 3600
API_KEY_LIFETIME = 365 * ONE_DAY
# Accept a little clock drift between the issuer and this server.
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: str = field(repr=False)
    # Epoch seconds after which the key verifies nothing; None for the current key.
    valid_until: float | None = None


@dataclass(frozen=True)
class KeyRing:
    """What a tenant's keys and user tokens are checked with: its secrets and the claims it demands."""

    keys: tuple[SigningKey, ...]  # the current key first
    audience: str = USER_ROLE
    issuer: str | None = None
    max_token_lifetime: int = ONE_DAY

    @classmethod
    def single(cls, secret: str, kid: str = "k1", **policy: Any) -> KeyRing:
        return cls(keys=(SigningKey(kid=kid, secret=secret),), **policy)

    @property
    def current(self) -> SigningKey:
        return self.keys[0]

    def candidates(self, kid: object, now: float | None = None) -> list[SigningKey]:
        """The live keys a token with this `kid` header may be signed with."""
        moment = time.time() if now is None else now
        live = [k for k in self.keys if k.valid_until is None or k.valid_until > moment]
        return live if kid is None else [k for k in live if k.kid == kid]


@dataclass(frozen=True)
class UserClaims:
    sub: str
    role: str
    email: str | None
    session_id: str | None
    claims: dict[str, Any]


def mint_api_key(
    secret: str,
    ref: str,
    role: str,
    *,
    issued_at: int | None = None,
    kid: str | None = None,
    lifetime_seconds: int = API_KEY_LIFETIME,
) -> str:
    if role not in API_KEY_ROLES:
        raise ValueError(f"unknown key role {role!r}")
    iat = int(time.time()) if issued_at is None else issued_at
    payload = {"iss": "memory", "ref": ref, "role": role, "iat": iat, "exp": iat + lifetime_seconds}
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers)


def mint_user_token(
    secret: str,
    sub: str,
    *,
    ref: str | None = None,
    email: str | None = None,
    lifetime_seconds: int = 3600,
    kid: str | None = None,
    issuer: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A GoTrue-shaped access token signed with the tenant's HS256 secret."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": issuer or (f"memory/{ref}/auth/v1" if ref else "memory/auth/v1"),
        "sub": sub,
        "aud": USER_ROLE,
        "role": USER_ROLE,
        "email": email,
        "session_id": str(uuid.uuid4()),
        "aal": "aal1",
        "iat": now,
        "exp": now + lifetime_seconds,
    }
    payload.update(extra or {})
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers)


def unverified_ref(api_key: str) -> str | None:
    """The `ref` claim of a key whose signature is not checked yet: only to find the tenant."""
    try:
        payload = jwt.decode(api_key, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    ref = payload.get("ref")
    return ref if isinstance(ref, str) else None


def token_algorithm(token: str) -> str | None:
    """The `alg` a token's header names, unverified: only to know which keys to load."""
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        return None
    return alg if isinstance(alg, str) else None


def _is_number(value: object) -> bool:
    # PyJWT turns a numeric string into a date (int("32503680000")): only real numbers count.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decode_hs256_by(token: str, ring: KeyRing, options: Any) -> tuple[dict[str, Any], SigningKey]:
    """Decode with the first live secret of the ring whose signature matches, and name that
    secret; raise PyJWT's errors."""
    kid = jwt.get_unverified_header(token).get("kid")
    for key in ring.candidates(kid):
        try:
            payload: dict[str, Any] = jwt.decode(
                token, key.secret, algorithms=["HS256"], options=options, leeway=LEEWAY_SECONDS
            )
        except jwt.InvalidSignatureError:
            continue
        return payload, key
    raise jwt.InvalidSignatureError("no live signing key matches")


def _verified_api_key(api_key: str, ring: KeyRing, ref: str) -> tuple[str, float]:
    """The key's role, and until when that answer holds (its expiry with the leeway, or the end
    of its signing secret's grace period, whichever is first)."""
    try:
        payload, key = _decode_hs256_by(api_key, ring, {"require": ["ref", "role", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The API key has expired.", code="api_key_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The API key is not valid.", code="invalid_api_key") from exc
    if not _is_number(payload["exp"]):
        raise Unauthorized("The API key's exp is not a number.", code="invalid_api_key")
    if payload.get("ref") != ref or payload.get("role") not in API_KEY_ROLES:
        raise Unauthorized("The API key is not valid.", code="invalid_api_key")
    until = float(payload["exp"]) + LEEWAY_SECONDS
    if key.valid_until is not None:
        until = min(until, key.valid_until)
    return str(payload["role"]), until


def verify_api_key(api_key: str, ring: KeyRing, ref: str) -> str:
    """Return the key's role after checking signature (by kid), expiry, tenant and role."""
    return _verified_api_key(api_key, ring, ref)[0]


@dataclass(frozen=True)
class _Verified:
    ref: str
    role: str
    ring: KeyRing
    until: float


class VerifiedKeys:
    """Tenant API keys verified recently, so that a key sent again costs a lookup instead of two
    JWT decodes (its unverified `ref`, to find the tenant, then the signature against the ring).

    An answer holds only for the key ring it was checked with (a rotation or a new policy is a
    new ring), and only until the key expires, its signing secret's grace period ends, or
    `ttl` seconds pass, whichever comes first. Refusals are never remembered. Bounded: the
    least recently used keys are forgotten first.
    """

    def __init__(self, *, size: int = 4096, ttl: float = 60.0) -> None:
        self._size = size
        self._ttl = ttl
        self._entries: OrderedDict[str, _Verified] = OrderedDict()

    def _live(self, api_key: str, now: float) -> _Verified | None:
        entry = self._entries.get(api_key)
        if entry is None:
            return None
        if entry.until <= now:
            del self._entries[api_key]
            return None
        self._entries.move_to_end(api_key)
        return entry

    def ref(self, api_key: str) -> str | None:
        """The tenant a key names: as verified, or else read unverified (only to find the tenant)."""
        entry = self._live(api_key, time.time())
        return entry.ref if entry is not None else unverified_ref(api_key)

    def role(self, api_key: str, ring: KeyRing, ref: str) -> str:
        """verify_api_key, remembered."""
        now = time.time()
        entry = self._live(api_key, now)
        if entry is not None and entry.ref == ref and (entry.ring is ring or entry.ring == ring):
            return entry.role
        role, until = _verified_api_key(api_key, ring, ref)
        self._entries[api_key] = _Verified(ref, role, ring, min(until, now + self._ttl))
        self._entries.move_to_end(api_key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return role


def _user_key(token: str, jwks: jwt.PyJWKSet | None) -> tuple[str, Any]:
    """The token's algorithm and, for ES256/RS256, the JWKS key its `kid` names."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthorized("The bearer token is not a valid JWT.", code="invalid_token") from exc
    alg = header.get("alg")
    if alg == "HS256":
        return alg, None
    if alg in ASYMMETRIC_ALGORITHMS and jwks is not None:
        kid = header.get("kid")
        matching = [k for k in jwks.keys if k.key_id == kid and k.algorithm_name == alg]
        if not matching:
            raise Unauthorized("The bearer token is signed by an unknown key.", code="invalid_token")
        return alg, matching[0].key
    raise Unauthorized(
        "The bearer token uses an algorithm this tenant does not accept.", code="invalid_token"
    )


def _decode_user_token(token: str, ring: KeyRing, jwks: jwt.PyJWKSet | None) -> dict[str, Any]:
    """Signature and expiry only: the other claims are checked once the token is known to be a user's."""
    alg, key = _user_key(token, jwks)
    options: Any = {"require": ["exp"], "verify_aud": False}
    try:
        if key is None:
            return _decode_hs256_by(token, ring, options)[0]
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[alg], options=options, leeway=LEEWAY_SECONDS
        )
        return claims
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The bearer token has expired.", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The bearer token is not valid.", code="invalid_token") from exc


def _check_user_claims(claims: dict[str, Any], ring: KeyRing) -> None:
    """aud must name the ring's audience, iss equal the tenant's issuer when it has one, and
    exp and iat be numbers no further apart than the ring's maximum lifetime."""
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if ring.audience not in audiences:
        raise Unauthorized(f"The bearer token's aud must name {ring.audience!r}.", code="invalid_token")
    if ring.issuer is not None and claims.get("iss") != ring.issuer:
        raise Unauthorized("The bearer token comes from another issuer.", code="invalid_token")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not _is_number(exp) or not _is_number(iat):
        raise Unauthorized("The bearer token's exp and iat must be numbers.", code="invalid_token")
    longest = ring.max_token_lifetime
    assert isinstance(exp, int | float) and isinstance(iat, int | float)
    if exp - iat > longest or exp - time.time() > longest + LEEWAY_SECONDS:
        raise Unauthorized(
            f"The bearer token lives longer than this service accepts ({longest} seconds).",
            code=TOKEN_TOO_LONG,
        )


def verify_user_token(token: str, *, keys: KeyRing, jwks: jwt.PyJWKSet | None) -> UserClaims:
    """Verify a user access token with the tenant's secrets (HS256) or its JWKS (ES256/RS256 by kid).

    The algorithm is chosen by the key, never by the token: an HS256 token is checked only
    against the ring's secrets and an asymmetric one only against a JWKS key of the same
    algorithm, so `alg: none` and algorithm confusion have nothing to work with. The token
    must name the audience (and, when the tenant has one, the issuer), and live no longer
    than the ring's maximum.
    """
    claims = _decode_user_token(token, keys, jwks)
    if claims.get("role") in API_KEY_ROLES:
        # A tenant API key in the Bearer is genuine but names no user, and never raises privilege.
        raise Forbidden(
            "The bearer token is a tenant API key, not a signed-in user's access token.",
            code=NOT_A_USER_TOKEN,
        )
    _check_user_claims(claims, keys)
    return _user_claims(claims)


def _user_claims(claims: dict[str, Any]) -> UserClaims:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("The bearer token has no subject.", code="invalid_token")
    session_id = claims.get("session_id")
    if not _encodable(sub) or (isinstance(session_id, str) and not _encodable(session_id)):
        # A lone surrogate (\\ud800) decodes from JSON but has no UTF-8 form to store or compare.
        raise Unauthorized("The bearer token's subject is not valid text.", code="invalid_token")
    return UserClaims(
        sub=sub,
        role=str(claims.get("role") or ""),
        email=claims.get("email"),
        session_id=session_id if isinstance(session_id, str) else None,
        claims=claims,
    )


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
