"""N workers per process, fair across tenants, woken by enqueues and by a periodic scan.

How a worker finds work without a connection per tenant database (LISTEN would need one):
- this process's own enqueues wake it at once (JobWakeups, after the request has committed);
- at start and every `scan_seconds` every tenant's queue is read (counts and when its next job
  falls due): jobs enqueued through another replica, retries whose backoff ends, and RUNNING
  jobs whose worker died (their lease runs out) are found that way;
- a tenant whose claim finds nothing is asked when its next job is due, and is looked at again then.

A tenant's jobs hold at most half its connection pool at once (a job holds one while it reads
candidates and while it writes, none while the model thinks): its requests, reads of events
included, always find the other half. More jobs than that may run; they wait for a connection.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress

import structlog

from app.access import tenant_transaction
from app.core.jobs import service as jobs
from app.core.jobs.service import ClaimedJob, QueueState
from app.db.session import DatabaseBusy
from app.runtime import Runtime
from app.settings import QueueSettings
from app.worker.metrics import QUEUE_DEPTH
from app.worker.rotation import TenantRotation
from app.worker.runner import run_job, service_scope

log = structlog.get_logger("app.worker")

# Shortest wait before a tenant whose due job could not be claimed (another worker was taking it)
# is asked again: claims are short, so this is only a guard against spinning.
MIN_RECHECK_SECONDS = 0.05
STOP_GRACE_SECONDS = 10.0


class QueueWorkers:
    def __init__(self, runtime: Runtime, settings: QueueSettings | None = None) -> None:
        self.runtime = runtime
        self.settings = settings or runtime.settings.queue
        self.rotation = TenantRotation()
        self._depth: dict[str, QueueState] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._scanner: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.settings.workers < 1:
            return
        self.runtime.job_wakeups.subscribe(self._on_enqueue)
        self._scanner = asyncio.create_task(self._scan_forever(), name="queue-scanner")
        self._workers = [
            asyncio.create_task(self._work_forever(), name=f"queue-worker-{i}")
            for i in range(self.settings.workers)
        ]
        log.info("queue_workers_started", workers=self.settings.workers)

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Let running jobs finish for up to `grace_seconds`; the rest are cancelled and handed back."""
        self.runtime.job_wakeups.unsubscribe(self._on_enqueue)
        self._stopping = True
        self._wake.set()
        if self._scanner is not None:
            self._scanner.cancel()
            with suppress(asyncio.CancelledError):
                await self._scanner
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def _on_enqueue(self, tenant_ref: str) -> None:
        self.rotation.wake(tenant_ref, time.monotonic())
        self._wake.set()

    async def _work_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()
            ref = self.rotation.take(time.monotonic())
            if ref is None:
                wait = self.rotation.seconds_to_next(time.monotonic())
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait if wait is not None else None)
                continue
            job = await self._claim(ref)
            if job is None:
                continue
            try:
                await run_job(self.runtime, job, self.settings, self._tenant_slots(ref))
            except Exception:  # a worker outlives any one job: its lease runs out and it is taken again
                log.exception("job_runner_failed", event_id=str(job.id), tenant=ref)
            self._wake.set()  # the tenant may hold more: let an idle worker look too

    def _tenant_slots(self, ref: str) -> asyncio.Semaphore:
        if ref not in self._slots:
            self._slots[ref] = asyncio.Semaphore(max(1, self.runtime.pools.max_size // 2))
        return self._slots[ref]

    async def _claim(self, ref: str) -> ClaimedJob | None:
        asked = time.monotonic()
        try:
            async with tenant_transaction(self.runtime, service_scope(ref)) as db:
                job = await jobs.claim(db, ref, self.settings.lease_seconds)
                state = None if job is not None else await jobs.queue_state(db)
        except DatabaseBusy:  # the tenant's requests hold every connection: they go first
            self.rotation.due_at(ref, time.monotonic() + 1.0)
            return None
        except Exception:
            log.warning("job_claim_failed", tenant=ref, exc_info=True)
            self.rotation.due_at(ref, time.monotonic() + self.settings.scan_seconds)
            return None
        if state is not None:
            self._note(ref, state, asked)
        return job

    def _note(self, ref: str, state: QueueState, asked: float) -> None:
        """Remember when the tenant's next job is due (as read at `asked`), and its queue depth."""
        self._depth[ref] = state
        if state.due_in is None:
            self.rotation.forget(ref, unless_woken_since=asked)
        else:
            self.rotation.due_at(ref, time.monotonic() + max(state.due_in, MIN_RECHECK_SECONDS))
            self._wake.set()
        self._publish_depth()

    def _publish_depth(self) -> None:
        QUEUE_DEPTH.labels("PENDING").set(sum(s.pending for s in self._depth.values()))
        QUEUE_DEPTH.labels("RUNNING").set(sum(s.running for s in self._depth.values()))

    async def _scan_forever(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception:
                log.warning("queue_scan_failed", exc_info=True)
            await asyncio.sleep(self.settings.scan_seconds)

    async def scan(self) -> None:
        """Read every tenant's queue: who has work, and when."""
        tenants = [t for t in await self.runtime.platform.list_tenants() if t.status == "active"]
        refs = {t.ref for t in tenants if t.has_mem_schema}
        for gone in set(self._depth) - refs:
            self._depth.pop(gone, None)
            self._slots.pop(gone, None)
            self.rotation.forget(gone)
        for ref in refs:
            asked = time.monotonic()
            try:
                async with tenant_transaction(self.runtime, service_scope(ref)) as db:
                    state = await jobs.queue_state(db)
            except Exception:
                log.warning("queue_scan_tenant_failed", tenant=ref, exc_info=True)
                continue
            self._note(ref, state, asked)
