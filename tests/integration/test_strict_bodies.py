"""Strict request bodies: a field the API does not know is named in a 400, with the closest known
name, before any other rule runs; nothing is written; the camelCase aliases still work."""

from __future__ import annotations

import httpx

from app.runtime import Runtime
from tests.conftest import ADMIN_KEY, TenantKeys, table_counts

MEM = "/mem/v1/memories"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


async def test_a_misspelt_field_is_named_with_the_field_it_was_meant_to_be(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    before = await table_counts(runtime, tenant)
    body = {"messages": [{"role": "user", "content": "I like tea"}], "user_id": "a", "metdata": {"k": 1}}
    response = await client.post(MEM, json=body, headers=tenant.service)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": "unknown_field",
        "message": "Unknown field 'metdata'; did you mean 'metadata'?",
        "details": {"field": "metdata", "suggestion": "metadata"},
    }
    assert await table_counts(runtime, tenant) == before


async def test_a_misspelt_owner_id_is_named_rather_than_reported_as_a_missing_owner(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    response = await client.post(
        MEM, json={"messages": "I like tea", "user_idd": "a"}, headers=tenant.service
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "unknown_field"
    assert body["details"] == {"field": "user_idd", "suggestion": "user_id"}
    assert "'user_idd'" in body["message"]


async def test_an_unknown_field_comes_before_a_wrong_type_elsewhere(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    response = await client.post(
        "/mem/v1/search", json={"query": "tea", "user_id": 7, "top_kk": 3}, headers=tenant.service
    )
    assert response.status_code == 400, response.text
    assert response.json()["details"] == {"field": "top_kk", "suggestion": "top_k"}


async def test_an_unknown_key_in_a_message_names_where_it_is(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    message = {"role": "user", "content": "hi", "nmae": "Al"}
    response = await client.post(MEM, json={"messages": [message], "user_id": "a"}, headers=tenant.service)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "unknown_field"
    assert body["details"] == {"field": "nmae", "path": "$.messages[0]", "suggestion": "name"}


async def test_an_unknown_key_in_a_content_part_is_refused(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    part = {"type": "image_url", "imageUrl": {"url": "https://example.com/a.png"}}
    message = {"role": "user", "content": [{"type": "text", "text": "look"}, part]}
    response = await client.post(MEM, json={"messages": [message], "user_id": "a"}, headers=tenant.service)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["details"]["field"] == "imageUrl"
    assert body["details"]["path"] == "$.messages[0].content[1]"


async def test_a_field_with_no_close_name_lists_the_known_ones(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    response = await client.put(
        f"{MEM}/00000000-0000-4000-8000-000000000000", json={"zzz": 1}, headers=tenant.service
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["details"] == {"field": "zzz"}
    assert "known fields: memory, metadata, text" in body["message"]


async def test_camel_case_aliases_are_still_accepted(client: httpx.AsyncClient, tenant: TenantKeys) -> None:
    added = await client.post(
        MEM,
        json={
            "messages": "Alice drinks green tea",
            "userId": "alice",
            "infer": False,
            "memoryType": "semantic",
        },
        headers=tenant.service,
    )
    assert added.status_code == 200, added.text
    found = await client.post(
        "/mem/v1/search", json={"query": "tea", "userId": "alice", "topK": 1}, headers=tenant.service
    )
    assert found.status_code == 200, found.text
    assert [r["memory"] for r in found.json()["results"]] == ["Alice drinks green tea"]


async def test_a_misspelt_alias_suggests_the_alias(client: httpx.AsyncClient, tenant: TenantKeys) -> None:
    response = await client.post(MEM, json={"messages": "hi", "userID": "a"}, headers=tenant.service)
    assert response.status_code == 400, response.text
    assert response.json()["details"]["suggestion"] in ("userId", "user_id")


async def test_an_admin_field_the_service_does_not_honour_is_refused_and_creates_nothing(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/auth/v1/admin/tenants", headers=ADMIN)).json()["tenants"]
    response = await client.post(
        "/auth/v1/admin/tenants", json={"name": "Gamma", "embedding_dimensions": 1536}, headers=ADMIN
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "unknown_field"
    assert response.json()["details"]["field"] == "embedding_dimensions"
    after = (await client.get("/auth/v1/admin/tenants", headers=ADMIN)).json()["tenants"]
    assert after == before


async def test_a_malformed_entity_id_is_a_400_not_a_missing_route(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    for path in ("/mem/v1/entities/nope", f"{MEM}/nope", f"{MEM}/nope/history", f"{MEM}/nope/entities"):
        response = await client.get(path, headers=tenant.service)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["code"] == "invalid_id"
        assert response.json()["message"].endswith("must be a UUID.")
