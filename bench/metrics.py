"""Snapshots of the service's Prometheus /metrics, to count provider calls per phase."""

from __future__ import annotations

import re
from typing import Any

import httpx

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)$")
WATCHED = (
    "memory_provider_latency_seconds",
    "memory_embedding_cache_total",
    "memory_pipeline_events_total",
    "memory_provider_errors_total",
)


async def snapshot(url: str, admin_key: str) -> dict[str, float]:
    """/metrics is for the platform operator: it needs the admin key."""
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(f"{url}/metrics", headers={"Authorization": f"Bearer {admin_key}"})
            text = r.text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m and m.group(1).startswith(WATCHED) and not m.group(1).endswith(("_bucket", "_created")):
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                continue
    return out


def delta(before: dict[str, float], after: dict[str, float], per: int | None = None) -> dict[str, Any]:
    """Counters that moved between two snapshots (and per operation when `per` is given)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        d = value - before.get(key, 0.0)
        if d:
            out[key] = round(d, 4)
    if per:
        emb_count = sum(
            v for k, v in out.items() if "latency_seconds_count" in k and 'operation="embed"' in k
        )
        emb_sum = sum(v for k, v in out.items() if "latency_seconds_sum" in k and 'operation="embed"' in k)
        chat = sum(v for k, v in out.items() if "latency_seconds_count" in k and 'operation="embed"' not in k)
        out["embedding_batches_per_op"] = round(emb_count / per, 4)
        out["embedding_seconds_per_op"] = round(emb_sum / per, 5)
        out["other_provider_calls_per_op"] = round(chat / per, 4)
    return out
