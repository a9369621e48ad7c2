"""A bounded work queue per tenant, served round robin: one tenant's backlog never starves another.

Pure bookkeeping, no asyncio: the local embedder puts each caller's texts under its tenant
and takes batches with `take`, which deals one item from each waiting tenant in turn. A
tenant with 100 waiting texts and a tenant with 1 therefore share the next batch, and the
turn order carries over from batch to batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """The tenant already has its bound of items waiting."""

    def __init__(self, tenant: str, waiting: int, bound: int) -> None:
        super().__init__(f"tenant {tenant!r} has {waiting} items waiting (bound {bound})")
        self.tenant = tenant
        self.waiting = waiting
        self.bound = bound


class FairQueue(Generic[T]):
    def __init__(self, per_tenant_bound: int) -> None:
        if per_tenant_bound < 1:
            raise ValueError("per_tenant_bound must be at least 1")
        self.bound = per_tenant_bound
        self._queues: dict[str, deque[T]] = {}
        self._turns: deque[str] = deque()  # tenants with waiting items, next to be served first

    def put(self, tenant: str, items: Sequence[T]) -> None:
        """Queue all the items or none: QueueFull when they would pass the tenant's bound.

        A tenant with nothing waiting may always queue one call, however large, so a single
        big request is never refused by the bound alone.
        """
        queue = self._queues.get(tenant)
        waiting = len(queue) if queue is not None else 0
        if waiting and waiting + len(items) > self.bound:
            raise QueueFull(tenant, waiting, self.bound)
        if not items:
            return
        if queue is None:
            queue = self._queues[tenant] = deque()
            self._turns.append(tenant)
        queue.extend(items)

    def take(self, max_items: int) -> list[tuple[str, T]]:
        """Up to max_items, one per waiting tenant in turn (round robin)."""
        batch: list[tuple[str, T]] = []
        while self._turns and len(batch) < max_items:
            tenant = self._turns.popleft()
            queue = self._queues[tenant]
            batch.append((tenant, queue.popleft()))
            if queue:
                self._turns.append(tenant)
            else:
                del self._queues[tenant]
        return batch

    @property
    def tenants(self) -> int:
        """How many tenants have items waiting."""
        return len(self._turns)

    def waiting(self, tenant: str) -> int:
        queue = self._queues.get(tenant)
        return len(queue) if queue is not None else 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())
