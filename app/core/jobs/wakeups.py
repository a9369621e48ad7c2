"""In-process wake-ups: a request that has just committed a job tells this process's workers."""

from __future__ import annotations

from collections.abc import Callable


class JobWakeups:
    """Listeners hear the tenant ref of each committed job. Other replicas do not: their workers
    find such jobs on their periodic scan (QueueSettings.scan_seconds)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[str], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def notify(self, tenant_ref: str) -> None:
        for listener in list(self._listeners):
            listener(tenant_ref)
