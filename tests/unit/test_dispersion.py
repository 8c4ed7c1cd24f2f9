"""The pieces of the bursty-traffic model: learned swings, the log-normal mixture, the collapse test."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytest

from schemas.records import OutageEvent, OutageState
from streams.detection.baseline import UNSURE_EXCESS, GapTail
from streams.detection.clock import ManualClock
from streams.detection.detector import OutageDetector
from streams.detection.dispersion import WINDOW, Dispersion, collapse_llr, log_var_of, mixed_nats
from streams.detection.policy import DetectionPolicy
from tests.unit.test_detector import Sim


def _learn(rng: random.Random, variance: float, windows: int = 400) -> Dispersion:
    """Windows of ``WINDOW`` expected payouts whose rate factor is log-normal with the given variance."""
    d = Dispersion()
    log_var = math.log1p(variance)
    for _ in range(windows):
        x = math.exp(rng.gauss(-log_var / 2, math.sqrt(log_var))) if variance > 0 else 1.0
        count = np.random.default_rng(rng.getrandbits(32)).poisson(WINDOW * x)
        for _ in range(int(count)):
            d.pay()
        d.expect(WINDOW)
        d.close_if_full(beta=1.0)
    return d


@pytest.mark.parametrize("variance", [0.05, 0.12, 0.3])
def test_the_swings_learned_from_counts_match_the_variance_they_were_drawn_with(variance: float) -> None:
    rng = random.Random(7)
    learned = [_learn(rng, variance).variance for _ in range(5)]
    assert all(v > 0 for v in learned), learned
    assert abs(float(np.median(learned)) - variance) < 0.35 * variance + 0.01, learned


def test_steady_poisson_counts_learn_no_swings() -> None:
    rng = random.Random(3)
    assert [_learn(rng, 0.0).variance for _ in range(10)].count(0.0) >= 9


def test_batches_counted_in_tail_units_are_not_mistaken_for_swings() -> None:
    """Withdrawals in batches of 10: counts of withdrawals are clumped, counts of batches (beta = 0.1) not."""
    rng = np.random.default_rng(5)
    d = Dispersion()
    for _ in range(400):
        for _ in range(int(rng.poisson(WINDOW)) * 10):
            d.pay()
        d.expect(WINDOW * 10)
        d.close_if_full(beta=0.1)
    assert d.variance == 0.0


def test_the_mixture_evidence_matches_monte_carlo_and_is_never_more_than_a_steady_rate() -> None:
    rng = np.random.default_rng(11)
    log_var = 0.15
    x = np.exp(rng.normal(-log_var / 2, math.sqrt(log_var), 2_000_000))
    for m in (1.0, 4.0, 10.0):
        for n in (0.0, 1.0, 3.0):
            exact = -math.log(float(np.mean(x**n * np.exp(-x * m))))
            assert mixed_nats(m, n, log_var) == pytest.approx(exact, abs=0.03), (m, n)
    assert mixed_nats(12.0, 0.0, 0.0) == 12.0
    values = [mixed_nats(12.0, 0.0, lv) for lv in (0.0, 0.05, 0.1, 0.3)]
    assert values == sorted(values, reverse=True) and values[-1] < 12.0


def test_the_collapse_test_is_the_poisson_cusum_without_swings_and_slower_with_them() -> None:
    m, n, rho = 40.0, 3.0, 0.1
    assert collapse_llr(m, n, 0.0, rho) == pytest.approx(m * (1 - rho) - n * math.log(1 / rho))
    assert collapse_llr(m, n, math.log1p(0.2), rho) < collapse_llr(m, n, 0.0, rho)
    assert collapse_llr(m, m, math.log1p(0.2), rho) < 0  # a normal count is no evidence of a collapse


def test_the_swings_already_hold_the_rate_uncertainty() -> None:
    """The swings are measured against the model's rate, so they hold its errors: the larger variance counts."""
    assert log_var_of(0.1, math.inf) == pytest.approx(math.log(1.1))
    assert log_var_of(0.1, 20.0) == pytest.approx(math.log(1.1))
    assert log_var_of(0.01, 20.0) == pytest.approx(math.log(1.05))


def test_the_base_rate_explains_the_mean_excess_the_tail_measured() -> None:
    """1 / beta = E[exp(-b X)] / (b E[X exp(-b X)]) at the base rate b, checked by simulation of gaps."""
    tail = GapTail()
    tail.beta = 0.8
    tail.swings.variance = 0.25
    b = tail.base_beta()
    assert b > tail.beta
    rng = np.random.default_rng(2)
    lv = math.log1p(0.25)
    x = np.exp(rng.normal(-lv / 2, math.sqrt(lv), 1_000_000))
    gaps = rng.exponential(1.0 / (b * x))  # gaps that start at a payout: X weighted by the rate
    weights = x / x.sum()
    long = gaps > 1.0
    mean_excess = float(np.sum(weights[long] * (gaps[long] - 1.0)) / np.sum(weights[long]))
    assert 1.0 / mean_excess == pytest.approx(tail.beta, rel=0.03)


def test_the_gap_evidence_is_the_tail_of_gaps_that_start_at_a_payout() -> None:
    """-ln P(gap > u | gap > 1) of size-biased gaps at the base rate, checked by simulation; below the steady
    figure, and more for a longer gap."""
    tail = GapTail()
    tail.beta = 0.8
    tail.swings.variance = 0.3
    b = tail.base_beta()
    rng = np.random.default_rng(5)
    lv = math.log1p(0.3)
    x = np.exp(rng.normal(-lv / 2, math.sqrt(lv), 2_000_000))
    gaps = rng.exponential(1.0 / (b * x))
    weights = x / x.sum()
    beyond_one = float(np.sum(weights[gaps > 1.0]))
    for u in (2.0, 5.0, 10.0):
        simulated = -math.log(float(np.sum(weights[gaps > u])) / beyond_one)
        assert tail.beyond(u) == pytest.approx(simulated, abs=0.05), u
    values = [tail.beyond(u) for u in (1.5, 3.0, 8.0, 20.0)]
    assert values == sorted(values) and values[0] > 0


def test_an_unsure_rate_adds_at_most_the_margin_the_quiet_shortcut_allows() -> None:
    """The detector skips a decision when a sure rate's evidence plus ``UNSURE_EXCESS`` is below suspicion:
    that is a bound only if no rate uncertainty adds more (it adds a little for the shortest gaps)."""
    worst = 0.0
    for variance in (0.003, 0.01, 0.05, 0.1, 0.3, 1.0, 4.0):
        tail = GapTail(100.0, 30.0, 80.0)
        tail.swings.variance = variance
        for u in (1.01, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 50.0):
            sure = tail.survival_log(u)
            for shape in (1000.0, 100.0, 20.0, 5.0, 2.0, 1.0, 0.5):
                worst = max(worst, tail.survival_log(u, shape) - sure)
    assert 0.0 < worst < UNSURE_EXCESS


def test_a_dispersion_survives_its_saved_form() -> None:
    d = _learn(random.Random(1), 0.2)
    again = Dispersion.from_list(d.to_list())
    assert again.variance == d.variance > 0



def _swinging(sd: float, seed: int) -> Callable[[str, str, int], float]:
    """A payout-rate factor redrawn every 15 minutes, log-normal with mean 1 (the issue's bursty traffic)."""
    rng = random.Random(seed)
    levels: dict[int, float] = {}

    def factor(exchange: str, chain: str, t: int) -> float:
        slot = t // 900
        if slot not in levels:
            levels[slot] = math.exp(rng.gauss(-sd * sd / 2, sd))
        return levels[slot]

    return factor


@pytest.mark.parametrize(("sd", "swinging"), [(0.0, False), (0.4, True)])
def test_the_detector_learns_how_much_a_chain_swings_and_reports_its_budget(sd: float, swinging: bool) -> None:
    detector = OutageDetector(DetectionPolicy(), ManualClock(0.0))
    sim = Sim(detector, {"tron": 3}, {("okx", "tron"): 600})
    events = sim.run(2 * 86_400, _swinging(sd, 5))
    c = detector.view["okx"].chains["tron"]
    if swinging:
        true_var = math.exp(sd * sd) - 1  # 0.17
        assert 0.5 * true_var < c.tail.swing_var < 1.6 * true_var
    else:
        assert c.tail.swing_var == 0.0
    budget = detector.budget("okx")
    assert budget.state == "kept" and budget.estimated is not None and budget.estimated < 1.5
    assert [e for e in events if isinstance(e, OutageEvent) and e.state in (OutageState.OPEN, OutageState.DEGRADED)
            ] == []


def test_an_alarm_reports_the_evidence_that_crossed_its_threshold() -> None:
    """On swinging traffic a halt opens with evidence at or above the threshold, and p-value = exp(-evidence)."""
    detector = OutageDetector(DetectionPolicy(), ManualClock(0.0))
    sim = Sim(detector, {"tron": 3}, {("okx", "tron"): 600})
    sim.run(2 * 86_400, _swinging(0.4, 6))
    c = detector.view["okx"].chains["tron"]
    gaps = c.rate.overall() * detector.policy.budget_s
    threshold = detector._threshold(gaps, detector._tests(detector.view["okx"]))
    opened = [e for e in sim.run(3600, lambda ex, ch, t: 0.0)
              if isinstance(e, OutageEvent) and e.state is OutageState.OPEN]
    assert opened
    evidence = -math.log(opened[0].p_value)
    assert evidence >= threshold - 1e-9
    assert f"evidence {evidence:.1f} nats" in opened[0].reason
