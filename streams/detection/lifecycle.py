"""An incident's life: the outage events that open, move on and resolve it, payouts seen during it, a reorg
that takes its last payout back, and a hot-wallet rotation that could explain it.

A part of :class:`~streams.detection.detector.OutageDetector` (mixed in), kept apart from the tests that
decide when an incident starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from schemas.records import OutageEvent, OutageState, TransferEvent
from streams.detection.clock import Clock
from streams.detection.policy import DetectionPolicy
from streams.detection.state import EXCHANGE_WIDE, ChainTrack, ExchangeTrack, Incident, event_key, outage_id


class IncidentLifecycle:
    """Outage events out of incidents (mixed into :class:`OutageDetector`)."""

    policy: DetectionPolicy
    clock: Clock
    _exchanges: dict[str, ExchangeTrack]
    _ln_rho: float

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
            f"possible hot-wallet rotation on {s.chain}: {s.address} may have taken the payouts over ("
            f"{s.evidence or f'funded by {s.funded_by}, paid {s.distinct_recipients} distinct addresses'})"
            for s in found
        )
        return revised(event, confidence=event.confidence * self.policy.rotation_confidence_factor,
                        reason=f"{event.reason}; {note}")

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
                inc.last = revised(inc.last, version=inc.last.version + 1, state=OutageState.DEGRADED,
                                    observed_count=inc.resume_count, emitted_at=self.clock.now(),
                                    reason=f"payouts resumed at a collapsed rate: {inc.resume_count} where "
                                           f"{expected:.1f} were expected")
                inc.recover = 0.0
                return [inc.last]
        return []

    def _retract(self, ex: ExchangeTrack, c: ChainTrack, event: TransferEvent) -> list[OutageEvent]:
        """A reorg took a withdrawal back: forget it; if an incident started at it, move its start."""
        key = event_key(event.event_id)
        idx = next((i for i, w in enumerate(c.recent) if w.key == key), None)
        if idx is None:
            return []
        was_last = idx == len(c.recent) - 1
        removed = c.recent.pop(idx)
        c.pending_keys.discard(key)
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
            inc.last = revised(inc.last, version=inc.last.version + 1, started_at=prev.time,
                                last_withdrawal_tx=prev.tx, observed_gap_s=inc.last.detected_at - prev.time,
                                emitted_at=self.clock.now(),
                                reason=f"start moved: withdrawal {removed.tx} was orphaned by a reorg")
            out.append(inc.last)
        return out

    # -- events out --------------------------------------------------------------------------------
    def _start(self, ctx: DecisionContext, state: OutageState, started_at: int, last_tx: str, last_chain: str,
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
        return Incident(self._with_rotation(event, self._exchanges[ctx.exchange]))

    def _next(self, inc: Incident, ctx: DecisionContext, state: OutageState) -> OutageEvent:
        inc.last = revised(
            inc.last, version=inc.last.version + 1, state=state, detected_at=ctx.at,
            expected_rate_per_hour=ctx.rate_per_hour, observed_gap_s=ctx.at - inc.last.started_at,
            expected_count=ctx.expected, confidence=ctx.confidence, p_value=ctx.p_value,
            emitted_at=self.clock.now(), reason=ctx.reason(state),
        )
        inc.last = self._with_rotation(inc.last, self._exchanges[ctx.exchange])
        return inc.last

    def _resolve(self, inc: Incident, at: int, reason: str, resolved_at: int | None = None) -> OutageEvent:
        when = at if resolved_at is None else resolved_at
        inc.last = revised(inc.last, version=inc.last.version + 1, state=OutageState.RESOLVED, resolved_at=when,
                            observed_gap_s=when - inc.last.started_at, emitted_at=self.clock.now(), reason=reason)
        return inc.last


@dataclass(frozen=True, slots=True)
class DecisionContext:
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


def revised(event: OutageEvent, **changes: Any) -> OutageEvent:
    return replace(event, **changes)
