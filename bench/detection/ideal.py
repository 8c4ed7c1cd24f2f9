"""The ideal gap detector: what a detector that *knows* the true process could achieve, for comparison.

It knows the true intensity of independent payout decisions (``Model.batch_rate``: withdrawals for
exchanges that pay one by one, batches for those that batch, since a batch's withdrawals are not
independent) including seasonality and drift, so it needs no learning and no warm-up. Under normal
traffic the integrated intensity over a gap is an Exp(1) variable, so a gap test at ``h`` nats raises a
false alarm on a share ``exp(-h)`` of the gaps. Choosing ``h = ln(expected gaps over the run / budget
count)`` spends exactly the detector's false-alarm budget; like the detector, it splits the budget evenly
over its tests (one per chain, plus one exchange-wide when the exchange uses two or more chains).

On bursty traffic it knows the process, not its path: the rates without the swings and episodes
(``Model(known_only=True)``), and the law of the swings, from which :mod:`.swing_law` turns each threshold
in nats into the silence (in known-rate payouts) that is that improbable. It is then as fast as any
detector can be that keeps its promise on this traffic, and no faster: one that knew the realised swings
would see every dip coming.

Exposure is counted per published block (interval times the rate at the block), as the events were
drawn and as a head-driven detector sees time: a chain stall adds no blocks, a lost feed no heads.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.detection.bursty import noise_law
from bench.detection.model import DAY, Blocks, FloatArray, IntArray, Model
from bench.detection.swing_law import threshold_units
from streams.detection.backtest import open_lines

GRACE_S = 600
"""A detection counts until this long after an incident ends (the scorer uses the same)."""


@dataclass(frozen=True, slots=True)
class Budget:
    """The false-alarm budget shared with the detector under test (``DetectionPolicy`` terms)."""

    false_alarms: float = 1.0
    days: float = 90.0


@dataclass(frozen=True, slots=True)
class IdealDelay:
    """When the ideal detector would have raised one incident member, and by which test."""

    incident_id: str
    kind: str
    exchange: str
    chains: tuple[str, ...]
    start: int
    alarm_at: int | None
    scope: str | None
    """The chain whose gap test fired, or ``*`` for the exchange-wide test."""
    threshold_nats: float

    @property
    def delay_s(self) -> int | None:
        return None if self.alarm_at is None else max(0, self.alarm_at - self.start)


class IdealDetector:
    """Gap tests on the true intensity of one scenario."""

    def __init__(self, truth: Mapping[str, Any], budget: Budget | None = None) -> None:
        self.model = Model(truth, known_only=True)
        self.budget = budget or Budget()
        self._blocks: dict[str, Blocks] = {}
        self._gaps: dict[tuple[str, str], float] = {}

    def blocks(self, chain: str) -> Blocks:
        found = self._blocks.get(chain)
        if found is None:
            full = self.model.blocks(chain)
            keep = full.published
            found = self._blocks[chain] = Blocks(full.times[keep], full.numbers[keep], full.published[keep])
        return found

    def tests(self, exchange: str) -> int:
        k = len(self.model.exchange_chains(exchange))
        return k + (1 if k >= 2 else 0)

    def expected_gaps(self, exchange: str, chain: str) -> float:
        """Expected independent payouts (hence gaps) of (exchange, chain) over the whole run."""
        key = (exchange, chain)
        if key not in self._gaps:
            times = self.blocks(chain).times
            self._gaps[key] = float(self.model.batch_rate(exchange, chain, times).sum()) * self.model.interval(chain)
        return self._gaps[key]

    def threshold(self, exchange: str, chains: Iterable[str]) -> float:
        """``h`` in nats: ln(expected gaps over the run / this test's share of the false-alarm budget)."""
        gaps = sum(self.expected_gaps(exchange, c) for c in chains)
        run_days = (self.model.end - self.model.start) / DAY
        allowed = self.budget.false_alarms * run_days / self.budget.days / self.tests(exchange)
        return math.log(max(gaps / allowed, 1.0))

    def units(self, exchange: str, chains: Iterable[str], h: float, start: int, until: int) -> float:
        """The silence, in known-rate payouts, at which a test of threshold ``h`` nats fires: ``h`` itself for
        Poisson traffic, more for bursty (:func:`.swing_law.threshold_units`, at the test's mean known rate
        over the incident window)."""
        bursty = self.model.bursty
        if bursty is None:
            return h
        sd, tau = noise_law(bursty, exchange)
        if sd <= 0:
            return h
        grid = np.arange(start, until + 1, 60, dtype=np.int64)
        rate = sum(float(self.model.batch_rate(exchange, c, grid).mean()) for c in chains)
        return threshold_units(h, sd, tau, rate)

    def exposure(self, exchange: str, chains: Iterable[str], after: int, before: int) -> tuple[IntArray, FloatArray]:
        """Block times in (after, before) on the given chains and their cumulative expected payouts."""
        parts_t: list[IntArray] = []
        parts_u: list[FloatArray] = []
        for chain in chains:
            times = self.blocks(chain).times
            lo, hi = int(np.searchsorted(times, after, side="right")), int(np.searchsorted(times, before, side="left"))
            window = times[lo:hi]
            parts_t.append(window)
            parts_u.append(self.model.batch_rate(exchange, chain, window) * self.model.interval(chain))
        times = np.concatenate(parts_t) if parts_t else np.zeros(0, dtype=np.int64)
        increments = np.concatenate(parts_u) if parts_u else np.zeros(0, dtype=np.float64)
        order = np.argsort(times, kind="stable")
        cumulative: FloatArray = np.cumsum(increments[order])
        sorted_times: IntArray = times[order]
        return sorted_times, cumulative

    def first_alarm(self, exchange: str, chains: list[str], payouts: list[int], until: int,
                    h: float) -> int | None:
        """First block time at which a gap after one of ``payouts`` (sorted) reaches ``h``, up to ``until``."""
        for i, last in enumerate(payouts):
            nxt = payouts[i + 1] if i + 1 < len(payouts) else until + 1
            times, cumulative = self.exposure(exchange, chains, last, min(nxt, until + 1))
            hit = int(np.searchsorted(cumulative, h, side="left"))
            if hit < len(times):
                return int(times[hit])
        return None

    def alarm_for(self, exchange: str, halted: list[str], start: int, until: int,
                  payouts: Mapping[str, list[int]]) -> tuple[int | None, str | None, float]:
        """Earliest alarm of the chain tests on ``halted`` chains and, if all chains halt, the exchange-wide test.

        ``payouts`` holds each chain's withdrawal times: the last one before ``start`` first, then those up
        to ``until`` (a degraded exchange still pays, and each payout restarts the gap). Returns the alarm
        time, the test that fired (a chain, or ``*``) and its threshold.
        """
        candidates: list[tuple[list[str], str]] = [([c], c) for c in halted]
        all_chains = self.model.exchange_chains(exchange)
        if len(all_chains) >= 2 and set(halted) == set(all_chains):
            candidates.append((all_chains, "*"))
        best: tuple[int | None, str | None, float] = (None, None, self.threshold(exchange, halted[:1]))
        for chains, scope in candidates:
            merged = sorted(t for c in chains for t in payouts.get(c, []))
            before = [t for t in merged if t < start]
            times = ([before[-1]] if before else []) + [t for t in merged if t >= start]
            if not times:
                continue
            h = self.threshold(exchange, chains)
            at = self.first_alarm(exchange, chains, times, until, self.units(exchange, chains, h, start, until))
            if at is not None and (best[0] is None or at < best[0]):
                best = (at, scope, h)
        return best

    def delays(self, events_path: Path, grace_s: int = GRACE_S) -> list[IdealDelay]:
        """The ideal detection of every incident member, from the events' actual withdrawal times."""
        members = [(inc, m) for inc in self.model.truth.get("incidents", []) for m in inc["members"]]
        payouts = withdrawal_times(events_path, {m["exchange"] for _, m in members})
        result = []
        for inc, m in members:
            exchange, halted = str(m["exchange"]), [str(c) for c in m["chains"]]
            start, until = int(m["start"]), int(m["end"]) + grace_s
            own = {c: window(payouts.get((exchange, c)), start, until) for c in self.model.exchange_chains(exchange)}
            at, scope, h = self.alarm_for(exchange, halted, start, until, own)
            result.append(IdealDelay(str(inc["id"]), str(inc["kind"]), exchange, tuple(halted), start, at, scope, h))
        return result


def window(times: array[int] | None, start: int, until: int) -> list[int]:
    """The last time before ``start`` and every time in [start, until]."""
    if times is None:
        return []
    lo = bisect.bisect_left(times, start)
    hi = bisect.bisect_right(times, until)
    return ([times[lo - 1]] if lo > 0 else []) + list(times[lo:hi])


def withdrawal_times(events_path: Path, exchanges: set[str]) -> dict[tuple[str, str], array[int]]:
    """Block times of every withdrawal of the given exchanges, per (exchange, chain), by streaming the events."""
    found: dict[tuple[str, str], array[int]] = {}
    raw, lines = open_lines(events_path)
    with raw:
        for line in lines:
            if b'"withdrawal"' not in line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if (record.get("type") != "transfer" or record.get("direction") != "withdrawal"
                    or record.get("removed") or record.get("exchange") not in exchanges):
                continue
            key = (str(record["exchange"]), str(record["chain"]))
            found.setdefault(key, array("q")).append(int(record["block_time"]))
    return {key: array("q", sorted(times)) for key, times in found.items()}
