"""POST /mem/v1/search, and the filters of GET and DELETE /mem/v1/memories, over HTTP.

Vectors are exact: memories and queries get embeddings built here (`set_embedding`), or the fake
server's deterministic bag-of-words vectors recomputed with `fake_embedding`, so each test knows
the cosine similarity of every memory to its query. Query texts are unique per test because the
service caches query embeddings by text for the whole session.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio

from app.core.retrieval.service import W_ENTITY, W_GRAPH, W_KEYWORD, W_SEMANTIC
from app.runtime import Runtime
from tests.conftest import DIMS, TenantKeys, new_tenant, tenant_conn
from testsupport.provider_server import FakeProviderServer, fake_embedding

MEM = "/mem/v1"
BREAKDOWN_KEYS = {"semantic", "keyword", "entity", "graph"}
# Weights of the fused score, all four signals enabled (the default).
WEIGHTS = {"semantic": W_SEMANTIC, "keyword": W_KEYWORD, "entity": W_ENTITY, "graph": W_GRAPH}


# Helpers


def axis(i: int) -> np.ndarray:
    v = np.zeros(DIMS)
    v[i] = 1.0
    return v


def at_similarity(similarity: float, i: int) -> np.ndarray:
    """A unit vector whose cosine similarity to axis(0) is `similarity` (i > 0 picks its other direction)."""
    return similarity * axis(0) + math.sqrt(1 - similarity**2) * axis(i)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    # The database holds float32 vectors: compare against the same precision.
    a32, b32 = np.asarray(a, dtype=np.float32).astype(float), np.asarray(b, dtype=np.float32).astype(float)
    return float(a32 @ b32 / (np.linalg.norm(a32) * np.linalg.norm(b32)))


async def add_many(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    texts: list[str],
    user_id: str | None = "alice",
    **body: Any,
) -> list[str]:
    """Store each text verbatim as one memory (one request) and return the new ids in order."""
    payload: dict[str, Any] = {
        "messages": [{"role": "user", "content": t} for t in texts],
        "infer": False,
        **body,
    }
    if user_id is not None:
        payload["user_id"] = user_id
    response = await client.post(f"{MEM}/memories", json=payload, headers=headers)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["event"] for r in results] == ["ADD"] * len(texts), results
    return [r["id"] for r in results]


async def search(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, **body: Any
) -> httpx.Response:
    return await client.post(f"{MEM}/search", json={"query": query, **body}, headers=headers)


def results(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def result_ids(response: httpx.Response) -> list[str]:
    return [r["id"] for r in results(response)]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text


async def list_memories(
    client: httpx.AsyncClient, headers: dict[str, str], filters: Any = None, **params: Any
) -> httpx.Response:
    if filters is not None:
        params["filters"] = filters if isinstance(filters, str) else json.dumps(filters)
    return await client.get(f"{MEM}/memories", params=params, headers=headers)


# 1. Keyword-only hits


async def test_a_fact_found_only_by_its_rare_word_is_returned(
    client: httpx.AsyncClient, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    fillers = [f"filler note {i} on weekly garden chores" for i in range(29)]
    for i, (text, sim) in enumerate(zip(fillers, np.linspace(0.2, 0.45, len(fillers)), strict=True)):
        fake_provider.set_embedding(text, at_similarity(float(sim), i + 1))
    rare = "she studied zyxomancy for a while"
    fake_provider.set_embedding(rare, at_similarity(0.05, 100))
    query = "what about zyxomancy"
    fake_provider.set_embedding(query, axis(0))
    filler_ids = await add_many(client, tenant.service, fillers)
    (rare_id,) = await add_many(client, tenant.service, [rare])

    hybrid = results(await search(client, tenant.service, query, user_id="alice", top_k=5))
    assert hybrid[0]["id"] == rare_id
    assert hybrid[0]["score_breakdown"]["keyword"] == pytest.approx(1.0)
    assert hybrid[0]["score_breakdown"]["semantic"] == pytest.approx(0.05, abs=1e-4)
    assert all(r["score_breakdown"]["keyword"] == 0 for r in hybrid[1:])

    dense = await search(client, tenant.service, query, user_id="alice", top_k=5, signals=["semantic"])
    assert rare_id not in result_ids(dense)
    # By meaning alone the rare-word memory is the least similar of all 30.
    everything = result_ids(
        await search(client, tenant.service, query, user_id="alice", top_k=30, signals=["semantic"])
    )
    assert everything == [*reversed(filler_ids), rare_id]


# 2. Entity boost


async def test_an_entity_named_in_the_query_lifts_the_memories_linked_to_it(
    client: httpx.AsyncClient, tenant: TenantKeys, fake_provider: FakeProviderServer
) -> None:
    linked = ["the long trek up Kilimanjaro took six days", "we photographed glaciers on Kilimanjaro at dawn"]
    unlinked = ["the long trek up the ridge took six days", "we photographed glaciers on the ridge at dawn"]
    # Every memory is equally similar to the query: only the entity can tell them apart.
    for i, text in enumerate(linked + unlinked):
        fake_provider.set_embedding(text, at_similarity(0.6, i + 1))
    query = "what happened on Kilimanjaro"
    fake_provider.set_embedding(query, axis(0))
    linked_ids = await add_many(client, tenant.service, linked)
    unlinked_ids = await add_many(client, tenant.service, unlinked)

    entities = await client.get(f"{MEM}/memories/{linked_ids[0]}/entities", headers=tenant.service)
    assert "Kilimanjaro" in [e["text"] for e in entities.json()["results"]], entities.text

    body = {"user_id": "alice", "top_k": 10}
    boosted = results(await search(client, tenant.service, query, signals=["semantic", "entity"], **body))
    assert {r["id"] for r in boosted[:2]} == set(linked_ids)
    assert {r["id"] for r in boosted[2:]} == set(unlinked_ids)
    for r in boosted:
        assert r["score_breakdown"]["semantic"] == pytest.approx(0.6, abs=1e-5)
        expected_entity = 1.0 if r["id"] in linked_ids else 0.0
        assert r["score_breakdown"]["entity"] == pytest.approx(expected_entity)
        fused = (W_SEMANTIC * 0.6 + W_ENTITY * expected_entity) / (W_SEMANTIC + W_ENTITY)
        assert r["score"] == pytest.approx(fused, abs=1e-5)

    default = results(await search(client, tenant.service, query, **body))
    assert {r["id"] for r in default[:2]} == set(linked_ids)
    assert all(r["score_breakdown"]["entity"] > 0 for r in default[:2])

    without = results(await search(client, tenant.service, query, signals=["semantic", "keyword"], **body))
    assert {r["id"] for r in without} == set(linked_ids + unlinked_ids)
    assert all(r["score_breakdown"]["entity"] == 0 for r in without)


async def test_an_entity_linked_to_many_memories_boosts_each_less_than_one_linked_to_a_single_memory(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    (rare_id,) = await add_many(client, tenant.service, ["a ferry ride to Zanzibar"])
    common = [
        "lions resting in the Serengeti",
        "a balloon flight over the Serengeti",
        "a jeep stuck in the Serengeti mud",
        "the wildebeest crossing in the Serengeti",
    ]
    common_ids = await add_many(client, tenant.service, common)

    ranked = results(
        await search(
            client, tenant.service, "Zanzibar and the Serengeti", user_id="alice", signals=["entity"]
        )
    )
    # Entity-only candidates are exactly the linked memories; boost = 1 / (1 + ln(links)).
    assert ranked[0]["id"] == rare_id
    assert {r["id"] for r in ranked} == {rare_id, *common_ids}
    # Normalised by the largest boost, Zanzibar's 1 / (1 + ln 1) = 1.
    decayed = 1 / (1 + math.log(len(common)))
    for r in ranked:
        expected = 1.0 if r["id"] == rare_id else decayed
        assert r["score_breakdown"]["entity"] == pytest.approx(expected, abs=1e-5)
        assert r["score"] == pytest.approx(expected, abs=1e-5)
        assert r["score_breakdown"]["semantic"] == 0 and r["score_breakdown"]["keyword"] == 0


# 3. Scores, threshold, top_k, signals


TEA_CORPUS = [
    "drinks green tea every morning",
    "prefers black tea with milk in the afternoon",
    "brews oolong tea on weekends",
    "drinks espresso before the morning meeting",
    "orders a flat white on the way to work",
    "likes hiking in the mountains on sunny mornings",
    "keeps a tea journal with tasting notes",
    "collects teapots from flea markets",
    "avoids caffeine after six in the evening",
    "grows mint on the balcony for fresh tea",
    "takes the morning train at seven",
    "reads a novel with a cup of chamomile",
]
TEA_QUERY = "which tea does she drink each morning (search suite)"


@dataclass(frozen=True)
class Corpus:
    client: httpx.AsyncClient
    keys: TenantKeys
    ids: dict[str, str]  # text -> id


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tea(client: httpx.AsyncClient, runtime: Runtime, fake_provider: FakeProviderServer) -> Corpus:
    """Alice's twelve memories with the fake server's own bag-of-words vectors (no overrides)."""
    keys = await new_tenant(runtime, "Search scores")
    ids = await add_many(client, keys.service, TEA_CORPUS)
    return Corpus(client, keys, dict(zip(TEA_CORPUS, ids, strict=True)))


async def test_search_scores_are_normalised_sorted_and_broken_down_by_signal(tea: Corpus) -> None:
    # threshold 0 asks for every memory, including those that score 0 (hidden by default).
    response = await search(tea.client, tea.keys.service, TEA_QUERY, user_id="alice", top_k=20, threshold=0)
    found = results(response)
    assert {r["id"] for r in found} == set(tea.ids.values())
    scores = [r["score"] for r in found]
    assert scores == sorted(scores, reverse=True)
    for r in found:
        assert 0 <= r["score"] <= 1
        assert set(r["score_breakdown"]) == BREAKDOWN_KEYS
        parts = r["score_breakdown"]
        assert all(0 <= v <= 1 for v in parts.values())
        fused = sum(WEIGHTS[k] * v for k, v in parts.items()) / sum(WEIGHTS.values())
        assert r["score"] == pytest.approx(fused, abs=1e-5)
        assert "embedding" not in r
    # The best keyword hit is normalised to exactly 1.
    assert max(r["score_breakdown"]["keyword"] for r in found) == pytest.approx(1.0)
    # Server-Timing is off by default (it would show query-embedding cache hits): see
    # tests/integration/test_side_channels.py for MEM_SERVER_TIMING=true.
    assert "server-timing" not in response.headers


async def test_top_k_caps_the_results_at_the_best_ones(tea: Corpus) -> None:
    everything = result_ids(await search(tea.client, tea.keys.service, TEA_QUERY, user_id="alice", top_k=20))
    top3 = result_ids(await search(tea.client, tea.keys.service, TEA_QUERY, user_id="alice", top_k=3))
    assert top3 == everything[:3]
    camel = await tea.client.post(
        f"{MEM}/search", json={"query": TEA_QUERY, "userId": "alice", "topK": 2}, headers=tea.keys.service
    )
    assert result_ids(camel) == everything[:2]


def matched(r: dict[str, Any]) -> float:
    """What `threshold` is compared with: the semantic similarity, or the fused score when higher."""
    return max(r["score_breakdown"]["semantic"], r["score"])


async def test_threshold_filters_on_the_semantic_similarity_or_the_fused_score(tea: Corpus) -> None:
    client, headers = tea.client, tea.keys.service
    everything = results(await search(client, headers, TEA_QUERY, user_id="alice", top_k=20, threshold=0))
    assert len(everything) == len(TEA_CORPUS)
    best = max(matched(r) for r in everything)
    above_best = await search(
        client, headers, TEA_QUERY, user_id="alice", top_k=20, threshold=min(1.0, best + 1e-3)
    )
    assert results(above_best) == []
    assert len(results(await search(client, headers, TEA_QUERY, user_id="alice", top_k=4, threshold=0))) == 4

    levels = sorted({matched(r) for r in everything}, reverse=True)
    assert len(levels) >= 3
    for upper, lower in itertools.pairwise(levels[:4]):
        threshold = (upper + lower) / 2
        kept = await search(client, headers, TEA_QUERY, user_id="alice", top_k=20, threshold=threshold)
        # Ranking stays by the fused score: the kept ones in the order of the full list.
        assert result_ids(kept) == [r["id"] for r in everything if matched(r) >= threshold]
        assert all(matched(r) >= threshold for r in results(kept))


async def test_without_a_threshold_memories_scoring_zero_are_left_out(tea: Corpus) -> None:
    everything = results(
        await search(tea.client, tea.keys.service, TEA_QUERY, user_id="alice", top_k=20, threshold=0)
    )
    default = results(await search(tea.client, tea.keys.service, TEA_QUERY, user_id="alice", top_k=20))
    assert [r["id"] for r in default] == [r["id"] for r in everything if r["score"] > 0]
    assert any(r["score"] == 0 for r in everything)


async def test_a_dense_only_score_is_the_cosine_similarity_of_the_embeddings(tea: Corpus) -> None:
    response = await search(
        tea.client, tea.keys.service, TEA_QUERY, user_id="alice", top_k=20, signals=["semantic"], threshold=0
    )
    query = np.array(fake_embedding(TEA_QUERY, DIMS))
    found = results(response)
    assert len(found) == len(TEA_CORPUS)
    for r in found:
        expected = max(0.0, cosine(query, np.array(fake_embedding(r["memory"], DIMS))))
        assert r["score"] == pytest.approx(expected, abs=1e-5)
        assert r["score_breakdown"] == pytest.approx(
            {"semantic": expected, "keyword": 0.0, "entity": 0.0, "graph": 0.0}, abs=1e-5
        )


@pytest.mark.parametrize(
    "signals", [["semantic", "bogus"], [], ["Semantic"], ["keyword", "entity", "vibes"]], ids=repr
)
async def test_unknown_or_empty_signals_are_refused(tea: Corpus, signals: list[str]) -> None:
    response = await search(tea.client, tea.keys.service, TEA_QUERY, user_id="alice", signals=signals)
    assert_error(response, 400, "invalid_signals")


# 4-5. Filters on search, list and delete; filters never widen the caller's scope

FILTER_QUERY = "fruit and food notes"


@dataclass(frozen=True)
class Row:
    text: str
    user_id: str | None
    agent_id: str | None
    metadata: dict[str, Any]
    memory_type: str
    created_at: str


FILTER_ROWS = {
    "m1": Row("alpha apples in the orchard", "alice", "a1", {"n": 1, "topic": "Food", "tags": ["x", "y"]},
              "LONG_TERM", "2024-01-01T00:00:00Z"),
    "m2": Row("beta bananas on the boat", "alice", "a2", {"n": 5, "topic": "travel"},
              "LONG_TERM", "2024-02-01T00:00:00Z"),
    "m3": Row("gamma grapes at the food court", "alice", None, {"n": 10, "topic": "food court"},
              "EPISODIC", "2024-03-01T00:00:00Z"),
    "m4": Row("delta dates for the fruit recipe", "alice", "a1", {},
              "SEMANTIC", "2024-04-01T00:00:00Z"),
    "m5": Row("epsilon eggs and fruit for breakfast", "alice", None, {"n": 7.5, "topic": "FOOD"},
              "SHORT_TERM", "2024-05-01T00:00:00Z"),
    # Others that every filter below would match if it could reach them.
    "b1": Row("alpha apples in the orchard", "bob", "a1", {"n": 5, "topic": "Food", "tags": ["x"]},
              "LONG_TERM", "2024-02-01T00:00:00Z"),
    "b2": Row("bob keeps fruit and food notes", "bob", "x", {"n": 1},
              "EPISODIC", "2024-03-01T00:00:00Z"),
    "g1": Row("the helper agent stores fruit notes", None, "x", {"n": 5, "topic": "Food"},
              "LONG_TERM", "2024-03-01T00:00:00Z"),
}  # fmt: skip
ALICE = frozenset(k for k, row in FILTER_ROWS.items() if row.user_id == "alice")


async def seed_filter_rows(client: httpx.AsyncClient, runtime: Runtime, keys: TenantKeys) -> dict[str, str]:
    """FILTER_ROWS as memories with their created_at set directly; returns name -> id."""

    async def one(row: Row) -> str:
        agent = {"agent_id": row.agent_id} if row.agent_id else {}
        (memory_id,) = await add_many(
            client,
            keys.service,
            [row.text],
            user_id=row.user_id,
            metadata=row.metadata,
            memory_type=row.memory_type,
            **agent,
        )
        return memory_id

    ids = dict(zip(FILTER_ROWS, await asyncio.gather(*map(one, FILTER_ROWS.values())), strict=True))
    conn = await tenant_conn(runtime, keys)
    try:
        await conn.executemany(
            "UPDATE mem.memories SET created_at = $2::text::timestamptz WHERE id = $1::uuid",
            [(ids[name], row.created_at) for name, row in FILTER_ROWS.items()],
        )
    finally:
        await conn.close()
    return ids


@dataclass(frozen=True)
class FilterCorpus:
    client: httpx.AsyncClient
    keys: TenantKeys
    ids: dict[str, str]

    def names(self, found: list[str]) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[i] for i in found}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def filtered(
    client: httpx.AsyncClient, runtime: Runtime, fake_provider: FakeProviderServer
) -> FilterCorpus:
    keys = await new_tenant(runtime, "Search filters")
    return FilterCorpus(client, keys, await seed_filter_rows(client, runtime, keys))


FILTER_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("eq", {"topic": {"eq": "Food"}}, {"m1"}),
    ("implicit eq", {"topic": "Food"}, {"m1"}),
    ("ne keeps missing", {"agent_id": {"ne": "a1"}}, {"m2", "m3", "m5"}),
    ("in", {"n": {"in": [1, 10]}}, {"m1", "m3"}),
    ("nin", {"agent_id": {"nin": ["a1", "zzz"]}}, {"m2", "m3", "m5"}),
    ("gt number", {"n": {"gt": 5}}, {"m3", "m5"}),
    ("gte number", {"n": {"gte": 5}}, {"m2", "m3", "m5"}),
    ("lt number", {"n": {"lt": 5}}, {"m1"}),
    ("lte number", {"n": {"lte": 7.5}}, {"m1", "m2", "m5"}),
    ("gt created_at", {"created_at": {"gt": "2024-02-01T00:00:00Z"}}, {"m3", "m4", "m5"}),
    ("gte created_at", {"created_at": {"gte": "2024-02-01T00:00:00Z"}}, {"m2", "m3", "m4", "m5"}),
    ("lt created_at", {"created_at": {"lt": "2024-03-01"}}, {"m1", "m2"}),
    ("lte created_at", {"created_at": {"lte": "2024-03-01T00:00:00+00:00"}}, {"m1", "m2", "m3"}),
    ("created_at window", {"created_at": {"gt": "2024-01-15", "lt": "2024-04-15"}}, {"m2", "m3", "m4"}),
    ("contains", {"topic": {"contains": "ood"}}, {"m1", "m3"}),
    ("icontains", {"topic": {"icontains": "food"}}, {"m1", "m3", "m5"}),
    ("contains array element", {"tags": {"contains": "y"}}, {"m1"}),
    ("column contains", {"agent_id": {"contains": "2"}}, {"m2"}),
    ("wildcard column", {"agent_id": "*"}, {"m1", "m2", "m4"}),
    ("wildcard metadata", {"n": {"*": True}}, {"m1", "m2", "m3", "m5"}),
    ("siblings and", {"agent_id": "a1", "n": "*"}, {"m1"}),
    ("AND", {"AND": [{"n": {"gte": 5}}, {"topic": {"icontains": "FOOD"}}]}, {"m3", "m5"}),
    ("OR", {"OR": [{"topic": "travel"}, {"memory_type": "EPISODIC"}]}, {"m2", "m3"}),
    ("NOT", {"NOT": {"agent_id": "a1"}}, {"m2", "m3", "m5"}),
    ("NOT keeps missing keys", {"NOT": {"n": {"gt": 1}}}, {"m1", "m4"}),
    ("memory_type", {"memory_type": {"in": ["episodic", "Semantic"]}}, {"m3", "m4"}),
    ("memory_type ne", {"memory_type": {"ne": "LONG_TERM"}}, {"m3", "m4", "m5"}),
    ("own user_id", {"user_id": "alice"}, set(ALICE)),
    ("nested", {"OR": [{"AND": [{"agent_id": "a1"}, {"NOT": {"n": "*"}}]}, {"n": {"gt": 9}}]}, {"m3", "m4"}),
]  # fmt: skip


async def filtered_ids(corpus: FilterCorpus, endpoint: str, filters: Any, **extra: Any) -> httpx.Response:
    if endpoint == "search":
        return await search(
            corpus.client,
            corpus.keys.service,
            FILTER_QUERY,
            user_id="alice",
            top_k=50,
            filters=filters,
            # Every match of the filters, also those that share nothing with the query (score 0).
            threshold=0,
            **extra,
        )
    return await list_memories(corpus.client, corpus.keys.service, filters, user_id="alice", **extra)


@pytest.mark.parametrize("endpoint", ["search", "list"])
@pytest.mark.parametrize(
    ("filters", "expected"), [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES]
)
async def test_every_filter_operator_selects_exactly_the_matching_memories(
    filtered: FilterCorpus, endpoint: str, filters: dict[str, Any], expected: set[str]
) -> None:
    response = await filtered_ids(filtered, endpoint, filters)
    assert filtered.names(result_ids(response)) == expected
    if endpoint == "list":
        assert response.json()["total"] == len(expected)


@pytest.mark.parametrize("endpoint", ["search", "list"])
async def test_the_memory_type_parameter_narrows_like_a_filter(filtered: FilterCorpus, endpoint: str) -> None:
    only_type = await filtered_ids(filtered, endpoint, None, memory_type="semantic")
    assert filtered.names(result_ids(only_type)) == {"m4"}
    with_filter = await filtered_ids(filtered, endpoint, {"agent_id": "a1"}, memory_type="LONG_TERM")
    assert filtered.names(result_ids(with_filter)) == {"m1"}


async def test_search_accepts_metadata_filters_as_the_camel_case_alias_of_filters(
    filtered: FilterCorpus,
) -> None:
    response = await filtered.client.post(
        f"{MEM}/search",
        json={"query": FILTER_QUERY, "userId": "alice", "topK": 50, "metadataFilters": {"n": {"gt": 5}}},
        headers=filtered.keys.service,
    )
    assert filtered.names(result_ids(response)) == {"m3", "m5"}


BAD_FILTERS = [
    ("unknown operator", {"n": {"regex": "^1"}}),
    ("bad key", {"bad key!": 1}),
    ("key too long", {"k" * 65: 1}),
    ("in with a non-list", {"n": {"in": 5}}),
    ("nin with an empty list", {"n": {"nin": []}}),
    ("bad date", {"created_at": {"gt": "yesterday"}}),
    ("date of the wrong type", {"created_at": {"lt": 20240101}}),
    ("operator not for the column", {"created_at": {"contains": "2024"}}),
    ("lower-case logical", {"or": [{"n": 1}]}),
    ("OR of a non-list", {"OR": {"n": 1}}),
    ("bare list value", {"n": [1, 2]}),
    ("bad memory_type", {"memory_type": "FOREVER"}),
    ("wildcard operator not true", {"n": {"*": False}}),
    ("not an object", [{"n": 1}]),
]


@pytest.mark.parametrize("endpoint", ["search", "list"])
@pytest.mark.parametrize("filters", [c[1] for c in BAD_FILTERS], ids=[c[0] for c in BAD_FILTERS])
async def test_a_malformed_filter_is_a_400_invalid_filter(
    filtered: FilterCorpus, endpoint: str, filters: Any
) -> None:
    assert_error(await filtered_ids(filtered, endpoint, filters), 400, "invalid_filter")


async def test_a_filters_query_parameter_that_is_not_json_is_a_400_invalid_filter(
    filtered: FilterCorpus,
) -> None:
    assert_error(await filtered_ids(filtered, "list", "{topic: Food"), 400, "invalid_filter")


async def test_delete_with_filters_removes_exactly_the_matching_memories(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    ids = await seed_filter_rows(client, runtime, tenant)
    name_of = {v: k for k, v in ids.items()}
    bad = await client.delete(
        f"{MEM}/memories",
        params={"user_id": "alice", "filters": json.dumps({"n": {"in": 5}})},
        headers=tenant.service,
    )
    assert_error(bad, 400, "invalid_filter")

    response = await client.delete(
        f"{MEM}/memories",
        params={"user_id": "alice", "filters": json.dumps({"n": {"gte": 5}})},
        headers=tenant.service,
    )
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] == 3

    remaining = await list_memories(client, tenant.service, user_id="alice")
    assert {name_of[i] for i in result_ids(remaining)} == {"m1", "m4"}
    bob = await list_memories(client, tenant.service, user_id="bob")
    assert {name_of[i] for i in result_ids(bob)} == {"b1", "b2"}
    gone = await search(client, tenant.service, FILTER_QUERY, user_id="alice", top_k=50, threshold=0)
    assert {name_of[i] for i in result_ids(gone)} == {"m1", "m4"}
    conn = await tenant_conn(runtime, tenant)
    try:
        deleted = await conn.fetch("SELECT memory_id, actor FROM mem.memory_history WHERE event = 'DELETE'")
        live = await conn.fetchval("SELECT count(*) FROM mem.memories WHERE deleted_at IS NULL")
    finally:
        await conn.close()
    assert {name_of[str(r["memory_id"])] for r in deleted} == {"m2", "m3", "m5"}
    assert len(deleted) == 3
    assert live == len(FILTER_ROWS) - 3


async def test_a_user_cannot_delete_another_users_memories_through_filters(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    ids = await seed_filter_rows(client, runtime, tenant)
    refused = await client.delete(
        f"{MEM}/memories",
        params={"filters": json.dumps({"OR": [{"user_id": "bob"}, {"n": "*"}]})},
        headers=tenant.user("alice"),
    )
    assert_error(refused, 403, "user_scope_violation")
    widened = await client.delete(
        f"{MEM}/memories",
        params={"filters": json.dumps({"user_id": {"ne": "alice"}})},
        headers=tenant.user("alice"),
    )
    assert widened.status_code == 200, widened.text
    assert widened.json()["deleted"] == 0
    everything = await list_memories(client, tenant.service, scope="tenant")
    assert set(result_ids(everything)) == set(ids.values())


# (filters, what alice's user token sees (None: 403), what the service key with user_id=alice sees)
SCOPE_CASES: list[tuple[str, dict[str, Any], set[str] | None, set[str]]] = [
    ("OR naming bob", {"OR": [{"user_id": "bob"}, {"agent_id": "x"}]}, None, set()),
    ("agent ne", {"agent_id": {"ne": "zzz"}}, set(ALICE), set(ALICE)),
    ("NOT alice", {"NOT": {"user_id": "alice"}}, set(), set()),
    ("user ne alice", {"user_id": {"ne": "alice"}}, set(), set()),
    ("user nin alice", {"user_id": {"nin": ["alice"]}}, set(), set()),
    ("user in alice and bob", {"user_id": {"in": ["alice", "bob"]}}, None, set(ALICE)),
    ("NOT NOT bob", {"NOT": {"NOT": {"user_id": "bob"}}}, None, set()),
    ("user contains", {"OR": [{"user_id": {"contains": "b"}}, {"agent_id": "x"}]}, set(), set()),
    ("user icontains", {"OR": [{"user_id": {"icontains": "O"}}, {"topic": "Food"}]}, {"m1"}, {"m1"}),
    ("user wildcard", {"user_id": "*"}, set(ALICE), set(ALICE)),
    ("agent of another owner", {"agent_id": "x"}, set(), set()),
    ("OR with a tautology", {"OR": [{"user_id": "alice"}, {"agent_id": {"ne": "a1"}}]}, set(ALICE), set(ALICE)),
]  # fmt: skip


@pytest.mark.parametrize("endpoint", ["search", "list"])
@pytest.mark.parametrize(
    ("filters", "as_user", "as_service"), [c[1:] for c in SCOPE_CASES], ids=[c[0] for c in SCOPE_CASES]
)
async def test_filters_never_widen_a_users_scope(
    filtered: FilterCorpus,
    endpoint: str,
    filters: dict[str, Any],
    as_user: set[str] | None,
    as_service: set[str],
) -> None:
    client, keys = filtered.client, filtered.keys
    if endpoint == "search":
        # threshold 0: every match of the filters, also those sharing nothing with the query.
        every = {"top_k": 50, "filters": filters, "threshold": 0}
        user = await search(client, keys.user("alice"), FILTER_QUERY, **every)
        service = await search(client, keys.service, FILTER_QUERY, user_id="alice", **every)
    else:
        user = await list_memories(client, keys.user("alice"), filters)
        service = await list_memories(client, keys.service, filters, user_id="alice")
    if as_user is None:
        assert_error(user, 403, "user_scope_violation")
    else:
        assert filtered.names(result_ids(user)) == as_user
        assert {r["user_id"] for r in results(user)} <= {"alice"}
    assert filtered.names(result_ids(service)) == as_service
    assert {r["user_id"] for r in results(service)} <= {"alice"}


@pytest.mark.parametrize("endpoint", ["search", "list"])
async def test_a_user_naming_another_user_as_owner_is_refused(filtered: FilterCorpus, endpoint: str) -> None:
    headers = filtered.keys.user("alice")
    if endpoint == "search":
        response = await search(filtered.client, headers, FILTER_QUERY, user_id="bob")
    else:
        response = await list_memories(filtered.client, headers, user_id="bob")
    assert_error(response, 403, "user_scope_violation")


# 6. Expired and deleted memories


async def test_expired_and_deleted_memories_stay_hidden_unless_expiry_is_waived(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    (live,) = await add_many(client, tenant.service, ["the parking garage closes at midnight"])
    (expired,) = await add_many(
        client, tenant.service, ["the parking spot is on level three"], memory_type="SHORT_TERM"
    )
    (deleted,) = await add_many(client, tenant.service, ["the parking permit sits in the glovebox"])
    conn = await tenant_conn(runtime, tenant)
    try:
        await conn.execute(
            "UPDATE mem.memories SET expires_at = now() - interval '1 hour' WHERE id = $1::uuid", expired
        )
    finally:
        await conn.close()
    response = await client.delete(f"{MEM}/memories/{deleted}", headers=tenant.service)
    assert response.status_code == 200, response.text

    query = "where is the parking"
    for headers, owner in ((tenant.service, {"user_id": "alice"}), (tenant.user("alice"), {})):
        hidden = await search(client, headers, query, top_k=10, **owner)
        assert set(result_ids(hidden)) == {live}
        shown = await search(client, headers, query, top_k=10, include_expired=True, **owner)
        assert set(result_ids(shown)) == {live, expired}
        camel = await search(client, headers, query, top_k=10, includeExpired=True, **owner)
        assert set(result_ids(camel)) == {live, expired}
        listed = await list_memories(client, headers, **owner)
        assert set(result_ids(listed)) == {live}
        assert listed.json()["total"] == 1
        listed_all = await list_memories(client, headers, include_expired="true", **owner)
        assert set(result_ids(listed_all)) == {live, expired}
    tenant_wide = await search(client, tenant.service, query, top_k=10, include_expired=True, scope="tenant")
    assert set(result_ids(tenant_wide)) == {live, expired}


# 7-8. Exact owner-scoped ranking; tenant-wide search


USERS = ["alice", *(f"user{i}" for i in range(1, 10))]


@dataclass(frozen=True)
class RandomCorpus:
    client: httpx.AsyncClient
    keys: TenantKeys
    vectors: dict[str, np.ndarray]  # id -> vector
    owners: dict[str, str]  # id -> user_id
    rare_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def spread(
    client: httpx.AsyncClient, runtime: Runtime, fake_provider: FakeProviderServer
) -> RandomCorpus:
    """202 memories with seeded random unit vectors: 40 of alice's, 18 for each of nine other users."""
    rng = np.random.default_rng(20240611)
    keys = await new_tenant(runtime, "Search spread")
    texts = {
        user: [f"{user} random memory {j}" for j in range(40 if user == "alice" else 18)] for user in USERS
    }
    texts["user3"][7] = "user3 saw a quokka on the island"
    by_text: dict[str, np.ndarray] = {}
    for user in USERS:
        for text in texts[user]:
            v = rng.standard_normal(DIMS)
            by_text[text] = v / np.linalg.norm(v)
            fake_provider.set_embedding(text, by_text[text])
    added = await asyncio.gather(*(add_many(client, keys.service, texts[u], user_id=u) for u in USERS))
    vectors, owners = {}, {}
    for user, ids in zip(USERS, added, strict=True):
        for text, memory_id in zip(texts[user], ids, strict=True):
            vectors[memory_id] = by_text[text]
            owners[memory_id] = user
    rare_id = added[USERS.index("user3")][7]
    return RandomCorpus(client, keys, vectors, owners, rare_id)


def random_query(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMS)
    return v / np.linalg.norm(v)


def exact_top(corpus: RandomCorpus, query: np.ndarray, k: int, user: str | None = None) -> list[str]:
    ids = [i for i in corpus.vectors if user is None or corpus.owners[i] == user]
    return sorted(ids, key=lambda i: -cosine(query, corpus.vectors[i]))[:k]


async def test_an_owner_scoped_search_ranks_exactly_like_a_full_scan(
    spread: RandomCorpus, fake_provider: FakeProviderServer
) -> None:
    for seed in (1, 2, 3):
        text = f"search suite exactness probe {seed}"
        query = random_query(seed)
        fake_provider.set_embedding(text, query)
        found = results(
            await search(
                spread.client, spread.keys.service, text, user_id="alice", top_k=10, signals=["semantic"]
            )
        )
        assert [r["id"] for r in found] == exact_top(spread, query, 10, user="alice")
        for r in found:
            assert r["user_id"] == "alice"
            assert r["score"] == pytest.approx(max(0.0, cosine(query, spread.vectors[r["id"]])), abs=1e-5)


async def test_a_users_token_search_ranks_exactly_within_that_user(
    spread: RandomCorpus, fake_provider: FakeProviderServer
) -> None:
    text = "search suite exactness probe for user5"
    query = random_query(55)
    fake_provider.set_embedding(text, query)
    found = await search(spread.client, spread.keys.user("user5"), text, top_k=5, signals=["semantic"])
    assert result_ids(found) == exact_top(spread, query, 5, user="user5")


async def test_a_tenant_wide_search_by_the_service_key_returns_memories_of_several_users(
    spread: RandomCorpus, fake_provider: FakeProviderServer
) -> None:
    text = "search suite tenant wide probe"
    query = random_query(7)
    fake_provider.set_embedding(text, query)
    found = results(
        await search(spread.client, spread.keys.service, text, top_k=20, signals=["semantic"], scope="tenant")
    )
    assert len(found) == 20
    assert len({r["user_id"] for r in found}) >= 3
    exact = exact_top(spread, query, 20)
    # HNSW is approximate; on a table this small it should miss next to nothing.
    assert len({r["id"] for r in found} & set(exact)) >= 18
    for r in found:
        assert r["score"] == pytest.approx(max(0.0, cosine(query, spread.vectors[r["id"]])), abs=1e-5)


async def test_a_tenant_wide_search_finds_a_rare_word_through_the_keyword_index(
    spread: RandomCorpus, fake_provider: FakeProviderServer
) -> None:
    text = "did anyone see a quokka"
    fake_provider.set_embedding(text, random_query(8))
    found = results(await search(spread.client, spread.keys.service, text, top_k=5, scope="tenant"))
    assert found[0]["id"] == spread.rare_id
    assert found[0]["user_id"] == "user3"
    assert found[0]["score_breakdown"]["keyword"] == pytest.approx(1.0)
    dense = await search(
        spread.client, spread.keys.service, text, top_k=5, signals=["semantic"], scope="tenant"
    )
    assert spread.rare_id not in result_ids(dense)


async def test_a_tenant_wide_search_surfaces_memories_found_only_through_an_entity(
    client: httpx.AsyncClient, tenant: TenantKeys
) -> None:
    (zanzibar,) = await add_many(client, tenant.service, ["a ferry ride to Zanzibar"])
    serengeti = await add_many(
        client,
        tenant.service,
        ["lions resting in the Serengeti", "a balloon flight over the Serengeti"],
        user_id="bob",
    )
    await add_many(client, tenant.service, [f"unrelated note number {i}" for i in range(40)], user_id="carol")

    query = "Zanzibar and the Serengeti (tenant wide)"
    found = results(await search(client, tenant.service, query, top_k=10, signals=["entity"], scope="tenant"))
    assert {r["id"] for r in found} == {zanzibar, *serengeti}
    assert all(r["score_breakdown"]["entity"] > 0 for r in found)
    filtered = await search(
        client,
        tenant.service,
        query,
        top_k=10,
        signals=["entity"],
        filters={"user_id": "bob"},
        scope="tenant",
    )
    assert set(result_ids(filtered)) == set(serengeti)


async def test_a_memory_row_keeps_its_embedding_inline_so_a_search_reads_no_toast(
    client: httpx.AsyncClient, runtime: Runtime, tenant: TenantKeys
) -> None:
    # A 384-dimension embedding (1.5 kB) plus its text passes the default toast threshold (~2 kB),
    # which moved the embedding out of line: every exact-scan search then read it back from the
    # TOAST table, row by row (sql/mem/009_inline_rows.sql).
    # Text that does not compress (a repetitive one would be compressed first and make room).
    rng = np.random.default_rng(9)
    words = ["".join(chr(97 + c) for c in rng.integers(0, 26, 7)) for _ in range(300)]
    texts = [f"inline row {i}: " + " ".join(words[i * 60 : (i + 1) * 60]) for i in range(3)]
    ids = await add_many(client, tenant.service, texts, user_id="inline-owner")
    conn = await tenant_conn(runtime, tenant)
    try:
        rows = await conn.fetch(
            "SELECT id::text, pg_column_toast_chunk_id(embedding) AS chunk"
            " FROM mem.memories WHERE user_id = 'inline-owner'"
        )
    finally:
        await conn.close()
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert [r["chunk"] for r in rows] == [None] * len(ids), "every embedding is stored inline"
