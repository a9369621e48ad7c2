"""JwksKeys (inline sets and one client per JWKS URL) and the identifier check of the tenancy repo."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.auth.jwks import JWKS_FIRST_BACKOFF_SECONDS, JwksKeys
from app.errors import Unauthorized
from app.tenancy.repo import quote_ident


def jwk(kid: str) -> dict[str, object]:
    key = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    return {**key, "kid": kid, "alg": "ES256", "use": "sig"}


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, list[str]]]:
    """A JWKS endpoint on 127.0.0.1 that records each request path."""
    hits: list[str] = []
    body = json.dumps({"keys": [jwk("served")]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks.json", hits
    finally:
        server.shutdown()
        server.server_close()


async def test_tenants_sharing_a_jwks_url_share_one_client_and_one_fetch(jwks_server):
    url, hits = jwks_server
    keys = JwksKeys(allow_insecure=True)  # the test server is http on 127.0.0.1

    first = await keys.for_tenant("alpha", jwks=None, jwks_url=url)
    second = await keys.for_tenant("beta", jwks=None, jwks_url=url)

    assert first is not None and second is not None
    assert [k.key_id for k in first.keys] == [k.key_id for k in second.keys] == ["served"]
    assert hits == ["/jwks.json"]


async def test_inline_keys_win_over_the_url_and_a_changed_set_is_parsed_again(jwks_server):
    url, hits = jwks_server
    keys = JwksKeys()

    old = await keys.for_tenant("alpha", jwks={"keys": [jwk("old")]}, jwks_url=url)
    new = await keys.for_tenant("alpha", jwks={"keys": [jwk("new")]}, jwks_url=url)

    assert old is not None and [k.key_id for k in old.keys] == ["old"]
    assert new is not None and [k.key_id for k in new.keys] == ["new"]
    assert hits == []


async def test_a_tenant_without_keys_or_url_has_no_key_set():
    assert await JwksKeys().for_tenant("alpha", jwks=None, jwks_url=None) is None


async def test_an_unreachable_jwks_url_is_unauthorized_jwks_unavailable():
    keys = JwksKeys(fetch_timeout_seconds=1, allow_insecure=True)

    with pytest.raises(Unauthorized) as refused:
        await keys.for_tenant("alpha", jwks=None, jwks_url="http://127.0.0.1:9/jwks.json")

    assert refused.value.code == "jwks_unavailable"


async def test_a_failing_jwks_url_is_not_fetched_again_until_its_back_off_ends(monkeypatch):
    fetched: list[str] = []

    def fail(self: Any, *args: Any, **kwargs: Any) -> None:
        fetched.append(self.uri)
        raise jwt.PyJWKClientError("down")

    monkeypatch.setattr("jwt.PyJWKClient.get_jwk_set", fail)
    keys = JwksKeys(allow_insecure=True)
    url = "http://127.0.0.1:9/jwks.json"
    for _ in range(5):
        with pytest.raises(Unauthorized) as refused:
            await keys.for_tenant("alpha", jwks=None, jwks_url=url)
        assert refused.value.code == "jwks_unavailable"
    assert fetched == [url]  # four refusals cost no fetch

    clock = time.monotonic() + JWKS_FIRST_BACKOFF_SECONDS + 1
    monkeypatch.setattr("app.auth.jwks.time.monotonic", lambda: clock)
    with pytest.raises(Unauthorized):
        await keys.for_tenant("alpha", jwks=None, jwks_url=url)
    assert fetched == [url, url]  # the window ended: one more try, which doubles the next window


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/jwks.json", "file:///etc/passwd", "https://10.0.0.1/jwks", "https://localhost/k"],
)
async def test_a_jwks_url_that_is_not_public_https_is_never_fetched(url, jwks_server, monkeypatch):
    fetched: list[str] = []
    monkeypatch.setattr("jwt.PyJWKClient.get_jwk_set", lambda self, *a, **k: fetched.append(self.uri))

    with pytest.raises(Unauthorized) as refused:
        await JwksKeys().for_tenant("alpha", jwks=None, jwks_url=url)

    assert refused.value.code == "jwks_unavailable"
    assert fetched == []


@pytest.mark.parametrize("name", ["mem_app_acme", "_x", "a" * 63])
def test_quote_ident_double_quotes_a_safe_name(name):
    assert quote_ident(name) == f'"{name}"'


@pytest.mark.parametrize(
    "name",
    ['mem"; DROP DATABASE x; --', "Mem_App", "1abc", "", "a" * 64, "mem-app", "mem app", "mém", "mem_app\n"],
)
def test_quote_ident_refuses_anything_outside_the_pattern(name):
    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        quote_ident(name)
