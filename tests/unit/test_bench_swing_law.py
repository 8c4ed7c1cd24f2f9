"""The ideal detector's law of bursty silences, the Poisson interval of the report, the calibration sums."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.detection.calibrate import Replay, aggregate
from bench.detection.report import poisson_interval
from bench.detection.swing_law import silence_nats, threshold_units
from streams.detection.dispersion import mixed_nats


def _monte_carlo(units: float, sd: float, tau_s: float, duration_s: float, steps: int = 12,
                 paths: int = 400_000) -> float:
    """-ln E[X(0) exp(-(U/K) sum_j X_j)] over OU log-level paths, by brute force."""
    rng = np.random.default_rng(9)
    keep = math.exp(-duration_s / steps / tau_s)
    mu = -sd * sd / 2
    x = rng.normal(mu, sd, paths)
    start = np.exp(x)
    total = np.exp(x)
    for _ in range(steps - 1):
        x = mu + keep * (x - mu) + rng.normal(0.0, sd * math.sqrt(1 - keep * keep), paths)
        total += np.exp(x)
    return -math.log(float(np.mean(start * np.exp(-units / steps * total))))


@pytest.mark.parametrize(("units", "sd", "tau_s", "duration_s"),
                         [(8.0, 0.4, 300.0, 300.0), (6.0, 0.3, 60.0, 600.0), (10.0, 0.45, 3600.0, 120.0)])
def test_the_laplace_silence_law_matches_monte_carlo_where_monte_carlo_reaches(
        units: float, sd: float, tau_s: float, duration_s: float) -> None:
    assert silence_nats(units, sd, tau_s, duration_s) == pytest.approx(
        _monte_carlo(units, sd, tau_s, duration_s), abs=0.06)


def test_a_swing_frozen_for_the_whole_gap_is_the_size_biased_log_normal_mixture() -> None:
    sd = 0.33
    assert silence_nats(20.0, sd, 1e12, 60.0) == pytest.approx(mixed_nats(20.0, 1.0, sd * sd), abs=0.01)


def test_without_swings_the_ideal_threshold_is_the_poisson_one_and_with_them_it_is_longer() -> None:
    assert silence_nats(16.5, 0.0, 600.0, 60.0) == 16.5
    assert threshold_units(16.5, 0.0, 600.0, 0.2) == 16.5
    slow = threshold_units(16.5, 0.33, 1250.0, 0.2)
    assert 25 < slow < 40  # the OKX-sized exchange of the bench: about 30 payouts instead of 16.5
    assert silence_nats(slow, 0.33, 1250.0, slow / 0.2) == pytest.approx(16.5, abs=0.01)
    # a swing that averages out within the gap (short correlation time) costs less
    assert threshold_units(16.5, 0.33, 30.0, 0.2) < slow


def test_the_poisson_interval_is_the_exact_garwood_one() -> None:
    assert poisson_interval(0) == (0.0, pytest.approx(3.689, abs=0.001))
    low, high = poisson_interval(10)
    assert low == pytest.approx(4.795, abs=0.001) and high == pytest.approx(18.390, abs=0.001)


def test_calibration_sums_seeds_into_one_rate_per_budget() -> None:
    replays = [Replay(1, 90.0, 2, {"open": 2}, 100.0, 12.0, 12), Replay(2, 90.0, 1, {"degraded": 1}, 108.0, 13.0, 12),
               Replay(1, 7.0, 9, {"open": 9}, 100.0, 12.0, 12)]
    row = aggregate(replays, 90.0)
    assert (row["seeds"], row["false_alarms"], row["exchange_days"]) == (2, 3, 208.0)
    assert row["realised"] == pytest.approx(3 / 208 * 90)
    assert row["low"] < row["realised"] < row["high"]
    assert row["by_state"] == {"open": 2, "degraded": 1}
    assert row["estimated"] == pytest.approx(25 / 24)


def test_seeds_are_pooled_per_class_against_the_ideal() -> None:
    from bench.detection.seeds import pooled

    def member(kind: str, own: int | None, ideal: int | None, role: str = "") -> dict[str, object]:
        return {"kind": kind, "exchange": "okx", "role": role, "open_delay_s": own, "ideal_delay_s": ideal}

    runs = [{"seed": 1, "report": {"stall_violations": [], "members": [
                member("full_halt", 120, 100, "okx_sized"), member("chain_halt", 300, 100)]}},
            {"seed": 2, "report": {"stall_violations": [], "members": [
                member("full_halt", 100, 100, "okx_sized"), member("chain_halt", None, None)]}}]
    text = "\n".join(pooled(runs))
    assert "full_halt          2      2     110 s     100 s  1.10x" in text
    assert "[PASS] full_halt median open delay <= 1.3x the ideal's: 1.10x" in text
    assert "[FAIL] chain_halt median open delay <= 1.3x the ideal's: 3.00x" in text
    assert "[FAIL] every full and chain halt opened: 3/4; missed ['chain_halt okx (seed 2)']" in text
    assert "(the ideal detector missed ['chain_halt okx (seed 2)'])" in text
    assert "[PASS] OKX-sized full halt opened within 240 s: seed 1 120 s, seed 2 100 s" in text
