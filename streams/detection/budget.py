"""The false-alarm budget as a measured figure: what the thresholds give on an exchange's own traffic.

Every threshold is set so that, *if the model of normal gaps is right*, the exchange's tests together raise
``false_alarms_per_exchange`` false alarms per ``budget_days``. Whether the model is right is a fact about
the exchange's traffic that can be checked: under the model, the evidence a normal gap reaches before its
payout passes ``CHECK_NATS`` on a share ``exp(-CHECK_NATS)`` of gaps (less where heads come in blocks as
coarse as the gaps). :class:`BudgetCheck` counts, per (exchange, chain), the completed normal gaps and
those whose evidence passed that level; their ratio to the model's share is the *calibration factor*, and
the budget times the factor (averaged over the exchange's chains) is the false-alarm rate its thresholds
are estimated to give.

The check is made 5 nats deep, where normal traffic reaches often enough to count (0.7 % of gaps), while
alarms are decided 10 to 20 nats deep: the estimate extrapolates along the model's tail. It catches a model
that is wrong in scale (the swings under-learned, a rate off), not one whose far tail has another shape;
the benchmark's calibration picture measures the latter (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BUDGET_STATES = ("kept", "over", "erratic", "learning")
CHECK_NATS = 5.0
DECAY = 0.9998
"""Per gap: the check remembers about the last 5,000 normal gaps."""
MIN_EXPECTED = 3.0
"""Passes the model must expect before the factor means anything (fewer: the exchange is still learning)."""
ERRATIC_FACTOR = 3.0
"""A factor above this says the traffic does not follow the model: the budget is not being kept."""


@dataclass(slots=True)
class BudgetCheck:
    """Decayed counts of one (exchange, chain)'s normal gaps and of those that passed :data:`CHECK_NATS`."""

    gaps: float = 0.0
    passed: float = 0.0

    def add(self, evidence: float) -> None:
        self.gaps = self.gaps * DECAY + 1.0
        self.passed = self.passed * DECAY + (1.0 if evidence >= CHECK_NATS else 0.0)

    @property
    def expected(self) -> float:
        return self.gaps * math.exp(-CHECK_NATS)

    def to_list(self) -> list[float]:
        return [self.gaps, self.passed]

    @classmethod
    def from_list(cls, raw: list[float] | None) -> BudgetCheck:
        return cls(*raw) if raw else cls()


@dataclass(frozen=True, slots=True)
class BudgetEstimate:
    """One exchange's promise and what its traffic says of it."""

    exchange: str
    budget: float
    """False alarms allowed per ``budget_days`` (the policy)."""
    budget_days: float
    estimated: float | None
    """False alarms per ``budget_days`` its thresholds are estimated to give; None while learning."""
    state: str
    """``kept`` (estimated within the budget, or above it by less than the count's noise), ``over`` (above
    it), ``erratic`` (the traffic does not follow the model: far above it), or ``learning`` (too few normal
    gaps yet to tell)."""
    passed: float
    expected: float

    @property
    def line(self) -> str:
        if self.estimated is None:
            return (f"{self.exchange}: learning (normal gaps so far would show {self.expected:.1f} passes of "
                    f"{CHECK_NATS:g} nats; {MIN_EXPECTED:g} are needed)")
        return (f"{self.exchange}: {self.state}, estimated {self.estimated:.2f} false alarms per "
                f"{self.budget_days:g} days (budget {self.budget:g}; {self.passed:.1f} normal gaps passed "
                f"{CHECK_NATS:g} nats where the model expects {self.expected:.1f})")


def estimate(exchange: str, checks: list[BudgetCheck], budget: float, budget_days: float) -> BudgetEstimate:
    """Combine the chains' checks: each chain's factor weighs equally, as each chain's tests share the
    budget equally; a chain without enough gaps yet does not count (until none does)."""
    ready = [c for c in checks if c.expected >= MIN_EXPECTED]
    passed = sum(c.passed for c in checks)
    expected = sum(c.expected for c in checks)
    if not ready:
        return BudgetEstimate(exchange, budget, budget_days, None, "learning", passed, expected)
    factor = sum(c.passed / c.expected for c in ready) / len(ready)
    value = budget * factor
    noise = 2.0 / math.sqrt(sum(c.expected for c in ready) / len(ready))  # two Poisson standard errors
    state = "kept" if factor <= 1.0 + noise else ("erratic" if factor > ERRATIC_FACTOR else "over")
    return BudgetEstimate(exchange, budget, budget_days, value, state, passed, expected)
