"""Tenant API keys and user JWTs: minting (for tenants, the demo and tests) and verification."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from app.errors import Forbidden, Unauthorized

API_KEY_ROLES = ("anon", "service_role")
USER_ROLE = "authenticated"
# The refusal of a genuine token that names no signed-in user (a tenant API key in the Bearer).
NOT_A_USER_TOKEN = "not_a_user_token"
ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
TEN_YEARS = 10 * 365 * 24 * 3600
# Accept a little clock drift between the issuer and this server.
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class UserClaims:
    sub: str
    role: str
    email: str | None
    session_id: str | None
    claims: dict[str, Any]


def mint_api_key(secret: str, ref: str, role: str, *, issued_at: int | None = None) -> str:
    if role not in API_KEY_ROLES:
        raise ValueError(f"unknown key role {role!r}")
    iat = int(time.time()) if issued_at is None else issued_at
    payload = {"iss": "memory", "ref": ref, "role": role, "iat": iat, "exp": iat + TEN_YEARS}
    return jwt.encode(payload, secret, algorithm="HS256")


def mint_user_token(
    secret: str,
    sub: str,
    *,
    ref: str | None = None,
    email: str | None = None,
    lifetime_seconds: int = 3600,
    extra: dict[str, Any] | None = None,
) -> str:
    """A GoTrue-shaped access token signed with the tenant's HS256 secret."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": f"memory/{ref}/auth/v1" if ref else "memory/auth/v1",
        "sub": sub,
        "aud": "authenticated",
        "role": USER_ROLE,
        "email": email,
        "session_id": str(uuid.uuid4()),
        "aal": "aal1",
        "iat": now,
        "exp": now + lifetime_seconds,
    }
    payload.update(extra or {})
    return jwt.encode(payload, secret, algorithm="HS256")


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


def verify_api_key(api_key: str, secret: str, ref: str) -> str:
    """Return the key's role after checking signature, expiry, tenant and role."""
    try:
        payload = jwt.decode(
            api_key,
            secret,
            algorithms=["HS256"],
            options={"require": ["ref", "role"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The API key has expired.", code="api_key_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The API key is not valid.", code="invalid_api_key") from exc
    if payload.get("ref") != ref or payload.get("role") not in API_KEY_ROLES:
        raise Unauthorized("The API key is not valid.", code="invalid_api_key")
    return str(payload["role"])


def verify_user_token(token: str, *, secret: str, jwks: jwt.PyJWKSet | None) -> UserClaims:
    """Verify a user access token with the tenant's secret (HS256) or its JWKS (ES256/RS256 by kid).

    The algorithm is chosen by the key, never by the token: an HS256 token is checked only
    against the secret and an asymmetric one only against a JWKS key of the same algorithm,
    so `alg: none` and algorithm confusion have nothing to work with.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthorized("The bearer token is not a valid JWT.", code="invalid_token") from exc
    alg = header.get("alg")
    key: Any
    if alg == "HS256":
        key = secret
    elif alg in ASYMMETRIC_ALGORITHMS and jwks is not None:
        kid = header.get("kid")
        matching = [k for k in jwks.keys if k.key_id == kid and k.algorithm_name == alg]
        if not matching:
            raise Unauthorized("The bearer token is signed by an unknown key.", code="invalid_token")
        key = matching[0].key
    else:
        raise Unauthorized(
            "The bearer token uses an algorithm this tenant does not accept.", code="invalid_token"
        )
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            # aud is checked below: GoTrue sets "authenticated", other issuers may omit it.
            # sub too, after the role: the tenant's own API keys carry none and get a clearer refusal.
            options={"require": ["exp"], "verify_aud": False},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The bearer token has expired.", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The bearer token is not valid.", code="invalid_token") from exc
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if aud is not None and (audiences is None or USER_ROLE not in audiences):
        raise Unauthorized("The bearer token is for another audience.", code="invalid_token")
    if claims.get("role") in API_KEY_ROLES:
        # A tenant API key in the Bearer is genuine but names no user, and never raises privilege.
        raise Forbidden(
            "The bearer token is a tenant API key, not a signed-in user's access token.",
            code=NOT_A_USER_TOKEN,
        )
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
