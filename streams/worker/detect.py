"""One ``detect`` batch: records from the transfers topic in, outage decisions and the state parts to save out.

The worker's ``detect`` agent (``streams/app.py``) reads a batch, hands it to :meth:`DetectStep.run` and then
does the Kafka side of what it returns: sends the outage events, saves the dirty parts, publishes the status
snapshots, dead-letters what could not be read. Nothing here awaits or imports Faust, and both clocks are
injected (wall time stamps and ages messages, a monotonic one paces saves and snapshots), so a unit test
drives a batch with a dict for a table and a hand-moved clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from schemas.codec import SchemaError, decode, encode
from schemas.records import ChainHead, LabelSuggestion, OutageEvent, Record, TransferEvent, events_of
from streams.detection.clock import Clock
from streams.detection.detector import OutageDetector
from streams.detection.state import Changes, Part
from streams.worker.state import DetectorStateTable

log = logging.getLogger(__name__)
HEAD_SAVE_EVERY_S = 5.0
"""The parts a withdrawal or a state change touches are saved in its batch; the progress that heads alone
make (chain time credited) is saved at most this often per partition, in wall-clock seconds. Heads lost
between saves only under-count exposure after a restart (a later head that does not follow the saved one
is not credited), which delays a decision but never causes one. A time budget rather than a head count:
a replay reads thousands of heads a second and would save every state many times over."""
STATUS_EVERY_S = 5.0
"""Wall-clock seconds between two status snapshots of one partition's exchanges (state changes are
snapshotted at once). Only reporting depends on it, never a decision."""
LIVE_LAG_S = 2.0
"""A batch whose last record was published less than this many seconds ago means the worker has caught up
with the chains: the snapshots its heads left stale are due at once instead of at the next timer tick (a
catch-up, reading old records, leaves them to the timer)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message of the transfers topic as the agent got it."""

    partition: int
    offset: int
    value: bytes
    timestamp: float
    """When it was published (wall-clock seconds)."""


@dataclass(slots=True)
class DetectResult:
    """What one batch decided and changed; the agent acts on it before the batch is acknowledged."""

    outputs: list[OutageEvent] = field(default_factory=list)
    dirty: dict[Part, int] = field(default_factory=dict)
    """State parts to save (part → partition)."""
    status: set[str] = field(default_factory=set)
    """Exchanges whose status snapshot is due."""
    dead: list[tuple[bytes, str]] = field(default_factory=list)
    """(raw record, reason) to dead-letter."""


class DetectStep:
    """The detector, its table and the pacing of saves and snapshots, one batch at a time."""

    def __init__(self, detector: OutageDetector, state: DetectorStateTable, clock: Clock,
                 monotonic: Callable[[], float] = time.monotonic,
                 observe: Callable[[Record], None] = lambda record: None) -> None:
        self.detector = detector
        self.state = state
        self.clock = clock
        self.monotonic = monotonic
        self.observe = observe
        """Called after the detector handled a record (the status page and metrics count it)."""
        self._head_saved_at: dict[int, float] = {}
        self._last_status: dict[int, float] = {}
        self._stale_status: set[int] = set()
        """Partitions whose heads moved on since their last status snapshot."""

    def run(self, batch: Sequence[Delivery]) -> DetectResult:
        """Feed a batch to the detector. One bad record never stops the rest: it is dead-lettered."""
        result = DetectResult()
        progressed: set[int] = set()
        """Partitions whose heads moved chain time on in this batch."""
        for delivery in batch:
            self._mark(result, self.state.restore(delivery.partition), delivery.partition)
            try:
                record = decode(delivery.value)
            except SchemaError as exc:
                result.dead.append((delivery.value, str(exc)))
                continue
            for one in events_of(record):  # a block record: its transfers for this partition, then its head
                try:
                    if not self._apply(one, delivery.partition, result, progressed):
                        result.dead.append((delivery.value, f"unexpected {one.TYPE} record"))
                except Exception as exc:  # the rest of a block (its head above all) still counts
                    log.exception("detector failed on partition %d @%d", delivery.partition, delivery.offset)
                    raw = delivery.value if one is record else encode(one)
                    result.dead.append((raw, f"detector error: {exc!r}"))
        self._pace_head_saves(result, progressed)
        # a withdrawal's save writes its chain's part whole, heads included: a replay, where most parts are
        # saved that way, then writes only the rest
        self.detector.moved.difference_update(part for part in result.dirty if part[1] is not None)
        if batch and self.clock.now() - batch[-1].timestamp < LIVE_LAG_S:
            result.status |= self.stale_status()  # caught up: the batch's last heads reach the status table now
        return result

    def stale_status(self) -> set[str]:
        """The exchanges of partitions whose heads moved on since their last snapshot (now due)."""
        due: set[str] = set()
        for partition in sorted(self._stale_status):
            self._last_status[partition] = self.monotonic()
            due |= self.state.owned(partition)
        self._stale_status.clear()
        return due

    def forget(self) -> None:
        """After a rebalance: the table is the truth again (``DetectorStateTable.forget``)."""
        self.state.forget()

    def _apply(self, record: Record, partition: int, result: DetectResult,
               progressed: set[int]) -> bool:
        """Feed one record; False for a record that does not belong on the transfers topic."""
        if isinstance(record, TransferEvent):
            self._mark(result, self.state.load(record.exchange, partition), partition)
            changes = self.detector.on_transfer(record)
            self._take(changes, partition, result)
            result.status |= {o.exchange for o in changes.outputs}
        elif isinstance(record, ChainHead):
            mine = self.state.owned(partition)
            changes = self.detector.on_head(record, mine, lane=partition)
            self._take(changes, partition, result)
            progressed.add(partition)
            now = self.monotonic()
            if now - self._last_status.get(partition, float("-inf")) >= STATUS_EVERY_S:
                self._last_status[partition] = now
                self._stale_status.discard(partition)
                result.status |= mine
            else:
                self._stale_status.add(partition)
                result.status |= {o.exchange for o in changes.outputs} & mine
        elif isinstance(record, LabelSuggestion):
            self._mark(result, self.state.load(record.exchange, partition), partition)
            changes = self.detector.on_suggestion(record)
            self._take(changes, partition, result)
            result.status |= {o.exchange for o in changes.outputs}
        else:
            return False
        self.observe(record)
        return True

    @staticmethod
    def _take(changes: Changes, partition: int, result: DetectResult) -> None:
        result.outputs += changes.outputs
        DetectStep._mark(result, changes.parts, partition)

    @staticmethod
    def _mark(result: DetectResult, parts: Iterable[Part], partition: int) -> None:
        for part in parts:
            result.dirty[part] = partition

    def _pace_head_saves(self, result: DetectResult, progressed: set[int]) -> None:
        """Every ``HEAD_SAVE_EVERY_S``, have the parts that heads alone moved on in a partition saved with the
        batch: its exchanges catch up with their chains' clocks first (``OutageDetector.settle``)."""
        now = self.monotonic()
        for partition in sorted(progressed):
            if now - self._head_saved_at.setdefault(partition, now) >= HEAD_SAVE_EVERY_S:
                self._head_saved_at[partition] = now
                owned = self.state.owned(partition)
                self.detector.settle(owned)
                self._mark(result, self.detector.take_moved(owned), partition)
