"""Bursty payout traffic: what real exchanges' withdrawal rates do at short timescales.

Withdrawals follow the market, so an exchange's payout rate swings within minutes and hours, well inside
the slow drift and the seasonality of :mod:`.model`. ``--traffic bursty`` adds, per exchange:

- **short-timescale noise**: ``exp`` of an Ornstein-Uhlenbeck process with a correlation time between 5
  minutes and 2 hours and a standard deviation between 0.2 and 0.5 (drawn per exchange), stored as knots
  a quarter of the correlation time apart and shifted by ``-sd^2 / 2`` so that its mean is 1;
- **volatility episodes**: the rate times 2 to 4 for 30 to 120 minutes, about one every two days;
- **regime shifts**: for about half the exchanges, the rate moves for good by x0.5 or x2 at one moment;

and, once per scenario, two kinds of payouts that are normal for the exchange but look odd to a detector:

- **manual batch payouts**: one small exchange pays in batches of tens of withdrawals spread over a few
  blocks, with long pauses between them;
- **a hot wallet added mid-run**: from one moment on, a share (30-60 %) of one busy exchange's payouts on
  one chain leave from a wallet nobody labelled, so they are not seen as its withdrawals.

Everything is drawn here from its own random stream (``[seed, 2]``), so a ``smooth`` scenario's draws, and
so its events, stay exactly what they were; and everything is written into ``truth["bursty"]``, from which
:func:`factor` recomputes the multiplier for any time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

DAY = 86_400
HOUR = 3_600
NOISE_TAU_S = (300.0, 7_200.0)
"""Correlation time of the short-timescale noise, drawn log-uniformly in this range."""
NOISE_SD = (0.2, 0.5)
EPISODES_PER_DAY = 0.5
EPISODE_S = (30 * 60, 120 * 60)
EPISODE_FACTOR = (2.0, 4.0)
REGIME_SHARE = 0.5
"""Share of exchanges whose rate moves for good once."""
REGIME_FACTORS = (0.5, 2.0)
MANUAL_BATCH = (25.0, 4)
"""Mean batch size and spread in blocks of the manual payer."""
MANUAL_MIN_PER_HOUR = 20.0
TAKEOVER_SHARE = (0.3, 0.6)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def noise_knots(rng: np.random.Generator, start: int, end: int) -> dict[str, Any]:
    """One exchange's short-timescale noise: OU log-level at knots ``step_s`` apart, mean-1 shifted."""
    tau = math.exp(rng.uniform(math.log(NOISE_TAU_S[0]), math.log(NOISE_TAU_S[1])))
    sd = float(rng.uniform(*NOISE_SD))
    step = max(60, round(tau / 4))
    n = (end - start) // step + 2
    keep = math.exp(-step / tau)
    shocks = rng.normal(0.0, sd * math.sqrt(1.0 - keep * keep), size=n)
    x = np.empty(n, dtype=np.float64)
    x[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        x[i] = keep * x[i - 1] + shocks[i]
    return {"tau_s": round(tau, 1), "sd": round(sd, 4), "t0": start, "step_s": step,
            "log": [round(float(v) - sd * sd / 2, 4) for v in x]}


def episodes(rng: np.random.Generator, start: int, end: int) -> list[dict[str, Any]]:
    count = int(rng.poisson(EPISODES_PER_DAY * (end - start) / DAY))
    out = []
    for _ in range(count):
        at = int(rng.integers(start, end))
        out.append({"start": at, "end": at + int(rng.integers(*EPISODE_S)),
                    "factor": round(float(rng.uniform(*EPISODE_FACTOR)), 3)})
    return sorted(out, key=lambda e: e["start"])


def bursty_truth(exchanges: Mapping[str, Any], seed: int, start: int, end: int) -> dict[str, Any]:
    """The bursty components of every exchange, plus the manual payer and the added hot wallet."""
    rng = np.random.default_rng([seed, 2])
    per_exchange: dict[str, Any] = {}
    for name in exchanges:
        entry: dict[str, Any] = {"noise": noise_knots(rng, start, end), "episodes": episodes(rng, start, end)}
        if rng.random() < REGIME_SHARE:
            entry["regime"] = {"at": int(rng.integers(start + DAY // 2, max(start + DAY // 2 + 1, end - HOUR))),
                               "factor": float(rng.choice(REGIME_FACTORS))}
        per_exchange[name] = entry
    def busiest_chain(name: str) -> str:
        chains = exchanges[name]["chains"]
        return max(chains, key=lambda c: float(chains[c]["rate_per_hour"]))

    def total(name: str) -> float:
        return sum(float(c["rate_per_hour"]) for c in exchanges[name]["chains"].values())

    names = sorted(exchanges, key=total)
    # the manual payer: the least busy exchange with enough payouts for a batch every hour or two
    manual_exchange = next((n for n in names if total(n) >= MANUAL_MIN_PER_HOUR), names[-1])
    # the added hot wallet: at the busiest exchange but the OKX-sized one, whose halt is the headline incident
    busy = next((n for n in reversed(names) if exchanges[n].get("role") != "okx_sized"), names[-1])
    return {
        "generator_stream": [seed, 2],
        "exchanges": per_exchange,
        "manual": {"exchange": manual_exchange, "chain": busiest_chain(manual_exchange), "batch_mean": MANUAL_BATCH[0],
                   "spread_blocks": MANUAL_BATCH[1]},
        "takeover": {"exchange": busy, "chain": busiest_chain(busy),
                     "at": int(rng.integers(start + DAY, max(start + DAY + 1, end - HOUR))),
                     "share": round(float(rng.uniform(*TAKEOVER_SHARE)), 3)},
    }


def apply_manual(truth: dict[str, Any]) -> None:
    """The manual payer pays in large batches spread over a few blocks (its chain's payout parameters)."""
    manual = truth["bursty"]["manual"]
    params = truth["exchanges"][manual["exchange"]]["chains"][manual["chain"]]
    params["batch_mean"] = manual["batch_mean"]
    params["spread_blocks"] = manual["spread_blocks"]


def exchange_factor(bursty: Mapping[str, Any], exchange: str, times: IntArray) -> FloatArray:
    """Noise x episodes x regime of one exchange at each time (1 where the exchange has none)."""
    entry = bursty["exchanges"].get(exchange)
    result: FloatArray = np.ones(len(times), dtype=np.float64)
    if entry is None:
        return result
    t = times.astype(np.float64)
    noise = entry["noise"]
    knots = float(noise["t0"]) + float(noise["step_s"]) * np.arange(len(noise["log"]), dtype=np.float64)
    result *= np.exp(np.interp(t, knots, np.asarray(noise["log"], dtype=np.float64)))
    for episode in entry["episodes"]:
        result[(times >= episode["start"]) & (times < episode["end"])] *= float(episode["factor"])
    regime = entry.get("regime")
    if regime is not None:
        result[times >= regime["at"]] *= float(regime["factor"])
    return result


def known_factor(bursty: Mapping[str, Any], exchange: str, times: IntArray) -> FloatArray:
    """The part of :func:`exchange_factor` an observer could know in advance: the regime shift alone.

    The ideal detector knows the law of the swings and episodes, not their path (:mod:`.swing_law`)."""
    entry = bursty["exchanges"].get(exchange)
    result: FloatArray = np.ones(len(times), dtype=np.float64)
    regime = entry.get("regime") if entry is not None else None
    if regime is not None:
        result[times >= regime["at"]] *= float(regime["factor"])
    return result


def noise_law(bursty: Mapping[str, Any], exchange: str) -> tuple[float, float]:
    """(standard deviation, correlation time in seconds) of an exchange's swings; (0, 0) if it has none."""
    entry = bursty["exchanges"].get(exchange)
    if entry is None:
        return 0.0, 0.0
    return float(entry["noise"]["sd"]), float(entry["noise"]["tau_s"])


def seen_share(bursty: Mapping[str, Any], exchange: str, chain: str, times: IntArray) -> FloatArray:
    """Share of an (exchange, chain)'s payouts that leave from labelled wallets (less after the takeover)."""
    result: FloatArray = np.ones(len(times), dtype=np.float64)
    takeover = bursty["takeover"]
    if takeover["exchange"] == exchange and takeover["chain"] == chain:
        result[times >= takeover["at"]] = 1.0 - float(takeover["share"])
    return result
