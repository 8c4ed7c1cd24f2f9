"""The worker's detect step and its state table, without Kafka: a dict for the table, hand-moved clocks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson

from schemas.codec import encode
from schemas.records import ChainHead, Direction, FeedHeartbeat, OutageState, Record, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector
from streams.worker.detect import HEAD_SAVE_EVERY_S, LIVE_LAG_S, STATUS_EVERY_S, Delivery, DetectResult, DetectStep
from streams.worker.state import DetectorStateTable, part_key

T0 = 1_700_000_000
BLOCK_S = 12


@dataclass
class Worker:
    """One detect step over a dict table, fed whole blocks (a withdrawal of ``okx`` each, then the head)."""

    table: dict[str, bytes] = field(default_factory=dict)
    clock: ManualClock = field(default_factory=lambda: ManualClock(10_000.0))
    """Wall time, long after the records were published (a catch-up) unless a test says otherwise."""
    mono: list[float] = field(default_factory=lambda: [1000.0])
    observed: list[Record] = field(default_factory=list)
    written: list[tuple[str, int]] = field(default_factory=list)
    number: int = 0
    offset: int = 0

    def __post_init__(self) -> None:
        self.detector = OutageDetector(DetectionPolicy(), self.clock)
        self.state = DetectorStateTable(self.detector, self.table, self.write)
        self.step = DetectStep(self.detector, self.state, self.clock, monotonic=lambda: self.mono[0],
                               observe=self.observed.append)

    async def write(self, key: str, raw: bytes, partition: int) -> None:
        self.table[key] = raw
        self.written.append((key, partition))

    def delivery(self, record: Record | bytes, partition: int = 3, published: float = 0.0) -> Delivery:
        self.offset += 1
        value = record if isinstance(record, bytes) else encode(record)
        return Delivery(partition, self.offset, value, published)

    def block(self, paid: bool = True, chain: str = "ethereum") -> list[Record]:
        self.number += 1
        t = T0 + self.number * BLOCK_S
        records: list[Record] = []
        if paid:
            records.append(TransferEvent(chain, self.number, f"0x{self.number}", t, f"0xtx{self.number}", 0,
                                         "native", "1", 18, "0xhot", "0xuser", "okx", Direction.WITHDRAWAL))
        records.append(ChainHead(chain, self.number, f"0x{self.number}", f"0x{self.number - 1}", t, float(t)))
        return records

    def run(self, blocks: int, paid: bool = True) -> DetectResult:
        batch = [self.delivery(r) for _ in range(blocks) for r in self.block(paid)]
        result = self.step.run(batch)
        asyncio.run(self.state.save(result.dirty))
        return result


def test_a_withdrawal_saves_its_chain_part_and_a_restart_restores_the_exchange_from_the_table() -> None:
    worker = Worker()
    first = worker.run(1)
    assert first.dirty == {("okx", "ethereum"): 3, ("okx", None): 3}, "a new chain is listed exchange-wide"
    assert {part_key("okx", None), part_key("okx", "ethereum")} <= set(worker.table)
    second = worker.run(1)
    assert ("okx", None) not in second.dirty, "the exchange-wide part saved before is still right"
    assert second.dirty[("okx", "ethereum")] == 3
    assert orjson.loads(worker.table["okx"])["partition"] == 3

    restarted = Worker(table=worker.table, number=worker.number)
    (head,) = restarted.block(paid=False)
    restarted.step.run([restarted.delivery(head)])
    assert restarted.state.owned(3) == {"okx"}, "the partition's first event restored its exchanges"
    track = restarted.detector.view["okx"].chains["ethereum"]
    assert (track.withdrawals, track.head_number) == (2, head.number)


def test_heads_alone_are_saved_at_most_every_few_seconds_per_partition() -> None:
    worker = Worker()
    worker.run(1)
    worker.written.clear()
    assert worker.run(5, paid=False).dirty == {}, "the first heads only start the save clock"
    worker.mono[0] += HEAD_SAVE_EVERY_S / 2
    assert worker.run(5, paid=False).dirty == {}
    worker.mono[0] += HEAD_SAVE_EVERY_S
    due = worker.run(1, paid=False).dirty
    assert due == {("okx", "ethereum"): 3, ("okx", None): 3}
    saved = orjson.loads(worker.table[part_key("okx", "ethereum")])["state"]
    assert saved["head"][0] == worker.number, "the part saved holds the last head's progress"


def test_a_bad_record_is_dead_lettered_and_the_rest_of_the_batch_still_counts() -> None:
    worker = Worker()
    transfer, head = worker.block()
    heartbeat = encode(FeedHeartbeat("ethereum", 1, 1, True, 0.0))
    result = worker.step.run([worker.delivery(b'{"type": "transfer", "chain": 1}'), worker.delivery(transfer),
                              worker.delivery(heartbeat), worker.delivery(head)])
    assert result.dead == [(b'{"type": "transfer", "chain": 1}', "chain: expected a string, got 1"),
                           (heartbeat, "unexpected feed_heartbeat record")]
    assert worker.detector.view["okx"].chains["ethereum"].head_number == head.number
    assert [type(r) for r in worker.observed] == [TransferEvent, ChainHead]


def test_status_snapshots_are_paced_per_partition_and_sent_at_once_when_caught_up() -> None:
    worker = Worker()
    assert worker.run(1).status == {"okx"}, "the partition's first head snapshots its exchanges"
    assert worker.run(1).status == set(), "within STATUS_EVERY_S the heads leave the snapshot stale"
    assert worker.step.stale_status() == {"okx"}
    assert worker.step.stale_status() == set(), "taken once"
    worker.run(1)
    worker.mono[0] += STATUS_EVERY_S
    assert worker.run(1).status == {"okx"}
    worker.run(1)
    (head,) = worker.block(paid=False)
    live = worker.step.run([worker.delivery(head, published=worker.clock.now() - LIVE_LAG_S / 2)])
    assert live.status == {"okx"}, "a batch published moments ago sends the stale snapshots with it"


def test_an_outage_marks_every_part_of_the_exchange_and_its_snapshot() -> None:
    worker = Worker()
    for _ in range(6):
        worker.run(300)  # an hour of a withdrawal every block: warm
    halted = [worker.run(10, paid=False) for _ in range(30)]
    opened = [(r, o) for r in halted for o in r.outputs if o.state is OutageState.OPEN]
    assert opened, "an hour without the payout every block had brought opens an outage"
    result, outage = opened[0]
    assert outage.exchange == "okx"
    assert {("okx", None), ("okx", "ethereum")} <= set(result.dirty)
    assert "okx" in result.status


def test_a_state_stored_whole_is_loaded_and_rewritten_in_parts() -> None:
    old = Worker()
    old.run(3)
    whole = {"partition": 3, "state": old.detector.export("okx")}
    worker = Worker(table={"okx": orjson.dumps(whole)}, number=old.number)
    result = worker.run(1, paid=False)
    assert worker.detector.view["okx"].chains["ethereum"].withdrawals == 3
    assert result.dirty == {("okx", None): 3, ("okx", "ethereum"): 3}
    assert "chains" not in orjson.loads(worker.table["okx"])["state"]


def test_forget_after_a_rebalance_reloads_from_the_table() -> None:
    worker = Worker()
    worker.run(2)
    worker.step.forget()
    assert dict(worker.detector.view) == {} and worker.state.owned(3) == set()
    worker.run(1, paid=False)
    assert worker.detector.view["okx"].chains["ethereum"].withdrawals == 2
