"""The knobs of detection, in the terms a risk desk sets them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DetectionPolicy:
    """When silence becomes an outage.

    ``false_alarm_p`` is the probability, under the learned rate, of a gap at least as long as the one
    observed; an outage opens when the gap is less likely than that. ``max_block_credit_s`` caps how much
    chain time one block interval may add to a gap: a longer interval is the chain stalling, not the
    exchange being silent.
    """

    false_alarm_p: float = 1e-6
    warmup_withdrawals: int = 20
    warmup_exposure_s: int = 1800
    rate_bucket_s: int = 300
    rate_window_s: int = 6 * 3600
    max_block_credit_s: int = 120
    dedup_memory: int = 4096

    def __post_init__(self) -> None:
        if not 0 < self.false_alarm_p < 1:
            raise ValueError(f"false_alarm_p must be in (0, 1), got {self.false_alarm_p}")
        if self.rate_window_s < self.rate_bucket_s:
            raise ValueError("rate_window_s must be at least one rate_bucket_s")
        if self.max_block_credit_s <= 0:
            raise ValueError("max_block_credit_s must be positive")
