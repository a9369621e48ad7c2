"""Inputs from an attack probe that once answered 500: each is now a 4xx (or 503) with a stable code,
no trace in the body, and nothing changed in the tenant's database or the control plane."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.auth.jwks import jwks_url_problem
from app.runtime import Runtime
from tests.conftest import ADMIN_KEY, TenantKeys, add, new_tenant, table_counts
from tests.integration.test_bad_input import JSON_HEADERS, Bad, assert_refused, bad
from testsupport.provider_server import FakeProviderServer

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MEM = "/mem/v1/memories"
SEARCH = "POST /mem/v1/search"
ADD = "POST /mem/v1/memories"
LIST = "GET /mem/v1/memories"
DELETE_ALL = "DELETE /mem/v1/memories"
UPDATE = "PUT /mem/v1/memories/{id}"
ENTITIES = "GET /mem/v1/entities"
CREATE_TENANT = "POST /auth/v1/admin/tenants"

HUGE_INT = "9" * 5000  # over Python's 4,300-digit int/str conversion limit
DEEP = 20_000  # arrays: 2 bytes a level, within the 64 KiB body and httpx's query limits
DEEP_OBJECTS = 5_000  # objects: 6 bytes a level; far past Python's recursion limit all the same
# In a URL each bracket is percent-encoded and httpx caps a query at 64 KiB.
DEEP_QUERY_ARRAYS = 8_000
DEEP_QUERY_OBJECTS = 2_000
LONE = "\\ud800"  # a lone surrogate, as JSON writes it: valid JSON, not encodable as UTF-8


def raw(text: str) -> bytes:
    return text.encode()


def deep_json(depth: int, inner: str = '"x"') -> str:
    return '{"a":' * depth + inner + "}" * depth


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def search_raw(filters: str) -> bytes:
    return raw('{"query": "tea", "user_id": "alice", "filters": ' + filters + "}")


def add_raw(**fields: str) -> bytes:
    body = {
        "messages": '[{"role": "user", "content": "I like oolong"}]',
        "user_id": '"alice"',
        "infer": "false",
    }
    body.update(fields)
    return raw("{" + ", ".join(f'"{k}": {v}' for k, v in body.items()) + "}")


def owned(**params: str) -> dict[str, str]:
    return {"user_id": "alice", **params}


def created_at(op: str, value: str) -> str:
    return json.dumps({"created_at": {op: value}})


LATE = "9999-12-31T23:59:59-14:00"  # in UTC: after year 9999
EARLY = "0001-01-01T00:00:00+14:00"  # in UTC: before year 1
LAST_DAY = "9999-12-31"  # a date means "through that day": the day after does not exist

CASES = [
    # Integers over 4,300 digits, in a body and in the filters query parameter.
    bad("search-huge-int-filter", SEARCH, raw=search_raw('{"n": ' + HUGE_INT + "}"), status=400),
    bad(
        "search-huge-int-in-list", SEARCH, raw=search_raw('{"n": {"in": [1, ' + HUGE_INT + "]}}"), status=400
    ),
    bad("add-huge-int-metadata", ADD, raw=add_raw(metadata='{"n": ' + HUGE_INT + "}"), status=400),
    bad(
        "list-huge-int-filter",
        LIST,
        params=owned(filters='{"n": ' + HUGE_INT + "}"),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "delete-huge-int-filter",
        DELETE_ALL,
        params=owned(filters='{"n": ' + HUGE_INT + "}"),
        status=400,
        code="invalid_filter",
    ),
    # Nesting 20,000 levels deep, in a body and in a filter.
    bad("search-deep-body", SEARCH, raw=raw(deep_json(DEEP_OBJECTS)), status=400, code="invalid_body"),
    bad("search-deep-array-body", SEARCH, raw=raw(deep_array(DEEP)), status=400, code="invalid_body"),
    bad(
        "search-deep-filter", SEARCH, raw=search_raw(deep_json(DEEP_OBJECTS)), status=400, code="invalid_body"
    ),
    bad(
        "add-deep-metadata",
        ADD,
        raw=add_raw(metadata=deep_json(DEEP_OBJECTS)),
        status=400,
        code="invalid_body",
    ),
    # Deeper than MAX_JSON_DEPTH but well within the recursion limit: refused by the walk.
    bad("add-metadata-100-deep", ADD, raw=add_raw(metadata=deep_json(100)), status=400, code="invalid_body"),
    bad(
        "search-filter-100-deep-array",
        SEARCH,
        raw=search_raw(deep_json(2, deep_array(100))),
        status=400,
        code="invalid_body",
    ),
    bad("update-deep-body", UPDATE, raw=raw(deep_array(DEEP)), status=400, code="invalid_body"),
    bad(
        "tenant-deep-jwks",
        CREATE_TENANT,
        raw=raw('{"name": "x", "jwks": ' + deep_json(DEEP_OBJECTS) + "}"),
        status=400,
        code="invalid_body",
    ),
    bad(
        "list-deep-filter",
        LIST,
        params=owned(filters=deep_array(DEEP_QUERY_ARRAYS)),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "list-deep-object-filter",
        LIST,
        params=owned(filters=deep_json(DEEP_QUERY_OBJECTS)),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "list-filter-100-deep", LIST, params=owned(filters=deep_json(100)), status=400, code="invalid_filter"
    ),
    bad(
        "delete-deep-filter",
        DELETE_ALL,
        params=owned(filters=deep_array(DEEP_QUERY_ARRAYS)),
        status=400,
        code="invalid_filter",
    ),
    # Dates Python can parse but not shift to UTC, or that Postgres cannot store.
    bad(
        "search-late-created-at",
        SEARCH,
        {"query": "tea", "user_id": "alice", "filters": json.loads(created_at("gte", LATE))},
        400,
        "invalid_filter",
    ),
    bad(
        "search-early-created-at",
        SEARCH,
        {"query": "tea", "user_id": "alice", "filters": json.loads(created_at("lt", EARLY))},
        400,
        "invalid_filter",
    ),
    bad(
        "list-late-created-at",
        LIST,
        params=owned(filters=created_at("gt", LATE)),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "list-early-in",
        LIST,
        params=owned(filters=json.dumps({"updated_at": {"in": [EARLY]}})),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "delete-early-created-at",
        DELETE_ALL,
        params=owned(filters=created_at("lte", EARLY)),
        status=400,
        code="invalid_filter",
    ),
    bad(
        "add-late-expiration",
        ADD,
        {"messages": "x", "user_id": "alice", "infer": False, "expiration_date": LATE},
        400,
        "invalid_expiration_date",
    ),
    bad(
        "add-last-day-expiration",
        ADD,
        {"messages": "x", "user_id": "alice", "infer": False, "expiration_date": LAST_DAY},
        400,
        "invalid_expiration_date",
    ),
    bad(
        "add-early-expiration",
        ADD,
        {"messages": "x", "user_id": "alice", "infer": False, "expiration_date": EARLY},
        400,
        "invalid_expiration_date",
    ),
    # A lone surrogate in every text field: valid JSON by the grammar, with no UTF-8 form. msgspec
    # refuses it in a body; the filters parameter and a token's claims are checked by us.
    bad(
        "add-surrogate-text",
        ADD,
        raw=add_raw(messages=f'"I like {LONE} tea"'),
        status=400,
        code="malformed_json",
    ),
    bad(
        "add-surrogate-user-id", ADD, raw=add_raw(user_id=f'"al{LONE}ice"'), status=400, code="malformed_json"
    ),
    bad(
        "add-surrogate-metadata-key",
        ADD,
        raw=add_raw(metadata=f'{{"k{LONE}": 1}}'),
        status=400,
        code="malformed_json",
    ),
    bad(
        "add-surrogate-metadata-value",
        ADD,
        raw=add_raw(metadata=f'{{"k": "v{LONE}"}}'),
        status=400,
        code="malformed_json",
    ),
    bad(
        "search-surrogate-query",
        SEARCH,
        raw=raw(f'{{"query": "t{LONE}a", "user_id": "alice"}}'),
        status=400,
        code="malformed_json",
    ),
    bad(
        "search-surrogate-filter",
        SEARCH,
        raw=search_raw(f'{{"topic": "t{LONE}a"}}'),
        status=400,
        code="malformed_json",
    ),
    bad(
        "update-surrogate-text", UPDATE, raw=raw(f'{{"text": "t{LONE}a"}}'), status=400, code="malformed_json"
    ),
    bad("list-surrogate-filter", LIST, params=owned(filters=f'{{"topic": "t{LONE}a"}}'), status=400),
    bad(
        "tenant-surrogate-name",
        CREATE_TENANT,
        raw=raw(f'{{"name": "a{LONE}"}}'),
        status=400,
        code="malformed_json",
    ),
    # Pages past what Postgres can OFFSET, and sizes no one can hold.
    bad("entities-huge-page", ENTITIES, params=owned(page=str(10**30)), status=400),
    bad("entities-huge-page-size", ENTITIES, params=owned(page_size=str(10**30)), status=400),
    bad("entities-page-past-bigint", ENTITIES, params=owned(page=str(2**62), page_size="50"), status=400),
    bad("memories-huge-page", LIST, params=owned(page=str(10**30)), status=400),
    bad("memories-huge-page-size", LIST, params=owned(page_size=str(10**30)), status=400),
    bad("memories-huge-page-alias", LIST, params=owned(pageSize=str(10**30)), status=400),
    bad("memories-page-digits", LIST, params=owned(page=HUGE_INT), status=400),
    # JWKS URLs the service must never fetch.
    bad(
        "tenant-file-jwks",
        CREATE_TENANT,
        {"name": "x", "jwks_url": "file:///etc/passwd"},
        400,
        "invalid_jwks_url",
    ),
    bad(
        "tenant-http-jwks",
        CREATE_TENANT,
        {"name": "x", "jwks_url": "http://example.com/jwks"},
        400,
        "invalid_jwks_url",
    ),
    bad(
        "tenant-loopback-jwks",
        CREATE_TENANT,
        {"name": "x", "jwks_url": "https://127.0.0.1/jwks"},
        400,
        "invalid_jwks_url",
    ),
    bad(
        "tenant-localhost-jwks",
        CREATE_TENANT,
        {"name": "x", "jwks_url": "https://localhost:8443/k"},
        400,
        "invalid_jwks_url",
    ),
    bad(
        "tenant-private-jwks",
        CREATE_TENANT,
        {"name": "x", "jwks_url": "https://10.1.2.3/jwks"},
        400,
        "invalid_jwks_url",
    ),
    bad(
        "tenant-link-local-jwks",
        CREATE_TENANT,
        {"name": "x", "jwks_url": "https://169.254.169.254/x"},
        400,
        "invalid_jwks_url",
    ),
    bad(
        "tenant-ipv6-loopback-jwks",
        CREATE_TENANT,
        {"name": "x", "jwks_url": "https://[::1]/jwks"},
        400,
        "invalid_jwks_url",
    ),
    bad(
        "tenant-no-host-jwks",
        CREATE_TENANT,
        {"name": "x", "jwks_url": "https:///jwks"},
        400,
        "invalid_jwks_url",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded(client: httpx.AsyncClient, runtime: Runtime, fake_provider: FakeProviderServer) -> Any:
    """One tenant with one memory for the whole table; each case proves it changed nothing."""
    keys = await new_tenant(runtime, "Attack inputs")
    item = await add(client, keys.service, "I like green tea", metadata={"topic": "tea"})
    yield keys, item["id"]
    await runtime.pools.drop(keys.ref)


async def _tenants(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/auth/v1/admin/tenants", headers=ADMIN)
    assert response.status_code == 200
    return sorted(t["ref"] for t in response.json()["tenants"])


async def _state(
    client: httpx.AsyncClient, runtime: Runtime, keys: TenantKeys, memory_id: str
) -> dict[str, Any]:
    memory = await client.get(f"{MEM}/{memory_id}", headers=keys.service)
    assert memory.status_code == 200
    return {
        "counts": await table_counts(runtime, keys),
        "memory": memory.json(),
        "tenants": await _tenants(client),
    }


@pytest.mark.parametrize("case", CASES)
async def test_attack_input_is_refused_with_a_code_and_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, seeded: Any, case: Bad
) -> None:
    keys, memory_id = seeded
    before = await _state(client, runtime, keys, memory_id)
    headers = dict(ADMIN if case.admin else keys.service)
    kwargs: dict[str, Any] = {"params": case.params, "headers": headers}
    if case.raw is not None:
        kwargs["content"] = case.raw
        headers.update(JSON_HEADERS)
    elif case.body is not None:
        kwargs["json"] = case.body
    response = await client.request(case.method, case.path.format(id=memory_id), **kwargs)
    assert_refused(response, set(case.status), case.code)
    assert await _state(client, runtime, keys, memory_id) == before
    # The tenant still answers.
    item = await add(client, keys.service, f"Still here after {case.method} {case.path}", user_id="bob")
    assert item["event"] == "ADD"
    await client.delete(f"{MEM}/{item['id']}", headers=keys.service)


async def test_a_lone_surrogate_as_a_tokens_subject_is_an_invalid_token(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    before = await table_counts(runtime, tenant)
    for sub in ("\ud800", "al\udfffice"):
        headers = tenant.user(sub)
        listing = await client.get(MEM, headers=headers)
        assert_refused(listing, 401, "invalid_token")
        added = await client.post(MEM, json={"messages": "I like tea", "infer": False}, headers=headers)
        assert_refused(added, 401, "invalid_token")
    # The service key narrowed by such a token is refused as well, not widened.
    narrowed = {**tenant.service, "authorization": headers["authorization"]}
    assert_refused(await client.get(MEM, headers=narrowed), 401, "invalid_token")
    assert await table_counts(runtime, tenant) == before


async def _store_jwks_url(runtime: Runtime, keys: TenantKeys, url: str) -> None:
    """A JWKS URL written before creation checked it (or by hand): the row as an old tenant has it."""
    conn = await asyncpg.connect(runtime.platform.control_dsn)
    try:
        await conn.execute("UPDATE control.tenants SET jwks_url = $1 WHERE ref = $2", url, keys.ref)
    finally:
        await conn.close()
    runtime.platform.registry.forget(keys.ref)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "http://127.0.0.1:9/jwks.json", "https://169.254.169.254/latest/meta-data"],
    ids=["file", "loopback", "link-local"],
)
async def test_a_tenant_with_an_unsafe_jwks_url_still_serves_hs256_users_and_never_fetches_it(
    client: httpx.AsyncClient, runtime: Runtime, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = await new_tenant(runtime, "Unsafe JWKS")
    try:
        await _store_jwks_url(runtime, keys, url)
        fetched: list[str] = []
        monkeypatch.setattr(jwt.PyJWKClient, "get_jwk_set", lambda self, *a, **k: fetched.append(self.uri))

        # An HS256 user works: its token never needs the key set.
        item = await add(client, keys.user("alice"), "I like rooibos", user_id=None)
        assert item["event"] == "ADD"
        listing = await client.get(MEM, headers=keys.user("alice"))
        assert listing.status_code == 200 and len(listing.json()["results"]) == 1

        # An ES256 token would need it: a 401 with a code, and still no fetch of that URL.
        before = await table_counts(runtime, keys)
        claims = {"sub": "alice", "role": "authenticated", "aud": "authenticated", "exp": 4_000_000_000}
        token = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), "ES256", headers={"kid": "k1"})
        response = await client.get(MEM, headers={**keys.anon, "authorization": f"Bearer {token}"})
        assert_refused(response, 401, "jwks_unavailable")
        assert fetched == []
        assert await table_counts(runtime, keys) == before
    finally:
        await runtime.pools.drop(keys.ref)


async def test_a_jwks_endpoint_that_answers_garbage_is_a_401_not_a_500(
    client: httpx.AsyncClient, runtime: Runtime, fake_provider: FakeProviderServer
) -> None:
    """A reachable JWKS URL whose answer is not a key set: jwks_unavailable, never a 500."""
    keys = await new_tenant(runtime, "Garbage JWKS")
    # Allowed for this test only (development setting): the fake provider's models endpoint.
    runtime.jwks._allow_insecure = True
    try:
        await _store_jwks_url(runtime, keys, fake_provider.openai_base_url + "/models")
        claims = {"sub": "alice", "role": "authenticated", "exp": 4_000_000_000}
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims, key, "RS256", headers={"kid": "r1"})
        response = await client.get(MEM, headers={**keys.anon, "authorization": f"Bearer {token}"})
        assert_refused(response, 401, "jwks_unavailable")
    finally:
        runtime.jwks._allow_insecure = False
        await runtime.pools.drop(keys.ref)


async def test_creating_a_tenant_with_an_insecure_jwks_url_is_allowed_only_by_the_development_setting(
    runtime: Runtime,
) -> None:
    assert jwks_url_problem("https://issuer.example.com/.well-known/jwks.json") is None
    assert jwks_url_problem("https://8.8.8.8/jwks") is None
    for url in (
        "http://127.0.0.1:9/jwks",
        "https://localhost/jwks",
        "https://[fe80::1]/k",
        "ftp://x.example/k",
    ):
        assert jwks_url_problem(url) is not None, url
    assert jwks_url_problem("http://127.0.0.1:9/jwks", allow_insecure=True) is None
    assert jwks_url_problem("file:///etc/passwd", allow_insecure=True) is not None
