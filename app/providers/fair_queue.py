"""A bounded work queue per tenant, served round robin: one tenant's backlog never starves another.

Pure bookkeeping, no asyncio: the local embedder puts each caller's texts under its tenant
and takes batches with `take`, which deals one item from each waiting tenant in turn. A
tenant with 100 waiting texts and a tenant with 1 therefore share the next batch, and the
turn order carries over from batch to batch.

The turns are rounds (start-time fair queueing with equal weights): a tenant's n-th waiting item
belongs to the round after its (n-1)-th, and a tenant that had nothing waiting joins the round
being served, not the end of the line. So a quiet tenant's query is in the very next batch
instead of behind one more item of every busy tenant; and as it then belongs to the next round
itself (its last item's round + 1), coming back at once does not put it ahead twice.
"""

from __future__ import annotations

import heapq
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
        # (round of the tenant's next item, arrival order, tenant): one entry per waiting tenant.
        self._turns: list[tuple[int, int, str]] = []
        self._round = 0  # the round of the last item taken
        self._arrivals = 0
        # tenant -> the round after its last item, for tenants whose queue ran empty
        self._next_round: dict[str, int] = {}

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
            self._join(tenant, max(self._round, self._next_round.pop(tenant, 0)))
        queue.extend(items)

    def _join(self, tenant: str, round_: int) -> None:
        self._arrivals += 1
        heapq.heappush(self._turns, (round_, self._arrivals, tenant))

    def take(self, max_items: int) -> list[tuple[str, T]]:
        """Up to max_items, one per waiting tenant in turn (round robin)."""
        batch: list[tuple[str, T]] = []
        while self._turns and len(batch) < max_items:
            self._round, _, tenant = heapq.heappop(self._turns)
            queue = self._queues[tenant]
            batch.append((tenant, queue.popleft()))
            if queue:
                self._join(tenant, self._round + 1)
            else:
                del self._queues[tenant]
                self._next_round[tenant] = self._round + 1
        if len(self._next_round) > 4 * len(self._queues) + 64:
            # Only a round still ahead matters; the others would give way to the current one.
            self._next_round = {t: r for t, r in self._next_round.items() if r > self._round}
        return batch

    @property
    def tenants(self) -> int:
        """How many tenants have items waiting."""
        return len(self._queues)

    def waiting(self, tenant: str) -> int:
        queue = self._queues.get(tenant)
        return len(queue) if queue is not None else 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())
