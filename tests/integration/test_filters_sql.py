"""The compiled filters run on a real PostgreSQL and select exactly the expected rows.

The rows live in mem.memories of a tenant of the session (the real migrations, not a schema of
the test's own); row n has the id UUID(int=n), so the cases can name rows by number.
"""

from __future__ import annotations

import json
from collections.abc import Set
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio

from app.core.filters import compile_filters
from app.db.dsn import with_database
from app.runtime import Runtime
from tests.conftest import new_tenant

ALL_IDS = frozenset(range(1, 9))

# id, user_id, agent_id, run_id, memory_type, created_at, metadata; updated_at is created_at + 1 day.
ROWS: list[tuple[int, str, str | None, str | None, str, str, dict[str, Any]]] = [
    (1, "u1", "a1", "r1", "LONG_TERM", "2024-01-01T00:00:00Z",
     {"topic": "Food", "score": 5, "tags": ["Diet", "vegan"], "flag": True, "note": "100% sure_thing"}),
    (2, "u1", None, None, "SHORT_TERM", "2024-02-01T00:00:00Z",
     {"topic": "travel", "score": 7.5, "tags": ["trip"], "a.b": "dotted"}),
    (3, "u2", "a1", "r2", "EPISODIC", "2024-03-01T00:00:00Z",
     {"topic": "food court", "score": "high", "nested": {"x": 1}}),
    (4, "u2", "a2", None, "SEMANTIC", "2024-04-01T00:00:00Z", {}),
    (5, "u3", None, "r3", "PROCEDURAL", "2024-05-01T00:00:00Z",
     {"topic": None, "score": 10, "when": "2024-06-01"}),
    (6, "u3", "a3", "r3", "LONG_TERM", "2024-06-01T00:00:00Z",
     {"topic": "Music", "score": -1, "tags": [1, 2], "when": "2023-12-31", "note": "back\\slash"}),
    (7, "u1", "a2", "r1", "SEMANTIC", "2024-07-01T00:00:00Z",
     {"score": 5.0, "flag": False, "tags": "diet plan"}),
    (8, "u4", "a4", "r4", "EPISODIC", "2024-08-01T12:00:00+02:00", {"topic": "FOOD"}),
]  # fmt: skip

CASES: list[tuple[str, dict[str, Any], Set[int]]] = [
    ("column eq", {"user_id": "u1"}, {1, 2, 7}),
    ("column ne keeps nulls", {"agent_id": {"ne": "a1"}}, {2, 4, 5, 6, 7, 8}),
    ("column in", {"agent_id": {"in": ["a1", "a2"]}}, {1, 3, 4, 7}),
    ("column nin keeps nulls", {"agent_id": {"nin": ["a1", "a2"]}}, {2, 5, 6, 8}),
    ("column wildcard", {"agent_id": "*"}, {1, 3, 4, 6, 7, 8}),
    ("column wildcard operator", {"run_id": {"*": True}}, {1, 3, 5, 6, 7, 8}),
    ("column contains", {"run_id": {"contains": "3"}}, {5, 6}),
    ("column icontains", {"agent_id": {"icontains": "A2"}}, {4, 7}),
    ("memory_type eq any case", {"memory_type": "long_term"}, {1, 6}),
    ("memory_type in", {"memory_type": {"in": ["episodic", "SEMANTIC"]}}, {3, 4, 7, 8}),
    ("memory_type ne", {"memory_type": {"ne": "Episodic"}}, {1, 2, 4, 5, 6, 7}),
    ("created_at range", {"created_at": {"gte": "2024-03-01T00:00:00Z", "lt": "2024-06-01"}}, {3, 4, 5}),
    ("created_at eq across offsets", {"created_at": "2024-08-01T10:00:00Z"}, {8}),
    ("created_at in", {"created_at": {"in": ["2024-01-01T00:00:00+00:00", "2024-02-01"]}}, {1, 2}),
    ("created_at nin", {"created_at": {"nin": ["2024-01-01T00:00:00Z"]}}, ALL_IDS - {1}),
    ("updated_at gt", {"updated_at": {"gt": "2024-07-01"}}, {7, 8}),
    ("metadata eq string", {"topic": "Food"}, {1}),
    ("metadata eq number equals int and float", {"score": 5}, {1, 7}),
    ("metadata eq true", {"flag": True}, {1}),
    ("metadata eq false", {"flag": {"eq": False}}, {7}),
    ("metadata eq json null", {"topic": None}, {5}),
    ("metadata eq array", {"tags": {"eq": ["trip"]}}, {2}),
    ("metadata ne keeps missing keys", {"topic": {"ne": "Food"}}, ALL_IDS - {1}),
    ("metadata in mixed types", {"score": {"in": [5, "high"]}}, {1, 3, 7}),
    ("metadata nin keeps missing keys", {"score": {"nin": [5, "high"]}}, {2, 4, 5, 6, 8}),
    ("metadata gt skips non-numbers", {"score": {"gt": 5}}, {2, 5}),
    ("metadata between", {"score": {"gte": 5, "lte": 7.5}}, {1, 2, 7}),
    ("metadata lt negative", {"score": {"lt": 0}}, {6}),
    ("metadata string range", {"when": {"gte": "2024-01-01"}}, {5}),
    ("metadata string range is bytewise", {"topic": {"lt": "M"}}, {1, 8}),
    ("metadata contains substring", {"topic": {"contains": "ood"}}, {1, 3}),
    ("metadata icontains substring", {"topic": {"icontains": "food"}}, {1, 3, 8}),
    ("contains percent is literal", {"note": {"contains": "100%"}}, {1}),
    ("contains underscore is literal", {"note": {"contains": "e_t"}}, {1}),
    ("contains underscore is no wildcard", {"note": {"contains": "k_s"}}, set()),
    ("contains backslash is literal", {"note": {"contains": "k\\s"}}, {6}),
    ("contains array element", {"tags": {"contains": "vegan"}}, {1}),
    ("contains is case sensitive", {"tags": {"contains": "diet"}}, {7}),
    ("icontains array element", {"tags": {"icontains": "DIET"}}, {1, 7}),
    ("contains number element", {"tags": {"contains": 2}}, {6}),
    ("metadata wildcard skips json null", {"topic": "*"}, {1, 2, 3, 6, 8}),
    ("dotted key is flat", {"a.b": "dotted"}, {2}),
    ("sibling keys and", {"user_id": "u1", "score": 5}, {1, 7}),
    ("or", {"OR": [{"user_id": "u2"}, {"score": {"gt": 9}}]}, {3, 4, 5}),
    ("not equals ne", {"NOT": {"agent_id": "a1"}}, {2, 4, 5, 6, 7, 8}),
    ("not list negates and", {"NOT": [{"user_id": "u1"}, {"agent_id": "a2"}]}, ALL_IDS - {7}),
    ("not keeps missing keys", {"NOT": {"topic": {"contains": "oo"}}}, {2, 4, 5, 6, 7, 8}),
    ("not keeps non-numbers", {"NOT": {"score": {"gt": 5}}}, {1, 3, 4, 6, 7, 8}),
    (
        "nested",
        {"AND": [{"OR": [{"user_id": "u1"}, {"user_id": "u3"}]}, {"NOT": {"memory_type": "long_term"}}]},
        {2, 5, 7},
    ),
    ("empty", {}, set(ALL_IDS)),
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database_uri(runtime: Runtime) -> str:
    """A superuser DSN to the database of a tenant for the module, seeded with ROWS."""
    keys = await new_tenant(runtime, "Filters SQL")
    uri = with_database(runtime.platform.server_dsn, keys.tenant.db_name)
    await seed(uri)
    return uri


async def seed(uri: str) -> None:
    """Insert ROWS into the tenant's mem.memories; text, hash and embedding only fill NOT NULLs."""
    connection = await asyncpg.connect(uri)
    try:
        await connection.executemany(
            "INSERT INTO mem.memories (id, user_id, agent_id, run_id, memory_type, created_at, updated_at,"
            " metadata, memory, hash, embedding)"
            " VALUES ($1, $2, $3, $4, $5, $6::text::timestamptz, $6::text::timestamptz + interval '1 day',"
            " $7::text::jsonb, 'row ' || $8::text, 'hash ' || $8::text,"
            " array_fill(1, ARRAY[(SELECT embedding_dims FROM mem.config)])::real[]::public.vector)",
            [(UUID(int=row[0]), *row[1:6], json.dumps(row[6]), str(row[0])) for row in ROWS],
        )
    finally:
        await connection.close()


async def select_ids(uri: str, sql: str, params: list[Any]) -> set[int]:
    """Run one SELECT and return the numbers of the rows it finds."""
    connection = await asyncpg.connect(uri)
    try:
        return {record["id"].int for record in await connection.fetch(sql, *params)}
    finally:
        await connection.close()


async def matching_ids(uri: str, filters: dict[str, Any]) -> set[int]:
    """The ids the compiled filter selects on its own."""
    compiled = compile_filters(filters, first_param=1)
    sql = f"SELECT id FROM mem.memories m WHERE {compiled.sql}"
    return await select_ids(uri, sql, compiled.params)


@pytest.mark.parametrize(
    ("filters", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
async def test_each_operator_selects_exactly_the_expected_rows(
    database_uri: str, filters: dict[str, Any], expected: Set[int]
) -> None:
    assert await matching_ids(database_uri, filters) == expected


async def test_a_top_level_or_stays_inside_the_callers_owner_clause(database_uri: str) -> None:
    compiled = compile_filters({"OR": [{"agent_id": "a1"}, {"agent_id": "a2"}]}, first_param=2)
    sql = f"SELECT id FROM mem.memories m WHERE m.user_id = $1 AND {compiled.sql}"
    assert await select_ids(database_uri, sql, ["u2", *compiled.params]) == {3, 4}


async def test_a_numeric_range_on_text_values_never_raises_a_cast_error(database_uri: str) -> None:
    assert await matching_ids(database_uri, {"topic": {"gt": 0}, "score": {"lt": 100}}) == set()
