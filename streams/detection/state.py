"""The detector's state: what it knows per exchange and per (exchange, chain), and read-only views of it.

The engine (:mod:`.detector`) is the only writer. Everything that reports on the state (status rows, the live
board, metrics, the worker's ``/detector`` view) reads it through :class:`ExchangeView` and :class:`ChainView`,
protocols without setters, so that a reader cannot change what a decision depends on. How the state is
written to and read back from the worker's changelog table is :mod:`.state_codec`'s business.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from schemas.records import LabelSuggestion, OutageEvent, OutageState
from streams.detection.baseline import GapTail, SeasonalRate
from streams.detection.budget import BudgetCheck

if TYPE_CHECKING:
    from streams.detection.chain_clock import ChainClock

Part = tuple[str, str | None]
"""A saved part of the state: (exchange, chain), or (exchange, None) for the exchange-wide part."""
EXCHANGE_WIDE = "*"
"""Scope key of an exchange-wide incident; its ``scope`` lists the exchange's active chains."""


@dataclass(slots=True)
class Changes:
    """What the detector did with one event: the outage events it decided and the state parts it changed.

    The worker saves ``parts`` before it acknowledges the event (a decision depends on them). What heads
    alone move on (chain time credited) it saves when it gets round to it, from
    :attr:`OutageDetector.moved`: a credit lost in a crash delays a later decision, never causes one.
    """

    outputs: list[OutageEvent] = field(default_factory=list)
    parts: set[Part] = field(default_factory=set)
    credited: list[str] = field(default_factory=list)
    """Exchanges a head visited and credited chain time to, in the order it decided them."""


def event_key(event_id: str) -> str:
    """A short digest of a transfer's event id: what the state keeps to recognise a payout's retraction or
    redelivery (an event id with its block and transaction hashes is ~150 bytes; the state keeps 8 payouts
    per chain, and a withdrawal rewrites its chain's part)."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


@dataclass(slots=True)
class Withdrawal:
    key: str
    """:func:`event_key` of its event id."""
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
    pending_keys: set[str] = field(default_factory=set)
    """:func:`event_key` of the payouts of blocks whose head has not come yet (a redelivery is one of them)."""
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

    # -- kept while it follows a chain clock (never saved: a restored track catches up at its next head) --
    clock: ChainClock | None = None
    """The clock it catches up with (:mod:`.chain_clock`); None until its first head after it was created
    or restored."""
    sync_position: float = 0.0
    """The clock's position it was last credited up to."""
    rate_now: float = 0.0
    """Expected withdrawals per second at the clock's hour (until its next payout)."""
    owed_now: float = 0.0
    """Payouts per second the rate-collapse test counts as owed at the clock's hour (0: it does not run)."""
    owed_total: float = 0.0
    """Payouts the rate-collapse test was credited as owed since the track was loaded."""
    target_u: float = math.inf
    """``u_total`` at which its gap test could be due (from :func:`.chain_clock.gap_room`)."""
    target_owed: float = math.inf
    """``owed_total`` at which its rate-collapse test could be due."""
    wide_target: float = math.inf
    """``u_total`` at which the exchange-wide test could be due, from this chain's share of the room."""
    wide_beta: float = 0.0
    """Its base rate, with slack, when the room was shared (a higher one voids the share)."""
    wide_gaps: float = 0.0
    """Its gaps per second (``beta`` times its overall rate), with slack, when the room was shared (fewer
    void the share: the exchange-wide threshold would be lower)."""
    wide_room: float = 0.0
    """Its share: the exchange-wide evidence bound it may contribute (``wide_beta`` times its ``u`` since the
    exchange's last payout) before the test could be due."""
    due_seq: int = 0
    """Its live entry in the clock's schedule."""
    due_position: float = math.inf
    """Where that entry is due (inf: none, its next visit is the hour's end)."""
    scheduled_block: int = -1
    """The block of the payout it was last scheduled after (its next payouts in that block keep the schedule)."""
    gap_block: int | None = None
    """The block of its latest payouts while their head has not started their gap yet (on its clock)."""

    @property
    def last(self) -> Withdrawal | None:
        return self.recent[-1] if self.recent else None

    def u_now(self) -> float:
        """Expected withdrawals credited up to its clock's last head (``u_total`` plus what is not yet caught up)."""
        clock = self.clock
        if clock is None:
            return self.u_total
        return self.u_total + self.rate_now * (clock.position - self.sync_position)

    def reset_drop(self) -> None:
        self.drop, self.drop_payouts, self.drop_m, self.drop_n = 0.0, 0, 0.0, 0.0

    def gap_u(self) -> float:
        """Expected withdrawals since the last payout (or since an exchange-wide incident resolved)."""
        last = self.last
        if last is None or last.u_at is None:
            return 0.0
        start = last.u_at if self.quiet_from_u is None else max(last.u_at, self.quiet_from_u)
        return self.u_now() - start


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

    order: int = 0
    """When the detector first met it: exchanges visited at one head are decided in this order."""
    wide_members: frozenset[str] = frozenset()
    """Chains among which the exchange-wide test's room was shared out (:meth:`HeadVisits._share_wide`)."""
    wide_var: float = -1.0
    """The swing variance the shared room allowed for (a wider one on any chain voids the shares)."""

    def note_last(self) -> None:
        self.last_seq += 1


def outage_id(exchange: str, scope: str, anchor: str) -> str:
    """Stable incident id: the same gap after the same last withdrawal always gets the same id."""
    return hashlib.sha256(f"{exchange}|{scope}|{anchor}".encode()).hexdigest()[:24]



class IncidentView(Protocol):
    """An incident as a reader sees it."""

    @property
    def last(self) -> OutageEvent: ...

    @property
    def state(self) -> OutageState: ...


class RateView(Protocol):
    def at(self, t: int) -> float: ...


class WithdrawalView(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def time(self) -> int: ...

    @property
    def tx(self) -> str: ...


class ChainView(Protocol):
    """One (exchange, chain) as a reader sees it."""

    @property
    def chain(self) -> str: ...

    @property
    def head_number(self) -> int: ...

    @property
    def head_time(self) -> int | None: ...

    @property
    def withdrawals(self) -> int: ...

    @property
    def warm(self) -> bool: ...

    @property
    def incident(self) -> IncidentView | None: ...

    @property
    def last(self) -> WithdrawalView | None: ...

    @property
    def rate(self) -> RateView: ...

    def gap_u(self) -> float: ...


class ExchangeView(Protocol):
    """One exchange as a reader sees it."""

    @property
    def exchange(self) -> str: ...

    @property
    def chains(self) -> Mapping[str, ChainView]: ...

    @property
    def incident(self) -> IncidentView | None: ...
