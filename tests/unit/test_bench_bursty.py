"""The bursty traffic of the detection benchmark: each component has the size and timescale it promises."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from bench.detection.bursty import (
    EPISODE_FACTOR,
    EPISODE_S,
    MANUAL_BATCH,
    NOISE_SD,
    NOISE_TAU_S,
    TAKEOVER_SHARE,
    exchange_factor,
    noise_knots,
    seen_share,
)
from bench.detection.generate import chain_traffic, incident_factor
from bench.detection.model import DAY, Model
from bench.detection.scenario import Config, build_truth
from bench.detection.writer import WITHDRAWAL

START = 1_709_251_200


def test_noise_has_the_drawn_sd_and_correlation_time_and_mean_one() -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        noise = noise_knots(rng, START, START + 200 * DAY)
        sd, tau, step = noise["sd"], noise["tau_s"], noise["step_s"]
        assert NOISE_SD[0] <= sd <= NOISE_SD[1] and NOISE_TAU_S[0] <= tau <= NOISE_TAU_S[1]
        x = np.asarray(noise["log"]) + sd * sd / 2
        assert x.std() == pytest.approx(sd, rel=0.1)
        lag1 = float(np.corrcoef(x[:-1], x[1:])[0, 1])
        assert lag1 == pytest.approx(math.exp(-step / tau), abs=0.03)
        assert float(np.exp(noise["log"]).mean()) == pytest.approx(1.0, abs=0.03), "the swings keep the mean rate"


def test_episodes_and_regime_multiply_only_where_they_are() -> None:
    bursty = {"exchanges": {"x": {
        "noise": {"t0": START, "step_s": 600, "log": [0.0] * 200},
        "episodes": [{"start": START + 3600, "end": START + 5400, "factor": 3.0}],
        "regime": {"at": START + 7200, "factor": 0.5},
    }}, "takeover": {"exchange": "x", "chain": "tron", "at": START + 9000, "share": 0.4}}
    times = np.asarray([START, START + 3600, START + 5399, START + 5400, START + 7200, START + 9000], dtype=np.int64)
    assert exchange_factor(bursty, "x", times).tolist() == [1.0, 3.0, 3.0, 1.0, 0.5, 0.5]
    assert exchange_factor(bursty, "other", times).tolist() == [1.0] * 6
    assert seen_share(bursty, "x", "tron", times).tolist() == pytest.approx([1, 1, 1, 1, 1, 0.6])
    assert seen_share(bursty, "x", "ethereum", times).tolist() == [1.0] * 6


def test_smooth_scenarios_have_no_bursty_part_and_bursty_ones_every_part() -> None:
    smooth = build_truth(Config(days=4, seed=1))
    assert "bursty" not in smooth and smooth["generator"]["traffic"] == "smooth"
    bursty = build_truth(Config(days=4, seed=1, traffic="bursty"))
    parts = bursty["bursty"]
    assert set(parts["exchanges"]) == set(bursty["exchanges"])
    episodes = [e for x in parts["exchanges"].values() for e in x["episodes"]]
    assert episodes and all(EPISODE_S[0] <= e["end"] - e["start"] <= EPISODE_S[1] for e in episodes)
    assert all(EPISODE_FACTOR[0] <= e["factor"] <= EPISODE_FACTOR[1] for e in episodes)
    assert {x["regime"]["factor"] for x in parts["exchanges"].values() if "regime" in x} <= {0.5, 2.0}
    manual = parts["manual"]
    paid = bursty["exchanges"][manual["exchange"]]["chains"][manual["chain"]]
    assert (paid["batch_mean"], paid["spread_blocks"]) == MANUAL_BATCH
    takeover = parts["takeover"]
    assert bursty["exchanges"][takeover["exchange"]]["role"] != "okx_sized"
    assert TAKEOVER_SHARE[0] <= takeover["share"] <= TAKEOVER_SHARE[1]
    with pytest.raises(ValueError, match="traffic"):
        build_truth(Config(days=4, seed=1, traffic="choppy"))


def test_bursty_counts_follow_the_bursty_rate_and_the_manual_payer_pays_in_bursts() -> None:
    truth = build_truth(Config(days=3, seed=4, exchanges=9, quiet=True, traffic="bursty"))
    model = Model(truth)
    names = list(truth["exchanges"])
    rng = np.random.default_rng([4, 1])
    withdrawals: Counter[str] = Counter()
    manual = truth["bursty"]["manual"]
    manual_blocks: list[int] = []
    for chain in truth["chains"]:
        traffic = chain_traffic(model, chain, names, rng)
        for ex_i, direction, count in zip(traffic.exchange_index, traffic.direction, traffic.count, strict=True):
            if direction == WITHDRAWAL:
                withdrawals[names[ex_i]] += count
                if (names[ex_i], chain) == (manual["exchange"], manual["chain"]):
                    manual_blocks.append(count)
    for exchange in names:
        expected = variance = 0.0
        for chain in model.exchange_chains(exchange):
            blocks = model.blocks(chain)
            mean = float((model.rate(exchange, chain, blocks.times) * incident_factor(truth, exchange, chain,
                                                                                     blocks.times)).sum())
            mean *= model.interval(chain)
            k = model.batch_mean(exchange, chain)  # batch size 1 + Poisson(k - 1): E[K^2] / E[K]
            expected, variance = expected + mean, variance + mean * (k - 1 + k * k) / k
        assert abs(withdrawals[exchange] - expected) < 5 * math.sqrt(variance), (exchange, withdrawals, expected)
    assert sum(manual_blocks) > 100
    assert max(manual_blocks) >= 8, "tens of withdrawals within a few blocks"
    assert len(manual_blocks) < sum(manual_blocks) / 4, "then long pauses: few blocks carry them all"


def test_the_added_hot_wallet_takes_its_share_of_the_seen_payouts() -> None:
    truth = build_truth(Config(days=3, seed=4, exchanges=9, quiet=True, traffic="bursty"))
    model = Model(truth)
    takeover = truth["bursty"]["takeover"]
    ex, chain, at = takeover["exchange"], takeover["chain"], takeover["at"]
    times = np.asarray([at - 1, at], dtype=np.int64)
    before, after = model.rate(ex, chain, times)
    # seasonality and drift move by far less than 0.1 % in a second
    assert after / before == pytest.approx((1 - takeover["share"]) * float(np.prod(
        exchange_factor(truth["bursty"], ex, times[1:]) / exchange_factor(truth["bursty"], ex, times[:1]))), rel=1e-3)
