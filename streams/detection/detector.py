"""Decide, from transfers and chain heads in block-time order, when an exchange has stopped paying out.

Pure Python: the Faust worker, ``haltwatch backtest`` and the unit tests drive the same object.

Evidence is counted only on chain heads. A head of block N is written after all of block N's transfers,
so chain time covered by heads is time the exchange could have paid and we would have seen it. Each head
credits its block interval (capped, so a chain stall adds almost nothing; not at all when block numbers
skip, i.e. we lost data) times the seasonal rate: the *expected withdrawals* of that interval. Three tests
run on that currency:

- the gap test per (exchange, chain): a gap of ``u`` expected withdrawals has probability
  ``P(gap > u)`` under the learned gap tail (:class:`GapTail`, robust to batched payouts and, once the
  counts show them, to the rate's short-timescale swings: :mod:`.dispersion`);
- the exchange-wide gap test: silence on every active chain since the exchange's last payout anywhere,
  the evidence being the sum over chains (a full halt is seen much sooner on the summed rate);
- a CUSUM per (exchange, chain) for a rate that collapses without stopping (``degraded``), weighed against
  the same swings.

Every threshold derives from one budget (false alarms per exchange per N days): a test's threshold is the
evidence at which the expected number of false alarms over the budget period, across all the exchange's
tests, equals the budget. Every update is idempotent under redelivery: a replayed head adds nothing, a
replayed transfer of a block whose head was credited is recognised by its block number.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.codec import decode_as, encode
from schemas.records import (
    ChainHead,
    CorrelatedIncident,
    Direction,
    LabelSuggestion,
    OutageEvent,
    OutageState,
    TransferEvent,
)
from streams.detection.baseline import UNSURE_EXCESS, GapTail, SeasonalRate, cautious_share, uncertain
from streams.detection.budget import BudgetCheck, BudgetEstimate, estimate
from streams.detection.clock import Clock
from streams.detection.correlation import IncidentCorrelator
from streams.detection.dispersion import collapse_llr, mixed_nats
from streams.detection.policy import DetectionPolicy

Output = OutageEvent | CorrelatedIncident
DEGRADED_MIN_PAYOUTS = 2
"""Payouts that must have come during a rate collapse for it to be "degraded" rather than a silence."""
HASH_MEMORY = 512
"""Credited heights per chain whose hashes are remembered (deeper than any reorg the connectors undo)."""
EXCHANGE_WIDE = "*"
"""Scope key of an exchange-wide incident; its ``scope`` lists the exchange's active chains."""


@dataclass(slots=True)
class Withdrawal:
    event_id: str
    block: int
    time: int
    tx: str
    u_at: float | None
    """The chain's cumulative expected withdrawals when it happened; filled in by its block's head."""


@dataclass(slots=True)
class Incident:
    """One incident's lifecycle, from which its :class:`OutageEvent` versions are built."""

    last: OutageEvent
    resume_count: int = 0
    resume_time: int | None = None
    resume_u: float = 0.0
    """The chain's cumulative expected withdrawals at the first payout after the silence."""
    recover: float = 0.0
    """Evidence (nats) that a degraded rate is back to normal."""

    @property
    def state(self) -> OutageState:
        return self.last.state


@dataclass(slots=True)
class ChainTrack:
    """Everything known about one exchange on one chain."""

    chain: str
    rate: SeasonalRate
    tail: GapTail = field(default_factory=GapTail)
    head_number: int = -1
    head_time: int | None = None
    head_hash: str = ""
    interval_s: float | None = None
    """Typical block interval of the chain (moving average of normal intervals)."""
    u_total: float = 0.0
    recent: list[Withdrawal] = field(default_factory=list)
    withdrawals: int = 0
    exposure_s: float = 0.0
    pending: list[list[float]] = field(default_factory=list)
    """Exposure credited during the current gap as [block_time, seconds]; learned when the gap ends."""
    pending_events: int = 0
    pending_ids: set[str] = field(default_factory=set)
    tainted: bool = False
    """An incident touched the current gap: it must not be learned as normal."""
    drop: float = 0.0
    drop_payouts: int = 0
    """Payouts seen since ``drop`` last left zero: a collapse with payouts is degraded, without them a silence."""
    drop_m: float = 0.0
    drop_n: float = 0.0
    """Payouts owed and made since ``drop`` last left zero (gap-tail units), for a chain whose rate swings:
    its ``drop`` is then :func:`collapse_llr` of the two rather than a running Poisson sum."""
    incident: Incident | None = None
    check: BudgetCheck = field(default_factory=BudgetCheck)
    """How often its normal gaps' evidence passed the check level (the measured budget)."""
    warm: bool = False
    """Past warm-up (enough withdrawals and exposure); once warm, always warm."""
    quiet_from_u: float | None = None
    """``u_total`` when an exchange-wide incident covering this chain resolved before the chain paid again
    (None once it has). The chain's silence until then was that incident's; had it counted, a chain that
    resumes a few blocks after the others would open an incident of its own the moment the exchange-wide
    one resolved, and resolve it a few blocks later."""

    @property
    def last(self) -> Withdrawal | None:
        return self.recent[-1] if self.recent else None

    def reset_drop(self) -> None:
        self.drop, self.drop_payouts, self.drop_m, self.drop_n = 0.0, 0, 0.0, 0.0

    def gap_u(self) -> float:
        """Expected withdrawals since the last payout (or since an exchange-wide incident resolved)."""
        last = self.last
        if last is None or last.u_at is None:
            return 0.0
        start = last.u_at if self.quiet_from_u is None else max(last.u_at, self.quiet_from_u)
        return self.u_total - start


@dataclass(slots=True)
class ExchangeTrack:
    exchange: str
    chains: dict[str, ChainTrack] = field(default_factory=dict)
    snapshot: dict[str, float | None] = field(default_factory=dict)
    """Each chain's u_total at the exchange's last withdrawal on any chain (None: its head is pending)."""
    last_time: int | None = None
    last_tx: str | None = None
    last_chain: str | None = None
    incident: Incident | None = None
    suggestions: dict[str, LabelSuggestion] = field(default_factory=dict)
    """Latest likely hot-wallet rotation per chain."""
    last_seq: int = 0
    """Counts the changes of the last payout and the snapshot, which every saved part carries: a restore
    takes them from the part that carries the highest count (see :meth:`OutageDetector.export_chain`)."""

    def note_last(self) -> None:
        self.last_seq += 1


def outage_id(exchange: str, scope: str, anchor: str) -> str:
    """Stable incident id: the same gap after the same last withdrawal always gets the same id."""
    return hashlib.sha256(f"{exchange}|{scope}|{anchor}".encode()).hexdigest()[:24]


class OutageDetector:
    """Outage decisions for the exchanges whose events it is fed."""

    def __init__(self, policy: DetectionPolicy, clock: Clock, correlate: bool = True,
                 metadata: dict[str, dict[str, str]] | None = None) -> None:
        self.policy = policy
        self.clock = clock
        self.exchanges_: dict[str, ExchangeTrack] = {}
        self.block_hashes: dict[str, dict[int, str]] = {}
        """Per chain, the hash of each recently credited height: a transfer at a credited height is a
        redelivery if its block hash matches, and a reorg's replacement block if it does not."""
        self.correlator = IncidentCorrelator(policy.correlation_window_s, clock, metadata) if correlate else None
        self._ln_rho = math.log(1.0 / policy.degraded_ratio)

    # -- state -------------------------------------------------------------------------------------
    def exchange(self, name: str) -> ExchangeTrack:
        track = self.exchanges_.get(name)
        if track is None:
            track = self.exchanges_[name] = ExchangeTrack(name)
        return track

    def chain_track(self, exchange: ExchangeTrack, chain: str) -> ChainTrack:
        track = exchange.chains.get(chain)
        if track is None:
            rate = SeasonalRate(half_life_h=self.policy.seasonal_half_life_h,
                                prior_hours=self.policy.seasonal_prior_hours)
            track = exchange.chains[chain] = ChainTrack(chain, rate)
        return track

    def exchanges(self) -> set[str]:
        return set(self.exchanges_)

    def export(self, exchange: str) -> dict[str, Any]:
        """One exchange's whole state, JSON-ready: its exchange-wide part with every chain's part inside."""
        if exchange not in self.exchanges_:
            return {}
        ex = self.exchanges_[exchange]
        return {**_export_exchange(ex), "chains": {name: _export_chain(c) for name, c in ex.chains.items()}}

    def export_exchange(self, exchange: str) -> dict[str, Any]:
        """The exchange-wide part alone (last payout, snapshot, incident, suggestions, names of its chains).

        A worker saves the parts an event changed rather than the whole exchange: one chain's part is
        ~4 KB, the whole state of an exchange on 10 chains ~40 KB, and a withdrawal changes one chain.
        """
        return _export_exchange(self.exchanges_[exchange]) if exchange in self.exchanges_ else {}

    def export_chain(self, exchange: str, chain: str) -> dict[str, Any]:
        """One (exchange, chain) part; empty when the detector does not track that pair.

        The part also carries the exchange's last payout and snapshot as they are now (``"last"``), the
        only exchange-wide fields an ordinary withdrawal changes. So a withdrawal needs its chain's part
        saved and not the exchange-wide part as well: half the state writes of a busy worker.
        """
        ex = self.exchanges_.get(exchange)
        c = ex.chains.get(chain) if ex is not None else None
        if ex is None or c is None:
            return {}
        return {**_export_chain(c), "last": _export_last(ex)}

    def exchange_shape(self, exchange: str) -> tuple[int, bool]:
        """What, besides the last payout, a withdrawal can change in the exchange-wide part: the number of
        chains it is tracked on (a new chain must be listed there, or its part is never loaded) and whether
        an exchange-wide incident is open (a payout moves it on). Unchanged and with no incident, the part
        saved before is still right apart from the last payout, which the chain's part carries."""
        ex = self.exchanges_.get(exchange)
        return (0, False) if ex is None else (len(ex.chains), ex.incident is not None)

    def restore(self, exchange: str, data: dict[str, Any]) -> None:
        """Restore what :meth:`export` gave."""
        if data:
            self.restore_parts(exchange, data, data["chains"])

    def restore_parts(self, exchange: str, exchange_part: dict[str, Any], chains: dict[str, dict[str, Any]]) -> None:
        """Restore from :meth:`export_exchange` and the :meth:`export_chain` parts that were found.

        A chain whose part is missing starts afresh (it was saved never, or under another key format).
        """
        if exchange_part:
            self.exchanges_[exchange] = _restore(exchange, exchange_part, chains, self.policy)

    def budget(self, exchange: str) -> BudgetEstimate:
        """The false-alarm rate the thresholds are estimated to give on this exchange's own normal traffic,
        beside the budget (see :mod:`.budget`)."""
        ex = self.exchanges_.get(exchange)
        checks = [c.check for c in ex.chains.values() if c.warm] if ex is not None else []
        return estimate(exchange, checks, self.policy.false_alarms_per_exchange, self.policy.budget_days)

    def forget(self, exchange: str) -> None:
        self.exchanges_.pop(exchange, None)

    # -- events ------------------------------------------------------------------------------------
    def on_transfer(self, event: TransferEvent) -> list[Output]:
        if event.direction is not Direction.WITHDRAWAL:
            return []
        ex = self.exchange(event.exchange)
        c = self.chain_track(ex, event.chain)
        if event.removed:
            return self._correlate(self._retract(ex, c, event))
        if event.block_number <= c.head_number:
            credited = self.block_hashes.get(event.chain, {}).get(event.block_number)
            if credited is None or credited == event.block_hash:
                return []  # its block's head was already credited: a redelivery
        event_id = event.event_id
        if event_id in c.pending_ids:
            return []
        c.pending_ids.add(event_id)
        out: list[OutageEvent] = []
        t = event.block_time
        c.tail.swings.pay()  # before the gap ends: the payout that ends a gap belongs to the window it closes
        if not c.recent or c.recent[-1].block != event.block_number:
            self._end_gap(c)  # the first payout of a block ends the chain's gap
        c.withdrawals += 1
        c.pending_events += 1
        c.quiet_from_u = None
        c.recent.append(Withdrawal(event_id, event.block_number, t, event.tx_hash, None))
        del c.recent[: -self.policy.recent_withdrawals]
        if c.tail.gaps > 0 and c.drop > 0:
            c.drop_payouts += 1
            self._collapse_step(c, 0.0, c.tail.base_beta())
        was_disturbed = self._disturbed(ex, c)
        out += self._payout_seen(ex, c.incident, c, event, scope_chain=event.chain)
        out += self._payout_seen(ex, ex.incident, c, event, scope_chain=EXCHANGE_WIDE)
        if c.incident is not None and c.incident.state is OutageState.RESOLVED:
            c.incident = None
        if ex.incident is not None and ex.incident.state is OutageState.RESOLVED:
            for name in ex.incident.last.scope:  # the others' silence so far was this incident's
                track = ex.chains.get(name)
                if track is not None and track is not c and track.incident is None:  # (not one of its own)
                    track.quiet_from_u = track.u_total
            ex.incident = None
        if was_disturbed and not self._disturbed(ex, c):
            for track in ex.chains.values():
                track.reset_drop()  # an outage just ended: the rate test starts afresh
        if self._disturbed(ex, c):
            c.tainted = True  # the gap this payout starts belongs to the incident too
        if ex.last_time is None or t >= ex.last_time:
            ex.last_time, ex.last_tx, ex.last_chain = t, event.tx_hash, event.chain
            ex.snapshot = {name: (None if name == event.chain else track.u_total) for name, track in ex.chains.items()}
            ex.note_last()
        return self._correlate(out)

    def on_suggestion(self, suggestion: LabelSuggestion) -> list[Output]:
        """A likely hot-wallet rotation: lower the confidence of incidents it could explain."""
        ex = self.exchange(suggestion.exchange)
        ex.suggestions[suggestion.chain] = suggestion
        out: list[OutageEvent] = []
        c = ex.chains.get(suggestion.chain)
        for inc in (c.incident if c else None, ex.incident):
            if inc is None or suggestion.chain not in inc.last.scope or inc.state is OutageState.RESOLVED:
                continue
            inc.last = self._with_rotation(
                _replace(inc.last, version=inc.last.version + 1, emitted_at=self.clock.now()), ex
            )
            out.append(inc.last)
        return self._correlate(out)

    def _with_rotation(self, event: OutageEvent, ex: ExchangeTrack) -> OutageEvent:
        """Halve the confidence of an incident a recent rotation could explain, and say so."""
        window = self.policy.rotation_window_s
        found = [
            s for chain, s in ex.suggestions.items()
            if chain in event.scope and s.detected_at >= event.started_at - window
        ]
        if not found or "hot-wallet rotation" in event.reason:
            return event
        note = "; ".join(
            f"possible hot-wallet rotation on {s.chain}: {s.address} (funded by {s.funded_by}, paid "
            f"{s.distinct_recipients} distinct addresses)" for s in found
        )
        return _replace(event, confidence=event.confidence * self.policy.rotation_confidence_factor,
                        reason=f"{event.reason}; {note}")

    def on_head(self, head: ChainHead, exchanges: Iterable[str] | None = None) -> list[Output]:
        """Credit chain time up to ``head`` and decide, for the given exchanges (None: all known)."""
        out: list[OutageEvent] = []
        ring = self.block_hashes.setdefault(head.chain, {})
        ring[head.number] = head.hash
        if len(ring) > 2 * HASH_MEMORY:
            for number in [n for n in ring if n <= head.number - HASH_MEMORY]:
                del ring[number]
        names = self.exchanges_.keys() if exchanges is None else exchanges
        for name in names:
            ex = self.exchanges_.get(name)
            if ex is None:
                continue
            c = ex.chains.get(head.chain)
            if c is None or not self._credit(ex, c, head):
                continue
            out += self._decide_chain(ex, c, head)
            out += self._decide_exchange(ex, head)
        return self._correlate(out)

    # -- accounting --------------------------------------------------------------------------------
    def _credit(self, ex: ExchangeTrack, c: ChainTrack, head: ChainHead) -> bool:
        """Advance the chain's clock; True when an interval was credited (a decision is due)."""
        if head.number <= c.head_number:
            # redelivered, or a reorg's replacement of a credited height: no new chain time, but payouts
            # of a replacement block still start their gap here
            for w in reversed(c.recent):
                if w.u_at is not None:
                    break
                if w.block <= head.number:
                    w.u_at = c.u_total
            return False
        # consecutive: the next height, or (Solana skips slots) a block whose parent is the last credited one
        consecutive = c.head_number >= 0 and (
            head.number == c.head_number + 1 or (bool(c.head_hash) and head.parent_hash == c.head_hash)
        )
        prev_time = c.head_time
        c.head_number, c.head_time, c.head_hash = head.number, head.block_time, head.hash
        c.pending_ids.clear()
        credited = False
        if consecutive and prev_time is not None and head.block_time > prev_time:
            interval = head.block_time - prev_time
            cap = float(self.policy.max_block_credit_s)
            if c.interval_s is not None:
                cap = min(cap, self.policy.stall_intervals * c.interval_s)
            if interval <= cap:
                c.interval_s = interval if c.interval_s is None else 0.95 * c.interval_s + 0.05 * interval
            seconds = min(float(interval), cap)
            rate = c.rate.at(head.block_time)
            warm, disturbed = self._warm(c), self._disturbed(ex, c)
            c.u_total += rate * seconds
            if warm and not c.tainted and not disturbed:
                c.tail.swings.expect(rate * seconds)
            else:
                c.tail.swings.discard()  # an incident's counts, or a model still warming up, are not normal
            if c.pending and c.pending[-1][0] // 3600 == head.block_time // 3600:
                c.pending[-1][1] += seconds
            else:
                c.pending.append([float(head.block_time), float(seconds)])
            if c.tail.gaps > 0 and warm:
                # the rate test counts only the payouts the rate surely owes: an overestimated rate (an
                # unseen weekday, drift) must not read as a collapse
                sure = cautious_share(self._shape(c, head.block_time))
                expected = c.tail.base_beta() * rate * seconds * sure
                owed = expected * (1 - self.policy.degraded_ratio)
                known = c.rate.hours_seen_elsewhere(head.block_time) >= self.policy.degraded_min_hours
                if known and not disturbed:
                    # a mere suspicion does not stop the rate test; an unknown hour does
                    self._collapse_step(c, expected, 0.0)
                elif c.incident is not None and c.incident.state is OutageState.DEGRADED:
                    c.incident.recover = max(0.0, c.incident.recover - owed)
            credited = True
        if self._disturbed(ex, c):
            c.tainted = True
        for w in reversed(c.recent):  # payouts of this block start their gap after its interval
            if w.u_at is not None:
                break
            if w.block <= head.number:
                w.u_at = c.u_total
        if ex.snapshot.get(c.chain, 0.0) is None and ex.last_chain == c.chain:
            ex.snapshot[c.chain] = c.u_total
            ex.note_last()
        return credited

    def _end_gap(self, c: ChainTrack) -> None:
        """Learn from the gap that a payout just ended, unless an incident touched it."""
        last = c.last
        if last is not None and last.u_at is not None and not c.tainted:
            if c.warm and c.head_time is not None:
                c.check.add(c.tail.survival_log(c.u_total - last.u_at, self._shape(c, c.head_time)))
            c.tail.add_gap(c.u_total - last.u_at)
        if not c.tainted:
            for t, seconds in c.pending:
                c.rate.add(int(t), 0.0, seconds)
                c.exposure_s += seconds
            if c.pending_events and last is not None:
                c.rate.add(last.time, c.pending_events, 0)
        if c.tainted:
            c.tail.swings.discard()
        else:  # like the rate, the swings learn only from completed gaps: a silence never reads as a swing
            c.tail.swings.close_if_full(c.tail.beta)
        c.pending = []
        c.pending_events = 0
        c.tainted = False

    def _collapse_step(self, c: ChainTrack, expected: float, paid: float) -> None:
        """Move the rate-collapse test on by ``expected`` payouts owed and ``paid`` made (gap-tail units).

        A chain whose rate is as steady as Poisson keeps the Poisson CUSUM (a running sum that stops at
        zero). One whose rate swings (:attr:`GapTail.swing_var` above 0) weighs the whole stretch since
        the test last left zero against a Poisson count at a log-normally swinging rate: a run of low counts
        is what a swing does, so it counts as a collapse only when even the swings cannot explain it."""
        v = c.tail.swing_var
        rho = self.policy.degraded_ratio
        if v <= 0.0:
            if expected:
                c.drop += expected * (1 - rho)
            if paid:
                c.drop = max(0.0, c.drop - paid * self._ln_rho)
            if c.drop == 0.0:
                c.reset_drop()
            return
        c.drop_m += expected
        c.drop_n += paid
        c.drop = collapse_llr(c.drop_m, c.drop_n, c.tail.log_var, rho)
        if c.drop <= 0.0:
            c.reset_drop()

    def _shape(self, c: ChainTrack, t: int) -> float:
        """How sure the rate at ``t`` is, as a Gamma shape: prior plus the withdrawals that back it."""
        return min(self.policy.rate_prior_shape + c.rate.support(t), self.policy.rate_max_shape)

    @staticmethod
    def _disturbed(ex: ExchangeTrack, c: ChainTrack) -> bool:
        """An open or degraded incident covers this chain: what happens now is not normal behaviour."""
        active = (OutageState.OPEN, OutageState.DEGRADED)
        return (c.incident is not None and c.incident.state in active) or (
            ex.incident is not None and ex.incident.state in active
        )

    def _warm(self, c: ChainTrack) -> bool:
        if not c.warm:
            c.warm = (
                c.withdrawals >= self.policy.warmup_withdrawals
                and c.exposure_s >= self.policy.warmup_exposure_s
                and c.rate.overall() > 0
            )
        return c.warm

    def _tests(self, ex: ExchangeTrack) -> int:
        warm = sum(1 for c in ex.chains.values() if c.warm)
        return 2 * warm + (1 if warm >= 2 else 0)

    def _threshold(self, gaps_per_budget: float, tests: int) -> float:
        """Evidence (nats) at which this test's false alarms use its share of the budget."""
        return math.log(max(gaps_per_budget, 1.0) * max(tests, 1) / self.policy.false_alarms_per_exchange)

    # -- decisions ---------------------------------------------------------------------------------
    def _decide_chain(self, ex: ExchangeTrack, c: ChainTrack, head: ChainHead) -> list[OutageEvent]:
        if not self._warm(c) or c.last is None:
            return []
        inc = c.incident
        exchange_wide = ex.incident is not None and ex.incident.state is not OutageState.DEGRADED
        if inc is None and exchange_wide:
            return []
        gaps = c.rate.overall() * self.policy.budget_s
        tests = self._tests(ex)
        open_at = self._threshold(gaps, tests)
        suspect_at = open_at - math.log(self.policy.suspect_factor)
        u = c.gap_u()
        if inc is None and self._surely_quiet(c, u, open_at, suspect_at):
            return []
        evidence = c.tail.survival_log(u, self._shape(c, head.block_time))
        ctx = _Context(ex.exchange, [c.chain], c.rate.at(head.block_time) * 3600, u, evidence,
                       gaps * tests / self.policy.budget_days, head.block_time)
        if inc is None:
            if evidence >= suspect_at:
                state = OutageState.OPEN if evidence >= open_at else OutageState.SUSPECTED
                c.tainted = state is OutageState.OPEN
                c.incident = self._start(ctx, state, c.last.time, c.last.tx, c.chain, c.chain)
                return [c.incident.last]
            if self._collapse_due(c, open_at):
                c.tainted = True
                anchor = f"degraded:{head.number}"
                # the rate test's own evidence, which crossed the threshold: not the silence's, which did not
                collapse = replace(ctx, evidence=c.drop)
                c.incident = self._start(collapse, OutageState.DEGRADED, head.block_time, c.last.tx, c.chain,
                                         c.chain, anchor=anchor, observed=1)
                return [c.incident.last]
            return []
        return self._progress(inc, ctx, open_at, suspect_at, c)

    @staticmethod
    def _surely_quiet(c: ChainTrack, u: float, open_at: float, suspect_at: float) -> bool:
        """Whether :meth:`_decide_chain` would start nothing on a chain without an incident, known cheaply.

        Why: every head decides every exchange on the partition, and usually the chain paid out a moment
        ago. The evidence with the rate's uncertainty (a Gamma shape) is at most :data:`UNSURE_EXCESS` more
        than with a sure rate, so when even the latter plus that margin stays below suspicion and the rate
        test is not due, the answer is "nothing to start" without the shape and the decision's context."""
        if OutageDetector._collapse_due(c, open_at):
            return False
        return c.tail.survival_log(u) + UNSURE_EXCESS < suspect_at

    @staticmethod
    def _collapse_due(c: ChainTrack, open_at: float) -> bool:
        """The rate test has enough evidence, and payouts, to call the chain degraded."""
        return c.drop >= open_at and c.drop_payouts >= DEGRADED_MIN_PAYOUTS

    def _decide_exchange(self, ex: ExchangeTrack, head: ChainHead) -> list[OutageEvent]:
        warm = [c for c in ex.chains.values() if c.warm]
        if len(warm) < 2 or ex.last_time is None:
            return []
        silent = self._silences(ex, warm)
        if ex.incident is None and self._rest_bound(silent) < self.policy.exchange_wide_rest_nats * (1 - 1e-9):
            return []  # what the exact evidence would conclude, without its rate and shape work
        evidence, largest, expected = self._exchange_evidence(silent, head.block_time)
        gaps = sum(c.tail.beta * c.rate.overall() * self.policy.budget_s for c in warm)
        if ex.incident is None and evidence - largest < self.policy.exchange_wide_rest_nats:
            return []  # one chain's silence alone is that chain's incident, not the exchange's
        tests = self._tests(ex)
        open_at = self._threshold(gaps, tests)
        suspect_at = open_at - math.log(self.policy.suspect_factor)
        rate = sum(c.rate.at(head.block_time) for c in warm) * 3600
        ctx = _Context(ex.exchange, sorted(c.chain for c in warm), rate, expected, evidence,
                       gaps * tests / self.policy.budget_days, head.block_time)
        inc = ex.incident
        if inc is None:
            if evidence >= suspect_at:
                state = OutageState.OPEN if evidence >= open_at else OutageState.SUSPECTED
                for c in warm:
                    c.tainted = c.tainted or state is OutageState.OPEN
                assert ex.last_tx is not None and ex.last_chain is not None
                ex.incident = self._start(ctx, state, ex.last_time, ex.last_tx, ex.last_chain, EXCHANGE_WIDE)
                return [ex.incident.last]
            return []
        return self._progress(inc, ctx, open_at, suspect_at)

    @staticmethod
    def _silences(ex: ExchangeTrack, warm: list[ChainTrack]) -> list[tuple[ChainTrack, float]]:
        """The warm chains that are evidence about the exchange as a whole, each with the withdrawals it
        was expected to make since the exchange's last payout (``u``). A chain already known to be down is
        not evidence about the others; the chain of the last payout has none until its head."""
        silent = []
        for c in warm:
            snap = ex.snapshot.get(c.chain)
            if snap is not None and (c.incident is None or c.incident.state is OutageState.SUSPECTED):
                silent.append((c, c.u_total - snap))
        return silent

    def _exchange_evidence(self, silent: list[tuple[ChainTrack, float]], t: int) -> tuple[float, float, float]:
        """The exchange-wide test's (evidence, the largest chain's share of it, expected withdrawals) at
        chain time ``t``, from :meth:`_silences`."""
        evidence = 0.0
        expected = 0.0
        largest = 0.0
        weighted = 0.0
        for c, u in silent:
            share = uncertain(c.tail.base_beta() * u, self._shape(c, t))
            evidence += share
            expected += u
            largest = max(largest, share)
            weighted += share * c.tail.swing_var
        if weighted <= 0.0:
            return evidence, largest, expected
        # the swings of an exchange's payout rate follow the market, so its chains share them: one factor,
        # with the variance its silent chains learned, weighted by what each contributes; the silence began
        # at a payout, so at a moment weighted by the rate (n = 1)
        log_var = math.log1p(weighted / evidence)
        return mixed_nats(evidence, 1.0, log_var), mixed_nats(largest, 1.0, log_var), expected

    @staticmethod
    def _rest_bound(silent: list[tuple[ChainTrack, float]]) -> float:
        """An upper bound of what :meth:`_decide_exchange` compares with ``exchange_wide_rest_nats``: the
        evidence of all chains but the one that shows the most.

        Why: every head decides every exchange on the partition, and most of the time the exchange paid out
        a moment ago, so the exact evidence (a rate, a Gamma shape and a logarithm per chain) ends in "not
        an exchange-wide silence". A chain's share, ``uncertain(b * u, shape)`` with ``b`` its base rate, is
        never more than ``b * u``, so the sum of those without the smallest bounds the sum of the shares
        without the largest; the shared swing can make evidence grow at most ``1 + variance`` times as fast
        as that sum (its slope at zero). When the bound is already below the threshold, so is the evidence,
        and the decision is the same (the caller keeps a relative margin of 1e-9 for rounding)."""
        if not silent:
            return 0.0
        shares = [c.tail.base_beta() * u for c, u in silent]
        # with swings the evidence grows at first up to 1 + variance times faster than the shares (the
        # silence began at a payout, when the rate was more likely high): the bound allows for that
        slope = 1.0 + max(c.tail.swing_var for c, _ in silent)
        return slope * (sum(shares) - min(shares))

    def _progress(self, inc: Incident, ctx: _Context, open_at: float, suspect_at: float,
                  c: ChainTrack | None = None) -> list[OutageEvent]:
        """Move an existing incident on at a head: escalate, hold through a lone payout, or recover."""
        state = inc.state
        if state is OutageState.SUSPECTED and ctx.evidence >= open_at:
            return [self._next(inc, ctx, OutageState.OPEN)]
        if state is OutageState.DEGRADED and c is not None:
            # while degraded, only a gap implausible even at the collapsed rate is a halt
            shape = self._shape(c, ctx.at)
            if c.tail.survival_log(c.gap_u() * self.policy.degraded_ratio, shape) >= open_at:
                inc.resume_count, inc.resume_time = 0, None
                return [self._next(inc, ctx, OutageState.OPEN)]
            return []
        if state is OutageState.OPEN and inc.resume_count > 0 and ctx.evidence >= suspect_at:
            # silence again after the first payout: it was a lone payout, the incident goes on
            inc.resume_count, inc.resume_time = 0, None
        return []

    def _payout_seen(self, ex: ExchangeTrack, inc: Incident | None, c: ChainTrack, event: TransferEvent,
                     scope_chain: str) -> list[OutageEvent]:
        if inc is None:
            return []
        if scope_chain != EXCHANGE_WIDE and scope_chain != event.chain:
            return []
        t = event.block_time
        if inc.state is OutageState.SUSPECTED:
            return [self._resolve(inc, t, f"suspicion cleared by withdrawal {event.tx_hash}", resolved_at=t)]
        if inc.state is OutageState.DEGRADED:
            inc.recover = max(0.0, inc.recover + c.tail.beta * self._ln_rho)
            c.reset_drop()
            if inc.recover >= self.policy.recovery_nats:
                return [self._resolve(inc, t, "payout rate back to normal", resolved_at=t)]
            return []
        if inc.state is OutageState.OPEN:
            if inc.resume_count == 0:
                inc.resume_time, inc.resume_u = t, c.u_total
            inc.resume_count += 1
            if inc.resume_count < self.policy.resume_withdrawals:
                return []
            assert inc.resume_time is not None
            if scope_chain == EXCHANGE_WIDE:
                return [self._resolve(inc, t, f"payouts resumed (withdrawal {event.tx_hash})",
                                      resolved_at=inc.resume_time)]
            # normal rate against the collapsed one, from the payouts since the silence ended
            expected = c.u_total - inc.resume_u
            ratio = self.policy.degraded_ratio
            llr = c.tail.beta * (inc.resume_count * self._ln_rho - expected * (1 - ratio))
            if llr >= 0:
                return [self._resolve(inc, t, f"payouts resumed (withdrawal {event.tx_hash})",
                                      resolved_at=inc.resume_time)]
            if inc.resume_count > self.policy.resume_withdrawals:
                inc.last = _replace(inc.last, version=inc.last.version + 1, state=OutageState.DEGRADED,
                                    observed_count=inc.resume_count, emitted_at=self.clock.now(),
                                    reason=f"payouts resumed at a collapsed rate: {inc.resume_count} where "
                                           f"{expected:.1f} were expected")
                inc.recover = 0.0
                return [inc.last]
        return []

    def _retract(self, ex: ExchangeTrack, c: ChainTrack, event: TransferEvent) -> list[OutageEvent]:
        """A reorg took a withdrawal back: forget it; if an incident started at it, move its start."""
        event_id = event.event_id
        idx = next((i for i, w in enumerate(c.recent) if w.event_id == event_id), None)
        if idx is None:
            return []
        was_last = idx == len(c.recent) - 1
        removed = c.recent.pop(idx)
        c.pending_ids.discard(event_id)
        out: list[OutageEvent] = []
        if was_last and ex.last_tx == removed.tx:
            candidates = [(tc.last.time, tc.last.tx, name) for name, tc in ex.chains.items() if tc.last is not None]
            if candidates:
                ex.last_time, ex.last_tx, ex.last_chain = max(candidates)
            else:
                ex.last_time = ex.last_tx = ex.last_chain = None
            ex.note_last()
        for inc in (c.incident, ex.incident):
            if inc is None or inc.last.last_withdrawal_tx != removed.tx:
                continue
            prev = c.last if inc is c.incident else (
                ex.chains[ex.last_chain].last if ex.last_chain else None
            )
            if prev is None:
                continue
            inc.last = _replace(inc.last, version=inc.last.version + 1, started_at=prev.time,
                                last_withdrawal_tx=prev.tx, observed_gap_s=inc.last.detected_at - prev.time,
                                emitted_at=self.clock.now(),
                                reason=f"start moved: withdrawal {removed.tx} was orphaned by a reorg")
            out.append(inc.last)
        return out

    # -- events out --------------------------------------------------------------------------------
    def _start(self, ctx: _Context, state: OutageState, started_at: int, last_tx: str, last_chain: str,
               scope_key: str, anchor: str | None = None, observed: int = 0) -> Incident:
        oid = outage_id(ctx.exchange, scope_key, anchor or f"{started_at}:{last_tx}")
        event = OutageEvent(
            outage_id=oid, version=1, exchange=ctx.exchange, scope=ctx.scope, state=state,
            started_at=started_at, detected_at=ctx.at, resolved_at=None,
            expected_rate_per_hour=ctx.rate_per_hour, observed_gap_s=ctx.at - started_at,
            expected_count=ctx.expected, observed_count=observed, confidence=ctx.confidence,
            p_value=ctx.p_value, last_withdrawal_tx=last_tx, last_withdrawal_chain=last_chain,
            emitted_at=self.clock.now(), reason=ctx.reason(state),
        )
        return Incident(self._with_rotation(event, self.exchanges_[ctx.exchange]))

    def _next(self, inc: Incident, ctx: _Context, state: OutageState) -> OutageEvent:
        inc.last = _replace(
            inc.last, version=inc.last.version + 1, state=state, detected_at=ctx.at,
            expected_rate_per_hour=ctx.rate_per_hour, observed_gap_s=ctx.at - inc.last.started_at,
            expected_count=ctx.expected, confidence=ctx.confidence, p_value=ctx.p_value,
            emitted_at=self.clock.now(), reason=ctx.reason(state),
        )
        inc.last = self._with_rotation(inc.last, self.exchanges_[ctx.exchange])
        return inc.last

    def _resolve(self, inc: Incident, at: int, reason: str, resolved_at: int | None = None) -> OutageEvent:
        when = at if resolved_at is None else resolved_at
        inc.last = _replace(inc.last, version=inc.last.version + 1, state=OutageState.RESOLVED, resolved_at=when,
                            observed_gap_s=when - inc.last.started_at, emitted_at=self.clock.now(), reason=reason)
        return inc.last

    def _correlate(self, events: list[OutageEvent]) -> list[Output]:
        out: list[Output] = list(events)
        if self.correlator is not None:
            for event in events:
                out += self.correlator.on_outage(event)
        return out


@dataclass(frozen=True, slots=True)
class _Context:
    """What a decision at one head knows, to fill an outage event."""

    exchange: str
    scope: list[str]
    rate_per_hour: float
    expected: float
    evidence: float
    tests_per_day: float
    at: int

    @property
    def p_value(self) -> float:
        return math.exp(-self.evidence)

    @property
    def confidence(self) -> float:
        """1 minus the chance that normal traffic shows evidence this strong somewhere in a day."""
        return max(0.0, 1.0 - self.p_value * self.tests_per_day)

    def reason(self, state: OutageState) -> str:
        if state is OutageState.DEGRADED:
            return f"payout rate collapsed: evidence {self.evidence:.1f} nats"
        return f"no withdrawal while {self.expected:.1f} were expected (evidence {self.evidence:.1f} nats)"


def _replace(event: OutageEvent, **changes: Any) -> OutageEvent:
    return replace(event, **changes)


def _incident(inc: Incident | None) -> Any:
    if inc is None:
        return None
    return [encode(inc.last).decode(), inc.resume_count, inc.resume_time, inc.resume_u, inc.recover]


def _restore_incident(raw: Any) -> Incident | None:
    if raw is None:
        return None
    event, count, time, resume_u, recover = raw
    return Incident(decode_as(event, OutageEvent), count, time, resume_u, recover)


def _export_last(ex: ExchangeTrack) -> dict[str, Any]:
    return {"seq": ex.last_seq, "last": [ex.last_time, ex.last_tx, ex.last_chain], "snapshot": ex.snapshot}


def _export_exchange(ex: ExchangeTrack) -> dict[str, Any]:
    return {
        "last": [ex.last_time, ex.last_tx, ex.last_chain],
        "snapshot": ex.snapshot,
        "last_seq": ex.last_seq,
        "incident": _incident(ex.incident),
        "suggestions": {chain: encode(sg).decode() for chain, sg in ex.suggestions.items()},
        "chain_names": sorted(ex.chains),
    }


def _export_chain(c: ChainTrack) -> dict[str, Any]:
    return {
        "rate": c.rate.to_dict(), "tail": c.tail.to_dict(),
        "head": [c.head_number, c.head_time, c.interval_s, c.head_hash],
        "u": c.u_total, "recent": [[w.event_id, w.block, w.time, w.tx, w.u_at] for w in c.recent],
        "n": [c.withdrawals, c.exposure_s, c.pending_events, c.warm], "pending": c.pending,
        "ids": sorted(c.pending_ids), "tainted": c.tainted, "drop": [c.drop, c.drop_payouts, c.drop_m, c.drop_n],
        "incident": _incident(c.incident), "quiet_from": c.quiet_from_u, "check": c.check.to_list(),
    }


def _restore(exchange: str, data: dict[str, Any], chains: dict[str, dict[str, Any]],
             policy: DetectionPolicy) -> ExchangeTrack:
    ex = ExchangeTrack(exchange)
    # the newest last payout and snapshot: the exchange-wide part's, or a chain part's saved after it
    # (parts saved before the chain parts carried them have no count: -1, older than any)
    newest = {"seq": data.get("last_seq", -1), "last": data["last"], "snapshot": data["snapshot"]}
    for d in chains.values():
        carried = d.get("last") if d else None
        if carried is not None and carried["seq"] > newest["seq"]:
            newest = carried
    ex.last_seq = max(newest["seq"], 0)
    ex.last_time, ex.last_tx, ex.last_chain = newest["last"]
    ex.snapshot = dict(newest["snapshot"])
    ex.incident = _restore_incident(data["incident"])
    ex.suggestions = {chain: decode_as(raw, LabelSuggestion) for chain, raw in data.get("suggestions", {}).items()}
    for name, d in chains.items():
        if not d:
            continue
        c = ChainTrack(
            name,
            SeasonalRate.from_dict(d["rate"], policy.seasonal_half_life_h, policy.seasonal_prior_hours),
            GapTail.from_dict(d["tail"]),
        )
        c.head_number, c.head_time, c.interval_s, c.head_hash = d["head"]
        c.u_total = d["u"]
        c.recent = [Withdrawal(*w) for w in d["recent"]]
        c.withdrawals, c.exposure_s, c.pending_events, c.warm = d["n"]
        c.pending = [list(p) for p in d["pending"]]
        c.pending_ids = set(d["ids"])
        c.tainted = d["tainted"]
        c.drop, c.drop_payouts, c.drop_m, c.drop_n = (*d["drop"], 0.0, 0.0)[:4]
        c.incident = _restore_incident(d["incident"])
        c.quiet_from_u = d.get("quiet_from")  # absent from parts saved before it existed
        c.check = BudgetCheck.from_list(d.get("check"))
        ex.chains[name] = c
    return ex
