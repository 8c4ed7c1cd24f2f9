"""Wall-clock time, injectable, kept apart from chain time.

Chain time (block timestamps) decides outages; wall time only stamps when we said something and tells a
stalled chain from a lost feed. Passing the wall clock in makes that split visible and testable.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of wall-clock seconds since the Unix epoch."""

    def now(self) -> float: ...


class WallClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests and backtests move by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def set(self, value: float) -> None:
        self._now = value

    def advance(self, seconds: float) -> None:
        self._now += seconds
