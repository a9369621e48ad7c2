"""Bounded concurrent HTTP request loops (count and time capped), timing and Server-Timing parsing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.progress import Progress, percentiles


@dataclass
class Sample:
    index: int
    status: int  # 0 when the request failed at the transport level
    client_ms: float
    server: dict[str, float]  # Server-Timing metrics in ms, e.g. {"retrieval": 1.2, "embed": 0.05}
    body: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def parse_server_timing(header: str | None) -> dict[str, float]:
    """`retrieval;dur=1.23, embed;dur=0.05` -> {"retrieval": 1.23, "embed": 0.05}."""
    out: dict[str, float] = {}
    if not header:
        return out
    for entry in header.split(","):
        parts = [p.strip() for p in entry.split(";")]
        if not parts or not parts[0]:
            continue
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur":
                try:
                    out[parts[0]] = float(value.strip().strip('"'))
                except ValueError:
                    pass
    return out


def new_client(base_url: str, headers: dict[str, str], concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max(concurrency, 1) + 4, max_keepalive_connections=max(concurrency, 1) + 4
    )
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60, limits=limits)


async def run_bounded(
    client: httpx.AsyncClient,
    path: str,
    bodies: Sequence[dict[str, Any]],
    *,
    concurrency: int,
    time_cap: float,
    phase: str,
    keep_body: bool = False,
) -> tuple[list[Sample], float]:
    """POST every body (in order, `concurrency` in flight) until all are sent or `time_cap` seconds
    have passed. Returns the samples (in request order) and the wall time."""
    samples: list[Sample] = []
    next_index = 0
    deadline = time.monotonic() + time_cap
    progress = Progress(phase, len(bodies))

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(bodies) and time.monotonic() < deadline:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                r = await client.post(path, json=bodies[i])
                elapsed = (time.perf_counter() - started) * 1000
                body: Any = None
                error = None
                if keep_body or r.status_code >= 300:
                    try:
                        body = r.json()
                    except ValueError:
                        body = r.text[:500]
                if r.status_code >= 300:
                    error = str(body)[:500]
                    body = body if keep_body else None
                sample = Sample(
                    i,
                    r.status_code,
                    elapsed,
                    parse_server_timing(r.headers.get("server-timing")),
                    body,
                    error,
                )
            except httpx.HTTPError as exc:
                elapsed = (time.perf_counter() - started) * 1000
                sample = Sample(i, 0, elapsed, {}, None, f"{type(exc).__name__}: {exc}")
            samples.append(sample)
            progress.advance(error=not sample.ok)

    with progress:
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        wall = time.monotonic() - started
    samples.sort(key=lambda s: s.index)
    return samples, wall


def summarise(samples: Sequence[Sample], wall: float, *, planned: int) -> dict[str, Any]:
    """Client and Server-Timing percentiles (ms), throughput, and errors of one loop."""
    ok = [s for s in samples if s.ok]
    out: dict[str, Any] = {
        "planned": planned,
        "sent": len(samples),
        "ok": len(ok),
        "errors": len(samples) - len(ok),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(ok) / wall, 2) if wall > 0 else None,
        "client_ms": percentiles(s.client_ms for s in ok),
    }
    names = sorted({k for s in ok for k in s.server})
    out["server_timing_present"] = bool(names)
    out["server_ms"] = {name: percentiles(s.server[name] for s in ok if name in s.server) for name in names}
    # The headline server-side figure: retrieval time (database + fusion), null without the header.
    out["server_retrieval_ms"] = out["server_ms"].get("retrieval") or {
        "n": 0,
        "p50": None,
        "p95": None,
        "p99": None,
        "mean": None,
    }
    errors = [f"{s.status}: {s.error}" for s in samples if not s.ok]
    if errors:
        out["error_examples"] = sorted(set(errors))[:5]
    return out
