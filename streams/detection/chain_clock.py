"""Chain time on one chain, kept once for all the exchanges on it, and how far each exchange's tests are from
a decision.

Why: evidence is chain time weighed by each (exchange, chain)'s seasonal rate, and a head used to credit
its interval to, and decide, every exchange on its chain: the cost of a head grew with the number of
exchanges. A :class:`ChainClock` advances once per head (credited seconds, capped at stalls, none across
lost heights) and an (exchange, chain) catches up with it only when it is *visited*:

- at its next head after a payout (its gap starts there), every head while an incident touches it, and
  at the first head past its *due position*: the credited chain time at which one of its tests could next
  reach a decision if no payout comes (:func:`gap_room`, :func:`collapse_room`, and the exchange-wide
  share the detector hands out);
- at every hour boundary of its chain, where the seasonal rate it is weighed by changes (the catch-up then
  costs one step per exchange and hour, not per exchange and head).

Between visits an exchange's rate on that chain is constant (it changes only at its own payouts and at hour
boundaries), so the chain time it missed is one interval at one rate: the catch-up is one credit. The due
positions are lower bounds (the evidence can only have grown more slowly than assumed), so a visit that
finds no decision due simply schedules the next one.

A clock serves one *lane*: the exchanges whose heads arrive together (a worker's partition, where a
chain's heads reach each partition separately; the backtest has one lane).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.records import ChainHead
from streams.detection.baseline import HOUR
from streams.detection.dispersion import collapse_llr

if TYPE_CHECKING:
    from streams.detection.baseline import GapTail
    from streams.detection.state import ChainTrack

ROOM_MARGIN = 0.999
"""Rooms are shrunk by this factor, so that rounding never puts a due position past the head that decides."""


@dataclass(slots=True, eq=False)
class ChainClock:
    """Credited chain time on one chain for one lane, and the exchanges that follow it."""

    chain: str
    number: int = -1
    time: int | None = None
    hash: str = ""
    interval_s: float | None = None
    """Typical block interval (moving average of the intervals that were not stalls)."""
    position: float = 0.0
    """Chain seconds credited since the clock started: what every due position is measured in."""
    before: float = 0.0
    """The position before the last head's credit."""
    hour: int = -1
    """The hour (block time // 3600) the last credited interval fell in."""
    hour_time: int = 0
    """A block time in that hour (the rate and the learned exposure are per hour)."""
    tracks: dict[str, ChainTrack] = field(default_factory=dict)
    """Exchange → its track on this chain, synced with this clock."""
    marks: dict[int, tuple[float, int]] = field(default_factory=dict)
    """Block → (position, head number) of the head that started the gaps of its payouts: a track that paid in
    it sets its payouts' gap start there when it next catches up (kept until the hour's end, when all have)."""
    _waiting: list[int] = field(default_factory=list)
    """Blocks with payouts whose head has not come yet (a heap)."""
    hot: set[str] = field(default_factory=set)
    """Exchanges an incident touches: visited at every head."""
    _due: list[tuple[float, int, str]] = field(default_factory=list)
    _seq: int = 0

    def advance(self, head: ChainHead, max_credit_s: float, stall_intervals: float) -> float | None:
        """Move to ``head``. None when it is not past the clock (a redelivery or a reorg's replacement); else
        the seconds it credits: 0 when it does not follow the last head (lost heights) or time stood still.

        Solana skips slots, so a head whose parent is the last head follows it too."""
        if head.number <= self.number:
            return None
        after = follows(self.number, self.hash, head)
        prev_time = self.time
        self.number, self.time, self.hash = head.number, head.block_time, head.hash
        if self.hour < 0:
            self.hour, self.hour_time = hour_of(head.block_time), head.block_time
        if not after or prev_time is None or head.block_time <= prev_time:
            return 0.0
        interval = head.block_time - prev_time
        cap = credit_cap(max_credit_s, stall_intervals, self.interval_s)
        if interval <= cap:
            self.interval_s = interval if self.interval_s is None else 0.95 * self.interval_s + 0.05 * interval
        return min(float(interval), cap)

    def wait(self, block: int) -> None:
        """A payout in ``block``: its gap starts at the first head at or past it (:attr:`marks`)."""
        if block not in self._waiting and (block not in self.marks or block <= self.number):
            heapq.heappush(self._waiting, block)  # (past the clock: a reorg's replacement, marked at its head)

    def mark_up_to(self, number: int) -> None:
        """At the head of block ``number``: the payouts of blocks up to it start their gaps at the clock's
        position (a reorg's replacement head, which is not past the clock, included)."""
        waiting = self._waiting
        while waiting and waiting[0] <= number:
            self.marks[heapq.heappop(waiting)] = (self.position, number)

    def schedule(self, track: ChainTrack, name: str, room_s: float) -> None:
        """Visit ``track`` once ``room_s`` more chain seconds are credited (inf: only at the hour's end)."""
        self._seq += 1
        track.due_seq = self._seq
        track.due_position = self.position + room_s
        if math.isinf(room_s):
            return
        heapq.heappush(self._due, (track.due_position, self._seq, name))
        if len(self._due) > 4 * len(self.tracks) + 64:  # stale entries of tracks rescheduled since
            self._due = [e for e in self._due if self._live(e)]
            heapq.heapify(self._due)

    def pop_due(self) -> list[str]:
        """The exchanges whose due position the clock has reached."""
        found = []
        due = self._due
        while due and due[0][0] <= self.position:
            entry = heapq.heappop(due)
            if self._live(entry):
                found.append(entry[2])
        return found

    def clear_due(self) -> None:
        self._due.clear()

    def _live(self, entry: tuple[float, int, str]) -> bool:
        track = self.tracks.get(entry[2])
        return track is not None and track.due_seq == entry[1]


def follows(number: int, block_hash: str, head: ChainHead) -> bool:
    """Whether ``head`` comes right after the head of block ``number`` (hash ``block_hash``): the next height,
    or (Solana skips slots) a block whose parent it is."""
    return number >= 0 and (head.number == number + 1 or (bool(block_hash) and head.parent_hash == block_hash))


def credit_cap(max_credit_s: float, stall_intervals: float, interval_s: float | None) -> float:
    """The most one block interval credits: ``max_credit_s``, and at most ``stall_intervals`` typical ones."""
    return max_credit_s if interval_s is None else min(max_credit_s, stall_intervals * interval_s)


def hour_of(t: int) -> int:
    return t // HOUR


def gap_room(tail: GapTail, u: float, level: float) -> float:
    """Expected withdrawals the gap can still grow from ``u`` before its evidence under a sure rate can reach
    ``level`` (a lower bound; 0 when it already has).

    Up to one expected withdrawal the evidence is ``-ln(1 - (1 - p1) u)``, inverted exactly. Beyond, it grows
    at most at the tail's rate times the size-biased mean of the swings (``beta`` when steady; ``b (1 + v)``
    with swings of variance ``v`` around the base rate ``b``: the slope of the swinging tail at a gap's start,
    and it only flattens after)."""
    if level <= 0.0:
        return 0.0
    now = tail.survival_log(u)
    if now >= level:
        return 0.0
    v = tail.swing_var
    slope = tail.beta if v <= 0.0 else tail.base_beta() * (1.0 + v)
    if v > 0.0 and u >= 2.0:
        # beyond one expected withdrawal the swinging tail is concave: its slope from here on is at most
        # that of its chord over [u/2, u] (much less than at the start, deep into a silence)
        slope = min(slope, (now - tail.survival_log(0.5 * u)) / (0.5 * u))
        if slope <= 0.0:
            return math.inf
    p1 = tail.p1
    if u < 1.0:
        at_one = -math.log(p1)
        if level <= at_one:
            return ROOM_MARGIN * ((1.0 - math.exp(-level)) / (1.0 - p1) - u)
        return ROOM_MARGIN * ((1.0 - u) + (level - at_one) / slope)
    return ROOM_MARGIN * (level - now) / slope


def collapse_room(drop: float, drop_n: float, log_var: float, rho: float, level: float) -> float:
    """Payouts owed (gap-tail units) before the rate-collapse test can reach ``level`` from ``drop`` with
    ``drop_n`` payouts made since it left zero (a lower bound; 0 when it already has).

    Steady, the test grows by ``1 - rho`` per payout owed. Swinging, it is concave in the payouts owed and
    its slope is at most ``E[X^(n+1)] / E[X^n] - rho = exp(n * log_var) - rho`` (the slope where nothing is
    owed yet)."""
    if drop >= level:
        return 0.0
    slope = (1.0 - rho) if log_var <= 0.0 else math.exp(drop_n * log_var) - rho
    return math.inf if slope <= 0.0 else ROOM_MARGIN * (level - drop) / slope


def collapse_restart(m0: float, m1: float, n: float, log_var: float, rho: float) -> tuple[float, float, float]:
    """The swinging rate-collapse test after a catch-up that took the payouts owed since it last left zero from
    ``m0`` to ``m1`` with ``n`` payouts made: (payouts owed, payouts made, its value), all zero when it ends
    at zero.

    Head by head it restarts (at zero, with no payouts counted) at the first head where it is no longer
    positive; with the payouts made fixed it is concave in the payouts owed, so that is past its one root
    in the span, found by bisection. What was owed after the root counts afresh and may restart it again.
    A catch-up through a restart is rare: the chain must have been silent far past what its payouts made
    plausible while its gap test was not yet due."""
    start, owed, count = m0, m1, n
    while True:
        value = collapse_llr(owed, count, log_var, rho)
        if value > 0.0:
            return owed, count, value
        a, b = start, owed  # positive just past ``start``: the test was running there (or had just restarted)
        for _ in range(60):
            mid = 0.5 * (a + b)
            if collapse_llr(mid, count, log_var, rho) > 0.0:
                a = mid
            else:
                b = mid
        owed -= b
        if owed <= 0.0:
            return 0.0, 0.0, 0.0
        start, count = 0.0, 0.0
