"""Progress lines (phase, done/total, rate) at most every few seconds, and percentile helpers."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Progress:
    """`with Progress("locomo/add", total) as p: ... p.advance()`: prints a line every `every` seconds."""

    def __init__(self, phase: str, total: int, *, every: float = 3.0, unit: str = "req") -> None:
        self.phase = phase
        self.total = total
        self.every = every
        self.unit = unit
        self.done = 0
        self.errors = 0
        self.started = time.monotonic()
        self._last = self.started

    def __enter__(self) -> Progress:
        log(f"{self.phase}: start, {self.total} {self.unit}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._line(final=True)

    def advance(self, n: int = 1, *, error: bool = False) -> None:
        self.done += n
        if error:
            self.errors += 1
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._line()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _line(self, final: bool = False) -> None:
        elapsed = self.elapsed
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        errors = f", {self.errors} errors" if self.errors else ""
        tag = "done" if final else "    "
        log(
            f"{self.phase}: {tag} {self.done}/{self.total} ({pct:.0f}%) "
            f"{rate:.1f} {self.unit}/s, {elapsed:.1f}s{errors}"
        )


def percentiles(values: Iterable[float], ps: tuple[int, ...] = (50, 95, 99)) -> dict[str, Any]:
    """{"n", "p50", "p95", "p99", "mean"} in the unit of the values; nulls when there are none."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    out: dict[str, Any] = {"n": int(arr.size)}
    for p in ps:
        out[f"p{p}"] = round(float(np.percentile(arr, p)), 3) if arr.size else None
    out["mean"] = round(float(arr.mean()), 3) if arr.size else None
    return out
