"""Decide, from transfers and chain heads in block-time order, when an exchange has stopped paying out.

Pure Python: the Faust worker, ``haltwatch backtest`` and the unit tests drive the same object. Decisions
are made only on chain heads, because a head of block N is written after all of block N's transfers: a
silent stretch of chain time covered by heads is evidence, a stretch without heads is not.

Every update is idempotent under redelivery (Kafka and Faust are at-least-once): each (exchange, chain)
remembers the last head it was credited with, so a replayed head adds nothing, and a replayed transfer of
a block whose head was already credited is recognised by its block number.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import decode_as, encode
from schemas.records import ChainHead, Direction, OutageEvent, OutageState, TransferEvent
from streams.detection.clock import Clock
from streams.detection.policy import DetectionPolicy
from streams.detection.rate import WithdrawalRate


@dataclass(slots=True)
class ExchangeChainState:
    """Everything the detector remembers about one (exchange, chain)."""

    exchange: str
    chain: str
    rate: WithdrawalRate
    head_number: int = -1
    head_time: int | None = None
    """The last head credited: chain time is accounted up to here."""
    last_time: int | None = None
    last_tx: str | None = None
    gap_exposure_s: int = 0
    """Chain time credited since the last withdrawal (block intervals, each capped: stalls do not count)."""
    pending_ids: set[str] = field(default_factory=set)
    """Transfers counted in blocks whose head has not arrived yet (dedup for redelivery)."""
    outage: OutageEvent | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "chain": self.chain,
            "rate": self.rate.to_dict(),
            "head": [self.head_number, self.head_time],
            "last": [self.last_time, self.last_tx, self.gap_exposure_s],
            "pending_ids": sorted(self.pending_ids),
            "outage": encode(self.outage).decode() if self.outage else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExchangeChainState:
        head_number, head_time = data["head"]
        last_time, last_tx, gap = data["last"]
        return cls(
            exchange=data["exchange"],
            chain=data["chain"],
            rate=WithdrawalRate.from_dict(data["rate"]),
            head_number=head_number,
            head_time=head_time,
            last_time=last_time,
            last_tx=last_tx,
            gap_exposure_s=gap,
            pending_ids=set(data["pending_ids"]),
            outage=decode_as(data["outage"], OutageEvent) if data["outage"] else None,
        )


def outage_id(exchange: str, chain: str, anchor: str) -> str:
    """Stable incident id: the same gap after the same last withdrawal always gets the same id."""
    return hashlib.sha256(f"{exchange}|{chain}|{anchor}".encode()).hexdigest()[:24]


class OutageDetector:
    """Per-(exchange, chain) silence detector over a stream of transfers and heads."""

    def __init__(self, policy: DetectionPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.states: dict[tuple[str, str], ExchangeChainState] = {}

    # -- state -------------------------------------------------------------------------------------
    def state(self, exchange: str, chain: str) -> ExchangeChainState:
        key = (exchange, chain)
        st = self.states.get(key)
        if st is None:
            rate = WithdrawalRate(self.policy.rate_bucket_s, self.policy.rate_window_s)
            st = self.states[key] = ExchangeChainState(exchange, chain, rate)
        return st

    def exchanges(self) -> set[str]:
        return {exchange for exchange, _ in self.states}

    def export(self, exchange: str) -> dict[str, Any]:
        """Everything about one exchange, JSON-ready, for a changelog-backed table."""
        return {chain: st.to_dict() for (ex, chain), st in self.states.items() if ex == exchange}

    def restore(self, exchange: str, data: dict[str, Any]) -> None:
        for chain, st in data.items():
            self.states[(exchange, chain)] = ExchangeChainState.from_dict(st)

    def forget(self, exchange: str) -> None:
        for key in [k for k in self.states if k[0] == exchange]:
            del self.states[key]

    # -- events ------------------------------------------------------------------------------------
    def on_transfer(self, event: TransferEvent) -> list[OutageEvent]:
        """Learn from one withdrawal; a withdrawal during an open outage resolves it."""
        if event.direction is not Direction.WITHDRAWAL or event.removed:
            return []
        st = self.state(event.exchange, event.chain)
        if event.block_number <= st.head_number:
            return []  # its block's head was already credited: a redelivery
        event_id = event.event_id
        if event_id in st.pending_ids:
            return []
        st.pending_ids.add(event_id)
        st.rate.add_withdrawal(event.block_time)
        out: list[OutageEvent] = []
        if st.outage is not None:
            out.append(self._resolve(st, event))
        if st.last_time is None or event.block_time >= st.last_time:
            st.last_time, st.last_tx, st.gap_exposure_s = event.block_time, event.tx_hash, 0
        return out

    def on_head(self, head: ChainHead, exchanges: Iterable[str] | None = None) -> list[OutageEvent]:
        """Credit chain time up to ``head`` and decide for each exchange on its chain.

        ``exchanges`` limits the work to the exchanges the caller owns (a Faust worker owns those of the
        partition the head came in on); None means all known ones.
        """
        wanted = None if exchanges is None else set(exchanges)
        out: list[OutageEvent] = []
        for (exchange, chain), st in self.states.items():
            if chain != head.chain or (wanted is not None and exchange not in wanted):
                continue
            event = self._advance(st, head)
            if event is not None:
                out.append(event)
        return out

    # -- decisions ---------------------------------------------------------------------------------
    def _advance(self, st: ExchangeChainState, head: ChainHead) -> OutageEvent | None:
        if head.number <= st.head_number:
            return None  # redelivered or reorged-away height: nothing new to credit
        prev_time = st.head_time
        st.head_number, st.head_time = head.number, head.block_time
        st.pending_ids.clear()
        if prev_time is None or head.block_time <= prev_time:
            return None  # first head for this state: no interval to credit yet
        cap = self.policy.max_block_credit_s
        since = prev_time if st.last_time is None else max(prev_time, st.last_time)
        st.gap_exposure_s += min(max(head.block_time - since, 0), cap)
        if st.outage is not None:
            return None  # the baseline is frozen while an incident is open
        st.rate.add_exposure(head.block_time, min(head.block_time - prev_time, cap))
        if st.last_time is None or not self._warm(st):
            return None
        rate = st.rate.per_second()
        expected = rate * st.gap_exposure_s
        p_value = math.exp(-expected)
        if p_value >= self.policy.false_alarm_p:
            return None
        st.outage = OutageEvent(
            outage_id=outage_id(st.exchange, st.chain, f"{st.last_time}:{st.last_tx}"),
            version=1,
            exchange=st.exchange,
            scope=[st.chain],
            state=OutageState.OPEN,
            started_at=st.last_time,
            detected_at=head.block_time,
            resolved_at=None,
            expected_rate_per_hour=rate * 3600,
            observed_gap_s=head.block_time - st.last_time,
            expected_count=expected,
            observed_count=0,
            confidence=1.0 - p_value,
            p_value=p_value,
            last_withdrawal_tx=st.last_tx,
            last_withdrawal_chain=st.chain,
            emitted_at=self.clock.now(),
            reason=f"no withdrawal for {st.gap_exposure_s} s of chain time; {expected:.1f} expected",
        )
        return st.outage

    def _warm(self, st: ExchangeChainState) -> bool:
        return (
            st.rate.withdrawals >= self.policy.warmup_withdrawals
            and st.rate.exposure_s >= self.policy.warmup_exposure_s
        )

    def _resolve(self, st: ExchangeChainState, event: TransferEvent) -> OutageEvent:
        assert st.outage is not None
        opened = st.outage
        st.outage = None
        return OutageEvent(
            outage_id=opened.outage_id,
            version=opened.version + 1,
            exchange=opened.exchange,
            scope=opened.scope,
            state=OutageState.RESOLVED,
            started_at=opened.started_at,
            detected_at=opened.detected_at,
            resolved_at=event.block_time,
            expected_rate_per_hour=opened.expected_rate_per_hour,
            observed_gap_s=event.block_time - opened.started_at,
            expected_count=opened.expected_rate_per_hour / 3600 * st.gap_exposure_s,
            observed_count=0,
            confidence=opened.confidence,
            p_value=opened.p_value,
            last_withdrawal_tx=opened.last_withdrawal_tx,
            last_withdrawal_chain=opened.last_withdrawal_chain,
            emitted_at=self.clock.now(),
            reason=f"withdrawal {event.tx_hash} in block {event.block_number}",
        )
