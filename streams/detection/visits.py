"""Which exchanges a chain head visits, and when each is next due: the detector's per-head work, kept flat in
the number of exchanges on a chain (see :mod:`.chain_clock` for why and how).

A part of :class:`~streams.detection.detector.OutageDetector` (mixed in). A head advances its lane's clock,
marks where the gaps of its block's payouts start, and visits only the exchanges an incident touches, those
whose due position it passed and those joining the clock; at an hour boundary every exchange on the clock
catches up and is scheduled again at the new hour's rate. A visit catches the exchange up with the clock,
decides as every head used to, and schedules its next visit. A payout is scheduled when it is seen: its
exchange catches up with the clock then, and starts the payout's gap at the mark when it next does.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

from schemas.records import ChainHead, OutageEvent, OutageState
from streams.detection.baseline import UNSURE_EXCESS
from streams.detection.chain_clock import ChainClock, collapse_room, credit_cap, follows, gap_room, hour_of
from streams.detection.exposure import ExposureAccounting
from streams.detection.state import ChainTrack, ExchangeTrack, Part

WIDE_SLACK = 1.25
"""The exchange-wide room is shared out as if each chain's base rate, and the widest swings, were this much
higher: a payout that moves them a little then leaves the shares standing."""
GAPS_SLACK = 2.0
"""...and as if the exchange-wide test saw this many times fewer gaps in its budget period (a lower threshold)."""


class HeadVisits(ExposureAccounting):
    """Chain clocks, visits and due positions (mixed into :class:`OutageDetector`)."""

    _exchanges: dict[str, ExchangeTrack]
    clocks: dict[tuple[str, object], ChainClock]
    _joining: dict[str, dict[str, ChainTrack]]
    moved: set[Part]

    def _decide_chain(self, ex: ExchangeTrack, c: ChainTrack, head: ChainHead) -> list[OutageEvent]:
        """The detector's decision for one (exchange, chain) at a head (declared here for the visits)."""
        raise NotImplementedError

    def _decide_exchange(self, ex: ExchangeTrack, head: ChainHead) -> list[OutageEvent]:
        """The detector's exchange-wide decision at a head (declared here for the visits)."""
        raise NotImplementedError

    # -- heads -------------------------------------------------------------------------------------
    def _visit_head(self, head: ChainHead, exchanges: Collection[str] | None, lane: object
                    ) -> tuple[list[OutageEvent], list[str]]:
        """Advance the lane's clock to ``head`` and visit who is due: (outage events, exchanges credited)."""
        key = (head.chain, lane)
        clock = self.clocks.get(key)
        if clock is None:
            clock = self.clocks[key] = ChainClock(head.chain)
        before = clock.number
        seconds = clock.advance(head, float(self.policy.max_block_credit_s), self.policy.stall_intervals)
        if seconds is None:
            # a redelivered head or a reorg's replacement: no chain time, but payouts of a replacement block
            # still start their gap here
            clock.mark_up_to(head.number)
            for name in self._in_order(clock.hot):
                ex, c = self._exchanges[name], clock.tracks[name]
                self._sync(ex, c)
                self._gap_starts(ex, c, head.number)
            return [], []
        if seconds > 0.0 and hour_of(head.block_time) != clock.hour:
            self._roll(clock, head.block_time)
        clock.before = clock.position
        clock.position += seconds
        clock.mark_up_to(head.number)
        visit = set(clock.hot)
        visit.update(name for name in clock.pop_due() if self._due_now(clock, name))
        attached = set(visit)
        joined_credited = self._join(clock, head, exchanges, before, seconds, visit)
        out: list[OutageEvent] = []
        credited: list[str] = []
        for name in self._in_order(visit):
            ex, c = self._exchanges[name], clock.tracks[name]
            self._sync(ex, c)
            c.pending_keys.clear()
            if self._disturbed(ex, c):
                c.tainted = True
            self._gap_starts(ex, c, head.number)
            if name in joined_credited or (seconds > 0.0 and name in attached):
                credited.append(name)
                out += self._decide_chain(ex, c, head)
                out += self._decide_exchange(ex, head)
            self._schedule(ex, c)
        return out, credited

    def _due_now(self, clock: ChainClock, name: str) -> bool:
        """Whether an exchange whose due position the clock passed has reached one of its targets; if not (its
        exchange-wide share, counted from a payout since, has room left), it is only scheduled again."""
        ex, c = self._exchanges[name], clock.tracks[name]
        if c.chain in ex.wide_members:
            self._start_marked_gaps(ex)
            c.wide_target = self._wide_target(ex, c)
        u = c.u_now()
        owed = c.owed_total + c.owed_now * (clock.position - c.sync_position)
        if u >= c.target_u or u >= c.wide_target or owed >= c.target_owed:
            return True
        clock.schedule(c, name, self._room_s(c))
        return False

    def _start_marked_gaps(self, ex: ExchangeTrack) -> None:
        """Catch up the exchange's tracks whose latest payouts' head has come, so that their gaps, and the
        exchange's silence if its last payout was theirs, start where that head put them (read by the
        exchange-wide test)."""
        for c in ex.chains.values():
            clock = c.clock
            if c.gap_block is not None and clock is not None and c.gap_block in clock.marks:
                self._sync(ex, c)

    def _in_order(self, names: Iterable[str]) -> list[str]:
        """``names`` in the order the detector met them (the order of a head's decisions)."""
        return sorted(names, key=lambda name: self._exchanges[name].order)

    def _join(self, clock: ChainClock, head: ChainHead, exchanges: Collection[str] | None, before: int,
              credit: float, visit: set[str]) -> set[str]:
        """Attach the tracks of this chain that are new or restored (and belong to this lane, and are not ahead
        of this head) to the clock at this head; they are visited. Returns those this head credits: a track
        that left off where the clock did shares its credit, and one whose own saved head this head follows
        gets its interval on its own, as it would have had the worker not stopped; a new track starts here."""
        pool = self._joining.get(head.chain)
        if not pool:
            return set()
        credited: set[str] = set()
        ready = [n for n, c in pool.items() if (exchanges is None or n in exchanges) and c.head_number <= head.number]
        for name in ready:
            # (a track restored ahead of this lane's heads, which a restarted worker reads again, waits for
            # them to reach its own: a head it has credited is no news to it)
            c = pool.pop(name)
            ex = self._exchanges[name]
            if clock.interval_s is None:
                clock.interval_s = c.interval_s
            c.clock = clock
            clock.tracks[name] = c
            visit.add(name)
            c.sync_position = clock.position
            if before >= 0 and c.head_number == before:
                c.sync_position = clock.before
                self._rates(ex, c, head.block_time)  # what it catches up at, from its own state
                if credit > 0.0:
                    credited.add(name)
                continue
            if follows(c.head_number, c.head_hash, head) and c.head_time is not None and head.block_time > c.head_time:
                cap = credit_cap(float(self.policy.max_block_credit_s), self.policy.stall_intervals, c.interval_s)
                self._accrue(ex, c, min(float(head.block_time - c.head_time), cap), head.block_time, one_head=True)
                credited.add(name)
        return credited

    def _roll(self, clock: ChainClock, t: int) -> None:
        """An hour boundary: every track catches up at the old hour's rate, then is due again at the new one's."""
        for name, c in clock.tracks.items():
            self._sync(self._exchanges[name], c, clock.hour_time)
        clock.marks.clear()  # every track has started the gaps it waited for
        clock.hour, clock.hour_time = hour_of(t), t
        clock.clear_due()
        for name, c in clock.tracks.items():
            if name not in clock.hot:
                self._rates(self._exchanges[name], c, t)
                clock.schedule(c, name, self._room_s(c))

    def _sync(self, ex: ExchangeTrack, c: ChainTrack, at: int | None = None) -> None:
        """Credit ``c`` the chain time its clock counted since it last caught up (``at``: a time in the hour
        it fell in, when that is not the clock's current hour), starting the gap of its latest payouts at
        their head on the way."""
        clock = c.clock
        if clock is None:
            return
        moved = c.head_number != clock.number
        if c.gap_block is not None:
            mark = clock.marks.get(c.gap_block)
            if mark is not None:
                self._credit_up_to(ex, c, mark[0], at)
                self._gap_starts(ex, c, mark[1])
                c.pending_keys.clear()
                c.gap_block = min((w.block for w in c.recent if w.u_at is None), default=None)
        if clock.position > c.sync_position:
            self._credit_up_to(ex, c, clock.position, at)
            moved = True
        if moved:
            if c.head_number != clock.number:
                c.pending_keys.clear()  # a later head credited their block: the block hash tells a redelivery
            c.head_number, c.head_time, c.head_hash, c.interval_s = (clock.number, clock.time, clock.hash,
                                                                     clock.interval_s)
            self.moved.add((ex.exchange, c.chain))

    def _credit_up_to(self, ex: ExchangeTrack, c: ChainTrack, position: float, at: int | None) -> None:
        clock = c.clock
        assert clock is not None
        span = position - c.sync_position
        if span > 0.0:
            # one head of a track visited at every head: credited as that head alone would be (its rates
            # may have moved since it was scheduled); anything else catches up at its scheduled rates
            one_head = (c.sync_position == clock.before and position == clock.position
                        and ex.exchange in clock.hot)
            if at is None:
                at = clock.time if one_head and clock.time is not None else clock.hour_time
            self._accrue(ex, c, span, at, one_head)
            c.sync_position = position

    def settle(self, exchanges: Iterable[str] | None = None) -> None:
        """Catch every track of these exchanges (None: all) up with its clock, before its state is read or
        saved; what moved is added to :attr:`moved`."""
        names = self._exchanges if exchanges is None else exchanges
        for name in names:
            ex = self._exchanges.get(name)
            if ex is not None:
                for c in ex.chains.values():
                    self._sync(ex, c)

    def take_moved(self, exchanges: Collection[str]) -> set[Part]:
        """The parts of these exchanges that caught up since they were last taken (to be saved)."""
        taken = {part for part in self.moved if part[0] in exchanges}
        self.moved -= taken
        return taken | {(name, None) for name, _ in taken}

    def _detach(self, ex: ExchangeTrack) -> None:
        for c in ex.chains.values():
            clock = c.clock
            if clock is not None and clock.tracks.get(ex.exchange) is c:
                del clock.tracks[ex.exchange]
                clock.hot.discard(ex.exchange)
            pool = self._joining.get(c.chain)
            if pool is not None and pool.get(ex.exchange) is c:
                del pool[ex.exchange]

    def _paid(self, ex: ExchangeTrack, chain: str, retracted: bool) -> None:
        """After a payout (or its retraction) on ``chain``: its gap starts at its block's head, which the clock
        marks when it comes; the tests are scheduled afresh from here."""
        c = ex.chains[chain]
        clock = c.clock
        if clock is None:
            return  # it joins at its next head, which starts its gap
        waiting = {w.block for w in c.recent if w.u_at is None}
        for block in waiting:
            clock.wait(block)
        c.gap_block = min(waiting) if waiting else None
        if not retracted and c.gap_block is not None and c.gap_block == c.scheduled_block and c.warm:
            return  # scheduled at its first payout of this block: later ones only leave more room
        c.scheduled_block = c.gap_block if c.gap_block is not None else -1
        self._schedule(ex, c)

    def _join_later(self, ex: ExchangeTrack, c: ChainTrack) -> None:
        self._joining.setdefault(c.chain, {})[ex.exchange] = c

    # -- due positions -----------------------------------------------------------------------------
    def _hot(self, ex: ExchangeTrack, c: ChainTrack) -> bool:
        """Decided at every head: an incident touches it."""
        return c.incident is not None or ex.incident is not None

    def _refresh(self, ex: ExchangeTrack) -> None:
        """After its incidents changed: who is visited at every head, and when the others are due."""
        for c in ex.chains.values():
            if c.clock is not None:
                self._schedule(ex, c)

    def _schedule(self, ex: ExchangeTrack, c: ChainTrack) -> None:
        clock = c.clock
        if clock is None:
            return
        name = ex.exchange
        if self._hot(ex, c):
            clock.hot.add(name)
            clock.schedule(c, name, math.inf)
            return
        clock.hot.discard(name)
        self._rates(ex, c, clock.hour_time)
        c.target_u = c.target_owed = math.inf
        if self._warm(c) and c.last is not None:
            gaps = c.rate.overall() * self.policy.budget_s
            open_at = self._threshold(gaps, self._tests(ex))
            suspect_at = open_at - math.log(self.policy.suspect_factor)
            u_now = c.u_now()
            c.target_u = u_now + gap_room(c.tail, c.gap_u(), suspect_at - UNSURE_EXCESS)
            if c.drop_payouts >= 2:
                log_var = c.tail.log_var if c.tail.swing_var > 0.0 else 0.0
                room = collapse_room(c.drop, c.drop_n, log_var, self.policy.degraded_ratio, open_at)
                c.target_owed = c.owed_total + room
        self._check_wide(ex, c)
        clock.schedule(c, name, self._room_s(c))

    def _room_s(self, c: ChainTrack) -> float:
        """Chain seconds until its next due position at the current hour's rates."""
        clock = c.clock
        assert clock is not None
        behind = clock.position - c.sync_position
        room = math.inf
        if c.rate_now > 0.0:
            room = (min(c.target_u, c.wide_target) - c.u_now()) / c.rate_now
        if c.owed_now > 0.0:
            room = min(room, (c.target_owed - c.owed_total) / c.owed_now - behind)
        return max(0.0, room)

    def _check_wide(self, ex: ExchangeTrack, c: ChainTrack) -> None:
        """Keep the exchange-wide test's shares valid after ``c`` was visited or paid, sharing the room out
        again when this chain's share is spent or no longer holds."""
        if len(ex.chains) < 2 or ex.last_time is None or ex.incident is not None:
            c.wide_target = math.inf
            ex.wide_members = frozenset()  # no shares stand: the next chain that counts shares the room out
            return
        member = c.chain in ex.wide_members
        if self._counts_wide(c) and (
            not member or c.tail.base_beta() > c.wide_beta or c.tail.swing_var > ex.wide_var
            or c.tail.beta * c.rate.overall() < c.wide_gaps
        ):
            self._share_wide(ex)
            return
        if member and c.u_now() >= c.wide_target:
            c.wide_target = self._wide_target(ex, c)  # measured from the exchange's latest payout
            if c.u_now() >= c.wide_target:
                self._share_wide(ex)

    @staticmethod
    def _wide_target(ex: ExchangeTrack, c: ChainTrack) -> float:
        """``u_total`` at which ``c`` has spent its share of the exchange-wide room, counted from the exchange's
        last payout (from now if that was on this chain and its head has not come)."""
        snap = ex.snapshot.get(c.chain)
        start = c.u_now() if snap is None else snap
        return start + (c.wide_room / c.wide_beta if c.wide_beta > 0.0 else math.inf)

    @staticmethod
    def _counts_wide(c: ChainTrack) -> bool:
        """Whether ``c`` is, or at its next head will be, evidence about the exchange as a whole
        (:meth:`_silences`: warm, and no incident of its own past a suspicion)."""
        return c.warm and (c.incident is None or c.incident.state is OutageState.SUSPECTED)

    def _share_wide(self, ex: ExchangeTrack) -> None:
        """Share the room left before the exchange-wide test's cheap bound (:meth:`_rest_bound`) can reach its
        threshold among the chains that count: the test can only be due once some chain has spent its share.

        The test starts nothing below its own suspicion threshold, nor while the evidence without its largest
        chain is under ``exchange_wide_rest_nats``; its evidence is at most ``(1 + v) * sum(b * u)`` over the
        silent chains, ``u`` counted from the exchange's last payout. Each chain's spending is counted at
        ``WIDE_SLACK`` times its base rate ``b``, ``v`` is the widest swings times the same slack, and the
        threshold is taken at ``GAPS_SLACK`` times fewer gaps than the chains now show, so that moves of any
        of these leave the shares standing (a chain that moves past them shares the room out again). A payout
        anywhere restarts every chain's ``u`` and so only leaves the shares more room. A chain that just paid
        (its silence starts at its next head) gets a share too."""
        self._start_marked_gaps(ex)
        members = [c for c in ex.chains.values() if self._counts_wide(c)]
        widest = max((c.tail.swing_var for c in members), default=0.0) * WIDE_SLACK
        for c in members:
            c.wide_gaps = c.tail.beta * c.rate.overall() / GAPS_SLACK
        # the thresholds only rise with more warm chains (tests) and more gaps
        gaps = sum(c.wide_gaps for c in members) * self.policy.budget_s
        suspect_at = self._threshold(gaps, self._tests(ex)) - math.log(self.policy.suspect_factor)
        gate = max(self.policy.exchange_wide_rest_nats, suspect_at) * (1 - 1e-9) / (1.0 + widest)
        spent: dict[str, float] = {}
        for c in members:
            c.wide_beta = c.tail.base_beta() * WIDE_SLACK
            snap = ex.snapshot.get(c.chain)
            spent[c.chain] = 0.0 if snap is None else c.wide_beta * (c.u_now() - snap)
        left = max(0.0, gate - sum(spent.values())) / max(1, len(members))
        ex.wide_members = frozenset(spent)
        ex.wide_var = widest
        for c in ex.chains.values():
            if c.chain not in spent:
                c.wide_target = math.inf
                continue
            c.wide_room = spent[c.chain] + left
            c.wide_target = self._wide_target(ex, c)
            clock = c.clock
            if clock is not None and ex.exchange not in clock.hot:
                room = self._room_s(c)
                if clock.position + room < c.due_position:  # (a later one leaves the earlier entry standing)
                    clock.schedule(c, ex.exchange, room)
