"""The knobs of detection, in the terms a risk desk sets them."""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY = 86_400


@dataclass(frozen=True, slots=True)
class DetectionPolicy:
    """When silence becomes an outage.

    ``false_alarms_per_exchange`` per ``budget_days`` is the only sensitivity setting: each test's threshold
    is derived from it and from how many gaps that test sees in the budget period, so busy exchanges get
    short thresholds in seconds and quiet ones long thresholds, at the same false-alarm rate.
    """

    false_alarms_per_exchange: float = 1.0
    budget_days: float = 90.0
    suspect_factor: float = 20.0
    """``suspected`` is reported when the evidence is this many times weaker than ``open`` needs."""
    degraded_ratio: float = 0.1
    """The rate drop the degraded test is tuned for (payouts at 10% of normal). A low design point keeps
    the test quiet when the rate is merely overestimated (a first weekend, batch bursts)."""
    recovery_nats: float = 9.0
    """Evidence that a degraded payout rate is back to normal before the incident resolves (a couple of
    payouts close together at the collapsed rate must not end it)."""
    degraded_min_hours: float = 0.75
    """The degraded test runs only at an hour of the day already seen on other days: a daily trough the
    model has not met yet (up to 3x below the mean) is not a rate collapse."""
    warmup_withdrawals: int = 50
    warmup_exposure_s: int = 3600
    max_block_credit_s: int = 120
    """One block interval adds at most this much chain time to a gap: a longer one is a chain stall."""
    stall_intervals: float = 3.0
    """...and at most this many of the chain's typical block intervals (learned), whichever is less."""
    exchange_wide_rest_nats: float = 3.0
    """An exchange-wide incident needs this much evidence (ln 20) even without its most silent chain, so
    that one halted chain is reported as that chain's incident."""
    resume_withdrawals: int = 2
    """Withdrawals after a silence needed to call an outage resolved (one lone payout is not recovery)."""
    correlation_window_s: int = 900
    rotation_window_s: int = 3 * 86_400
    """A likely hot-wallet rotation this recent (before the silence began) lowers an outage's confidence."""
    rotation_confidence_factor: float = 0.5
    rate_prior_shape: float = 16.0
    """How sure a rate is with no data for its weekday or hour (Gamma shape: rate known to ~1/sqrt = 25%)."""
    rate_max_shape: float = 100.0
    """How sure a rate can ever be (10%): exchanges drift, so evidence is never read as if rates were exact."""
    seasonal_half_life_h: float = 14 * 24
    seasonal_prior_hours: float = 2.0
    recent_withdrawals: int = 8
    """How many recent withdrawals each (exchange, chain) remembers, to undo reorged ones."""

    def __post_init__(self) -> None:
        # ``not x > 0`` rather than ``x <= 0``: NaN fails every comparison, and a NaN budget opens nothing
        if not 0 < self.false_alarms_per_exchange < math.inf:
            raise ValueError(f"false_alarms_per_exchange must be a finite number above 0, got "
                             f"{self.false_alarms_per_exchange}")
        if not 0 < self.budget_days < math.inf:
            raise ValueError(f"budget_days must be a finite number above 0, got {self.budget_days}")
        if not 0 < self.degraded_ratio < 1:
            raise ValueError(f"degraded_ratio must be in (0, 1), got {self.degraded_ratio}")
        if self.suspect_factor < 1:
            raise ValueError(f"suspect_factor must be at least 1, got {self.suspect_factor}")
        if self.max_block_credit_s <= 0:
            raise ValueError("max_block_credit_s must be positive")
        if self.resume_withdrawals < 1:
            raise ValueError("resume_withdrawals must be at least 1")

    @property
    def budget_s(self) -> float:
        return self.budget_days * DAY
