"""The false-alarm budget measured on an exchange's own normal gaps (streams/detection/budget.py)."""

from __future__ import annotations

import math
import random

from streams.detection.budget import CHECK_NATS, BudgetCheck, estimate


def _check(rng: random.Random, gaps: int, tail_scale: float) -> BudgetCheck:
    """Gaps whose evidence is Exp(1) times ``tail_scale``.

    1: the model is right; 2: it reads twice the evidence the gaps hold."""
    check = BudgetCheck()
    for _ in range(gaps):
        check.add(rng.expovariate(1.0) * tail_scale)
    return check


def test_a_model_that_is_right_keeps_its_budget() -> None:
    found = estimate("okx", [_check(random.Random(1), 20_000, 1.0)], 1.0, 90.0)
    assert found.state == "kept"
    assert found.estimated is not None and 0.6 < found.estimated < 1.5


def test_gaps_longer_than_the_model_says_show_a_budget_spent_many_times_over() -> None:
    """Evidence half as strong as the model says: passes of 5 nats are exp(2.5) = 12 times more frequent."""
    found = estimate("okx", [_check(random.Random(2), 20_000, 2.0)], 1.0, 90.0)
    assert found.state == "erratic"
    assert found.estimated is not None and found.estimated > 6
    assert "erratic" in found.line and "90 days" in found.line


def test_too_few_gaps_is_learning_not_a_number() -> None:
    few = BudgetCheck()
    for _ in range(50):
        few.add(0.5)
    assert few.expected < 3
    found = estimate("kraken", [few], 1.0, 90.0)
    assert (found.estimated, found.state) == (None, "learning")
    assert "learning" in found.line


def test_each_chain_weighs_the_same_whatever_its_gap_count() -> None:
    rng = random.Random(3)
    busy, quiet = _check(rng, 20_000, 1.0), _check(rng, 2_000, 2.0)
    found = estimate("gate", [busy, quiet], 1.0, 90.0)
    factors = [c.passed / c.expected for c in (busy, quiet)]
    assert found.estimated is not None and math.isclose(found.estimated, sum(factors) / 2)


def test_the_check_level_is_passed_by_exp_minus_that_share_of_calibrated_gaps() -> None:
    check = _check(random.Random(4), 20_000, 1.0)
    assert abs(check.passed / check.gaps - math.exp(-CHECK_NATS)) < 0.002
