"""The scenario: which exchanges pay how much where, and when things go wrong. Produces ``truth.json``.

Everything random is drawn here from the seed, and everything the events are drawn from is written to the
truth, so the ideal detector and the scorer never need the generator's code paths, only :mod:`.model`.

The exchange table mirrors the shape of the real market: one OKX-sized exchange paying more than a
thousand withdrawals an hour across four chains, a few large and mid-size ones (some paying in batches,
which is what breaks a plain Poisson detector), and small ones with a handful of payouts an hour on one
chain. Incidents are placed after a day of warm-up, apart from each other and from the chain stalls and
lost feeds, so each measurement is about one thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.detection.bursty import apply_manual, bursty_truth
from bench.detection.model import CHAIN_INTERVALS, DAY, HOUR

START = 1_709_251_200
"""2024-03-01 00:00 UTC, a Friday: multi-day runs cross a weekend."""
FIRST_NUMBERS = {"ethereum": 19_340_000, "bsc": 36_520_000, "tron": 59_830_000, "polygon": 54_210_000}
LATENCY_S = (0.5, 3.0)
WARMUP_S = DAY
TAIL_S = 2 * HOUR
"""Time kept free after the last incident, so its end and recovery are inside the run."""
MIN_SPACING_S = 45 * 60
DAILY_AMPLITUDE = 0.5
WEEKEND_FACTOR = 0.7
DRIFT_SIGMA = 0.15
DRIFT_TAU_H = 48.0
DEGRADED_FACTOR = 0.1
TRAFFIC = ("smooth", "bursty")
DETECTABLE_PER_HOUR = 30.0
"""Incidents are put on traffic at least this busy, so a 1-2 hour halt is detectable at all."""


@dataclass(frozen=True, slots=True)
class Pay:
    """How one exchange pays out on one chain."""

    rate_per_hour: float
    batch_mean: float = 1.0
    spread_blocks: int = 1
    """A batch is spread over up to this many consecutive blocks."""


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    role: str
    chains: dict[str, Pay]


EXCHANGES: tuple[ExchangeSpec, ...] = (
    ExchangeSpec("okx", "okx_sized", {"ethereum": Pay(300), "tron": Pay(600), "bsc": Pay(250), "polygon": Pay(100)}),
    ExchangeSpec("binance", "large", {"ethereum": Pay(400), "bsc": Pay(900), "tron": Pay(800), "polygon": Pay(150)}),
    ExchangeSpec("bybit", "large", {"ethereum": Pay(240, 12, 2), "tron": Pay(300)}),
    ExchangeSpec("htx", "mid", {"tron": Pay(900), "ethereum": Pay(60)}),
    ExchangeSpec("kucoin", "mid", {"tron": Pay(120, 8, 3), "ethereum": Pay(40), "bsc": Pay(60)}),
    ExchangeSpec("gate", "mid", {"ethereum": Pay(50), "bsc": Pay(80), "tron": Pay(100)}),
    ExchangeSpec("bitget", "mid", {"bsc": Pay(120), "polygon": Pay(40), "tron": Pay(150, 6, 1)}),
    ExchangeSpec("mexc", "mid", {"bsc": Pay(200, 10, 2), "ethereum": Pay(30)}),
    ExchangeSpec("kraken", "small", {"ethereum": Pay(20)}),
    ExchangeSpec("bitfinex", "small", {"ethereum": Pay(8), "tron": Pay(12)}),
    ExchangeSpec("upbit", "small", {"ethereum": Pay(6)}),
    ExchangeSpec("bitvavo", "small", {"polygon": Pay(3)}),
)
"""Default exchanges, most important first: ``--exchanges K`` takes the first K (more are synthesised)."""


@dataclass(frozen=True, slots=True)
class Config:
    days: float
    seed: int
    exchanges: int = len(EXCHANGES)
    quiet: bool = False
    chains: tuple[str, ...] = tuple(CHAIN_INTERVALS)
    """Subset of chains to simulate (tests use fewer, for speed)."""
    traffic: str = "smooth"
    """``smooth``: seasonality and a slow drift only; ``bursty``: plus the short-timescale swings, episodes,
    regime shifts, manual batches and added hot wallet of :mod:`.bursty`."""


def exchange_specs(config: Config, rng: np.random.Generator) -> list[ExchangeSpec]:
    specs = list(EXCHANGES[: config.exchanges])
    for i in range(len(specs), config.exchanges):
        picked = rng.choice(sorted(CHAIN_INTERVALS), size=int(rng.integers(1, 3)), replace=False)
        specs.append(ExchangeSpec(f"ex{i + 1:02d}", "synthetic", {
            str(c): Pay(round(float(math.exp(rng.uniform(math.log(3), math.log(300)))), 1)) for c in picked
        }))
    kept = []
    for spec in specs:
        chains = {c: p for c, p in spec.chains.items() if c in config.chains}
        if chains:
            kept.append(ExchangeSpec(spec.name, spec.role, chains))
    return kept


def drift_knots(rng: np.random.Generator, n: int) -> list[float]:
    """Hourly log-level of a slow Ornstein-Uhlenbeck drift (stationary sd ``DRIFT_SIGMA``)."""
    keep = math.exp(-1.0 / DRIFT_TAU_H)
    noise = DRIFT_SIGMA * math.sqrt(1.0 - keep * keep)
    x = float(rng.normal(0.0, DRIFT_SIGMA))
    out = []
    for _ in range(n):
        out.append(round(x, 5))
        x = keep * x + noise * float(rng.normal())
    return out


def exchanges_truth(specs: list[ExchangeSpec], rng: np.random.Generator, start: int, end: int) -> dict[str, Any]:
    knots = (end - start) // HOUR + 2
    result: dict[str, Any] = {}
    for spec in specs:
        result[spec.name] = {
            "role": spec.role,
            "peak_hour": round(float(rng.uniform(0, 24)), 3),
            "drift": {"t0": start, "step_s": HOUR, "log": drift_knots(rng, knots)},
            "chains": {
                chain: {
                    "rate_per_hour": pay.rate_per_hour, "batch_mean": pay.batch_mean,
                    "spread_blocks": pay.spread_blocks,
                    "deposit_ratio": round(float(rng.uniform(0.4, 1.2)), 3),
                    "internal_per_hour": round(float(rng.uniform(0.5, 3.0)), 3),
                }
                for chain, pay in sorted(spec.chains.items())
            },
        }
    return result


def build_truth(config: Config) -> dict[str, Any]:
    """Every parameter of the scenario, incidents and chain events included."""
    if config.days <= 0:
        raise ValueError("days must be positive")
    if config.traffic not in TRAFFIC:
        raise ValueError(f"traffic must be one of {', '.join(TRAFFIC)}, got {config.traffic!r}")
    rng = np.random.default_rng(config.seed)
    start = START
    end = start + round(config.days * DAY)
    specs = exchange_specs(config, rng)
    if not specs:
        raise ValueError("no exchange pays on the selected chains")
    truth: dict[str, Any] = {
        "generator": {"name": "bench.detection.generate", "version": 1, "seed": config.seed, "days": config.days,
                      "exchanges": config.exchanges, "quiet": config.quiet, "chains": list(config.chains),
                      "traffic": config.traffic},
        "quiet": config.quiet,
        "start": start,
        "end": end,
        "warmup_s": WARMUP_S,
        "chains": {c: {"interval_s": CHAIN_INTERVALS[c], "first_number": FIRST_NUMBERS[c],
                       "latency_s": list(LATENCY_S)} for c in config.chains},
        "seasonality": {"daily_amplitude": DAILY_AMPLITUDE, "weekend_factor": WEEKEND_FACTOR,
                        "drift_sigma": DRIFT_SIGMA, "drift_tau_h": DRIFT_TAU_H},
        "exchanges": exchanges_truth(specs, rng, start, end),
        "incidents": [],
        "chain_events": [],
    }
    if config.traffic == "bursty":
        truth["bursty"] = bursty_truth(truth["exchanges"], config.seed, start, end)
        apply_manual(truth)
    if not config.quiet:
        incidents, chain_events = schedule(truth, rng)
        truth["incidents"], truth["chain_events"] = incidents, chain_events
    return truth


# -- incidents ---------------------------------------------------------------------------------------------

def _total_rate(truth: dict[str, Any], exchange: str) -> float:
    return float(sum(c["rate_per_hour"] for c in truth["exchanges"][exchange]["chains"].values()))


def _member(exchange: str, chains: list[str], start: int, duration: int) -> dict[str, Any]:
    return {"exchange": exchange, "chains": sorted(chains), "start": start, "end": start + duration}


def incident_plans(truth: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    """The incidents with members and durations, each relative to its own start (0)."""
    exchanges = truth["exchanges"]
    names = list(exchanges)
    okx = next((n for n in names if exchanges[n]["role"] == "okx_sized"), names[0])
    plans: list[dict[str, Any]] = [{"kind": "full_halt", "factor": 0.0,
                                    "members": [_member(okx, list(exchanges[okx]["chains"]), 0, 5 * HOUR)]}]
    others = [n for n in names if n != okx] or names
    # a single-chain halt: prefer an exchange that keeps paying on other chains
    candidates = [(n, c) for n in others for c, p in exchanges[n]["chains"].items()
                  if p["rate_per_hour"] >= DETECTABLE_PER_HOUR and len(exchanges[n]["chains"]) >= 2]
    candidates = candidates or [(n, c) for n in names for c in exchanges[n]["chains"]]
    ex, chain = candidates[int(rng.integers(len(candidates)))]
    plans.append({"kind": "chain_halt", "factor": 0.0, "members": [_member(ex, [chain], 0, 2 * HOUR)]})
    # degradation: a busy exchange that pays one by one, down to 10% on all its chains
    busy = [n for n in others if _total_rate(truth, n) >= 150
            and all(p["batch_mean"] == 1.0 for p in exchanges[n]["chains"].values())]
    busy = busy or sorted(names, key=lambda n: -_total_rate(truth, n))[:1]
    ex = busy[int(rng.integers(len(busy)))]
    plans.append({"kind": "degradation", "factor": DEGRADED_FACTOR,
                  "members": [_member(ex, list(exchanges[ex]["chains"]), 0, HOUR)]})
    # correlated: three exchanges halting on all chains within two minutes (shared infrastructure)
    used = {m["exchange"] for p in plans for m in p["members"]}
    pool = [n for n in others if n not in used and _total_rate(truth, n) >= DETECTABLE_PER_HOUR]
    if len(pool) < 3:
        pool = [n for n in names if _total_rate(truth, n) >= DETECTABLE_PER_HOUR] or names
    if len(pool) >= 3:
        chosen = sorted(str(n) for n in rng.choice(pool, size=3, replace=False))
        offsets = [int(x) for x in rng.integers(0, 121, size=3)]
        members = [_member(n, list(exchanges[n]["chains"]), off - min(offsets), int(rng.integers(HOUR, 2 * HOUR + 1)))
                   for n, off in zip(chosen, offsets, strict=True)]
        plans.append({"kind": "correlated", "factor": 0.0, "members": members})
    return plans


def chain_event_plans(truth: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Two chain stalls and two lost feeds, on different chains where there are enough."""
    chains = [str(c) for c in rng.permutation(sorted(truth["chains"]))]
    while len(chains) < 4:
        chains += chains
    plans = []
    for i, kind in enumerate(("stall", "stall", "lost_feed", "lost_feed")):
        low, high = (30, 90) if kind == "stall" else (30, 60)
        plans.append({"kind": kind, "chain": chains[i], "duration": 60 * int(rng.integers(low, high + 1))})
    return plans


def _span(plan: dict[str, Any]) -> int:
    if "members" in plan:
        return max(int(m["end"]) for m in plan["members"])
    return int(plan["duration"])


def schedule(truth: dict[str, Any], rng: np.random.Generator) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Place incidents and chain events one after another, apart, after the warm-up day."""
    plans = incident_plans(truth, rng) + chain_event_plans(truth, rng)
    order = [int(i) for i in rng.permutation(len(plans))]
    first, last = int(truth["start"]) + WARMUP_S, int(truth["end"]) - TAIL_S
    busy = sum(_span(p) for p in plans)
    gap = (last - first - busy) / (len(plans) + 1)
    if gap < MIN_SPACING_S:
        raise ValueError(f"{(truth['end'] - truth['start']) / DAY:g} days are too short for the incidents "
                         f"({len(plans)} events of {busy / HOUR:.1f} h after a {WARMUP_S // HOUR} h warm-up); "
                         f"use more days or --quiet")
    incidents: list[dict[str, Any]] = []
    chain_events: list[dict[str, Any]] = []
    cursor = float(first)
    for i in order:
        plan = plans[i]
        at = int(cursor + gap * float(rng.uniform(0.6, 1.0)))
        if "members" in plan:
            members = [{**m, "start": m["start"] + at, "end": m["end"] + at} for m in plan["members"]]
            incidents.append({
                "id": f"{plan['kind']}-{len(incidents) + 1}", "kind": plan["kind"], "factor": plan["factor"],
                "start": min(m["start"] for m in members), "end": max(m["end"] for m in members),
                "members": members,
            })
        else:
            chain_events.append({"kind": plan["kind"], "chain": plan["chain"], "start": at,
                                 "end": at + plan["duration"]})
        cursor = at + _span(plan)
    return incidents, chain_events
