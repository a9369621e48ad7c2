"""Search latency and recall at scale: a tenant seeded directly in its database (setup, not
measured), then POST /mem/v1/search over HTTP at each concurrency, Server-Timing, recall@10
against exact brute force, and the service's RSS."""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from app.core.linking.heuristic import co_mention_relations, extract_entities
from app.core.linking.repo import MAX_LINKS_PER_ENTITY
from app.db.pools import init_connection
from app.memories.writer import content_hash
from bench import metrics
from bench.client import new_client, run_bounded, summarise
from bench.corpus import Matrix
from bench.progress import Progress, log, percentiles
from bench.service import Service, Tenant

SEED_BATCH = 5000
HNSW_REBUILD_FROM = 5_000  # bulk-building the HNSW index after COPY beats maintaining it row by row
TIE_EPS = 1e-4  # vectors tied with the 10th exact neighbour count as hits
OWNER_SQL = (
    "SELECT id FROM mem.memories m WHERE m.user_id = $2 AND m.deleted_at IS NULL "
    "ORDER BY (m.embedding <=> $1) + 0 LIMIT 10"
)
HNSW_SQL = "SELECT id FROM mem.memories m WHERE m.deleted_at IS NULL ORDER BY m.embedding <=> $1 LIMIT 10"


@dataclass
class Case:
    """One seeded corpus: N memories (texts, vectors) and who owns each."""

    label: str
    texts: list[str]
    vectors: Matrix
    user_ids: list[str]
    ids: list[str] | None = None

    def __post_init__(self) -> None:
        rows: dict[str, list[int]] = defaultdict(list)
        for i, u in enumerate(self.user_ids):
            rows[u].append(i)
        self.user_rows = {u: np.asarray(r) for u, r in rows.items()}
        self.users = sorted(self.user_rows)


async def seed(service: Service, tenant: Tenant, case: Case) -> dict[str, Any]:
    """COPY the rows into mem.memories as the superuser (ids chosen here, so no read-back)."""
    conn = await asyncpg.connect(service.tenant_dsn(tenant))
    started = time.monotonic()
    n = len(case.texts)
    try:
        await init_connection(conn)
        case.ids = [str(uuid.uuid4()) for _ in range(n)]
        rebuild = n >= HNSW_REBUILD_FROM
        index_defs: list[str] = []
        if rebuild:
            index_defs = [
                r["indexdef"]
                for r in await conn.fetch(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'mem' "
                    "AND tablename = 'memories' AND indexdef ILIKE '%USING hnsw%'"
                )
            ]
            names = await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'mem' AND tablename = 'memories' "
                "AND indexdef ILIKE '%USING hnsw%'"
            )
            for r in names:
                await conn.execute(f'DROP INDEX mem."{r["indexname"]}"')
        with Progress(f"{case.label}/seed", n, unit="rows") as progress:
            for start in range(0, n, SEED_BATCH):
                stop = min(start + SEED_BATCH, n)
                records = [
                    (
                        uuid.UUID(case.ids[i]),
                        case.user_ids[i],
                        case.texts[i],
                        case.vectors[i],
                        content_hash(case.texts[i]),
                        "LONG_TERM",
                    )
                    for i in range(start, stop)
                ]
                await conn.copy_records_to_table(
                    "memories",
                    schema_name="mem",
                    columns=["id", "user_id", "memory", "embedding", "hash", "memory_type"],
                    records=records,
                )
                progress.advance(stop - start)
        index_seconds = None
        if index_defs:
            t = time.monotonic()
            log(f"{case.label}/seed: rebuilding {len(index_defs)} HNSW index(es) after the bulk load")
            await conn.execute("SET maintenance_work_mem = '1GB'")
            for definition in index_defs:
                await conn.execute(definition)
            index_seconds = round(time.monotonic() - t, 2)
        graph = await seed_graph(conn, case)
        await conn.execute("ANALYZE mem.memories")
        count = await conn.fetchval("SELECT count(*) FROM mem.memories WHERE deleted_at IS NULL")
        size = await conn.fetchval("SELECT pg_total_relation_size('mem.memories')")
    finally:
        await conn.close()
    seconds = time.monotonic() - started
    return {
        "rows": int(count),
        "seconds": round(seconds, 2),
        "rows_per_s": round(n / seconds, 1) if seconds else None,
        "hnsw_rebuilt_after_load": bool(index_defs),
        "hnsw_build_seconds": index_seconds,
        "table_bytes": int(size),
        "graph": graph,
    }


def _graph_rows(case: Case) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What an add with infer=false writes besides the memory: the heuristic's entities, their
    links (at most MAX_LINKS_PER_ENTITY each, as the service caps them) and co-mention relations."""
    assert case.ids is not None
    entities: dict[tuple[str, str, str], uuid.UUID] = {}
    links_of: dict[uuid.UUID, int] = defaultdict(int)
    links, relations = [], []
    for i, text in enumerate(case.texts):
        user, memory = case.user_ids[i], uuid.UUID(case.ids[i])
        found = extract_entities(text)
        ids: dict[str, uuid.UUID] = {}
        for e in found:
            key = (user, e.text.lower(), e.entity_type)
            ident = entities.setdefault(key, uuid.uuid4())
            ids[e.text] = ident
            if links_of[ident] < MAX_LINKS_PER_ENTITY:
                links_of[ident] += 1
                links.append((ident, memory))
        for r in co_mention_relations(found):
            if ids[r.source] != ids[r.target]:
                relations.append(
                    (uuid.uuid4(), user, ids[r.source], r.relation, ids[r.target], memory, r.origin, r.weight)
                )
    names = {ident: key for key, ident in entities.items()}
    entity_rows = [(ident, user, text, kind) for ident, (user, text, kind) in names.items()]
    return entity_rows, links, relations


async def seed_graph(conn: asyncpg.Connection, case: Case) -> dict[str, Any]:
    """COPY the heuristic graph of the seeded memories (entities, links, relations), so the entity
    and graph signals of the measured searches have the data a real add would have written."""
    started = time.monotonic()
    entity_rows, links, relations = _graph_rows(case)
    await conn.copy_records_to_table(
        "entities", schema_name="mem", columns=["id", "user_id", "text", "entity_type"], records=entity_rows
    )
    await conn.copy_records_to_table(
        "entity_links", schema_name="mem", columns=["entity_id", "memory_id"], records=links
    )
    await conn.copy_records_to_table(
        "relations",
        schema_name="mem",
        columns=[
            "id",
            "user_id",
            "source_entity_id",
            "relation",
            "target_entity_id",
            "memory_id",
            "origin",
            "weight",
        ],
        records=relations,
    )
    for table in ("entities", "entity_links", "relations"):
        await conn.execute(f"ANALYZE mem.{table}")
    return {
        "entities": len(entity_rows),
        "entity_links": len(links),
        "relations": len(relations),
        "seconds": round(time.monotonic() - started, 2),
    }


GRAPH_OFF = ["semantic", "keyword", "entity"]
GRAPH_ON = [*GRAPH_OFF, "graph"]
GRAPH_ROUNDS = 3


async def graph_overhead(
    client: Any, case: Case, queries: list[str], requests: int, rng: random.Random, time_cap: float
) -> dict[str, Any]:
    """Server-side retrieval time of the same searches (concurrency 1) with and without the graph
    signal, in alternating rounds so a loaded machine weighs on both alike."""
    pairs = _pairs(case, queries, min(requests, 300), rng)
    times: dict[str, list[float]] = {"with_graph": [], "without_graph": []}
    client_times: dict[str, list[float]] = {"with_graph": [], "without_graph": []}
    for round_ in range(GRAPH_ROUNDS):
        for mode, signals in (("without_graph", GRAPH_OFF), ("with_graph", GRAPH_ON)):
            bodies = [{"query": queries[q], "user_id": u, "top_k": 10, "signals": signals} for u, q in pairs]
            samples, _ = await run_bounded(
                client,
                "/mem/v1/search",
                bodies,
                concurrency=1,
                time_cap=time_cap,
                phase=f"{case.label}/graph {mode} round {round_ + 1}",
            )
            times[mode] += [s.server["retrieval"] for s in samples if s.ok and "retrieval" in s.server]
            client_times[mode] += [s.client_ms for s in samples if s.ok]
    with_, without = percentiles(times["with_graph"]), percentiles(times["without_graph"])
    return {
        "pairs": len(pairs),
        "rounds": GRAPH_ROUNDS,
        "server_retrieval_ms": {"with_graph": with_, "without_graph": without},
        "client_ms": {m: percentiles(v) for m, v in client_times.items()},
        "p50_overhead_ms": round(with_["p50"] - without["p50"], 3)
        if with_["p50"] is not None and without["p50"] is not None
        else None,
    }


def _pairs(case: Case, queries: list[str], n: int, rng: random.Random) -> list[tuple[str, int]]:
    return [(rng.choice(case.users), rng.randrange(len(queries))) for _ in range(n)]


def exact_top(
    case: Case, user: str, qvec: npt.NDArray[np.float32], k: int = 10
) -> tuple[list[int], npt.NDArray[np.float32]]:
    rows = case.user_rows[user]
    sims = case.vectors[rows] @ qvec
    order = np.argsort(-sims, kind="stable")[:k]
    return [int(rows[i]) for i in order], sims


async def measure(
    service: Service,
    tenant: Tenant,
    case: Case,
    queries: list[str],
    qvecs: Matrix,
    *,
    requests: int,
    concurrencies: list[int],
    time_cap: float,
    recall_pairs: int,
    signals_ok: bool,
    seed: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    out: dict[str, Any] = {
        "memories": len(case.texts),
        "users": len(case.users),
        "memories_per_user": percentiles(len(r) for r in case.user_rows.values()),
    }
    assert case.ids is not None
    id_row = {mid: i for i, mid in enumerate(case.ids)}
    async with new_client(service.url, tenant.headers, max([*concurrencies, 16])) as client:
        # Warm the query-embedding cache: every distinct query once (and the tenant's pool and buffers).
        warm = [{"query": q, "user_id": rng.choice(case.users), "top_k": 10} for q in queries]
        samples, wall = await run_bounded(
            client,
            "/mem/v1/search",
            warm,
            concurrency=16,
            time_cap=time_cap,
            phase=f"{case.label}/warm-cache",
        )
        out["warm_uncached_c16"] = summarise(samples, wall, planned=len(warm))

        out["search"] = {}
        for c in concurrencies:
            bodies = [
                {"query": queries[q], "user_id": u, "top_k": 10}
                for u, q in _pairs(case, queries, requests, rng)
            ]
            before = await metrics.snapshot(service.url, service.admin_key)
            samples, wall = await run_bounded(
                client,
                "/mem/v1/search",
                bodies,
                concurrency=c,
                time_cap=time_cap,
                phase=f"{case.label}/search c={c}",
            )
            out["search"][f"c{c}"] = {
                "concurrency": c,
                **summarise(samples, wall, planned=len(bodies)),
                "metrics_delta": metrics.delta(
                    before, await metrics.snapshot(service.url, service.admin_key)
                ),
            }

        out["graph_overhead"] = await graph_overhead(client, case, queries, requests, rng, time_cap)

        # Recall of the service's dense top-10 against exact cosine over the user's vectors.
        pairs = _pairs(case, queries, recall_pairs, rng)
        extra = {"signals": ["semantic"]} if signals_ok else {}
        bodies = [{"query": queries[q], "user_id": u, "top_k": 10, **extra} for u, q in pairs]
        samples, wall = await run_bounded(
            client,
            "/mem/v1/search",
            bodies,
            concurrency=4,
            time_cap=time_cap,
            phase=f"{case.label}/recall-vs-exact",
            keep_body=True,
        )
    recalls, strict, foreign, short = [], [], 0, 0
    misses: list[dict[str, Any]] = []
    missed_by_sign = {"positive": 0, "nonpositive": 0}
    for s in samples:
        if not s.ok:
            continue
        user, q = pairs[s.index]
        exact, sims = exact_top(case, user, qvecs[q])
        rows = case.user_rows[user]
        sim_of = {int(r): float(v) for r, v in zip(rows, sims, strict=True)}
        kth = sims[np.argsort(-sims)[len(exact) - 1]] if len(exact) else 1.0
        got = [id_row.get(str(r.get("id"))) for r in s.body.get("results", [])][:10]
        foreign += sum(1 for g in got if g is None or g not in sim_of)
        if len(got) < len(exact):
            short += 1
        hit_rows = {g for g in got if g is not None and g in sim_of and sim_of[g] >= kth - TIE_EPS}
        hits = len(hit_rows)
        recalls.append(min(hits, len(exact)) / len(exact) if exact else 1.0)
        for i in exact:
            if i not in hit_rows and not any(abs(sim_of[i] - sim_of[h]) <= TIE_EPS for h in hit_rows):
                missed_by_sign["positive" if sim_of[i] > 0 else "nonpositive"] += 1
        if exact and hits < len(exact) and len(misses) < 10:
            misses.append(
                {
                    "user": user,
                    "query": queries[q],
                    "user_memories": len(rows),
                    "exact": [[case.ids[i], round(sim_of[i], 5)] for i in exact],
                    "service": [
                        [str(r.get("id")), round(sim_of[g], 5) if g in sim_of else None, r.get("score")]
                        for r, g in zip(s.body.get("results", [])[:10], got, strict=False)
                    ],
                }
            )
        strict.append(len(set(exact) & {g for g in got if g is not None}) / len(exact) if exact else 1.0)
    out["recall_vs_exact"] = {
        "pairs": len(recalls),
        "errors": sum(1 for s in samples if not s.ok),
        "signals": extra.get("signals"),
        "recall@10": round(100 * float(np.mean(recalls)), 2) if recalls else None,
        "recall@10_strict_ids": round(100 * float(np.mean(strict)), 2) if strict else None,
        "min_recall@10": round(100 * float(np.min(recalls)), 2) if recalls else None,
        "results_not_owned_by_user": foreign,
        "queries_with_fewer_results_than_exact": short,
        # Exact neighbours the service left out, by the sign of their cosine similarity.
        "missed_neighbours_positive_sim": missed_by_sign["positive"],
        "missed_neighbours_nonpositive_sim": missed_by_sign["nonpositive"],
        "misses": misses,
    }
    out["db_floor"] = await db_floor(service, tenant, case, qvecs, pairs)
    out["service_rss_bytes"] = service.rss_bytes()
    out["postgres_pss_bytes"] = service.postgres_pss_bytes()
    return out


async def db_floor(
    service: Service, tenant: Tenant, case: Case, qvecs: Matrix, pairs: list[tuple[str, int]]
) -> dict[str, Any]:
    """The owner-scoped exact scan the service runs, timed directly over asyncpg (no HTTP, no
    service): the floor that the server-side retrieval time can be compared with."""
    conn = await asyncpg.connect(service.tenant_dsn(tenant))
    times = []
    try:
        await init_connection(conn)
        stmt = await conn.prepare(OWNER_SQL)
        for user, q in pairs[:5]:  # warm the plan and buffers
            await stmt.fetch(qvecs[q], user)
        for user, q in pairs:
            t = time.perf_counter()
            await stmt.fetch(qvecs[q], user)
            times.append((time.perf_counter() - t) * 1000)
        # For scale: one tenant-wide HNSW probe (no owner filter), the "physical limit" of the README.
        hnsw = []
        async with conn.transaction():
            await conn.execute("SET LOCAL hnsw.ef_search = 40")
            probe = await conn.prepare(HNSW_SQL)
            for _, q in pairs[:5]:
                await probe.fetch(qvecs[q])
            for _, q in pairs:
                t = time.perf_counter()
                await probe.fetch(qvecs[q])
                hnsw.append((time.perf_counter() - t) * 1000)
    finally:
        await conn.close()
    return {"sql": OWNER_SQL, "ms": percentiles(times), "hnsw_probe_tenant_wide_ms": percentiles(hnsw)}
