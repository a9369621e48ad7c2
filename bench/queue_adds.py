"""Async adds on the durable queue (issue 8), against a fake LLM of fixed latency (0 ms and 300 ms):

- accept latency: the client time of an `"async": true` add (the 202), one at a time, while the
  workers run the previous ones (target p95 <= 20 ms);
- time to SUCCEEDED: one add at a time, its event polled every 10 ms until SUCCEEDED (client
  clock), and the server's own enqueue-to-done `latency`;
- throughput at concurrency 16: 16 clients each adding and polling until SUCCEEDED, in a loop;
  jobs completed per second.

Each worker count (MEM_QUEUE_WORKERS) gets a service of its own; the provider is the fake server of
testsupport/ on 127.0.0.1 (generic provider, as in the pipeline part). With 0 workers (a replica that
only accepts) only the accept path is measured: no job runs beside it in the process.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx

from bench.client import new_client
from bench.progress import log, percentiles
from bench.service import Service, Tenant, start_managed
from testsupport.provider_server import FakeProviderServer, Fault

LATENCIES_S = (0.0, 0.3)
POLL_S = 0.01
_NEW = re.compile(r"NEW MESSAGES:\n(.*)$", re.DOTALL)


def one_fact_per_line(payload: dict[str, Any]) -> str:
    """The fake model: each new message is one fact to ADD."""
    prompt = "\n".join(str(m.get("content")) for m in payload.get("messages", []))
    found = _NEW.search(prompt)
    lines = [
        line.split(": ", 1)[1] for line in (found.group(1) if found else "").splitlines() if ": " in line
    ]
    return json.dumps(
        {"facts": [{"text": text, "event": "ADD", "memory_type": "LONG_TERM"} for text in lines]}
    )


def _body(label: str, i: int) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": f"On the {label} trip number {i} I visited Lisbon"}],
        "user_id": f"user_{i % 50:03d}",
        "async": True,
    }


async def _accept(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, str]:
    started = time.perf_counter()
    response = await client.post("/mem/v1/memories", json=body)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 202:
        raise RuntimeError(f"async add answered {response.status_code}: {response.text[:300]}")
    return elapsed, str(response.json()["id"])


async def _until_done(client: httpx.AsyncClient, event_id: str, cap: float) -> dict[str, Any]:
    deadline = time.monotonic() + cap
    while True:
        event: dict[str, Any] = (await client.get(f"/mem/v1/events/{event_id}")).json()
        if event.get("status") in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            return event
        await asyncio.sleep(POLL_S)


async def accept_latency(client: httpx.AsyncClient, n: int, label: str) -> dict[str, Any]:
    samples = [(await _accept(client, _body(label, i)))[0] for i in range(n)]
    return {"n": n, "client_ms": percentiles(samples)}


async def time_to_succeeded(client: httpx.AsyncClient, n: int, label: str, cap: float) -> dict[str, Any]:
    client_ms, server_s, failed = [], [], 0
    for i in range(n):
        started = time.perf_counter()
        _, event_id = await _accept(client, _body(label, i))
        event = await _until_done(client, event_id, cap)
        if event.get("status") != "SUCCEEDED":
            failed += 1
            continue
        client_ms.append((time.perf_counter() - started) * 1000)
        server_s.append(float(event.get("latency", 0.0)) * 1000)
    return {"n": n, "failed": failed, "client_ms": percentiles(client_ms), "server_ms": percentiles(server_s)}


async def throughput(client: httpx.AsyncClient, n: int, label: str, cap: float) -> dict[str, Any]:
    """16 clients accept `n` adds; jobs per second from the first accept to the last SUCCEEDED
    (the count polled every 50 ms, one request: polling each event would load the service more
    than the jobs do)."""
    before = await _count(client, "SUCCEEDED")
    gate = asyncio.Semaphore(16)

    async def accept(i: int) -> float:
        async with gate:
            return (await _accept(client, _body(label, i)))[0]

    started = time.monotonic()
    accept_ms = await asyncio.gather(*(accept(i) for i in range(n)))
    accepted = time.monotonic() - started
    done = 0
    while time.monotonic() - started < cap:
        done = await _count(client, "SUCCEEDED") - before
        if done >= n:
            break
        await asyncio.sleep(0.05)
    wall = time.monotonic() - started
    return {
        "n": n,
        "succeeded": done,
        "accept_ms": percentiles(accept_ms),
        "accepted_per_s": round(n / accepted, 1),
        "wall_s": round(wall, 2),
        "jobs_per_s": round(done / wall, 2),
    }


async def _count(client: httpx.AsyncClient, status: str) -> int:
    page = (await client.get("/mem/v1/events", params={"status": status, "page_size": 1})).json()
    return int(page["total"])


async def reference(client: httpx.AsyncClient, n: int = 50) -> dict[str, Any]:
    """GET /ready, for scale: what the machine's load does to any request right now."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await client.get("/ready")
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


async def _accept_only(service: Service, tenant: Tenant, args: dict[str, Any]) -> dict[str, Any]:
    async with new_client(service.url, tenant.headers, 16) as client:
        case: dict[str, Any] = {"ready_reference_ms": await reference(client)}
        case["accept"] = await accept_latency(client, args["accepts"], "accept-only")
    log(f"queue, no workers: accept {case['accept']['client_ms']}")
    return {"accept_only": case}


async def _measure(
    service: Service, tenant: Tenant, fake: FakeProviderServer, args: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with new_client(service.url, tenant.headers, 16) as client:
        for latency in LATENCIES_S:
            label = f"llm_{int(latency * 1000)}ms"
            fake.set_fault(Fault(delay=latency) if latency else None, family="chat")
            case: dict[str, Any] = {"llm_latency_ms": latency * 1000}
            if latency == 0:
                case["ready_reference_ms"] = await reference(client)
                case["accept"] = await accept_latency(client, args["accepts"], f"{label}-accept")
                # The accepted adds are still being worked off: let them finish before timing one job.
                await _drain(client, args["cap"])
            case["time_to_succeeded"] = await time_to_succeeded(
                client, args["sequential"], f"{label}-seq", args["cap"]
            )
            case["c16"] = await throughput(client, args["c16"], f"{label}-c16", args["cap"])
            log(
                f"queue {label}: accept p95 {case.get('accept', {}).get('client_ms', {}).get('p95')} ms, "
                f"to SUCCEEDED p50 {case['time_to_succeeded']['client_ms']['p50']} ms, "
                f"c16 {case['c16']['jobs_per_s']} jobs/s"
            )
            out[label] = case
    fake.set_fault(None, family="chat")
    return out


async def _drain(client: httpx.AsyncClient, cap: float) -> None:
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        if await _count(client, "PENDING") + await _count(client, "RUNNING") == 0:
            return
        await asyncio.sleep(0.1)


def _environment(fake: FakeProviderServer, workers: int) -> dict[str, str]:
    return {
        "NUBASE_MEM_CHAT_PROVIDER": "generic",
        "NUBASE_MEM_CHAT_BASE_URL": fake.openai_base_url,
        "NUBASE_MEM_CHAT_MODEL": "fake-chat",
        "NUBASE_MEM_CHAT_API_KEY": "bench",
        "NUBASE_MEM_EMBEDDING_PROVIDER": "generic",
        "NUBASE_MEM_EMBEDDING_BASE_URL": fake.openai_base_url,
        "NUBASE_MEM_EMBEDDING_MODEL": "fake-embed",
        "NUBASE_MEM_EMBEDDING_API_KEY": "bench",
        "NUBASE_MEM_PROVIDER_CONCURRENCY": "32",
        "MEM_QUEUE_WORKERS": str(workers),
        # The bench measures the queue, not the per-tenant rate limits.
        "LIMITS_SERVICE_ADDS_PER_SECOND": "100000",
        "LIMITS_SERVICE_REQUESTS_PER_SECOND": "100000",
        "LIMITS_MAX_IN_FLIGHT": "1000",
    }


async def run(
    data_dir: Path,
    log_dir: Path,
    *,
    workers: tuple[int, ...] = (0, 2, 16),
    accepts: int = 200,
    sequential: int = 20,
    c16: int = 160,
    cap: float = 60.0,
) -> dict[str, Any]:
    out: dict[str, Any] = {"poll_interval_ms": POLL_S * 1000, "workers": {}}
    args = {"accepts": accepts, "sequential": sequential, "c16": c16, "cap": cap}
    with FakeProviderServer(embedding_dims=384) as fake:
        fake.chat_responder = one_fact_per_line
        for count in workers:
            service = await start_managed(
                data_dir, log_dir / f"service-queue-w{count}.log", extra_env=_environment(fake, count)
            )
            try:
                tenant = await service.create_tenant(f"bench-queue-w{count}")
                measure = (
                    _measure(service, tenant, fake, args) if count else _accept_only(service, tenant, args)
                )
                out["workers"][str(count)] = await measure
                out["workers"][str(count)]["rss_bytes"] = service.rss_bytes()
            finally:
                await service.stop()
    return out


def _row(count: str, case: dict[str, Any]) -> str:
    acc = case.get("accept", {}).get("client_ms", {})
    tts = case["time_to_succeeded"]
    accept = f"{_n(acc.get('p50'))}/{_n(acc.get('p95'))}"
    done = f"{_n(tts['client_ms']['p50'])}/{_n(tts['client_ms']['p95'])} ({_n(tts['server_ms']['p50'])})"
    c16 = f"{case['c16']['jobs_per_s']} ({_n(case['c16']['accept_ms']['p95'])})"
    return f"{count:>7}  {case['llm_latency_ms']:>4.0f}ms  {accept:<17}{done:<36}{c16}"


def summary(result: dict[str, Any]) -> str:
    lines = [
        "",
        "Async adds on the queue (infer=true, fake LLM on 127.0.0.1; client clock, ms)",
        "workers  LLM     accept p50/p95   to SUCCEEDED p50/p95 (server p50)   c=16 jobs/s (accept p95)",
    ]
    for count, cases in result.get("workers", {}).items():
        lines += [_row(count, c) for c in cases.values() if isinstance(c, dict) and "c16" in c]
        only = cases.get("accept_only")
        if only:
            acc = only["accept"]["client_ms"]
            lines.append(
                f"{count:>7}  (none)  {_n(acc['p50'])}/{_n(acc['p95'])}: accepting only, no job runs beside"
            )
    return "\n".join(lines)


def _n(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"
