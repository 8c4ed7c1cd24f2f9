"""The ground-truth model of a generated scenario, computed from ``truth.json`` alone.

The generator draws its events from these functions and the ideal detector integrates the same ones, so
"the true rate" means one thing in the whole benchmark, and anyone holding ``truth.json`` can recompute it.

Withdrawal intensity of (exchange, chain) at chain time ``t``, in withdrawals per second::

    rate_per_hour / 3600 * daily(t) * weekly(t) * drift(t)

- ``daily``: ``1 + A cos(2 pi (t - peak) / 1 day)``, peak hour per exchange; ``A = 0.5`` gives peak:trough 3:1;
- ``weekly``: ``weekend_factor`` on UTC Saturdays and Sundays, 1 otherwise;
- ``drift``: ``exp`` of a per-exchange slow random walk, stored as hourly knots and interpolated linearly;
- with ``--traffic bursty``, times the short-timescale swings of :mod:`.bursty`, and on the chain where a
  new hot wallet takes over part of the payouts, the share still paid from labelled wallets.

Batched exchanges pay in batches of ``batch_mean`` withdrawals on average, so their batches arrive at
``intensity / batch_mean``. Events are drawn per block: the mean of a block is the intensity at its time
times the chain's nominal interval, so "expected withdrawals between two times" is a sum over blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.detection.bursty import exchange_factor, known_factor, seen_share

DAY = 86_400
HOUR = 3_600
CHAIN_INTERVALS: dict[str, int] = {"ethereum": 12, "bsc": 3, "tron": 3, "polygon": 2}
"""Block interval of each simulated chain, seconds (block times are exact multiples)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def weekday(times: IntArray) -> IntArray:
    """UTC weekday, Monday = 0 (the Unix epoch was a Thursday)."""
    return ((times // DAY) + 3) % 7


@dataclass(frozen=True, slots=True)
class Blocks:
    """One chain's blocks over the run: chain time, height, and whether our feed delivered it."""

    times: IntArray
    numbers: IntArray
    published: BoolArray


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int

    def covers(self, times: IntArray) -> BoolArray:
        return (times >= self.start) & (times < self.end)


class Model:
    """Rates and block timelines of one scenario."""

    def __init__(self, truth: Mapping[str, Any], known_only: bool = False) -> None:
        """``known_only``: rates without the swings and episodes of bursty traffic (what the ideal detector
        knows in advance; their law is in :mod:`.swing_law`)."""
        self.truth = truth
        self.known_only = known_only
        self.start = int(truth["start"])
        self.end = int(truth["end"])
        seasonality = truth["seasonality"]
        self.amplitude = float(seasonality["daily_amplitude"])
        self.weekend_factor = float(seasonality["weekend_factor"])
        self.exchanges: Mapping[str, Any] = truth["exchanges"]
        self.chains: Mapping[str, Any] = truth["chains"]
        self.bursty: Mapping[str, Any] | None = truth.get("bursty")

    def chain_params(self, exchange: str, chain: str) -> Mapping[str, Any]:
        params: Mapping[str, Any] = self.exchanges[exchange]["chains"][chain]
        return params

    def batch_mean(self, exchange: str, chain: str) -> float:
        return float(self.chain_params(exchange, chain).get("batch_mean", 1.0))

    def shape(self, exchange: str, times: IntArray) -> FloatArray:
        """Seasonality times drift of one exchange (mean about 1 on weekdays)."""
        ex = self.exchanges[exchange]
        peak_s = float(ex["peak_hour"]) * HOUR
        t = times.astype(np.float64)
        daily = 1.0 + self.amplitude * np.cos(2.0 * np.pi * (np.mod(t, DAY) - peak_s) / DAY)
        weekly = np.where(weekday(times) >= 5, self.weekend_factor, 1.0)
        drift = ex["drift"]
        knots = float(drift["t0"]) + float(drift["step_s"]) * np.arange(len(drift["log"]), dtype=np.float64)
        level = np.exp(np.interp(t, knots, np.asarray(drift["log"], dtype=np.float64)))
        result: FloatArray = daily * weekly * level
        if self.bursty is not None:
            factor = known_factor if self.known_only else exchange_factor
            result *= factor(self.bursty, exchange, times)
        return result

    def rate(self, exchange: str, chain: str, times: IntArray) -> FloatArray:
        """Normal withdrawal intensity (per second) at each time; incidents are not applied."""
        per_hour = float(self.chain_params(exchange, chain)["rate_per_hour"])
        result: FloatArray = per_hour / HOUR * self.shape(exchange, times)
        if self.bursty is not None:
            result *= seen_share(self.bursty, exchange, chain, times)
        return result

    def batch_rate(self, exchange: str, chain: str, times: IntArray) -> FloatArray:
        """Intensity of independent payout decisions: batches for batched exchanges, withdrawals otherwise."""
        result: FloatArray = self.rate(exchange, chain, times) / self.batch_mean(exchange, chain)
        return result

    def interval(self, chain: str) -> int:
        return int(self.chains[chain]["interval_s"])

    def chain_windows(self, chain: str, kind: str) -> list[Window]:
        return [Window(int(e["start"]), int(e["end"])) for e in self.truth.get("chain_events", [])
                if e["chain"] == chain and e["kind"] == kind]

    def blocks(self, chain: str) -> Blocks:
        """The chain's blocks in (start, end]: none during a stall, unpublished during a lost feed."""
        interval = self.interval(chain)
        first = self.start // interval + 1
        times: IntArray = np.arange(first, self.end // interval + 1, dtype=np.int64) * interval
        for stall in self.chain_windows(chain, "stall"):
            times = times[~stall.covers(times)]
        published = np.ones(len(times), dtype=np.bool_)
        for lost in self.chain_windows(chain, "lost_feed"):
            published &= ~lost.covers(times)
        numbers: IntArray = int(self.chains[chain]["first_number"]) + np.arange(len(times), dtype=np.int64)
        return Blocks(times, numbers, published)

    def exchange_chains(self, exchange: str) -> list[str]:
        return sorted(self.exchanges[exchange]["chains"])

    def role(self, exchange: str) -> str:
        return str(self.exchanges[exchange].get("role", ""))
