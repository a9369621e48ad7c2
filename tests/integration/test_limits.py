"""Issue 9: per-tenant rate limits (per key role), in-flight caps, the admin API that sets a
tenant's own limits, the connection budget, and 503 database_busy instead of a long wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from app.runtime import Runtime
from tests.conftest import ADMIN_KEY, TenantKeys, add, table_counts, tenant_conn
from testsupport.provider_server import FakeProviderServer, Fault

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


async def _set_limits(client: httpx.AsyncClient, ref: str, **limits: int) -> dict[str, Any]:
    response = await client.put(f"/auth/v1/admin/tenants/{ref}/limits", json=limits, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _list(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get("/mem/v1/memories", params={"user_id": "alice"}, headers=headers)


def _assert_rate_limited(response: httpx.Response, limit: str) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "rate_limited"
    assert body["details"]["limit"] == limit
    assert set(body) <= {"code", "message", "details", "hint"}
    assert 1 <= int(response.headers["retry-after"]) <= 2


async def test_requests_over_the_rate_get_429_with_retry_after_per_role(
    client: httpx.AsyncClient, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    await _set_limits(client, tenant.ref, user_requests_per_second=2, service_requests_per_second=3)
    user = tenant.user("alice")
    assert [(await _list(client, user)).status_code for _ in range(2)] == [200, 200]
    _assert_rate_limited(await _list(client, user), "user_requests_per_second")
    # The service_role key has its own budget, larger here.
    assert [(await _list(client, tenant.service)).status_code for _ in range(3)] == [200] * 3
    _assert_rate_limited(await _list(client, tenant.service), "service_requests_per_second")
    # Another tenant, on the platform defaults, is untouched.
    assert (await _list(client, other_tenant.service)).status_code == 200
    assert (await _list(client, other_tenant.user("alice"))).status_code == 200
    # The window moves on: after Retry-After the tenant is served again.
    await asyncio.sleep(1.05)
    assert (await _list(client, user)).status_code == 200


async def test_adds_have_their_own_rate_and_a_refused_add_writes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    await _set_limits(client, tenant.ref, service_adds_per_second=1, user_adds_per_second=1)
    await add(client, tenant.service, "I like tea")
    before = await table_counts(runtime, tenant)
    refused = await client.post(
        "/mem/v1/memories",
        json={"messages": [{"role": "user", "content": "I like coffee"}], "user_id": "alice", "infer": False},
        headers=tenant.service,
    )
    _assert_rate_limited(refused, "service_adds_per_second")
    assert await table_counts(runtime, tenant) == before
    # Reads are not adds: they still pass.
    assert (await _list(client, tenant.service)).status_code == 200
    # The user class has its own add budget.
    await add(client, tenant.user("alice"), "I like green tea", user_id=None)
    assert (await table_counts(runtime, tenant))["memories"] == before["memories"] + 1


async def test_a_tenant_over_its_in_flight_cap_is_refused_at_once(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant: TenantKeys,
    other_tenant: TenantKeys,
    fake_provider: FakeProviderServer,
) -> None:
    await _set_limits(client, tenant.ref, max_in_flight=2)
    fake_provider.fail_next("embeddings", Fault(delay=1.0), times=2)

    async def slow_search(n: int) -> httpx.Response:
        return await client.post(
            "/mem/v1/search", json={"query": f"slow query {n}", "user_id": "alice"}, headers=tenant.service
        )

    slow = [asyncio.create_task(slow_search(n)) for n in range(2)]
    for _ in range(100):
        if runtime.limits.in_flight_count(tenant.ref) == 2:
            break
        await asyncio.sleep(0.01)
    assert runtime.limits.in_flight_count(tenant.ref) == 2
    started = time.perf_counter()
    refused = await _list(client, tenant.service)
    assert time.perf_counter() - started < 0.5  # answered at once, not after the slow ones
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "concurrency_limited"
    assert refused.headers["retry-after"] == "1"
    # Another tenant is served meanwhile.
    assert (await _list(client, other_tenant.service)).status_code == 200
    assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200]
    assert runtime.limits.in_flight_count(tenant.ref) == 0
    assert (await _list(client, tenant.service)).status_code == 200


async def test_admin_limits_route_shows_and_replaces_a_tenants_own_limits(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    shown = await client.get(f"/auth/v1/admin/tenants/{tenant.ref}/limits", headers=ADMIN)
    assert shown.status_code == 200, shown.text
    defaults = runtime.settings.limits
    assert shown.json() == {
        "ref": tenant.ref,
        "limits": {},
        "effective": {
            "user_requests_per_second": defaults.user_requests_per_second,
            "user_adds_per_second": defaults.user_adds_per_second,
            "service_requests_per_second": defaults.service_requests_per_second,
            "service_adds_per_second": defaults.service_adds_per_second,
            "max_in_flight": defaults.max_in_flight,
        },
    }
    body = await _set_limits(client, tenant.ref, max_in_flight=3, user_adds_per_second=4)
    assert body["limits"] == {"max_in_flight": 3, "user_adds_per_second": 4}
    assert body["effective"]["max_in_flight"] == 3
    assert body["effective"]["service_requests_per_second"] == defaults.service_requests_per_second
    # Stored in the control plane, and PUT replaces: absent keys go back to the defaults.
    async with runtime.platform.control.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT limits FROM control.tenants WHERE ref = $1", tenant.ref)
    assert stored == '{"max_in_flight": 3, "user_adds_per_second": 4}'
    body = await _set_limits(client, tenant.ref)
    assert body["limits"] == {}
    assert (await runtime.platform.get_tenant(tenant.ref)).limits == {}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"max_in_flight": 0}, "validation_failed"),
        ({"user_requests_per_second": -5}, "validation_failed"),
        ({"user_requests_per_second": "fast"}, "validation_failed"),
        ({"requests_per_second": 5}, "unknown_field"),
    ],
)
async def test_admin_limits_route_refuses_bad_input_and_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, payload: dict[str, Any], code: str
) -> None:
    await _set_limits(client, tenant.ref, max_in_flight=7)
    response = await client.put(f"/auth/v1/admin/tenants/{tenant.ref}/limits", json=payload, headers=ADMIN)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["code"] == code
    assert (await runtime.platform.get_tenant(tenant.ref)).limits == {"max_in_flight": 7}


async def test_admin_limits_route_needs_the_admin_key_and_a_real_tenant(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    path = f"/auth/v1/admin/tenants/{tenant.ref}/limits"
    for headers in ({}, tenant.service, {"authorization": f"Bearer {tenant.service_role_key}"}):
        assert (await client.get(path, headers=headers)).status_code == 401
        refused = await client.put(path, json={"max_in_flight": 1}, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_admin_key"
    assert (await runtime.platform.get_tenant(tenant.ref)).limits == {}
    for ref in ("tnosuchtenant", "BAD-REF"):
        missing = await client.put(f"/auth/v1/admin/tenants/{ref}/limits", json={}, headers=ADMIN)
        assert missing.status_code == 404, missing.text
        assert (await client.get(f"/auth/v1/admin/tenants/{ref}/limits", headers=ADMIN)).status_code == 404


async def test_tenant_pools_fit_in_the_servers_connections(runtime: Runtime, tenant: TenantKeys) -> None:
    conn = await tenant_conn(runtime, tenant)
    try:
        max_connections = int(await conn.fetchval("SHOW max_connections"))
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections"))
    finally:
        await conn.close()
    budget = max_connections - reserved - runtime.settings.db_connection_reserve
    assert runtime.pools.max_size * runtime.pools.max_pools <= budget
    assert runtime.pools.max_size <= runtime.settings.pool_max_size


async def test_a_request_without_a_free_connection_gets_503_quickly(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    pool = await runtime.pools.get(tenant.ref)
    held = [await pool.acquire() for _ in range(runtime.pools.max_size)]
    try:
        started = time.perf_counter()
        response = await _list(client, tenant.service)
        waited = time.perf_counter() - started
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_busy"
        assert response.headers["retry-after"] == "1"
        assert waited < runtime.settings.pool_acquire_timeout_seconds + 1
        assert (await _list(client, other_tenant.service)).status_code == 200
    finally:
        for conn in held:
            await pool.release(conn)
    assert (await _list(client, tenant.service)).status_code == 200


async def test_in_flight_slots_come_back_after_errors_and_refusals(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    missing = await client.get(
        "/mem/v1/memories/00000000-0000-4000-8000-000000000000", headers=tenant.service
    )
    assert missing.status_code == 404, missing.text
    bad = await client.post("/mem/v1/search", json={"query": ""}, headers=tenant.service)
    assert 400 <= bad.status_code < 500, bad.text
    anonymous = await _list(client, tenant.anon)
    assert anonymous.status_code == 403
    assert runtime.limits.in_flight_count(tenant.ref) == 0
