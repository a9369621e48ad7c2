"""Fairness building blocks without a server: rate limits, in-flight caps, the embedding
queue's round robin, and how the connection budget is split into pools."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from app.core.limits import Kind, MovingWindow, TenantLimiter, effective_limits
from app.db.pools import MIN_POOL_MAX_SIZE, size_pools
from app.errors import RateLimited
from app.providers.embeddings import EmbeddingBusy, LocalEmbedder
from app.providers.fair_queue import FairQueue, QueueFull
from app.settings import LimitSettings, SettingsError, load_settings

TINY = LimitSettings(
    user_requests_per_second=3,
    user_adds_per_second=1,
    service_requests_per_second=5,
    service_adds_per_second=2,
    max_in_flight=2,
)


def _hits_until_refused(
    limiter: TenantLimiter, tenant: str, role: str, kind: Kind
) -> tuple[int, RateLimited]:
    for n in range(1, 100):
        try:
            limiter.check(tenant, role, kind)
        except RateLimited as exc:
            return n - 1, exc
    raise AssertionError("never refused")


@pytest.mark.parametrize(
    ("role", "kind", "allowed"),
    [
        ("authenticated", "request", 3),
        ("anon", "request", 3),
        ("service_role", "request", 5),
        ("authenticated", "add", 1),
        ("service_role", "add", 2),
    ],
)
def test_each_role_and_kind_has_its_own_rate(role: str, kind: Kind, allowed: int) -> None:
    limiter = TenantLimiter(TINY)
    passed, exc = _hits_until_refused(limiter, "tenanta", role, kind)
    assert passed == allowed
    assert exc.status_code == 429 and exc.code == "rate_limited"
    assert 1 <= int(exc.headers["Retry-After"]) <= 1  # a one-second window
    assert exc.details["per_second"] == allowed


def test_roles_and_tenants_do_not_share_a_budget() -> None:
    limiter = TenantLimiter(TINY)
    _hits_until_refused(limiter, "tenanta", "authenticated", "request")
    # The service key of the same tenant, and the same role of another tenant, still pass.
    limiter.check("tenanta", "service_role", "request")
    limiter.check("tenantb", "authenticated", "request")
    # anon and signed-in users are one class: both spent by the user traffic above.
    with pytest.raises(RateLimited):
        limiter.check("tenanta", "anon", "request")


def test_an_add_also_counts_as_a_request() -> None:
    limiter = TenantLimiter(TINY)
    limiter.check("tenanta", "authenticated", "add")
    limiter.check("tenanta", "authenticated", "request")
    limiter.check("tenanta", "authenticated", "request")
    with pytest.raises(RateLimited) as caught:
        limiter.check("tenanta", "authenticated", "request")
    assert caught.value.details["limit"] == "user_requests_per_second"


def test_the_window_moves_on() -> None:
    limiter = TenantLimiter(LimitSettings(service_requests_per_second=1))
    limiter.check("tenanta", "service_role", "request")
    with pytest.raises(RateLimited):
        limiter.check("tenanta", "service_role", "request")
    time.sleep(1.05)
    limiter.check("tenanta", "service_role", "request")


def test_a_tenants_own_limits_win_over_the_defaults() -> None:
    limiter = TenantLimiter(TINY)
    own = {"user_requests_per_second": 1, "unknown_key": 7, "max_in_flight": 0}
    assert effective_limits(TINY, own)["user_requests_per_second"] == 1
    assert effective_limits(TINY, own)["max_in_flight"] == 2  # a bad value keeps the default
    assert "unknown_key" not in effective_limits(TINY, own)
    limiter.check("tenanta", "authenticated", "request", own)
    with pytest.raises(RateLimited):
        limiter.check("tenanta", "authenticated", "request", own)


def test_disabled_limits_never_refuse() -> None:
    limiter = TenantLimiter(LimitSettings(enabled=False, user_requests_per_second=1, max_in_flight=1))
    for _ in range(10):
        limiter.check("tenanta", "authenticated", "add")
    with limiter.in_flight("tenanta"), limiter.in_flight("tenanta"):
        pass


def test_in_flight_cap_refuses_at_once_and_frees_slots() -> None:
    limiter = TenantLimiter(TINY)
    with limiter.in_flight("tenanta"), limiter.in_flight("tenanta"):
        assert limiter.in_flight_count("tenanta") == 2
        with pytest.raises(RateLimited) as caught, limiter.in_flight("tenanta"):
            pass
        assert caught.value.code == "concurrency_limited"
        assert caught.value.headers["Retry-After"] == "1"
        with limiter.in_flight("tenantb"):  # another tenant has its own slots
            pass
    assert limiter.in_flight_count("tenanta") == 0
    with pytest.raises(ValueError), limiter.in_flight("tenanta"):
        raise ValueError("a failing request still gives its slot back")
    assert limiter.in_flight_count("tenanta") == 0


# The embedding scheduler


def test_round_robin_serves_a_small_tenant_in_the_first_batch() -> None:
    queue: FairQueue[str] = FairQueue(per_tenant_bound=1000)
    queue.put("a", [f"a{i}" for i in range(100)])
    queue.put("b", ["b0"])
    first = queue.take(8)
    assert ("b", "b0") in first
    assert [t for t, _ in first][:2] == ["a", "b"]
    assert len(queue) == 100 - 7
    # A's items keep their order, and the rest are A's alone.
    rest = [item for _, item in first if item.startswith("a")] + [i for _, i in queue.take(1000)]
    assert rest == [f"a{i}" for i in range(100)]


def test_round_robin_interleaves_many_tenants_and_keeps_turns_across_batches() -> None:
    queue: FairQueue[int] = FairQueue(per_tenant_bound=1000)
    queue.put("a", list(range(10)))
    queue.put("b", list(range(10)))
    queue.put("c", list(range(2)))
    assert queue.tenants == 3
    first = [t for t, _ in queue.take(4)]
    second = [t for t, _ in queue.take(4)]
    assert first == ["a", "b", "c", "a"]
    assert second == ["b", "c", "a", "b"]
    assert [t for t, _ in queue.take(4)] == ["a", "b", "a", "b"]  # c is done
    assert queue.tenants == 2


def test_a_late_tenant_is_served_within_two_batches_of_a_backlog() -> None:
    queue: FairQueue[int] = FairQueue(per_tenant_bound=1000)
    queue.put("a", list(range(500)))
    queue.take(64)  # a batch already running
    queue.put("b", [1])
    assert ("b", 1) in queue.take(64)


def test_a_tenant_with_nothing_waiting_goes_before_a_backlog_but_once_a_round() -> None:
    queue: FairQueue[str] = FairQueue(per_tenant_bound=1000)
    queue.put("a", [f"a{i}" for i in range(100)])
    assert queue.take(1) == [("a", "a0")]  # a's pass is running
    queue.put("b", ["b0"])
    # b joins the round being served, so it goes before a's next item, not after it.
    assert queue.take(1) == [("b", "b0")]
    queue.put("b", ["b1"])
    # Back at once, b belongs to the next round like a's next item, and a was there first.
    assert queue.take(2) == [("a", "a1"), ("b", "b1")]
    assert queue.take(3) == [("a", "a2"), ("a", "a3"), ("a", "a4")]
    # After a while away, b is again in the round being served: next, not after a's backlog.
    queue.put("b", ["b2"])
    assert queue.take(1) == [("b", "b2")]
    assert queue.tenants == 1 and queue.waiting("a") == 95


def test_the_bound_is_per_tenant_and_all_or_nothing() -> None:
    queue: FairQueue[int] = FairQueue(per_tenant_bound=5)
    queue.put("a", [1, 2, 3])
    with pytest.raises(QueueFull) as caught:
        queue.put("a", [4, 5, 6])
    assert caught.value.waiting == 3 and caught.value.bound == 5
    assert queue.waiting("a") == 3
    queue.put("b", [1, 2, 3, 4, 5])  # another tenant is not affected
    queue.put("c", list(range(50)))  # nothing waiting: one large call is accepted whole
    assert queue.waiting("c") == 50


class _SlowModel(LocalEmbedder):
    """The local embedder's queue and worker with a fake model: each batch takes `seconds`."""

    def __init__(self, *, seconds: float, batch_size: int, tenant_queue: int) -> None:
        super().__init__(batch_size=batch_size, tenant_queue=tenant_queue)
        self.seconds = seconds
        self.batches: list[list[str]] = []
        self.dimensions = 3

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        time.sleep(self.seconds)  # on the worker thread, as the model would
        return np.ones((len(texts), 3), dtype=np.float32)


async def test_local_embedder_serves_a_quiet_tenant_between_a_floods_batches() -> None:
    model = _SlowModel(seconds=0.05, batch_size=32, tenant_queue=100)
    try:
        flood = [asyncio.create_task(model.embed([f"a{i}"], tenant="a")) for i in range(40)]
        await asyncio.sleep(0.01)  # the first batch is on the model
        started = time.perf_counter()
        (vector,) = await model.embed(["b0"], tenant="b")
        waited = time.perf_counter() - started
        assert vector.shape == (3,)
        # Within the second batch: at most two batches of 50 ms, not the ten the flood needs.
        assert waited < 0.3, waited
        # The pass right after the running one, and a pass of its own (the model is shared now).
        assert model.batches[1] == ["b0"], model.batches[:3]
        await asyncio.gather(*flood)
    finally:
        await model.close()


async def test_local_embedder_batches_fully_alone_and_small_when_shared() -> None:
    model = _SlowModel(seconds=0.0, batch_size=32, tenant_queue=100)
    try:
        await model.embed([f"a{i}" for i in range(32)], tenant="a")
        assert [len(b) for b in model.batches] == [32]  # alone: one full batch
        await model.embed(["b0"], tenant="b")
        model.batches.clear()
        await model.embed([f"a{i}" for i in range(16)], tenant="a")
        # B used the model moments ago: one text a pass, so B never waits longer than one.
        assert [len(b) for b in model.batches] == [1] * 16
    finally:
        await model.close()


async def test_local_embedder_refuses_a_tenant_over_its_queue_at_once() -> None:
    model = _SlowModel(seconds=0.2, batch_size=2, tenant_queue=3)
    try:
        running = [asyncio.create_task(model.embed([f"a{i}"], tenant="a")) for i in range(2)]
        await asyncio.sleep(0.05)  # two on the model
        running += [asyncio.create_task(model.embed([f"a{i}"], tenant="a")) for i in range(2, 5)]
        await asyncio.sleep(0.01)  # three waiting: the bound
        started = time.perf_counter()
        with pytest.raises(EmbeddingBusy) as caught:
            await model.embed(["one more"], tenant="a")
        assert time.perf_counter() - started < 0.05
        assert caught.value.status_code == 503 and caught.value.code == "embedding_busy"
        assert caught.value.headers["Retry-After"] == "1"
        (vector,) = await model.embed(["b"], tenant="b")  # B is not refused
        assert vector.shape == (3,)
        await asyncio.gather(*running)
    finally:
        await model.close()


async def test_local_embedder_event_loop_stays_free_while_the_model_runs() -> None:
    model = _SlowModel(seconds=0.3, batch_size=8, tenant_queue=10)
    try:
        task = asyncio.create_task(model.embed(["x"], tenant="a"))
        await asyncio.sleep(0.02)
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        assert time.perf_counter() - started < 0.1  # the loop was not blocked by the model
        await task
    finally:
        await model.close()


async def test_no_tenant_is_one_shared_queue_and_empty_input_costs_nothing() -> None:
    model = _SlowModel(seconds=0.0, batch_size=8, tenant_queue=10)
    try:
        assert await model.embed([]) == []
        vectors = await model.embed(["x", "y"])
        assert len(vectors) == 2
    finally:
        await model.close()


# The connection budget


@pytest.mark.parametrize(
    ("budget", "max_size", "max_pools", "expected"),
    [
        (1000, 10, 100, (10, 100)),  # fits as configured
        (85, 10, 100, (MIN_POOL_MAX_SIZE, 85 // MIN_POOL_MAX_SIZE)),  # pools shrink, then fewer pools
        (500, 10, 100, (5, 100)),  # shrinking the pools is enough
        (50, 2, 100, (2, 25)),  # already below the floor: only fewer pools
        (3, 10, 100, (3, 1)),  # tiny budget: one small pool
        (85, 4, 100, (4, 21)),  # the test suite's settings on a 100-connection server
    ],
)
def test_pool_sizing_never_exceeds_the_budget(
    budget: int, max_size: int, max_pools: int, expected: tuple[int, int]
) -> None:
    sizing = size_pools(budget, max_size=max_size, max_pools=max_pools)
    assert (sizing.max_size, sizing.max_pools) == expected
    assert sizing.most_connections <= budget


def test_pool_sizing_sweep_respects_budget_and_configuration() -> None:
    for budget in range(1, 400, 7):
        for max_size in (1, 2, 4, 10, 50):
            for max_pools in (1, 5, 100, 1000):
                s = size_pools(budget, max_size=max_size, max_pools=max_pools)
                assert 1 <= s.max_size <= max_size
                assert 1 <= s.max_pools <= max_pools
                assert s.most_connections <= budget


def test_pool_sizing_refuses_no_budget() -> None:
    with pytest.raises(ValueError):
        size_pools(0, max_size=4, max_pools=4)


# Settings


def test_limit_settings_load_from_yaml_and_environment(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text(
        "limits:\n  user-requests-per-second: 7\n  max-in-flight: 3\n"
        "database:\n  connection-budget: 40\n  acquire-timeout-seconds: 0.5\n"
    )
    settings = load_settings(environ={"LIMITS_SERVICE_ADDS_PER_SECOND": "9"}, config_dir=tmp_path)
    assert settings.limits.user_requests_per_second == 7
    assert settings.limits.max_in_flight == 3
    assert settings.limits.service_adds_per_second == 9
    assert settings.db_connection_budget == 40
    assert settings.pool_acquire_timeout_seconds == 0.5


@pytest.mark.parametrize(
    "yaml_text",
    [
        "limits:\n  user-adds-per-second: 0\n",
        "limits:\n  embedding-queue: -1\n",
        "database:\n  connection-budget: 1\n",
        "database:\n  acquire-timeout-seconds: 0\n",
    ],
)
def test_bad_limit_settings_are_refused(tmp_path: Path, yaml_text: str) -> None:
    (tmp_path / "default.yaml").write_text(yaml_text)
    with pytest.raises(SettingsError):
        load_settings(environ={}, config_dir=tmp_path)


def test_the_moving_window_counts_the_last_second_only_and_says_how_long_to_wait() -> None:
    window = MovingWindow(1.0)
    key = ("tenanta", "service_requests_per_second")
    assert window.hit(key, 2, now=100.0) is None
    assert window.hit(key, 2, now=100.4) is None
    # Full: refused, not counted, and told to wait until the oldest hit leaves the window.
    assert window.hit(key, 2, now=100.5) == pytest.approx(0.5)
    assert window.hit(key, 2, now=100.9) == pytest.approx(0.1)
    assert window.hit(key, 2, now=101.01) is None  # 100.0 has left; 100.4 and 101.01 remain
    assert window.hit(key, 2, now=101.2) == pytest.approx(0.2)
    assert window.hit(("tenantb", "service_requests_per_second"), 2, now=101.2) is None
    window.forget_idle(now=103.0)
    assert window.hit(key, 2, now=103.0) is None  # a fresh window after going quiet
