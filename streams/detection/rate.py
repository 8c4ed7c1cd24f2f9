"""Withdrawal rate learned from chain time actually observed.

The rate is withdrawals per second of *exposure*: chain time during which the exchange could have paid
(blocks were produced and we had them). Counting exposure instead of elapsed time is what keeps a chain
stall or a lost feed from looking like a slow exchange.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class WithdrawalRate:
    """Withdrawals and exposure in fixed chain-time buckets over a sliding window."""

    bucket_s: int = 300
    window_s: int = 6 * 3600
    buckets: deque[list[int]] = field(default_factory=deque)
    """Each bucket is [start, withdrawals, exposure_s]."""

    def _bucket(self, at: int) -> list[int]:
        start = at - at % self.bucket_s
        if not self.buckets or self.buckets[-1][0] < start:
            self.buckets.append([start, 0, 0])
        elif self.buckets[-1][0] > start:
            # Late event (e.g. a transfer of a block whose head is still pending): count it in the
            # newest bucket; the window is coarse enough that this does not move the rate.
            return self.buckets[-1]
        while self.buckets and self.buckets[0][0] <= start - self.window_s:
            self.buckets.popleft()
        return self.buckets[-1]

    def add_withdrawal(self, at: int) -> None:
        self._bucket(at)[1] += 1

    def add_exposure(self, at: int, seconds: int) -> None:
        if seconds > 0:
            self._bucket(at)[2] += seconds

    @property
    def withdrawals(self) -> int:
        return sum(b[1] for b in self.buckets)

    @property
    def exposure_s(self) -> int:
        return sum(b[2] for b in self.buckets)

    def per_second(self) -> float:
        exposure = self.exposure_s
        return self.withdrawals / exposure if exposure > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"bucket_s": self.bucket_s, "window_s": self.window_s, "buckets": list(self.buckets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WithdrawalRate:
        return cls(data["bucket_s"], data["window_s"], deque(list(b) for b in data["buckets"]))
