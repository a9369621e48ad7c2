"""The tenant at a glance: counts by type and owner, adds per day, the service's own latencies.

Latencies come from this process's Prometheus histograms (the /mem/v1 routes of every tenant),
so only the platform admin sees them, as only the admin may read /metrics. The async-add queue's
depth is the tenant's own: its jobs per status, read from its database (mem.jobs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, get
from litestar.response import Template
from prometheus_client import REGISTRY

from app.auth.scope import MemoryAuthScope
from app.core.jobs import service as jobs
from app.db.session import TenantSession
from app.memories import overview
from app.memories import service as memories
from app.studio.web import Studio

LATENCY_METRIC = "memory_request_duration_seconds"
TIMED_ROUTES = (("Search", "POST", "/mem/v1/search"), ("Add", "POST", "/mem/v1/memories"))


@dataclass(frozen=True)
class Latency:
    label: str
    count: int
    mean_ms: float | None
    p95_ms: float | None  # the upper bound of the histogram bucket holding the 95th percentile


def _latency(label: str, method: str, path: str) -> Latency:
    buckets: dict[float, float] = {}
    total = count = 0.0
    for metric in REGISTRY.collect():
        if metric.name != LATENCY_METRIC:
            continue
        for sample in metric.samples:
            labels = sample.labels
            if labels.get("method") != method or labels.get("path") != path:
                continue
            if sample.name.endswith("_bucket"):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    if not count:
        return Latency(label, 0, None, None)
    p95 = next((b for b in sorted(buckets) if buckets[b] >= 0.95 * count), None)
    return Latency(label, int(count), round(total / count * 1000, 1), None if p95 is None else p95 * 1000)


def latencies() -> list[Latency]:
    return [_latency(*route) for route in TIMED_ROUTES]


@dataclass(frozen=True)
class QueueDepth:
    """The tenant's async adds waiting, being run, and failed for good."""

    pending: int
    running: int
    failed: int


async def queue_depth(db: TenantSession, scope: MemoryAuthScope) -> QueueDepth:
    counts = await jobs.status_counts(db, scope)
    return QueueDepth(pending=counts["PENDING"], running=counts["RUNNING"], failed=counts["FAILED"])


def bars(values: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Bar heights in percent of the largest value, for the SVG charts."""
    top = max((v for _, v in values), default=0) or 1
    return [{"label": k, "value": v, "pct": round(v * 100 / top, 1)} for k, v in values]


@get("/overview", name="studio_overview")
async def overview_page(request: Request[Any, Any, Any], studio: Studio) -> Template:
    session = studio.require(request)
    async with studio.tenant(request, session) as call:
        seen = await overview.overview(call.db, call.scope)
        stats = await memories.stats(call.db, call.scope, {})
        depth = await queue_depth(call.db, call.scope)
    return studio.page(
        request,
        session,
        "overview.html",
        tenant=call.tenant,
        seen=seen,
        owners=seen.owners,
        stats=stats,
        type_bars=bars(list(seen.by_type.items())),
        day_bars=bars(seen.adds_per_day),
        latencies=latencies() if session.is_admin else None,
        queue_depth=depth,
    )
