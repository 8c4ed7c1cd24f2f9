"""Exponential backoff with full jitter for loops that must go on (reconnects, publish retries).

tenacity drives bounded retries of single calls (see :mod:`connectors.evm.node`); a connector's outer
loops never give up, and must reset their delay after a success, which this small object makes explicit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays initial, 2x, 4x ... up to ``maximum``, each drawn uniformly from [50 %, 150 %] of the step."""

    initial: float = 0.5
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    _step: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._step = self.initial if self._step == 0.0 else min(self._step * 2, self.maximum)
        return self._step * (0.5 + self.rng.random())

    def reset(self) -> None:
        self._step = 0.0
