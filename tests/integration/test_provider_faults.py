"""Embedding provider faults: the right 5xx with a stable code, nothing written, and recovery once the
provider answers again. The fake provider is a real HTTP server, so the real `openai` client runs."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.asgi import build_runtime, close_runtime, create_app
from app.runtime import Runtime
from tests.conftest import TenantKeys, add, make_settings, new_tenant, table_counts
from testsupport.provider_server import FakeProviderServer, Fault

CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
MEM = "/mem/v1/memories"
SEARCH = "/mem/v1/search"
SHORT_TIMEOUT = 0.5


def assert_refused(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert CODE.fullmatch(body.get("code", "")), body
    if code is not None:
        assert body["code"] == code, body
    assert isinstance(body.get("message"), str) and len(body["message"]) > 3, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert response.headers.get("x-request-id")
    return body


def _one_vector(embedding: Any) -> bytes:
    return json.dumps({"object": "list", "data": [{"index": 0, "embedding": embedding}]}).encode()


def add_body(text: str, user_id: str = "alice", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "user_id": user_id, "infer": False, **extra}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def impatient_client(
    platform_dsn: str, fake_provider: FakeProviderServer
) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same control plane and fake provider, giving up on the provider after 0.5 s."""
    settings = make_settings(platform_dsn, fake_provider).replace_mem(provider_timeout_seconds=SHORT_TIMEOUT)
    impatient = await build_runtime(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime=impatient))
        async with httpx.AsyncClient(transport=transport, base_url="http://memory.test") as client:
            yield client
    finally:
        await close_runtime(impatient)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared_tenant(runtime: Runtime, fake_provider: FakeProviderServer) -> AsyncIterator[TenantKeys]:
    """One tenant for the parametrised cases (each uses its own user): a database per case is slow."""
    keys = await new_tenant(runtime, "Provider faults")
    yield keys
    await runtime.pools.drop(keys.ref)


async def _history(client: httpx.AsyncClient, keys: TenantKeys, memory_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{MEM}/{memory_id}/history", headers=keys.service)
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("status", [500, 502, 503, 400, 401])
async def test_add_answers_502_and_writes_nothing_when_the_provider_fails(
    client: httpx.AsyncClient,
    runtime: Runtime,
    shared_tenant: TenantKeys,
    fake_provider: FakeProviderServer,
    status: int,
) -> None:
    keys, user = shared_tenant, f"user-{status}"
    await add(client, keys.service, "An earlier memory", user_id=user)
    before = await table_counts(runtime, keys)
    calls = fake_provider.count("embeddings")
    fake_provider.fail_next("embeddings", Fault(status=status))

    body = add_body("I moved to Lisbon", user_id=user)
    response = await client.post(MEM, json=body, headers=keys.service)

    assert_refused(response, 502, "provider_error")
    assert fake_provider.count("embeddings") == calls + 1
    assert await table_counts(runtime, keys) == before  # memories, history, session_messages, ...
    listed = await client.get(MEM, params={"user_id": user}, headers=keys.service)
    assert [m["memory"] for m in listed.json()["results"]] == ["An earlier memory"]

    retried = await client.post(MEM, json=body, headers=keys.service)
    assert retried.status_code == 200, retried.text
    assert [r["event"] for r in retried.json()["results"]] == ["ADD"]
    after = await table_counts(runtime, keys)
    assert after["memories"] == before["memories"] + 1
    assert after["memory_history"] == before["memory_history"] + 1
    assert after["session_messages"] > before["session_messages"]


async def test_a_failed_add_of_several_messages_writes_none_of_them(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    # One message is already stored (no embedding needed), two are new: the fault must not leave a half.
    await add(client, tenant.service, "I drink coffee")
    before = await table_counts(runtime, tenant)
    fake_provider.fail_next("embeddings", Fault(status=500))
    messages = [
        {"role": "user", "content": "I drink coffee"},
        {"role": "assistant", "content": "Noted, coffee it is"},
        {"role": "user", "content": "I also keep bees"},
    ]
    response = await client.post(
        MEM, json={"messages": messages, "user_id": "alice", "infer": False}, headers=tenant.service
    )
    assert_refused(response, 502, "provider_error")
    assert await table_counts(runtime, tenant) == before


async def test_a_rate_limited_provider_gives_503_with_retry_after(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    before = await table_counts(runtime, tenant)
    fake_provider.fail_next("embeddings", Fault(status=429, retry_after=7))

    response = await client.post(MEM, json=add_body("I like jazz"), headers=tenant.service)

    assert_refused(response, 503, "provider_rate_limited")
    assert response.headers["retry-after"] == "7"
    assert await table_counts(runtime, tenant) == before
    retried = await client.post(MEM, json=add_body("I like jazz"), headers=tenant.service)
    assert retried.status_code == 200, retried.text


async def test_an_unreachable_provider_gives_503(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    before = await table_counts(runtime, tenant)
    fake_provider.fail_next("embeddings", Fault(disconnect=True))

    response = await client.post(MEM, json=add_body("I like chess"), headers=tenant.service)

    assert_refused(response, 503, "provider_unavailable")
    assert await table_counts(runtime, tenant) == before


async def test_a_provider_slower_than_the_timeout_gives_504_and_writes_nothing(
    impatient_client: httpx.AsyncClient,
    runtime: Runtime,
    tenant: TenantKeys,
    fake_provider: FakeProviderServer,
) -> None:
    before = await table_counts(runtime, tenant)
    fake_provider.fail_next("embeddings", Fault(delay=SHORT_TIMEOUT * 4))

    response = await impatient_client.post(MEM, json=add_body("I like slow food"), headers=tenant.service)

    assert_refused(response, 504, "provider_timeout")
    assert await table_counts(runtime, tenant) == before
    retried = await impatient_client.post(MEM, json=add_body("I like slow food"), headers=tenant.service)
    assert retried.status_code == 200, retried.text


async def test_a_search_slower_than_the_timeout_gives_504(
    impatient_client: httpx.AsyncClient, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    fake_provider.fail_next("embeddings", Fault(delay=SHORT_TIMEOUT * 4))
    response = await impatient_client.post(
        SEARCH, json={"query": "what is slow to answer", "user_id": "alice"}, headers=tenant.service
    )
    assert_refused(response, 504, "provider_timeout")


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        pytest.param(
            Fault(body=b"<html>Bad gateway</html>", content_type="text/html"), "provider_error", id="html"
        ),
        pytest.param(Fault(body=b"this is not json"), "provider_error", id="not-json"),
        pytest.param(Fault(body=_one_vector("not numbers")), "provider_error", id="text"),
        pytest.param(Fault(body=b'{"object": "list", "data": []}'), "provider_error", id="no-vectors"),
        pytest.param(Fault(body=b"[1, 2, 3]"), "provider_error", id="json-array"),
        pytest.param(Fault(truncate=True), "provider_error", id="truncated"),
        # Readable numbers of the wrong shape are a size mismatch.
        pytest.param(Fault(body=_one_vector(1.5)), "embedding_dimension_mismatch", id="scalar"),
        pytest.param(Fault(body=_one_vector([[1, 2]])), "embedding_dimension_mismatch", id="nested"),
    ],
)
async def test_an_unreadable_provider_answer_gives_502_and_writes_nothing(
    client: httpx.AsyncClient,
    runtime: Runtime,
    shared_tenant: TenantKeys,
    fake_provider: FakeProviderServer,
    request: pytest.FixtureRequest,
    fault: Fault,
    code: str,
) -> None:
    keys, body = shared_tenant, add_body("I like tapas", user_id=request.node.callspec.id)
    before = await table_counts(runtime, keys)
    fake_provider.fail_next("embeddings", fault)

    response = await client.post(MEM, json=body, headers=keys.service)

    assert_refused(response, 502, code)
    assert await table_counts(runtime, keys) == before
    retried = await client.post(MEM, json=body, headers=keys.service)
    assert retried.status_code == 200, retried.text


async def test_vectors_of_the_wrong_size_give_502_and_write_nothing(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    before = await table_counts(runtime, tenant)
    fake_provider.embedding_dims_override = 10

    response = await client.post(MEM, json=add_body("I like sushi"), headers=tenant.service)

    assert_refused(response, 502, "embedding_dimension_mismatch")
    assert await table_counts(runtime, tenant) == before
    search = await client.post(
        SEARCH, json={"query": "which food do I like", "user_id": "alice"}, headers=tenant.service
    )
    assert_refused(search, 502, "embedding_dimension_mismatch")

    fake_provider.embedding_dims_override = None
    retried = await client.post(MEM, json=add_body("I like sushi"), headers=tenant.service)
    assert retried.status_code == 200, retried.text


async def test_search_during_a_provider_fault_is_an_error_not_an_empty_result(
    client: httpx.AsyncClient, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    await add(client, tenant.service, "I play the cello")
    # A query no other test embeds, so the query cache cannot answer it.
    query = {"query": "which instrument does alice play in the provider fault test", "user_id": "alice"}
    fake_provider.fail_next("embeddings", Fault(status=500))

    response = await client.post(SEARCH, json=query, headers=tenant.service)

    assert_refused(response, 502, "provider_error")
    recovered = await client.post(SEARCH, json=query, headers=tenant.service)
    assert recovered.status_code == 200, recovered.text
    assert [r["memory"] for r in recovered.json()["results"]] == ["I play the cello"]


async def test_update_during_a_provider_fault_keeps_the_old_text_and_writes_no_history(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    item = await add(client, tenant.service, "I live in Porto", metadata={"city": "porto"})
    before_counts = await table_counts(runtime, tenant)
    before_memory = (await client.get(f"{MEM}/{item['id']}", headers=tenant.service)).json()
    fake_provider.fail_next("embeddings", Fault(status=500))

    response = await client.put(
        f"{MEM}/{item['id']}",
        json={"text": "I live in Lisbon", "metadata": {"city": "lisbon"}},
        headers=tenant.service,
    )

    assert_refused(response, 502, "provider_error")
    assert (await client.get(f"{MEM}/{item['id']}", headers=tenant.service)).json() == before_memory
    assert [h["event"] for h in await _history(client, tenant, item["id"])] == ["ADD"]
    assert await table_counts(runtime, tenant) == before_counts

    retried = await client.put(
        f"{MEM}/{item['id']}", json={"text": "I live in Lisbon"}, headers=tenant.service
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["memory"] == "I live in Lisbon"
    assert [h["event"] for h in await _history(client, tenant, item["id"])] == ["ADD", "UPDATE"]


async def test_a_metadata_only_update_needs_no_provider(
    client: httpx.AsyncClient, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    item = await add(client, tenant.service, "I live in Faro")
    fake_provider.set_fault(Fault(status=500), "embeddings")
    response = await client.put(
        f"{MEM}/{item['id']}", json={"metadata": {"city": "faro"}}, headers=tenant.service
    )
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"city": "faro"}


async def test_a_persistent_fault_fails_every_add_until_it_clears(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    before = await table_counts(runtime, tenant)
    fake_provider.set_fault(Fault(status=503), "embeddings")
    for n in range(3):
        response = await client.post(MEM, json=add_body(f"Fact number {n}"), headers=tenant.service)
        assert_refused(response, 502, "provider_error")
    assert await table_counts(runtime, tenant) == before

    fake_provider.set_fault(None, "embeddings")
    response = await client.post(MEM, json=add_body("Fact number 0"), headers=tenant.service)
    assert response.status_code == 200, response.text
