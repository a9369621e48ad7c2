"""One attempt at one job: the add under the enqueuer's scope, then its outcome recorded.

Exactly once: the add's writes and the job's SUCCEEDED status commit in one transaction, whose
status UPDATE names this attempt's claim token. If the lease ran out and another attempt took
the job, that UPDATE matches nothing and the whole transaction rolls back; if the process dies
before the commit, nothing of the add is stored and the job is taken again once its lease runs out.
The model call holds no connection: add_memories plans before it opens the transaction.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import asyncpg
import msgspec
import structlog

from app.access import memory_deps, tenant_transaction
from app.auth.scope import MemoryAuthScope
from app.core.jobs import service as jobs
from app.core.jobs.service import ClaimedJob
from app.errors import AppError
from app.memories.schemas import AddMemoryRequest
from app.memories.service import add_memories
from app.runtime import Runtime
from app.settings import QueueSettings
from app.worker.metrics import JOB_LATENCY, JOB_OUTCOMES, JOB_RUN_SECONDS

log = structlog.get_logger("app.worker")

SUCCEEDED, RETRIED, FAILED, LOST, RELEASED = "succeeded", "retried", "failed", "lost", "released"


class ClaimLost(Exception):
    """Another attempt holds the job now: this one's writes must not commit."""


def service_scope(tenant_ref: str) -> MemoryAuthScope:
    """What the queue's own bookkeeping runs as: the tenant's jobs, whoever enqueued them."""
    return MemoryAuthScope(tenant_ref=tenant_ref, role="service_role", user_id=None)


def backoff_seconds(attempt: int, queue: QueueSettings, retry_after: float | None = None) -> float:
    """base * 2^(attempt-1), capped, with jitter (so retries of many jobs spread out); at least
    what the provider asked for in Retry-After."""
    delay = min(queue.retry_max_seconds, queue.retry_base_seconds * 2.0 ** max(0, attempt - 1))
    delay *= random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


def classify(exc: BaseException) -> tuple[bool, str, str]:
    """(worth retrying, code, message). Provider and database trouble passes; bad input does not."""
    if isinstance(exc, AppError):
        # 5xx: provider 502/503/504, database_busy; 429: a provider's or our own rate limit.
        return exc.status_code >= 500 or exc.status_code == 429, exc.code, exc.message
    if isinstance(exc, msgspec.ValidationError):
        return False, "invalid_payload", f"The stored request is no longer valid: {exc}"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError | TimeoutError):
        return True, "database_error", f"The database failed: {type(exc).__name__}."
    return True, "internal_error", "The add failed unexpectedly."


def _retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, AppError) and "Retry-After" in exc.headers:
        with suppress(ValueError):
            return float(exc.headers["Retry-After"])
    return None


@asynccontextmanager
async def kept_lease(runtime: Runtime, job: ClaimedJob, queue: QueueSettings) -> AsyncIterator[None]:
    """Renew the job's lease every third of it while the block runs (a slow model is not a dead worker)."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(queue.lease_seconds / 3)
            try:
                async with tenant_transaction(runtime, service_scope(job.scope.tenant_ref)) as db:
                    if not await jobs.renew(db, job, queue.lease_seconds):
                        return  # finished meanwhile, or taken over: the final UPDATE will tell
            except Exception:
                log.warning("job_lease_renewal_failed", exc_info=True)

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _attempt(
    runtime: Runtime, job: ClaimedJob, queue: QueueSettings, slots: asyncio.Semaphore | None
) -> float:
    """Run the add and mark the job SUCCEEDED in the same transaction; the enqueue-to-done latency."""
    request = msgspec.convert(job.payload, AddMemoryRequest)
    deps = await memory_deps(runtime, job.scope)
    async with kept_lease(runtime, job, queue), tenant_transaction(runtime, job.scope, slots=slots) as db:
        response = await add_memories(db, job.scope, request, deps)
        event = await jobs.succeed(db, job, response)
        if event is None:
            raise ClaimLost()
    return float(event.latency or 0.0)


async def _record_failure(runtime: Runtime, job: ClaimedJob, exc: BaseException, queue: QueueSettings) -> str:
    retryable, code, message = classify(exc)
    if code == "internal_error":
        log.error("job_attempt_crashed", exc_info=exc)
    async with tenant_transaction(runtime, service_scope(job.scope.tenant_ref)) as db:
        if retryable and job.attempts < queue.max_attempts:
            delay = backoff_seconds(job.attempts, queue, _retry_after(exc))
            await jobs.retry_later(db, job, delay, code, message)
            log.warning("job_retry_scheduled", code=code, attempt=job.attempts, delay_s=round(delay, 2))
            return RETRIED
        if retryable:
            message = f"Gave up after {job.attempts} attempts. Last error: {message}"
        await jobs.fail(db, job, code, message)
        return FAILED


async def _release(runtime: Runtime, job: ClaimedJob) -> None:
    """The process is stopping: hand the job back at once instead of waiting out its lease."""
    with suppress(Exception):
        async with tenant_transaction(runtime, service_scope(job.scope.tenant_ref)) as db:
            await jobs.release(db, job)


async def run_job(
    runtime: Runtime, job: ClaimedJob, queue: QueueSettings, slots: asyncio.Semaphore | None = None
) -> str:
    """One attempt; the outcome (SUCCEEDED, RETRIED, FAILED, LOST or RELEASED) as recorded.
    `slots` bounds the connections the tenant's jobs hold at once."""
    started = time.monotonic()
    with structlog.contextvars.bound_contextvars(
        event_id=str(job.id), tenant=job.scope.tenant_ref, request_id=job.request_id
    ):
        log.info("job_started", attempt=job.attempts)
        try:
            outcome = await _outcome(runtime, job, queue, slots)
        except asyncio.CancelledError:
            await asyncio.shield(_release(runtime, job))
            JOB_OUTCOMES.labels(RELEASED).inc()
            log.info("job_released", attempt=job.attempts)
            raise
        JOB_OUTCOMES.labels(outcome).inc()
        JOB_RUN_SECONDS.observe(time.monotonic() - started)
        log.info(
            "job_finished",
            outcome=outcome,
            attempt=job.attempts,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return outcome


async def _outcome(
    runtime: Runtime, job: ClaimedJob, queue: QueueSettings, slots: asyncio.Semaphore | None
) -> str:
    if job.attempts > queue.max_attempts:
        # Taken again after its lease ran out that often: a process died during each attempt.
        async with tenant_transaction(runtime, service_scope(job.scope.tenant_ref)) as db:
            message = f"Gave up: the worker stopped during each of {job.attempts - 1} attempts."
            await jobs.fail(db, job, "worker_lost", message)
        return FAILED
    try:
        latency = await _attempt(runtime, job, queue, slots)
    except ClaimLost:
        log.warning("job_claim_lost", attempt=job.attempts)
        return LOST
    except Exception as exc:
        try:
            return await _record_failure(runtime, job, exc, queue)
        except Exception:
            log.exception("job_failure_not_recorded")  # the lease runs out; the job is taken again
            return LOST
    JOB_LATENCY.observe(latency)
    return SUCCEEDED
