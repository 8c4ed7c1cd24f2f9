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

import math
import types
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from schemas.records import ChainHead, Direction, LabelSuggestion, OutageEvent, OutageState, TransferEvent
from streams.detection.baseline import UNSURE_EXCESS, SeasonalRate
from streams.detection.budget import BudgetEstimate, estimate
from streams.detection.clock import Clock
from streams.detection.lifecycle import DecisionContext, IncidentLifecycle, revised
from streams.detection.policy import DetectionPolicy
from streams.detection.state import (
    EXCHANGE_WIDE,
    ChainTrack,
    Changes,
    ExchangeTrack,
    ExchangeView,
    Incident,
    Part,
    Withdrawal,
    event_key,
)
from streams.detection.state_codec import chain_value, exchange_value, last_payout_value, restore_exchange
from streams.detection.visits import HeadVisits

DEGRADED_MIN_PAYOUTS = 2
"""Payouts that must have come during a rate collapse for it to be "degraded" rather than a silence."""
HASH_MEMORY = 512
"""Credited heights per chain whose hashes are remembered (deeper than any reorg the connectors undo)."""


class OutageDetector(HeadVisits, IncidentLifecycle):
    """Outage decisions for the exchanges whose events it is fed."""

    def __init__(self, policy: DetectionPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self._exchanges: dict[str, ExchangeTrack] = {}
        self.view: Mapping[str, ExchangeView] = types.MappingProxyType(self._exchanges)
        """Every exchange's state, read-only: what status rows, the board and metrics read."""
        self.block_hashes: dict[str, dict[int, str]] = {}
        """Per chain, the hash of each recently credited height: a transfer at a credited height is a
        redelivery if its block hash matches, and a reorg's replacement block if it does not."""
        self._ln_rho = math.log(1.0 / policy.degraded_ratio)
        self.clocks = {}
        """(chain, lane) → the clock of that chain's heads in that lane (:mod:`.chain_clock`)."""
        self._joining = {}
        """chain → exchange → a track that joins its lane's clock at its next head (new or restored)."""
        self.moved = set()
        """Parts that caught up with their clock since the worker last took them (:meth:`take_moved`)."""
        self._met = 0

    # -- state -------------------------------------------------------------------------------------
    def exchange(self, name: str) -> ExchangeTrack:
        track = self._exchanges.get(name)
        if track is None:
            self._met += 1
            track = self._exchanges[name] = ExchangeTrack(name, order=self._met)
        return track

    def chain_track(self, exchange: ExchangeTrack, chain: str) -> ChainTrack:
        track = exchange.chains.get(chain)
        if track is None:
            rate = SeasonalRate(half_life_h=self.policy.seasonal_half_life_h,
                                prior_hours=self.policy.seasonal_prior_hours)
            track = exchange.chains[chain] = ChainTrack(chain, rate)
            self._join_later(exchange, track)
        return track

    def exchanges(self) -> set[str]:
        return set(self._exchanges)

    def export(self, exchange: str) -> dict[str, Any]:
        """One exchange's whole state, JSON-ready: its exchange-wide part with every chain's part inside."""
        if exchange not in self._exchanges:
            return {}
        ex = self._exchanges[exchange]
        self.settle([exchange])
        return {**exchange_value(ex), "chains": {name: chain_value(c) for name, c in ex.chains.items()}}

    def export_exchange(self, exchange: str) -> dict[str, Any]:
        """The exchange-wide part alone (:func:`.state_codec.exchange_value`); empty for an unknown exchange."""
        return exchange_value(self._exchanges[exchange]) if exchange in self._exchanges else {}

    def export_chain(self, exchange: str, chain: str) -> dict[str, Any]:
        """One (exchange, chain) part with the exchange's last payout (:func:`.state_codec.chain_value`);
        empty when the detector does not track that pair."""
        ex = self._exchanges.get(exchange)
        c = ex.chains.get(chain) if ex is not None else None
        if ex is None or c is None:
            return {}
        self._sync(ex, c)
        return {**chain_value(c), "last": last_payout_value(ex)}

    def _exchange_shape(self, exchange: str) -> tuple[int, bool]:
        """What, besides the last payout, a withdrawal can change in the exchange-wide part: the number of
        chains it is tracked on (a new chain must be listed there, or its part is never loaded) and whether
        an exchange-wide incident is open (a payout moves it on). Unchanged and with no incident, the part
        saved before is still right apart from the last payout, which the chain's part carries."""
        ex = self._exchanges.get(exchange)
        return (0, False) if ex is None else (len(ex.chains), ex.incident is not None)

    def restore(self, exchange: str, data: dict[str, Any]) -> None:
        """Restore what :meth:`export` gave."""
        if data:
            self.restore_parts(exchange, data, data["chains"])

    def restore_parts(self, exchange: str, exchange_part: dict[str, Any], chains: dict[str, dict[str, Any]]) -> None:
        """Restore from :meth:`export_exchange` and the :meth:`export_chain` parts that were found.

        A chain whose part is missing starts afresh (it was never saved)."""
        if exchange_part:
            old = self._exchanges.get(exchange)
            if old is not None:
                self._detach(old)
            ex = self._exchanges[exchange] = restore_exchange(exchange, exchange_part, chains, self.policy)
            if old is None:
                self._met += 1
            ex.order = old.order if old is not None else self._met
            for c in ex.chains.values():
                self._join_later(ex, c)

    def budget(self, exchange: str) -> BudgetEstimate:
        """The false-alarm rate the thresholds are estimated to give on this exchange's own normal traffic,
        beside the budget (see :mod:`.budget`)."""
        ex = self._exchanges.get(exchange)
        checks = [c.check for c in ex.chains.values() if c.warm] if ex is not None else []
        return estimate(exchange, checks, self.policy.false_alarms_per_exchange, self.policy.budget_days)

    def forget(self, exchange: str) -> None:
        ex = self._exchanges.pop(exchange, None)
        if ex is not None:
            self._detach(ex)

    # -- events ------------------------------------------------------------------------------------
    def on_transfer(self, event: TransferEvent) -> Changes:
        """A withdrawal (or its retraction by a reorg): the payout ends its chain's gap and moves on the
        incidents it touches. Deposits and internal moves change nothing."""
        if event.direction is not Direction.WITHDRAWAL:
            return Changes()
        shape = self._exchange_shape(event.exchange)
        outputs = self._on_withdrawal(event)
        if outputs is None:
            return Changes()  # a redelivery
        self._paid(self._exchanges[event.exchange], event.chain, event.removed)
        changes = self._changes(outputs)
        changes.parts.add((event.exchange, event.chain))  # it carries the exchange's last payout too
        if shape[1] or self._exchange_shape(event.exchange) != shape:
            changes.parts.add((event.exchange, None))
        return changes

    def _changes(self, outputs: list[OutageEvent]) -> Changes:
        """``outputs`` with every part of the exchanges whose outage state they changed: a state change may
        touch all of an exchange's chains (an exchange-wide incident taints them, its end resets their tests)."""
        parts: set[Part] = set()
        for name in {o.exchange for o in outputs}:
            parts.add((name, None))
            parts.update((name, chain) for chain in self._exchanges[name].chains)
            self._refresh(self._exchanges[name])
        return Changes(outputs, parts)

    def _on_withdrawal(self, event: TransferEvent) -> list[OutageEvent] | None:
        """The outage events a withdrawal causes; None for a redelivery (nothing changed)."""
        ex = self.exchange(event.exchange)
        c = self.chain_track(ex, event.chain)
        self._sync(ex, c)
        if event.removed:
            return self._retract(ex, c, event)
        if event.block_number <= c.head_number:
            credited = self.block_hashes.get(event.chain, {}).get(event.block_number)
            if credited is None or credited == event.block_hash:
                return None  # its block's head was already credited: a redelivery
        key = event_key(event.event_id)
        if key in c.pending_keys:
            return None
        c.pending_keys.add(key)
        out: list[OutageEvent] = []
        t = event.block_time
        c.tail.swings.pay()  # before the gap ends: the payout that ends a gap belongs to the window it closes
        if not c.recent or c.recent[-1].block != event.block_number:
            self._end_gap(c)  # the first payout of a block ends the chain's gap
        c.withdrawals += 1
        c.pending_events += 1
        c.quiet_from_u = None
        c.recent.append(Withdrawal(key, event.block_number, t, event.tx_hash, None))
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
                    track.quiet_from_u = track.u_now()
            ex.incident = None
        if was_disturbed and not self._disturbed(ex, c):
            for track in ex.chains.values():
                self._sync(ex, track)
                track.reset_drop()  # an outage just ended: the rate test starts afresh
        if self._disturbed(ex, c):
            c.tainted = True  # the gap this payout starts belongs to the incident too
        if ex.last_time is None or t >= ex.last_time:
            ex.last_time, ex.last_tx, ex.last_chain = t, event.tx_hash, event.chain
            ex.snapshot = {name: (None if name == event.chain else track.u_now()) for name, track in ex.chains.items()}
            ex.note_last()
        return out

    def on_suggestion(self, suggestion: LabelSuggestion) -> Changes:
        """A likely hot-wallet rotation: lower the confidence of incidents it could explain."""
        ex = self.exchange(suggestion.exchange)
        ex.suggestions[suggestion.chain] = suggestion
        out: list[OutageEvent] = []
        c = ex.chains.get(suggestion.chain)
        for inc in (c.incident if c else None, ex.incident):
            if inc is None or suggestion.chain not in inc.last.scope or inc.state is OutageState.RESOLVED:
                continue
            inc.last = self._with_rotation(
                revised(inc.last, version=inc.last.version + 1, emitted_at=self.clock.now()), ex
            )
            out.append(inc.last)
        changes = self._changes(out)
        changes.parts.add((suggestion.exchange, None))
        return changes

    def on_head(self, head: ChainHead, exchanges: Collection[str] | None = None, lane: object = None) -> Changes:
        """Credit chain time up to ``head`` and decide what is due (:mod:`.visits`). ``exchanges``: those whose
        heads this is (None: all), ``lane``: the stream it came by (a worker's partition: each has its own copy
        of a chain's heads, in its own order). The exchanges it credited are ``credited``; the parts of those
        whose outage state changed are ``parts``."""
        ring = self.block_hashes.setdefault(head.chain, {})
        ring[head.number] = head.hash
        if len(ring) > 2 * HASH_MEMORY:
            for number in [n for n in ring if n <= head.number - HASH_MEMORY]:
                del ring[number]
        out, credited = self._visit_head(head, exchanges, lane)
        changes = self._changes(out)
        changes.credited = credited
        return changes

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
        ctx = DecisionContext(ex.exchange, [c.chain], c.rate.at(head.block_time) * 3600, u, evidence,
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
        if len(ex.chains) < 2:
            return []  # fewer than two warm chains, as below, without listing them at every head
        warm = [c for c in ex.chains.values() if c.warm]
        if len(warm) < 2 or ex.last_time is None:
            return []
        self._start_marked_gaps(ex)
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
        ctx = DecisionContext(ex.exchange, sorted(c.chain for c in warm), rate, expected, evidence,
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

    def _progress(self, inc: Incident, ctx: DecisionContext, open_at: float, suspect_at: float,
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
