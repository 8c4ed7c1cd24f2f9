"""The records that travel on haltwatch's topics.

They are the public contract: downstream consumers decode these exact shapes, so every record carries
``schema_version`` and a ``type`` tag (several record types can share a topic: the transfers topic carries
chain heads as per-partition watermarks). Changing a field is a new ``schema_version``; adding an optional
field with a default is not, because decoders ignore fields they do not know.

Times have one meaning each: ``*_time`` / ``*_at`` fields named after chain events are chain time (block
timestamps, integer seconds since the Unix epoch); ``received_at`` / ``emitted_at`` are wall-clock seconds
(float) of the machine that wrote them. Detection never mixes the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

import msgspec

SCHEMA_VERSION = 1
NATIVE_ASSET = "native"
"""``asset`` value of a chain's own coin (ETH on Ethereum); tokens use their contract address."""
NATIVE_LOG_INDEX = -1
"""``log_index`` of a native-coin transfer, which has no log. Token transfers use the log's index."""


@dataclass(frozen=True, slots=True)
class Minimum:
    """A number field's least valid value: the codec rejects less, and the JSON Schema says ``minimum``."""

    value: int


@dataclass(frozen=True, slots=True)
class Digits:
    """A string of decimal digits only: a token amount in base units, never negative and of any size (so a
    string: 2**256 - 1 is a valid ERC-20 amount)."""

    pattern: ClassVar[str] = "^[0-9]+$"


Count = Annotated[int, Minimum(0), msgspec.Meta(ge=0)]
"""A block number, a count, a chain time in seconds since the epoch: nothing a chain makes is negative."""
NonNegative = Annotated[float, Minimum(0), msgspec.Meta(ge=0)]
"""A wall-clock time, a rate or an expected count: never negative."""
LogIndex = Annotated[int, Minimum(NATIVE_LOG_INDEX), msgspec.Meta(ge=NATIVE_LOG_INDEX)]
Amount = Annotated[str, Digits(), msgspec.Meta(pattern=r"\A[0-9]+\Z")]
"""Each constraint is said twice: once for the contract's own readers (the fallback decoder, the JSON Schema),
once for msgspec, whose typed decoder checks it in C (:mod:`schemas.codec`; ``\\Z``, not ``$``, which would
let a trailing newline through)."""


class Direction(StrEnum):
    """How a transfer moves value relative to one exchange."""

    WITHDRAWAL = "withdrawal"
    DEPOSIT = "deposit"
    INTERNAL = "internal"


class OutageState(StrEnum):
    """Lifecycle of one incident; ``resolved`` is final for an outage id."""

    SUSPECTED = "suspected"
    OPEN = "open"
    DEGRADED = "degraded"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One labelled value transfer touching an exchange wallet, as read from one block.

    ``removed`` is true for a retraction: the block was orphaned by a reorg and the transfer no longer
    exists on the canonical chain. The triple (chain, block_hash, tx_hash, log_index) identifies a transfer,
    so a redelivered message is recognisable downstream.
    """

    TYPE: ClassVar[str] = "transfer"
    chain: str
    block_number: Count
    block_hash: str
    block_time: Count
    tx_hash: str
    log_index: LogIndex
    asset: str
    amount: Amount
    decimals: Count
    from_address: str
    to_address: str
    exchange: str
    direction: Direction
    removed: bool = False
    schema_version: int = SCHEMA_VERSION
    type: Literal["transfer"] = "transfer"

    @property
    def event_id(self) -> str:
        """Deterministic identity: the same transfer read twice has the same id."""
        return f"{self.chain}:{self.block_hash}:{self.tx_hash}:{self.log_index}:{self.exchange}"


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Heartbeat for one block a connector has fully processed and published.

    Because it is written only after every transfer of the block was acknowledged by Kafka, a consumer
    that sees the head of block N in a partition has seen all of that partition's transfers of block N.
    Its absence is what tells "we have no data" apart from "the exchange is silent".
    """

    TYPE: ClassVar[str] = "chain_head"
    chain: str
    number: Count
    hash: str
    parent_hash: str
    block_time: Count
    received_at: NonNegative
    schema_version: int = SCHEMA_VERSION
    type: Literal["chain_head"] = "chain_head"


@dataclass(frozen=True, slots=True)
class OutageEvent:
    """One state change of an incident: an exchange has stopped (or slowed) paying out.

    ``outage_id`` is stable for the whole incident and ``version`` grows with each state change, so
    consumers deduplicate on (outage_id, version) and keep the highest version as the current state.
    ``started_at`` is the block time of the last withdrawal before the silence; ``detected_at`` and
    ``resolved_at`` are chain times of the blocks that triggered those decisions.
    """

    TYPE: ClassVar[str] = "outage"
    outage_id: str
    version: Count
    exchange: str
    scope: list[str]
    state: OutageState
    started_at: Count
    detected_at: Count
    resolved_at: Count | None
    expected_rate_per_hour: NonNegative
    observed_gap_s: Count
    expected_count: NonNegative
    observed_count: Count
    confidence: float
    p_value: float
    last_withdrawal_tx: str | None
    last_withdrawal_chain: str | None
    emitted_at: float
    reason: str = ""
    schema_version: int = SCHEMA_VERSION
    type: Literal["outage"] = "outage"

    @property
    def duration_s(self) -> int | None:
        """Length of the incident in chain time, once resolved."""
        return None if self.resolved_at is None else self.resolved_at - self.started_at


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be used, kept with its raw bytes so nothing is silently lost."""

    TYPE: ClassVar[str] = "dead_letter"
    source: str
    reason: str
    payload: str
    received_at: float
    context: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    type: Literal["dead_letter"] = "dead_letter"


class ChainState(StrEnum):
    """What haltwatch knows about a chain's own progress."""

    OK = "ok"
    CHAIN_STALLED = "chain_stalled"
    """The node is reachable and reports no new block: the chain itself has stopped."""
    NO_DATA = "no_data"
    """We are not receiving the chain's blocks (connector, node or Kafka problem): we cannot judge."""


@dataclass(frozen=True, slots=True)
class CorrelatedIncident:
    """Several exchanges stopped paying out within a short window: likely one shared cause.

    ``incident_id`` is stable as the group grows; each growth is a new ``version``. ``common`` holds the
    exchange metadata (hosting provider, region, ...) that every member shares.
    """

    TYPE: ClassVar[str] = "correlated_incident"
    incident_id: str
    version: int
    exchanges: list[str]
    outage_ids: list[str]
    started_at: int
    detected_at: int
    common: dict[str, str]
    likely_cause: str
    emitted_at: float
    schema_version: int = SCHEMA_VERSION
    type: Literal["correlated_incident"] = "correlated_incident"


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """A change in a chain's state as seen by haltwatch (wall-clock based, unlike outages)."""

    TYPE: ClassVar[str] = "chain_status"
    chain: str
    state: ChainState
    last_number: Count
    last_block_time: Count
    last_received_at: float
    node_head_number: int | None
    reason: str
    emitted_at: float
    schema_version: int = SCHEMA_VERSION
    type: Literal["chain_status"] = "chain_status"


@dataclass(frozen=True, slots=True)
class FeedHeartbeat:
    """A connector's periodic word that it is alive, and how far the node and the connector are.

    Sent even when no block arrives, so that silence on the heads topic can be told apart: heartbeats
    with a node head that does not move mean the chain stalled; no heartbeats mean our feed is lost.
    """

    TYPE: ClassVar[str] = "feed_heartbeat"
    chain: str
    node_head_number: int
    published_number: int
    connected: bool
    sent_at: float
    schema_version: int = SCHEMA_VERSION
    type: Literal["feed_heartbeat"] = "feed_heartbeat"


@dataclass(frozen=True, slots=True)
class LabelSuggestion:
    """An address that behaves like a hot wallet of an exchange but is not labelled hot (a likely rotation).

    Exchanges move payouts to fresh hot wallets; until the labels follow, the old wallet's silence looks like
    a halt. The tell-tale: the address is tied to the exchange (funded by its known wallets, paying into them,
    or labelled as another role) and pays many distinct outside addresses small amounts at a steady rate.
    ``evidence`` says it in one line, as ``haltwatch labels discover`` writes it into a label file. Published
    on the transfers topic keyed by exchange, so the detector can lower its confidence in a silence of that
    exchange on that chain and say which wallet may have taken the payouts over.
    """

    TYPE: ClassVar[str] = "label_suggestion"
    exchange: str
    chain: str
    address: str
    suggested_role: str
    funded_by: str
    funded_at: Count
    funding_tx: str
    distinct_recipients: Count
    payouts: Count
    detected_at: Count
    emitted_at: float
    top_ups: Count = 0
    """Transfers in from the exchange's known wallets."""
    sweeps: Count = 0
    """One-off addresses (users' deposit addresses) that swept funds into it."""
    steadiness: float = 0.0
    """Share of 10-minute windows with a payout since its first one."""
    evidence: str = ""
    """All the evidence in one line."""
    schema_version: int = SCHEMA_VERSION
    type: Literal["label_suggestion"] = "label_suggestion"


@dataclass(frozen=True, slots=True)
class BlockTransfers:
    """One block's transfers for one partition of the transfers topic, in one record, ended by the block's head.

    Why a record of many: a consumer pays its framework's cost per Kafka record (a Faust agent ~90 µs on the
    benchmark machine, more than the detector spends on a transfer), so a record per transfer made that cost
    the bulk of a worker's time; a record per (block, partition) pays it once for all of them. A connector
    writes one to every partition for each block, holding the transfers of the exchanges whose key hashes to
    that partition (where each would go as a :class:`TransferEvent` keyed by exchange), so the promises of
    the keyed layout hold: one exchange's transfers stay on one partition, in order, and the head of block N
    follows that partition's transfers of block N. A block with more transfers than one record should hold
    is split over several records on the partition; only the last carries ``head`` (the others null).
    """

    TYPE: ClassVar[str] = "block_transfers"
    transfers: list[TransferEvent]
    head: ChainHead | None
    schema_version: int = SCHEMA_VERSION
    type: Literal["block_transfers"] = "block_transfers"

    def records(self) -> list[TransferEvent | ChainHead]:
        """What this record stands for in the one-record-per-event layout, in order: transfers, then head."""
        return [*self.transfers, self.head] if self.head is not None else list(self.transfers)


def events_of(record: Record) -> Sequence[Record]:
    """A record as the events it stands for: a :class:`BlockTransfers` as its transfers and then its head, any
    other record as itself. The one place that unpacks block records for their readers."""
    return record.records() if isinstance(record, BlockTransfers) else (record,)


Record = (
    TransferEvent | ChainHead | OutageEvent | DeadLetter | CorrelatedIncident | ChainStatus | FeedHeartbeat
    | LabelSuggestion | BlockTransfers
)
RECORD_TYPES: tuple[type[Any], ...] = (
    TransferEvent,
    ChainHead,
    OutageEvent,
    DeadLetter,
    CorrelatedIncident,
    ChainStatus,
    FeedHeartbeat,
    LabelSuggestion,
    BlockTransfers,
)
