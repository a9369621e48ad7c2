"""The queue's pure parts: round robin over tenants, backoff, and which failures are retried."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import pytest

from app.db.session import BoundedPool
from app.errors import BadRequest, Forbidden, ProviderError, ProviderTimeout, ProviderUnavailable, RateLimited
from app.settings import QueueSettings, SettingsError, load_settings
from app.worker.rotation import TenantRotation
from app.worker.runner import backoff_seconds, classify


def test_a_busy_tenant_and_a_quiet_one_take_turns():
    rotation = TenantRotation()
    rotation.wake("busy", 0.0)
    rotation.wake("quiet", 0.0)
    # "busy" keeps having work (it is put back after each job); "quiet" has one job.
    order = []
    for _ in range(4):
        ref = rotation.take(1.0)
        assert ref is not None
        order.append(ref)
        if ref == "quiet":
            rotation.forget("quiet")
    assert order == ["busy", "quiet", "busy", "busy"]


def test_a_tenant_is_not_taken_before_it_is_due():
    rotation = TenantRotation()
    rotation.due_at("later", 10.0)
    assert rotation.take(5.0) is None
    assert rotation.seconds_to_next(5.0) == 5.0
    assert rotation.take(10.0) == "later"


def test_a_wake_brings_a_waiting_tenant_forward_and_survives_a_stale_empty_read():
    rotation = TenantRotation()
    rotation.due_at("t", 100.0)
    rotation.wake("t", 1.0)
    assert rotation.take(1.0) == "t"
    # A read that began before the wake found the queue empty: it must not drop the tenant.
    rotation.forget("t", unless_woken_since=0.5)
    assert "t" in rotation
    rotation.forget("t", unless_woken_since=2.0)
    assert "t" not in rotation and rotation.seconds_to_next(0.0) is None


def test_backoff_doubles_per_attempt_within_its_cap_and_honours_retry_after():
    queue = QueueSettings(retry_base_seconds=1, retry_max_seconds=10)
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (4, 8), (9, 10)):
        delay = backoff_seconds(attempt, queue)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_seconds(1, queue, retry_after=30) == 30


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (ProviderError("x"), True),
        (ProviderUnavailable("x"), True),
        (ProviderTimeout("x"), True),
        (RateLimited("x"), True),
        (asyncpg.DeadlockDetectedError("x"), True),
        (ConnectionResetError(), True),
        (BadRequest("x", code="empty_messages"), False),
        (Forbidden("x", code="user_scope_violation"), False),
        (msgspec.ValidationError("x"), False),
    ],
)
def test_provider_and_database_trouble_is_retried_and_bad_input_is_not(exc, retried):
    assert classify(exc)[0] is retried


def test_queue_settings_come_from_the_environment_and_are_checked():
    settings = load_settings(
        {"MEM_QUEUE_WORKERS": "4", "MEM_QUEUE_MAX_ATTEMPTS": "7", "MEM_QUEUE_LEASE_SECONDS": "9"}
    )
    assert (settings.queue.workers, settings.queue.max_attempts, settings.queue.lease_seconds) == (4, 7, 9.0)
    assert load_settings({}).queue.workers == 2
    with pytest.raises(SettingsError, match="MEM_QUEUE_WORKERS"):
        load_settings({"MEM_QUEUE_WORKERS": "-1"})
    with pytest.raises(SettingsError, match="MEM_QUEUE_MAX_ATTEMPTS"):
        load_settings({"MEM_QUEUE_MAX_ATTEMPTS": "0"})


class _Pool:
    """Stands in for an asyncpg pool: hands out numbered connections."""

    def __init__(self) -> None:
        self.out = 0

    async def acquire(self, *, timeout: float | None = None) -> int:  # noqa: ASYNC109 (asyncpg's name)
        self.out += 1
        return self.out

    async def release(self, connection: int) -> None:
        self.out -= 1


async def test_a_bounded_pool_makes_the_third_caller_wait_for_a_release_instead_of_failing():
    pool = _Pool()
    bounded = BoundedPool(pool, asyncio.Semaphore(2))
    first, _ = await bounded.acquire(timeout=1), await bounded.acquire(timeout=1)
    third = asyncio.ensure_future(bounded.acquire(timeout=1))
    await asyncio.sleep(0.05)
    assert not third.done() and pool.out == 2
    await bounded.release(first)
    assert await asyncio.wait_for(third, 1) and pool.out == 2
