"""GET /mem/v1/entities/{id} names the memories linked to the entity (`memory_ids`).

It did not: entity_view tested `"memory_count" in keys` and then `"memory_ids" in keys` on one
asyncpg keys() iterator, which the first test had used up. Studio's entity page found it.
"""

from __future__ import annotations

from tests.conftest import add, tenant_conn


async def test_one_entity_lists_its_linked_memories(client, runtime, tenant):
    first = await add(client, tenant.service, "Alice flew to Lisbon")
    second = await add(client, tenant.service, "Alice loved Lisbon in spring")
    listing = (
        await client.get("/mem/v1/entities", params={"user_id": "alice"}, headers=tenant.service)
    ).json()
    (lisbon,) = [e for e in listing["results"] if e["text"] == "Lisbon"]
    assert lisbon["memory_count"] == 2 and "memory_ids" not in lisbon
    one = (await client.get(f"/mem/v1/entities/{lisbon['id']}", headers=tenant.service)).json()
    assert set(one["memory_ids"]) == {first["id"], second["id"]}
    conn = await tenant_conn(runtime, tenant)
    try:
        linked = {
            str(r["memory_id"])
            for r in await conn.fetch(
                "SELECT memory_id FROM mem.entity_links WHERE entity_id = $1::uuid", lisbon["id"]
            )
        }
    finally:
        await conn.close()
    assert linked == set(one["memory_ids"])
