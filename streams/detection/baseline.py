"""What normal payouts look like for one (exchange, chain): a seasonal rate and the shape of its gaps.

Two things are learned online, both only from *completed* gaps, so that a silence in progress never
teaches the model that silence is normal:

- :class:`SeasonalRate`: withdrawals per second of exposure, per hour of the week, shrunk toward the
  hour-of-day rate and that toward the overall rate, because a few days of history say little about one
  hour of one weekday. Older data fades (exponential decay) so the baseline follows drift.
- :class:`GapTail`: how long gaps really are, measured in *expected withdrawals* (the rate integrated over
  the gap). For Poisson payouts a gap of ``u`` expected withdrawals has probability ``exp(-u)``; exchanges
  that pay in batches have long pauses between bursts and a heavier tail. Fitting the exponential tail
  beyond one expected withdrawal (its rate ``beta`` and the share ``p1`` of gaps that reach it) captures
  both: ``P(gap > u) = p1 * exp(-beta * (u - 1))``. Poisson traffic gives ``beta`` ≈ 1, batches of ``k``
  give ``beta`` ≈ 1/k.
"""

from __future__ import annotations

import base64
import functools
import math
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any

from streams.detection.dispersion import Dispersion, log_var_of, mixed_nats

HOUR = 3600
WEEK_HOURS = 168


def hour_of_week(t: int) -> int:
    """UTC hour of the week, Monday 00:00 = 0 (the Unix epoch was a Thursday)."""
    return (t // HOUR + 72) % WEEK_HOURS


@dataclass(slots=True)
class SeasonalRate:
    """Withdrawal rate with hour-of-week seasonality, learned from (withdrawals, exposure) per hour."""

    events_w: array[float] = field(default_factory=lambda: array("d", [0.0] * WEEK_HOURS))
    exposure_w: array[float] = field(default_factory=lambda: array("d", [0.0] * WEEK_HOURS))
    total_events: float = 0.0
    total_exposure: float = 0.0
    decayed_at_hour: int = -1
    half_life_h: float = 14 * 24
    prior_hours: float = 2.0
    """Each hour-of-week, hour-of-day (and, times 3, weekday) estimate counts this many hours of the rate
    above it as prior data."""
    _cache: dict[int, tuple[float, float]] = field(default_factory=dict)
    _seen_elsewhere: dict[int, float] = field(default_factory=dict)
    _by_hour: array[float] = field(default_factory=lambda: array("d", [0.0] * 48))
    """Per hour of the day, withdrawals then exposure summed over the weekdays (kept as the bins change)."""
    _by_day: array[float] = field(default_factory=lambda: array("d", [0.0] * 14))
    """Per weekday, withdrawals then exposure summed over its hours."""

    def __post_init__(self) -> None:
        self._resum()

    def _resum(self) -> None:
        """The hour-of-day and weekday sums, from the bins (after a restore)."""
        for hod in range(24):
            self._by_hour[hod] = sum(self.events_w[hod::24])
            self._by_hour[24 + hod] = sum(self.exposure_w[hod::24])
        for dow in range(7):
            self._by_day[dow] = sum(self.events_w[24 * dow:24 * dow + 24])
            self._by_day[7 + dow] = sum(self.exposure_w[24 * dow:24 * dow + 24])

    def _decay_to(self, t: int) -> None:
        hour = t // HOUR
        if self.decayed_at_hour < 0:
            self.decayed_at_hour = hour
            return
        elapsed = hour - self.decayed_at_hour
        if elapsed <= 0:
            return
        factor = 0.5 ** (elapsed / self.half_life_h)
        for i in range(WEEK_HOURS):
            self.events_w[i] *= factor
            self.exposure_w[i] *= factor
        for i in range(48):
            self._by_hour[i] *= factor
        for i in range(14):
            self._by_day[i] *= factor
        self.total_events *= factor
        self.total_exposure *= factor
        self.decayed_at_hour = hour
        self._cache.clear()
        self._seen_elsewhere.clear()

    def add(self, t: int, withdrawals: float, exposure_s: float) -> None:
        self._decay_to(t)
        h = hour_of_week(t)
        self.events_w[h] += withdrawals
        self.exposure_w[h] += exposure_s
        hod, dow = h % 24, h // 24
        self._by_hour[hod] += withdrawals
        self._by_hour[24 + hod] += exposure_s
        self._by_day[dow] += withdrawals
        self._by_day[7 + dow] += exposure_s
        self.total_events += withdrawals
        self.total_exposure += exposure_s
        self._cache.clear()
        self._seen_elsewhere.clear()

    def overall(self) -> float:
        """Withdrawals per second over all hours (no seasonality)."""
        return self.total_events / self.total_exposure if self.total_exposure > 0 else 0.0

    @staticmethod
    def _factor(events: float, exposure: float, overall: float, prior_s: float) -> float:
        """A bin's rate relative to the overall rate, blended with ``prior_s`` seconds of the overall rate.

        The prior is measured in time, not events, so that minutes of unusual data (a degradation that has
        not been detected yet, in an hour never seen before) cannot outweigh hours of normal behaviour.
        """
        return (events + overall * prior_s) / ((exposure + prior_s) * overall)

    def at(self, t: int) -> float:
        """Expected withdrawals per second at chain time ``t``.

        Hour of day and day of week are learned as separate factors (each from every day, or every hour,
        pooled: a weekend shows itself after one weekend day), and each hour of the week is then shrunk
        toward their product.
        """
        h = hour_of_week(t)
        cached = self._cache.get(h)
        if cached is not None:
            return cached[0]
        overall = self.overall()
        if overall <= 0:
            return 0.0
        hod, dow = h % 24, h // 24
        hod_events, hod_exposure = self._by_hour[hod], self._by_hour[24 + hod]  # this hour of every day
        dow_events, dow_exposure = self._by_day[dow], self._by_day[7 + dow]
        prior = (
            overall
            * self._factor(hod_events, hod_exposure, overall, self.prior_hours * HOUR)
            * self._factor(dow_events, dow_exposure, overall, 3 * self.prior_hours * HOUR)
        )
        rate = prior * self._factor(self.events_w[h], self.exposure_w[h], prior, self.prior_hours * HOUR)
        self._cache[h] = (rate, min(hod_events, dow_events))
        return rate

    def hours_seen_elsewhere(self, t: int) -> float:
        """Hours of exposure at this hour of day on other days (the current hour-of-week bin excluded).

        Asked at every head; the same until the rate learns (``add`` clears it), like :meth:`at`."""
        h = hour_of_week(t)
        seen = self._seen_elsewhere.get(h)
        if seen is None:
            seen = self._seen_elsewhere[h] = max(0.0, self._by_hour[24 + h % 24] - self.exposure_w[h]) / HOUR
        return seen

    def support(self, t: int) -> float:
        """How many past withdrawals back the rate at ``t`` (the fewer of its hour-of-day and weekday)."""
        h = hour_of_week(t)
        if h not in self._cache:
            self.at(t)
        cached = self._cache.get(h)
        return cached[1] if cached is not None else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the two 168-hour arrays as base64 of little-endian doubles.

        As decimal text they are most of a saved state (~6.7 KB of a chain's ~8 KB once every hour of the
        week has data) and the slowest part to write; as bytes they are 3.6 KB, copied exactly (no rounding).
        """
        return {
            "ew": _pack(self.events_w), "xw": _pack(self.exposure_w), "te": self.total_events,
            "tx": self.total_exposure, "dh": self.decayed_at_hour,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], half_life_h: float, prior_hours: float) -> SeasonalRate:
        """Reads both encodings: base64 (now) and lists of numbers (states saved before)."""
        return cls(
            _unpack(data["ew"]), _unpack(data["xw"]), data["te"], data["tx"], data["dh"],
            half_life_h, prior_hours,
        )


def _pack(values: array[float]) -> str:
    if sys.byteorder == "big":
        values = array("d", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def _unpack(raw: str | list[float]) -> array[float]:
    if isinstance(raw, list):
        return array("d", raw)
    values = array("d")
    values.frombytes(base64.b64decode(raw, validate=True))
    if sys.byteorder == "big":
        values.byteswap()
    if len(values) != WEEK_HOURS:
        raise ValueError(f"a saved hour-of-week array holds {len(values)} values, not {WEEK_HOURS}")
    return values


def uncertain(nats: float, shape: float) -> float:
    """Evidence ``nats`` of a gap under a sure rate, discounted for a rate known only to Gamma ``shape``."""
    return nats if math.isinf(shape) else shape * math.log1p(nats / shape)


def cautious_share(shape: float, z: float = 1.645) -> float:
    """The lower ``z``-sigma quantile of a Gamma(shape, shape) rate factor (Wilson-Hilferty).

    Scaling an expected count by it gives the count the rate test can rely on: about 0.63 for a rate known
    to a shape of 16, 0.84 for 100.
    """
    c = 1.0 / (9.0 * shape)
    return max(0.0, 1.0 - c - z * math.sqrt(c)) ** 3


RATIO_STEP = math.log(1.01)
""":func:`base_ratio` is solved at ``beta`` rounded to a grid of 1 % steps: it moves slowly with ``beta``."""


@functools.lru_cache(maxsize=4096)
def _ratio_on_grid(step: int, variance: float) -> float:
    beta = math.exp(step * RATIO_STEP)
    log_var = math.log1p(variance)
    b = beta
    for _ in range(6):  # the factor is near 1, so a few steps
        b = beta * math.exp(mixed_nats(b, 1.0, log_var) - mixed_nats(b, 0.0, log_var))
    return b / beta


def base_ratio(beta: float, variance: float) -> float:
    """:meth:`GapTail.base_beta` over ``beta`` for swings of ``variance``: a function of the two alone (solved on
    a grid of ``beta`` and cached), so that a decision never depends on when it was asked before."""
    return _ratio_on_grid(round(math.log(beta) / RATIO_STEP), variance)


TIE = 1e-9
"""Expected withdrawals within which a gap counts as exactly one (:meth:`GapTail.add_gap`)."""

UNSURE_EXCESS = 0.25
"""Nats by which an unsure rate's gap evidence can exceed a sure rate's (:meth:`GapTail.survival_log`).

Spreading the rate lowers the evidence of a long gap, but a gap starts at a payout (size-biased), and for
gaps under about two expected withdrawals a wider spread adds a few hundredths of a nat; shortcuts that
bound the evidence by the sure rate's add this margin."""


@dataclass(slots=True)
class GapTail:
    """Exponential tail of gaps, in expected-withdrawal units, with a conservative prior."""

    gaps: float = 0.0
    exceeding: float = 0.0
    excess: float = 0.0
    prior_gaps: float = 20.0
    prior_beta: float = 0.5
    decay: float = 0.999
    p1: float = field(init=False, default=0.0)
    """Share of gaps longer than one expected withdrawal (Poisson: 1/e)."""
    beta: float = field(init=False, default=0.0)
    """Tail rate per expected withdrawal beyond the first (Poisson: 1; batches of k: about 1/k)."""
    swings: Dispersion = field(default_factory=Dispersion)
    """How much the rate swings at the timescale of a gap (see :mod:`.dispersion`)."""
    _base_answer: tuple[float, float, float] = (-1.0, -1.0, 0.0)
    """(beta, variance, :meth:`base_beta`) of its last call."""
    _beyond_one: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """(b, log_var, ``mixed_nats(b, 1, log_var)``) of :meth:`beyond`'s last call: the same for every head
    until the tail or the swings are refitted, and a Laplace solve each time otherwise."""

    def __post_init__(self) -> None:
        self._refit()

    def _refit(self) -> None:
        prior = self.prior_gaps * math.exp(-1.0)
        self.p1 = (self.exceeding + prior) / (self.gaps + self.prior_gaps)
        self.beta = (self.exceeding + prior) / (self.excess + prior / self.prior_beta)

    def add_gap(self, u: float) -> None:
        """Learn a completed gap of ``u`` expected withdrawals.

        One that exceeds a single expected withdrawal by less than ``TIE`` is counted as not exceeding it: a
        rate that credits exact binary fractions per block (as a simulation's can) puts gaps right on 1, and
        which side of it the last bit of a sum lands on must not change the fitted tail."""
        self.gaps = self.gaps * self.decay + 1.0
        self.exceeding *= self.decay
        self.excess *= self.decay
        if u > 1.0 + TIE:
            self.exceeding += 1.0
            self.excess += u - 1.0
        self._refit()

    @property
    def swing_var(self) -> float:
        """Variance of the learned rate swings (0: as steady as a Poisson process)."""
        return self.swings.variance

    @property
    def log_var(self) -> float:
        """``Var(ln X)`` of the learned swings."""
        return math.log1p(self.swings.variance)

    def base_beta(self) -> float:
        """Payout decisions per expected withdrawal when the swings stand at their mean.

        ``beta`` is fitted from the excesses of gaps longer than one expected withdrawal, and a gap that
        lasted that long more often fell where the rate had swung low: so with swings, ``beta`` is below
        the rate of a gap that starts at a payout. Mean excess ``1 / beta = E[exp(-b X)] / (b E[X exp(-b X)])``
        for the base rate ``b``, solved by fixed-point iteration (:func:`base_ratio`)."""
        v = self.swings.variance
        if v <= 0.0:
            return self.beta
        memo = self._base_answer
        if memo[0] == self.beta and memo[1] == v:
            return memo[2]  # asked for every chain at every visit; it moves only when the tail or swings do
        answer = self.beta * base_ratio(self.beta, v)
        self._base_answer = (self.beta, v, answer)
        return answer

    def beyond(self, u: float, shape: float = math.inf) -> float:
        """``-ln P(gap > u | gap > 1)`` for ``u > 1`` expected withdrawals, once the learned swings and a rate
        known to Gamma ``shape`` are allowed for.

        Steady: ``beta * (u - 1)``, or its Lomax form with an unsure rate. Swinging: a gap starts at a
        payout, so the factor ``X`` at its start is size-biased (weight ``X``), and one that has already
        lasted one expected withdrawal more likely fell where the rate swung low:
        ``E[X exp(-b X u)] / E[X exp(-b X)]`` with the base rate ``b`` (:meth:`base_beta`), the same law the
        fitted ``beta`` is inverted with. Less than the steady figure the more the rate swings."""
        v = self.swings.variance
        if v <= 0.0:
            return uncertain(self.beta * (u - 1.0), shape)
        b = self.base_beta()
        log_var = log_var_of(v, shape)
        cached_b, cached_lv, at_one = self._beyond_one
        if cached_b != b or cached_lv != log_var:
            at_one = mixed_nats(b, 1.0, log_var)
            self._beyond_one = (b, log_var, at_one)
        return max(0.0, mixed_nats(b * u, 1.0, log_var) - at_one)

    def survival_log(self, u: float, shape: float = math.inf) -> float:
        """-ln P(gap > u): the evidence, in nats, that a gap of ``u`` expected withdrawals is not normal.

        ``shape`` is how sure the rate behind ``u`` is (a Gamma shape: about the number of withdrawals that
        back it). With a sure rate the tail is exponential; with an unsure one it is the Lomax tail of a
        Gamma-mixed rate, ``shape * ln(1 + beta * (u - 1) / shape)``, so an hour the model has rarely seen
        needs a much longer gap before it is called implausible. Once the chain's counts show that its rate
        swings (:attr:`swing_var`), the tail is that of a log-normally swinging rate instead (:meth:`beyond`).
        """
        if u <= 1.0:
            return -math.log(1.0 - (1.0 - self.p1) * u) if u > 0 else 0.0
        return -math.log(self.p1) + self.beyond(u, shape)

    def to_dict(self) -> dict[str, Any]:
        return {"g": self.gaps, "e": self.exceeding, "x": self.excess, "s": self.swings.to_list()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GapTail:
        return cls(data["g"], data["e"], data["x"], swings=Dispersion.from_list(data.get("s")))
