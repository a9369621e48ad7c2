"""What the mem0 translation costs: the same searches through POST /mem0/v3/memories/search/ and
POST /mem/v1/search (the target: < 1 ms added at p50).

    python -m bench --only mem0         # part of make bench: its own service, one tenant
    python -m bench.mem0_overhead --url http://127.0.0.1:8000 --key <service_role key> \
        [--memories 200] [--queries 300]

Seeds one user's verbatim memories through /mem/v1, then runs the same queries, one at a time on one
keep-alive connection, through both doors, alternating which goes first so both see the same caches.
Reports client-side p50/p95 per door, the difference of the p50s, and the median of the paired
per-query differences (less sensitive to a busy machine). Also times the translation alone, in
process: mem0 body -> our SearchRequest, and our results -> mem0's, for a 5-result answer.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
import timeit
from pathlib import Path
from typing import Any

import httpx

from bench.progress import log, percentiles
from bench.service import start_managed

TOPICS = ["tea", "cycling", "jazz", "peanuts", "Rust", "Lisbon", "chess", "sourdough", "cellos", "hiking"]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def _seed(http: httpx.AsyncClient, user: str, memories: int) -> None:
    for i in range(memories):
        text = f"Fact {i}: the user likes {TOPICS[i % len(TOPICS)]} number {i}"
        r = await http.post("/mem/v1/memories", json={"messages": text, "user_id": user, "infer": False})
        r.raise_for_status()


async def measure(url: str, key: str, memories: int, queries: int) -> dict[str, Any]:
    """Client-side milliseconds per search through each door, and the differences."""
    user = f"bench-mem0-{secrets.token_hex(3)}"
    mem_ms: list[float] = []
    mem0_ms: list[float] = []
    headers = {"apikey": key}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        await _seed(http, user, memories)
        token = {"authorization": f"Token {key}"}
        for i in range(queries):
            query = f"does the user like {TOPICS[i % len(TOPICS)]}?"
            ours = {"query": query, "user_id": user, "top_k": 5}
            theirs = {"query": query, "filters": {"user_id": user}, "top_k": 5}
            calls = [
                (mem_ms, "/mem/v1/search", ours, headers),
                (mem0_ms, "/mem0/v3/memories/search/", theirs, token),
            ]
            for bucket, path, body, h in calls if i % 2 else reversed(calls):
                started = time.perf_counter()
                r = await http.post(path, json=body, headers=h)
                bucket.append(_ms(started))
                r.raise_for_status()
                assert len(r.json()["results"]) == 5, r.text
        r = await http.delete("/mem/v1/memories", params={"user_id": user})
        r.raise_for_status()
    paired = [b - a for a, b in zip(mem_ms, mem0_ms, strict=True)]
    return {
        "memories": memories,
        "queries": queries,
        "mem_v1_ms": percentiles(mem_ms),
        "mem0_v3_ms": percentiles(mem0_ms),
        "overhead_p50_ms": round(statistics.median(mem0_ms) - statistics.median(mem_ms), 3),
        "paired_difference_median_ms": round(statistics.median(paired), 3),
        "translation_in_process_us": translation_cost_us(),
    }


def translation_cost_us() -> float:
    """Microseconds to translate one mem0 search body into ours and a 5-result answer back."""
    from app.auth.scope import MemoryAuthScope
    from app.compat.mem0 import translate
    from app.compat.mem0.schemas import Mem0SearchRequest
    from app.compat.mem0.views import scored_view
    from app.core.views import ScoreBreakdown, ScoredMemory

    scope = MemoryAuthScope(tenant_ref="bench", role="service_role", user_id=None)
    body = Mem0SearchRequest(query="does the user like tea?", filters={"user_id": "u"}, top_k=5)
    row = ScoredMemory(
        id="7d0f7c1e-0000-4000-8000-000000000000",
        memory="the user likes tea",
        user_id="u",
        agent_id=None,
        run_id=None,
        memory_type="LONG_TERM",
        metadata={"topic": "tea"},
        hash="h",
        actor_id=None,
        role="user",
        expires_at=None,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
        immutable=False,
        score=0.9,
        score_breakdown=ScoreBreakdown(semantic=0.9, keyword=0.5, entity=0.0, graph=0.0),
    )

    def once() -> None:
        translate.search_request(scope, body)
        [scored_view(row) for _ in range(5)]

    runs = 2000
    return round(min(timeit.repeat(once, number=runs, repeat=5)) / runs * 1e6, 2)


def summary(result: dict[str, Any]) -> str:
    a, b = result["mem_v1_ms"], result["mem0_v3_ms"]
    return "\n".join(
        [
            f"mem0 vs /mem/v1: {result['queries']} searches over {result['memories']} memories, sequential",
            f"  /mem/v1/search            p50 {a['p50']:7.2f} ms  p95 {a['p95']:7.2f} ms",
            f"  /mem0/v3/memories/search  p50 {b['p50']:7.2f} ms  p95 {b['p95']:7.2f} ms",
            f"  added at p50: {result['overhead_p50_ms']:+.3f} ms; median paired difference "
            f"{result['paired_difference_median_ms']:+.3f} ms; translation alone "
            f"{result['translation_in_process_us']:.1f} us",
        ]
    )


async def run_managed(data_dir: Path, log_path: Path, *, memories: int, queries: int) -> dict[str, Any]:
    """The same measure on a service of its own (what `make bench` runs)."""
    service = await start_managed(data_dir, log_path)
    try:
        tenant = await service.create_tenant("bench-mem0")
        log(f"mem0: {queries} searches through /mem/v1/search and /mem0/v3/memories/search/")
        result = await measure(service.url, tenant.headers["apikey"], memories, queries)
    finally:
        await service.stop()
    print(summary(result))
    return result


async def run(url: str, key: str, memories: int, queries: int) -> None:
    print(summary(await measure(url, key, memories, queries)))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.mem0_overhead", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True, help="a service_role key")
    p.add_argument("--memories", type=int, default=200)
    p.add_argument("--queries", type=int, default=300)
    args = p.parse_args()
    asyncio.run(run(args.url, args.key, args.memories, args.queries))


if __name__ == "__main__":
    main()
