"""Issue 9 part 6: side channels and surfaces. The query-embedding cache is partitioned per tenant
(and per signed-in user), Server-Timing is off unless MEM_SERVER_TIMING turns it on, /metrics
(and /docs when not public) need the operator's key, and CORS follows each tenant's allow-list."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from app.asgi import create_app
from app.runtime import Runtime
from app.settings import Settings
from tests.conftest import ADMIN_KEY, TenantKeys, add, new_tenant, table_counts, tenant_conn

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
ALLOWED = "https://app.example.com"
EVIL = "https://evil.example.net"
METRICS_KEY = "scrape-only-" + "m" * 24


@pytest_asyncio.fixture(loop_scope="session")
async def variant(runtime: Runtime) -> AsyncIterator[Any]:
    """An app over the shared runtime, with some settings changed (runtime and app settings alike)."""
    clients: list[httpx.AsyncClient] = []

    async def build(**changes: Any) -> httpx.AsyncClient:
        top = {k: v for k, v in changes.items() if k != "mem"}
        settings: Settings = runtime.settings.replace(**top).replace_mem(**changes.get("mem", {}))
        app: Litestar = create_app(settings, runtime=dataclasses.replace(runtime, settings=settings))
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://memory.test")
        clients.append(c)
        return c

    yield build
    for c in clients:
        await c.aclose()


async def _search(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, **body: Any
) -> httpx.Response:
    response = await client.post("/mem/v1/search", json={"query": query, **body}, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def _control_origins(runtime: Runtime, ref: str) -> list[str] | None:
    async with runtime.platform.control.pool.acquire() as conn:
        value = await conn.fetchval("SELECT cors_origins FROM control.tenants WHERE ref = $1", ref)
    return None if value is None else list(value)


# --- the query-embedding cache ------------------------------------------------------------


async def test_another_tenants_first_search_of_the_same_text_is_a_cache_miss(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    cache = runtime.query_cache
    text = f"what does alice drink {secrets.token_hex(4)}"
    await _search(client, tenant.service, text, user_id="alice")
    hits, misses = cache.hits, cache.misses
    await _search(client, tenant.service, text, user_id="alice")
    assert (cache.hits, cache.misses) == (hits + 1, misses)  # the same tenant: cached

    await _search(client, other_tenant.service, text, user_id="alice")
    assert (cache.hits, cache.misses) == (hits + 1, misses + 1)  # tenant B: a miss, nothing learned
    await _search(client, other_tenant.service, text, user_id="alice")
    assert (cache.hits, cache.misses) == (hits + 2, misses + 1)  # and then B's own entry


async def test_a_signed_in_user_does_not_hit_another_users_cached_query(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    cache = runtime.query_cache
    text = f"bob's secret question {secrets.token_hex(4)}"
    await _search(client, tenant.user("bob"), text, user_id="bob")
    hits, misses = cache.hits, cache.misses
    await _search(client, tenant.user("carol"), text, user_id="carol")
    assert (cache.hits, cache.misses) == (hits, misses + 1)
    await _search(client, tenant.user("bob"), text, user_id="bob")
    assert (cache.hits, cache.misses) == (hits + 1, misses + 1)


# --- Server-Timing ----------------------------------------------------------------------------


async def test_server_timing_is_off_by_default_and_on_with_the_setting(
    client: httpx.AsyncClient, variant: Any, tenant: TenantKeys
) -> None:
    response = await _search(client, tenant.service, "tea", user_id="alice")
    assert "server-timing" not in response.headers

    timed = await variant(mem={"server_timing": True})
    response = await _search(timed, tenant.service, "tea", user_id="alice")
    timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    assert set(timing) == {"embed", "retrieval"}
    assert all(float(v) >= 0 for v in timing.values())


def test_the_server_timing_setting_reads_mem_server_timing() -> None:
    from app.settings import load_settings

    assert load_settings({}).mem.server_timing is False
    assert load_settings({"MEM_SERVER_TIMING": "true"}).mem.server_timing is True
    assert load_settings({"MEM_PUBLIC_DOCS": "false"}).docs_are_public is False
    # Public on the embedded development server, behind the admin key in a deployment.
    assert load_settings({}).docs_are_public is True
    assert load_settings({"DATABASE_URL": "postgresql://db/x"}).docs_are_public is False
    assert load_settings({"DATABASE_URL": "postgresql://db/x", "MEM_PUBLIC_DOCS": "true"}).docs_are_public


# --- /metrics and /docs -----------------------------------------------------------------------


async def test_metrics_need_the_admin_or_metrics_key(
    client: httpx.AsyncClient, variant: Any, tenant: TenantKeys
) -> None:
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        tenant.service,
        {"authorization": f"Bearer {METRICS_KEY}"},
    ):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["code"] == "invalid_admin_key"
        assert "memory_" not in refused.text
    allowed = await client.get("/metrics", headers=ADMIN)
    assert allowed.status_code == 200
    assert "memory_embedding_cache_total" in allowed.text

    scraped = await variant(metrics_key=METRICS_KEY)
    assert (
        await scraped.get("/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"})
    ).status_code == 200
    assert (await scraped.get("/metrics", headers=ADMIN)).status_code == 200
    assert (await scraped.get("/metrics")).status_code == 401


async def test_docs_are_public_when_asked_and_admin_only_when_not(variant: Any) -> None:
    public = await variant(public_docs=True)
    assert (await public.get("/docs/openapi.json")).json()["info"]["title"] == "Memory"
    assert (await public.get("/docs")).status_code == 200

    # The test settings name a DATABASE_URL: a deployment, where /docs is the admin's by default.
    private = await variant(public_docs=None)
    for path in ("/docs", "/docs/openapi.json", "/docs/swagger"):
        refused = await private.get(path)
        assert refused.status_code == 401, path
        assert refused.json()["code"] == "invalid_admin_key"
    assert (await private.get("/docs/openapi.json", headers=ADMIN)).json()["info"]["title"] == "Memory"
    # The rest of the service is unchanged.
    assert (await private.get("/health")).status_code == 200


# --- CORS: the allow-list -------------------------------------------------------------------


async def test_a_tenant_is_created_with_its_cors_origins(client: httpx.AsyncClient, runtime: Runtime) -> None:
    ref = "c" + secrets.token_hex(6)
    response = await client.post(
        "/auth/v1/admin/tenants",
        json={
            "name": "Web app",
            "ref": ref,
            "cors_origins": ["https://App.Example.com", "http://localhost:5173"],
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    assert response.json()["cors_origins"] == [ALLOWED, "http://localhost:5173"]
    assert await _control_origins(runtime, ref) == [ALLOWED, "http://localhost:5173"]
    listed = (await client.get("/auth/v1/admin/tenants", headers=ADMIN)).json()["tenants"]
    assert next(t for t in listed if t["ref"] == ref)["cors_origins"] == [ALLOWED, "http://localhost:5173"]


@pytest.mark.parametrize(
    "origin",
    ["*", "null", "https://app.example.com/", "https://app.example.com/path", "ftp://x.example", "app.io"],
)
async def test_a_bad_origin_at_creation_creates_nothing(
    client: httpx.AsyncClient, runtime: Runtime, origin: str
) -> None:
    ref = "c" + secrets.token_hex(6)
    response = await client.post(
        "/auth/v1/admin/tenants", json={"name": "Web", "ref": ref, "cors_origins": [origin]}, headers=ADMIN
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cors_origin"
    assert await _control_origins(runtime, ref) is None  # no row


async def test_the_admin_replaces_a_tenants_origins(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    url = f"/auth/v1/admin/tenants/{tenant.ref}/cors"
    response = await client.put(url, json={"origins": [ALLOWED, ALLOWED.upper()]}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["cors_origins"] == [ALLOWED]
    assert await _control_origins(runtime, tenant.ref) == [ALLOWED]

    response = await client.put(url, json={"origins": []}, headers=ADMIN)
    assert response.json()["cors_origins"] == []
    assert await _control_origins(runtime, tenant.ref) == []


async def test_the_cors_route_refuses_non_admins_unknown_tenants_and_bad_input(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    url = f"/auth/v1/admin/tenants/{tenant.ref}/cors"
    await client.put(url, json={"origins": [ALLOWED]}, headers=ADMIN)
    bearer_service = {"authorization": f"Bearer {tenant.service_role_key}"}
    for headers in ({}, tenant.service, tenant.user("alice"), bearer_service):
        refused = await client.put(url, json={"origins": [EVIL]}, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_admin_key"
    missing = await client.put(
        "/auth/v1/admin/tenants/nosuchtenant/cors", json={"origins": []}, headers=ADMIN
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "tenant_not_found"
    bad = [
        ({"origins": ["https://ok.example", "https://x.example/path"]}, "invalid_cors_origin"),
        ({"origins": [f"https://a{i}.example" for i in range(51)]}, "invalid_cors_origin"),
        ({"origins": "https://x.example"}, None),
        ({"origins": [ALLOWED], "extra": 1}, None),
        ({}, None),
    ]
    for body, code in bad:
        refused = await client.put(url, json=body, headers=ADMIN)
        assert 400 <= refused.status_code < 500, body
        if code:
            assert refused.json()["code"] == code
    assert await _control_origins(runtime, tenant.ref) == [ALLOWED]  # unchanged


# --- CORS: the browser flow ---------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "apikey, authorization, content-type",
    }


@pytest_asyncio.fixture(loop_scope="session")
async def web(client: httpx.AsyncClient, runtime: Runtime) -> TenantKeys:
    keys = await new_tenant(runtime, "Browser app", cors_origins=[ALLOWED])
    await add(client, keys.service, "Alice drinks green tea", user_id="alice")
    return keys


async def test_a_preflight_from_a_listed_origin_is_granted(
    client: httpx.AsyncClient, web: TenantKeys
) -> None:
    response = await client.options("/mem/v1/search", headers=_preflight(ALLOWED))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"apikey", "authorization", "content-type"} <= allowed_headers
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["vary"] == "Origin"
    assert int(response.headers["access-control-max-age"]) > 0


async def test_a_preflight_from_an_origin_no_tenant_lists_is_refused(
    client: httpx.AsyncClient, web: TenantKeys
) -> None:
    response = await client.options("/mem/v1/search", headers=_preflight(EVIL))
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers


async def test_the_browser_flow_works_from_the_allowed_origin(
    client: httpx.AsyncClient, web: TenantKeys
) -> None:
    # SPEC §2: the anon key and the signed-in user's JWT, from a page on the tenant's origin.
    headers = {**web.user("alice"), "origin": ALLOWED}
    response = await client.post("/mem/v1/search", json={"query": "tea", "user_id": "alice"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in response.headers["access-control-expose-headers"]
    assert response.headers["vary"] == "Origin"
    assert [r["memory"] for r in response.json()["results"]] == ["Alice drinks green tea"]

    created = await client.post(
        "/mem/v1/memories",
        json={
            "messages": [{"role": "user", "content": "Alice likes oolong"}],
            "infer": False,
            "user_id": "alice",
        },
        headers=headers,
    )
    assert created.status_code in (200, 201), created.text
    assert created.headers["access-control-allow-origin"] == ALLOWED


async def test_another_origin_gets_no_allow_header_and_cannot_change_anything(
    client: httpx.AsyncClient, runtime: Runtime, web: TenantKeys
) -> None:
    headers = {**web.user("alice"), "origin": EVIL}
    before = await table_counts(runtime, web)
    refused = await client.post(
        "/mem/v1/memories",
        json={"messages": [{"role": "user", "content": "planted"}], "infer": False, "user_id": "alice"},
        headers=headers,
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    assert "x-request-id" in refused.headers
    assert await table_counts(runtime, web) == before
    conn = await tenant_conn(runtime, web)
    try:
        assert await conn.fetchval("SELECT count(*) FROM mem.memories WHERE memory = 'planted'") == 0
    finally:
        await conn.close()
    # A read runs (it changes nothing) but without the allow header the browser keeps it from the page.
    read = await client.get("/mem/v1/memories", params={"user_id": "alice"}, headers=headers)
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers


async def test_one_tenants_origin_is_not_allowed_for_another_tenants_keys(
    client: httpx.AsyncClient, web: TenantKeys, other_tenant: TenantKeys
) -> None:
    # The preflight passes (the origin is on *a* list), the actual request names the other tenant.
    headers = {**other_tenant.user("alice"), "origin": ALLOWED}
    refused = await client.post("/mem/v1/search", json={"query": "tea", "user_id": "alice"}, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    # No key at all (or a made-up one) from a listed origin: no allow header either.
    assert (await client.post("/mem/v1/search", json={}, headers={"origin": ALLOWED})).status_code == 403
    forged = {"apikey": "not.a.jwt", "origin": ALLOWED}
    assert (await client.post("/mem/v1/search", json={}, headers=forged)).status_code == 403


async def test_an_origin_added_or_removed_by_the_admin_takes_effect_at_once(
    client: httpx.AsyncClient, web: TenantKeys
) -> None:
    new_origin = f"http://{secrets.token_hex(4)}.localhost:5173"  # on no other test's list
    headers = {**web.user("alice"), "origin": new_origin}
    body = {"query": "tea", "user_id": "alice"}
    assert (await client.options("/mem/v1/search", headers=_preflight(new_origin))).status_code == 403
    assert (await client.post("/mem/v1/search", json=body, headers=headers)).status_code == 403

    url = f"/auth/v1/admin/tenants/{web.ref}/cors"
    assert (await client.put(url, json={"origins": [ALLOWED, new_origin]}, headers=ADMIN)).status_code == 200
    assert (await client.options("/mem/v1/search", headers=_preflight(new_origin))).status_code == 204
    granted = await client.post("/mem/v1/search", json=body, headers=headers)
    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == new_origin

    assert (await client.put(url, json={"origins": [ALLOWED]}, headers=ADMIN)).status_code == 200
    assert (await client.post("/mem/v1/search", json=body, headers=headers)).status_code == 403


async def test_same_origin_and_non_browser_requests_are_untouched(
    client: httpx.AsyncClient, web: TenantKeys
) -> None:
    body = {"query": "tea", "user_id": "alice"}
    plain = await client.post("/mem/v1/search", json=body, headers=web.service)
    assert plain.status_code == 200
    assert "access-control-allow-origin" not in plain.headers
    # Swagger UI under /docs posts with Origin = this service.
    same = await client.post(
        "/mem/v1/search", json=body, headers={**web.service, "origin": "http://memory.test"}
    )
    assert same.status_code == 200
    assert "access-control-allow-origin" not in same.headers
