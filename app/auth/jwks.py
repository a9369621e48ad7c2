"""The public keys a tenant's user tokens may be signed with: an inline JWKS or a JWKS URL."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt

from app.errors import Unauthorized


class JwksKeys:
    """Parsed inline key sets per tenant and one caching PyJWKClient per JWKS URL.

    Built by the app factory and held by the runtime, so key sets outlive requests but never a process.
    """

    def __init__(self, *, cache_seconds: float = 300, fetch_timeout_seconds: float = 5) -> None:
        self._cache_seconds = cache_seconds
        self._fetch_timeout = fetch_timeout_seconds
        # ref -> (the dict it was parsed from, the parsed set): a tenant record reloaded with
        # other keys is noticed by comparing the source, so no one has to invalidate this.
        self._inline: dict[str, tuple[dict[str, Any], jwt.PyJWKSet]] = {}
        self._clients: dict[str, jwt.PyJWKClient] = {}

    async def for_tenant(
        self, ref: str, *, jwks: dict[str, Any] | None, jwks_url: str | None
    ) -> jwt.PyJWKSet | None:
        """The tenant's key set: inline keys win over a URL; None when it has neither (HS256 only)."""
        if jwks:
            return self._parsed(ref, jwks)
        if not jwks_url:
            return None
        try:
            return await asyncio.to_thread(self._client(jwks_url).get_jwk_set)
        except jwt.PyJWKClientError as exc:
            raise Unauthorized("The tenant's JWKS could not be fetched.", code="jwks_unavailable") from exc

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
