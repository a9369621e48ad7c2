"""The public keys a tenant's user tokens may be signed with: an inline JWKS or a JWKS URL."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any
from urllib.parse import urlsplit

import jwt

from app.errors import Unauthorized

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def jwks_url_problem(url: str, *, allow_insecure: bool = False) -> str | None:
    """Why the service must not fetch `url` as a JWKS, or None when it may.

    Only https, and never a loopback, private, link-local or otherwise non-public address given
    as a literal IP or a local name: the service would otherwise read its own files (file://)
    or its own network on a tenant's say-so. `allow_insecure` (development) lifts both rules.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "it is not a valid URL"
    if allow_insecure:
        return None if parts.scheme in ("http", "https") and host else "it must be an http(s) URL with a host"
    if parts.scheme != "https":
        return "it must use https"
    if not host:
        return "it has no host"
    name = host.rstrip(".").lower()
    if name in _LOCAL_NAMES or name.endswith((".localhost", ".local", ".internal")):
        return "its host is local"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None  # a DNS name
    if not address.is_global or address.is_multicast:
        return "its host is a loopback, private, link-local or reserved address"
    return None


# After a failed fetch a JWKS URL rests 5 s, then 10, 20, ... up to 5 minutes.
JWKS_FIRST_BACKOFF_SECONDS = 5.0
JWKS_MAX_BACKOFF_SECONDS = 300.0


class JwksKeys:
    """Parsed inline key sets per tenant and one caching PyJWKClient per JWKS URL.

    Built by the app factory and held by the runtime, so key sets outlive requests but never a process.
    """

    def __init__(
        self, *, cache_seconds: float = 300, fetch_timeout_seconds: float = 5, allow_insecure: bool = False
    ) -> None:
        self._allow_insecure = allow_insecure
        self._cache_seconds = cache_seconds
        self._fetch_timeout = fetch_timeout_seconds
        # ref -> (the dict it was parsed from, the parsed set): a tenant record reloaded with
        # other keys is noticed by comparing the source, so no one has to invalidate this.
        self._inline: dict[str, tuple[dict[str, Any], jwt.PyJWKSet]] = {}
        self._clients: dict[str, jwt.PyJWKClient] = {}
        # url -> (failures in a row, monotonic time before which it is not fetched again): a dead
        # or slow JWKS endpoint costs one fetch per back-off window, not one per request.
        self._failing: dict[str, tuple[int, float]] = {}

    async def for_tenant(
        self, ref: str, *, jwks: dict[str, Any] | None, jwks_url: str | None
    ) -> jwt.PyJWKSet | None:
        """The tenant's key set: inline keys win over a URL; None when it has neither (HS256 only)."""
        if jwks:
            return self._parsed(ref, jwks)
        if not jwks_url:
            return None
        if jwks_url_problem(jwks_url, allow_insecure=self._allow_insecure) is not None:
            # A URL stored before creation checked it: never fetched.
            raise Unauthorized("The tenant's JWKS URL is not allowed.", code="jwks_unavailable")
        failures, until = self._failing.get(jwks_url, (0, 0.0))
        if time.monotonic() < until:
            raise Unauthorized("The tenant's JWKS could not be fetched.", code="jwks_unavailable")
        try:
            keys = await asyncio.to_thread(self._client(jwks_url).get_jwk_set)
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            # PyJWKClientError for most failures; a body that is not a key set can raise others.
            backoff = min(JWKS_MAX_BACKOFF_SECONDS, JWKS_FIRST_BACKOFF_SECONDS * 2**failures)
            self._failing[jwks_url] = (failures + 1, time.monotonic() + backoff)
            raise Unauthorized("The tenant's JWKS could not be fetched.", code="jwks_unavailable") from exc
        self._failing.pop(jwks_url, None)
        return keys

    def _parsed(self, ref: str, jwks: dict[str, Any]) -> jwt.PyJWKSet:
        cached = self._inline.get(ref)
        if cached is not None and (cached[0] is jwks or cached[0] == jwks):
            return cached[1]
        parsed = jwt.PyJWKSet.from_dict(jwks)
        self._inline[ref] = (jwks, parsed)
        return parsed

    def _client(self, url: str) -> jwt.PyJWKClient:
        client = self._clients.get(url)
        if client is None:
            client = jwt.PyJWKClient(
                url, cache_jwk_set=True, lifespan=self._cache_seconds, timeout=self._fetch_timeout
            )
            self._clients[url] = client
        return client
