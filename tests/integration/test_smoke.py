from tests.conftest import add


async def test_service_role_adds_and_reads_back_a_memory(client, tenant):
    item = await add(client, tenant.service, "I prefer TypeScript")
    response = await client.get(f"/mem/v1/memories/{item['id']}", headers=tenant.service)
    assert response.status_code == 200
    assert response.json()["memory"] == "I prefer TypeScript"
    assert "embedding" not in response.json()
