"""Which tenant a free worker serves next: round robin over the tenants that have work due."""

from __future__ import annotations

from collections import OrderedDict


class TenantRotation:
    """Tenants with (possibly) runnable jobs and when each is due, in round-robin order.

    A worker takes the first tenant that is due and puts it at the back, so a tenant with a
    thousand jobs and one with a single job alternate: the small one waits for one job, not for
    the thousand. Times are the caller's clock (time.monotonic()).
    """

    def __init__(self) -> None:
        self._due: OrderedDict[str, float] = OrderedDict()
        self._woken: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, ref: object) -> bool:
        return ref in self._due

    def wake(self, ref: str, now: float) -> None:
        """The tenant has work now (a job was just enqueued); its place in the order is kept."""
        self._due[ref] = min(self._due.get(ref, now), now)
        self._woken[ref] = now

    def due_at(self, ref: str, when: float) -> None:
        """The tenant's next job may be taken at `when` (a retry's backoff, a lease running out)."""
        self._due[ref] = when

    def forget(self, ref: str, *, unless_woken_since: float | None = None) -> None:
        """Drop the tenant (its queue is empty), unless a job was enqueued after `unless_woken_since`:
        the read that found it empty may have missed that job."""
        if unless_woken_since is not None and self._woken.get(ref, float("-inf")) >= unless_woken_since:
            return
        self._due.pop(ref, None)
        self._woken.pop(ref, None)

    def take(self, now: float) -> str | None:
        """The first due tenant, moved to the back of the order; None when none is due."""
        for ref, when in self._due.items():
            if when <= now:
                self._due.move_to_end(ref)
                return ref
        return None

    def seconds_to_next(self, now: float) -> float | None:
        """How long until the next tenant is due; None when there is none."""
        return max(0.0, min(self._due.values()) - now) if self._due else None
