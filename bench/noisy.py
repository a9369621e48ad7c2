"""Noisy neighbour (issue 9): tenant A floods the service while tenant B searches.

Its own service (`python -m app serve`, the local embedder, the platform's default limits):
1. both tenants get a small corpus (adds infer=false, honouring 429 Retry-After);
2. B searches alone, one request at a time, each query new (so each is embedded): B's idle p95;
3. A floods at concurrency 20, adds and searches alternating, each text new, bounded in
   count and time, while B searches as in 2: B's p95 during the flood. A's client runs in a
   process of its own, as it would on A's machines: in B's event loop, its 20 workers (~1.7 ms
   of httpx CPU a request) delayed B's requests and answers and added to B's times.
Reported: B's p95 during the flood over its idle p95 (goal: within 3x), A's answers by status
(429 is the service defending B), and B's timeouts and errors (goal: none).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench import metrics
from bench.client import parse_server_timing
from bench.progress import log, percentiles
from bench.service import Service, Tenant, start_managed

B_TIMEOUT_S = 5.0
GOAL_RATIO = 3.0
_WORDS = "tea coffee Lisbon hiking chess piano garden cycling sushi jazz novels climbing".split()


def _sentence(salt: str, i: int) -> str:
    a, b = _WORDS[i % len(_WORDS)], _WORDS[(i * 7 + 3) % len(_WORDS)]
    return f"{salt} note {i}: I enjoy {a} on weekends and {b} after work"


async def _post_patiently(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """Retry 429/503 after Retry-After: the seeding must finish whatever the limits."""
    for _ in range(100):
        r = await client.post(path, json=body)
        if r.status_code not in (429, 503):
            return r
        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
    return r


async def _seed(service: Service, tenant: Tenant, n: int) -> None:
    async with httpx.AsyncClient(base_url=service.url, headers=tenant.headers, timeout=60) as client:
        for start in range(0, n, 10):
            messages = [
                {"role": "user", "content": _sentence(tenant.ref, i)}
                for i in range(start, min(n, start + 10))
            ]
            body = {"messages": messages, "user_id": "alice", "infer": False}
            r = await _post_patiently(client, "/mem/v1/memories", body)
            if r.status_code >= 300:
                raise RuntimeError(f"seeding {tenant.ref} failed: {r.status_code} {r.text[:300]}")


async def _searches(
    service: Service, tenant: Tenant, *, salt: str, until: asyncio.Event | None, count: int
) -> dict[str, Any]:
    """Sequential searches with new queries: `count` of them, or until `until` is set."""
    ms: list[float] = []
    server: dict[str, list[float]] = {}
    statuses: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=service.url, headers=tenant.headers, timeout=B_TIMEOUT_S) as client:
        i = 0
        while (until is None and i < count) or (until is not None and not until.is_set()):
            body = {
                "query": f"{salt} {i} what does alice enjoy {_WORDS[i % len(_WORDS)]}",
                "user_id": "alice",
            }
            started = time.perf_counter()
            try:
                r = await client.post("/mem/v1/search", json=body)
                statuses[str(r.status_code)] += 1
                if r.status_code == 200:
                    ms.append((time.perf_counter() - started) * 1000)
                    for name, dur in parse_server_timing(r.headers.get("server-timing")).items():
                        server.setdefault(name, []).append(dur)
            except httpx.TimeoutException:
                statuses["timeout"] += 1
            except httpx.TransportError as exc:
                statuses[type(exc).__name__] += 1
            i += 1
            await asyncio.sleep(0.02)  # a steady, modest pace: B is the quiet tenant
    return {
        "client_ms": percentiles(ms),
        "server_ms": {name: percentiles(values) for name, values in server.items()},
        "statuses": dict(statuses),
        "requests": i,
    }


def _flood_process(
    url: str, headers: dict[str, str], total: int, concurrency: int, time_cap: float
) -> dict[str, Any]:
    """_flood in a child process (its own event loop and CPU time, apart from B's client)."""
    return asyncio.run(_flood(url, headers, total=total, concurrency=concurrency, time_cap=time_cap))


async def _flood(
    url: str, headers: dict[str, str], *, total: int, concurrency: int, time_cap: float
) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {"add": Counter(), "search": Counter()}
    ok_ms: list[float] = []
    next_i = 0
    deadline = time.monotonic() + time_cap
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_i
            while next_i < total and time.monotonic() < deadline:
                i = next_i
                next_i += 1
                kind = "add" if i % 2 == 0 else "search"
                if kind == "add":
                    messages = [{"role": "user", "content": _sentence(f"flood{i}", j)} for j in range(5)]
                    path, body = "/mem/v1/memories", {"messages": messages, "user_id": "bob", "infer": False}
                else:
                    path, body = (
                        "/mem/v1/search",
                        {"query": f"flood {i} anything about chess", "user_id": "bob"},
                    )
                started = time.perf_counter()
                try:
                    r = await client.post(path, json=body)
                    status = str(r.status_code)
                    if r.status_code < 300:
                        ok_ms.append((time.perf_counter() - started) * 1000)
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                statuses[status] += 1
                by_kind[kind][status] += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - started
    return {
        "requests": sum(statuses.values()),
        "seconds": round(seconds, 2),
        "statuses": dict(statuses),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "rate_limited_429": statuses.get("429", 0),
        "busy_503": statuses.get("503", 0),
        "ok_ms": percentiles(ok_ms),
    }


async def run(
    data_dir: Path,
    log_path: Path,
    *,
    flood_requests: int = 3000,
    flood_concurrency: int = 20,
    idle_searches: int = 100,
    time_cap: float = 60.0,
    seed_memories: int = 200,
) -> dict[str, Any]:
    service = await start_managed(data_dir, log_path)
    try:
        # The platform's default limits, as the module docstring says: they are what refuses A.
        a = await service.create_tenant("noisy-a", default_limits=True)
        b = await service.create_tenant("quiet-b", default_limits=True)
        t = time.monotonic()
        await asyncio.gather(_seed(service, a, seed_memories), _seed(service, b, seed_memories))
        log(f"noisy: seeded {seed_memories} memories in each tenant in {time.monotonic() - t:.1f}s")
        idle = await _searches(service, b, salt="idle", until=None, count=idle_searches)
        log(f"noisy: B idle p95 {idle['client_ms']['p95']} ms over {idle['requests']} searches")
        before = await metrics.snapshot(service.url, service.admin_key)
        done = asyncio.Event()
        b_task = asyncio.create_task(_searches(service, b, salt="flood", until=done, count=0))
        try:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                flood = await asyncio.get_running_loop().run_in_executor(
                    pool,
                    _flood_process,
                    service.url,
                    dict(a.headers),
                    flood_requests,
                    flood_concurrency,
                    min(time_cap, 30),
                )
        finally:
            done.set()
        during = await b_task
        embedder = _embedder_work(
            metrics.delta(before, await metrics.snapshot(service.url, service.admin_key))
        )
        log(f"noisy: the embedder during the flood: {embedder}")
        log(f"noisy: A sent {flood['requests']} in {flood['seconds']}s: {flood['statuses']}")
        log(f"noisy: B during the flood p95 {during['client_ms']['p95']} ms: {during['statuses']}")
        log(f"noisy: B server-side idle {idle['server_ms']}, during {during['server_ms']}")
    finally:
        await service.stop()
    idle_p95, flood_p95 = idle["client_ms"]["p95"], during["client_ms"]["p95"]
    ratio = round(flood_p95 / idle_p95, 2) if idle_p95 and flood_p95 else None
    b_failures = sum(v for k, v in during["statuses"].items() if k != "200")
    return {
        "flood": {
            "concurrency": flood_concurrency,
            "cap_requests": flood_requests,
            "cap_seconds": min(time_cap, 30),
        },
        "a": flood,
        "b_idle": idle,
        "b_during_flood": during,
        "b_p95_ratio": ratio,
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio is not None and ratio <= GOAL_RATIO and b_failures == 0,
        "b_timeouts": during["statuses"].get("timeout", 0),
        "b_failures": b_failures,
        "b_timeout_s": B_TIMEOUT_S,
        "embedder_during_flood": embedder,
    }


def _embedder_work(moved: dict[str, Any]) -> dict[str, Any]:
    """Model batches during the flood and their mean time (from the service's /metrics)."""

    def total(suffix: str) -> float:
        return sum(
            float(v)
            for k, v in moved.items()
            if k.startswith(f"memory_provider_latency_seconds_{suffix}")
            and 'provider="local"' in k
            and 'operation="embed"' in k
        )

    batches, seconds = total("count"), total("sum")
    return {
        "batches": int(batches),
        "model_seconds": round(seconds, 2),
        "mean_batch_ms": round(1000 * seconds / batches, 1) if batches else None,
    }


def summary(noisy: dict[str, Any]) -> str:
    idle, during, a = noisy["b_idle"], noisy["b_during_flood"], noisy["a"]
    return "\n".join(
        [
            f"Noisy neighbour: tenant A floods at concurrency {noisy['flood']['concurrency']} "
            f"({a['requests']} adds+searches in {a['seconds']}s) while tenant B searches",
            f"  B search p50/p95 idle:   {idle['client_ms']['p50']} / {idle['client_ms']['p95']} ms "
            f"({idle['client_ms']['n']} ok)",
            f"  B search p50/p95 flood:  {during['client_ms']['p50']} / {during['client_ms']['p95']} ms "
            f"({during['client_ms']['n']} ok, {noisy['b_timeouts']} timeouts > {noisy['b_timeout_s']}s, "
            f"{noisy['b_failures']} not 200)",
            f"  B p95 flood / idle:      {noisy['b_p95_ratio']}x (goal <= {noisy['goal_ratio']}x: "
            f"{'met' if noisy['goal_met'] else 'NOT met'})",
            f"  A answers:               {a['statuses']} (429 = refused by A's limits, 503 = A's queue full)",
        ]
    )
