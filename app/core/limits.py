"""Per-tenant fairness: request and add rates per key role, and a cap on requests in flight.

The rates are a moving window of one second in process memory (MovingWindow): each replica
counts its own traffic, so with N replicas behind a balancer a tenant gets up to N times the rate.
Everything here answers at once, never queues: a tenant over its limit gets 429 with
Retry-After, and the other tenants never wait behind it.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from prometheus_client import Counter

from app.errors import RateLimited, retry_after
from app.settings import LimitSettings

LIMIT_REJECTIONS = Counter(
    "memory_limit_rejections", "Requests refused by a per-tenant limit", ["limit", "role"]
)

Kind = Literal["request", "add"]
# A route handler's `opt` key naming its Kind, for adds outside POST /mem/v1/memories
# (e.g. Tabby's /memory/add): `opt={LIMIT_KIND: "add"}`.
LIMIT_KIND = "limit_kind"

# What a tenant may set for itself in the control plane (control.tenants.limits).
TENANT_LIMIT_KEYS = (
    "user_requests_per_second",
    "user_adds_per_second",
    "service_requests_per_second",
    "service_adds_per_second",
    "max_in_flight",
)


def role_class(role: str) -> str:
    """`service` for the service_role key; `user` for the anon key (with or without a user's token)."""
    return "service" if role == "service_role" else "user"


def effective_limits(defaults: LimitSettings, overrides: Mapping[str, Any] | None) -> dict[str, int]:
    """The platform defaults with a tenant's own values on top (unknown keys are ignored)."""
    values = {k: v for k, v in dataclasses.asdict(defaults).items() if k in TENANT_LIMIT_KEYS}
    for key, value in (overrides or {}).items():
        if key in values and isinstance(value, int) and value >= 1:
            values[key] = value
    return values


class MovingWindow:
    """At most `limit` hits in any `window` seconds per key: the times of the last hits, oldest first.

    Replaces the `limits` library's MemoryStorage, whose expiry timer started a new thread on
    most requests (py-spy: 15 % of the event loop's time in a search, issue 13). Plain dict and
    deque work on the event loop's thread, no locks, nothing running in the background.
    """

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def hit(self, key: tuple[str, str], limit: int, now: float) -> float | None:
        """Count a hit and return None, or return the seconds until one is allowed (not counted)."""
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        horizon = now - self.window
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= limit:
            # The hit that would leave the window first once the limit is reached.
            return hits[len(hits) - limit] - horizon
        hits.append(now)
        return None

    def forget_idle(self, now: float) -> None:
        """Drop the keys with no hit in the window (tenants that went quiet)."""
        horizon = now - self.window
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= horizon]:
            del self._hits[key]


class TenantLimiter:
    def __init__(self, defaults: LimitSettings) -> None:
        self.defaults = defaults
        self._window = MovingWindow(1.0)
        self._swept = time.monotonic()
        self._in_flight: dict[str, int] = {}

    def check(self, tenant: str, role: str, kind: Kind, overrides: Mapping[str, Any] | None = None) -> None:
        """Count one request (and one add) for this tenant and key role, or raise RateLimited (429)."""
        if not self.defaults.enabled:
            return
        cls = role_class(role)
        limits = effective_limits(self.defaults, overrides)
        names = [f"{cls}_requests_per_second"] + ([f"{cls}_adds_per_second"] if kind == "add" else [])
        now = time.monotonic()
        if now - self._swept > 60:
            self._window.forget_idle(now)
            self._swept = now
        for name in names:
            per_second = limits[name]
            wait = self._window.hit((tenant, name), per_second, now)
            if wait is not None:
                LIMIT_REJECTIONS.labels(name.removeprefix(f"{cls}_"), cls).inc()
                raise RateLimited(
                    f"This tenant is over its limit of {per_second} "
                    f"{'adds' if name.endswith('adds_per_second') else 'requests'} per second "
                    f"for {'service_role' if cls == 'service' else 'anon and user'} keys.",
                    details={"limit": name, "per_second": per_second},
                    hint="Wait for Retry-After seconds; the platform admin can raise the tenant's limits.",
                    headers=retry_after(wait),
                )

    @contextmanager
    def in_flight(self, tenant: str, overrides: Mapping[str, Any] | None = None) -> Iterator[None]:
        """Hold one of the tenant's concurrent-request slots, or raise RateLimited (429) at once."""
        if not self.defaults.enabled:
            yield
            return
        cap = effective_limits(self.defaults, overrides)["max_in_flight"]
        current = self._in_flight.get(tenant, 0)
        if current >= cap:
            LIMIT_REJECTIONS.labels("in_flight", "any").inc()
            raise RateLimited(
                f"This tenant already has {cap} requests in progress.",
                code="concurrency_limited",
                details={"limit": "max_in_flight", "max_in_flight": cap},
                hint="Send fewer requests at once, or retry after Retry-After seconds.",
                headers=retry_after(1),
            )
        self._in_flight[tenant] = current + 1
        try:
            yield
        finally:
            left = self._in_flight[tenant] - 1
            if left:
                self._in_flight[tenant] = left
            else:
                del self._in_flight[tenant]

    def in_flight_count(self, tenant: str) -> int:
        return self._in_flight.get(tenant, 0)
