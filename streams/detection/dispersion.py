"""How bursty one (exchange, chain)'s payouts are, learned from its own counts, and what that does to evidence.

Real payout rates swing within minutes and hours with the market, well inside what a seasonal rate can
follow. Over a gap, the true rate is then the model's rate times a factor ``X`` that is itself random, and
long gaps are likelier than a Poisson process makes them: at a swing of ±30 % (variance 0.1), a silence
that a steady rate calls 16.5 nats improbable is only 10 nats improbable. A detector that ignores the
swings spends its false-alarm budget many times over; one that assumes them everywhere is slow on the
exchanges whose rate is steady.

So the variance of ``X`` is *learned*, by :class:`Dispersion`, from windows of :data:`WINDOW` expected
independent payouts (about the length of a gap near the alarm threshold): in each, the payouts seen ``n``
against those the model expected ``m`` (both in the gap tail's units, so a batch counts once). A Poisson
count has variance ``m``; a count at a swinging rate ``m + m^2 Var(X)``. The excess
``sum((n - m)^2 - n) / sum(m^2)`` estimates ``Var(X)`` (method of moments), and it is believed only when it
stands :data:`SIGNIFICANCE` standard errors above zero. Until a chain has counted enough windows, a prior
of ±30 % stands in (a chain paying one batch an hour fills a window in half a day). Counts rather than gap
lengths, because heads come in whole blocks: a gap is only seen at block boundaries, and on a busy chain
that lattice, not the rate, would shape a histogram of gaps. Windows are recorded when a gap ends, and
dropped if an incident touched it: like the rate, the swings never learn a silence as normal.

The excess also holds the model's own errors (a weekday not seen yet, a rate that moved for good and is
still being learned): all of it is variability the gap test meets, so all of it widens the tail.

The swings are taken as log-normal, ``ln X ~ N(-s/2, s)`` with ``s = ln(1 + Var(X))``, and
:func:`mixed_nats` gives the evidence of a silence, or of a count, under them. Why not Gamma (whose mixture
is the textbook negative binomial, in closed form): at equal variance a Gamma factor puts far more weight
near zero, which is where the evidence of a long silence or of a collapse is decided. On the bursty
benchmark (seed 1) the Gamma law opened the OKX-sized full halt after 199 s instead of 160 s, and the
degradation after 631 s instead of 295 s, at the same false alarms (docs/benchmarks.md).
:func:`collapse_llr` carries the same law into the rate-collapse test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WINDOW = 16.0
"""Expected independent payouts per window: about the length of a gap near the alarm threshold."""
SIGNIFICANCE = 3.0
"""Standard errors above zero the excess variance must stand before the swings are believed."""
DECAY = 0.995
"""Per window: the estimate remembers about the last 200 windows, so it follows a change of regime."""
PRIOR_VARIANCE = 0.1
"""Swings assumed before the counts say otherwise (a rate factor of about ±30 %, what an exchange's payouts
typically do): a chain that pays a batch an hour fills a window in half a day, and until its own counts
show how steady it is, it is not taken for steadier than exchanges are."""
PRIOR_WEIGHT = 20 * WINDOW * WINDOW
"""The prior fades linearly with the windows counted and is gone after 40 (an hour on a busy chain)."""
MAX_VARIANCE = 4.0
"""The widest swings assumed (a factor whose log has a standard deviation of 1.27)."""


@dataclass(slots=True)
class Dispersion:
    """The variance of a chain's short-timescale rate swings, from windowed payout counts."""

    owed: float = 0.0
    """Withdrawals the model expected in the current window."""
    paid: float = 0.0
    """Withdrawals seen in the current window."""
    excess: float = 0.0
    """Decayed sum over windows of ``(n - m)^2 - n`` (gap-tail units)."""
    weight: float = 0.0
    """Decayed sum over windows of ``m^2``."""
    variance: float = PRIOR_VARIANCE
    """Variance of the rate factor ``X`` (mean 1): what the counts show beyond Poisson when it is significant,
    and never below the prior's share, which fades as windows are counted."""

    def expect(self, withdrawals: float) -> None:
        self.owed += withdrawals

    def pay(self) -> None:
        self.paid += 1.0

    def discard(self) -> None:
        """Forget the current window (an incident, a warm-up: not normal traffic)."""
        self.owed = self.paid = 0.0

    def close_if_full(self, beta: float) -> None:
        """At the end of a gap (a payout, counted), record the window if it holds :data:`WINDOW` expected
        independent payouts (``beta`` per withdrawal: the gap tail's rate, about one over the batch size).
        A window that ends at a payout holds, on average, one payout more than its running count would
        and one more expected: the two cancel in ``(n - m)^2 - n``."""
        m = beta * self.owed
        if m < WINDOW:
            return
        n = beta * self.paid
        self.excess = self.excess * DECAY + (n - m) ** 2 - n
        self.weight = self.weight * DECAY + m * m
        self.discard()
        self.refit()

    def refit(self) -> None:
        prior = PRIOR_VARIANCE * max(0.0, 1.0 - self.weight / (2.0 * PRIOR_WEIGHT))
        if self.weight <= 0 or self.excess <= SIGNIFICANCE * math.sqrt(2.0 * self.weight):
            self.variance = prior  # no more spread than Poisson counts show anyway (once they have spoken)
            return
        self.variance = min(MAX_VARIANCE, max(prior, self.excess / self.weight))

    def to_list(self) -> list[Any]:
        return [self.owed, self.paid, self.excess, self.weight]

    @classmethod
    def from_list(cls, raw: list[Any] | None) -> Dispersion:
        found = cls(*(float(v) for v in raw)) if raw else cls()
        found.refit()
        return found


def mixed_nats(m: float, n: float, log_var: float) -> float:
    """``-ln E[X^n exp(-X m)]`` for a mean-1 log-normal rate factor ``X`` with ``Var(ln X) = log_var``.

    With ``n = 0`` it is the evidence of a gap of ``m`` expected payouts when the rate swings; with ``n``
    payouts it is the part of the negative log-likelihood of a count that the swings change. Computed by
    Laplace's method on ``y = ln X`` (the integrand is log-concave in ``y``, so Newton's method finds the
    single mode in a few steps): exact to a few hundredths of a nat where alarms are decided.
    With ``log_var = 0`` it is ``m`` (a steady rate), for every ``n``.
    """
    if log_var <= 0.0:
        return m
    mu = -0.5 * log_var
    inv = 1.0 / log_var
    y = mu
    for _ in range(50):
        ey = math.exp(y)
        grad = m * ey - n + (y - mu) * inv
        step = grad / (m * ey + inv)
        y -= max(-2.0, min(2.0, step))
        if abs(step) < 1e-10:
            break
    ey = math.exp(y)
    f = m * ey - n * y + 0.5 * (y - mu) ** 2 * inv
    return f + 0.5 * math.log(log_var * (m * ey + inv))


def log_var_of(swing_var: float, rate_shape: float) -> float:
    """``Var(ln X)`` of one log-normal factor for the swings (variance ``swing_var`` of ``X``) and the rate's
    own uncertainty (Gamma ``rate_shape``: variance ``1 / rate_shape``): the larger of the two, because the
    counts the swings are measured from deviate from the model's rate, errors of that rate included."""
    extra = 0.0 if math.isinf(rate_shape) else 1.0 / rate_shape
    return math.log1p(max(swing_var, extra))


def collapse_llr(m: float, n: float, log_var: float, rho: float) -> float:
    """Log-likelihood ratio of ``n`` payouts where ``m`` were expected: Poisson(rho m) against normal.

    Normal is Poisson(m X) with ``X`` the rate's log-normal swings (``log_var``; 0: Poisson(m)). Both
    ``m`` and ``n`` are in the gap tail's units (independent payout decisions), so they need not be
    whole numbers. With ``log_var = 0`` it is the Poisson CUSUM's ``m (1 - rho) - n ln(1 / rho)``.
    """
    return n * math.log(rho) - rho * m + mixed_nats(m, n, log_var)
