"""The ``block`` layout of the transfers topic: which partition each transfer's record goes to, and how a block
is cut into records (``connectors/block_layout.py``)."""

from dataclasses import replace

import pytest
from kafka.partitioner.default import DefaultPartitioner
from typer.testing import CliRunner

from connectors.block_layout import LAYOUT_ENV, TransferLayout, block_records, partition_for
from schemas.records import ChainHead, Direction, TransferEvent

HEAD = ChainHead("ethereum", 7, "0xb7", "0xb6", 1_700_000_000, 1_700_000_001.0)
BASE = TransferEvent("ethereum", 7, "0xb7", 1_700_000_000, "0x0", -1, "native", "1", 18, "0xa", "0xb", "okx",
                     Direction.WITHDRAWAL)


class Cluster:
    """What kafka-python's partitioner asks of its cluster metadata: one topic's partitions."""

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions)


@pytest.mark.parametrize("partitions", [[0], [0, 1, 2], list(range(8)), list(range(12))])
def test_a_transfer_goes_where_a_record_keyed_by_its_exchange_would(partitions):
    keyed = DefaultPartitioner()
    for n in range(500):
        key = f"exchange{n}".encode()
        assert partition_for(key, partitions) == keyed.partition("t", key, key, b"", b"", Cluster(partitions))


def transfers(n: int, exchanges: int) -> list[TransferEvent]:
    return [replace(BASE, tx_hash=f"0x{i:x}", exchange=f"ex{i % exchanges}") for i in range(n)]


def test_every_partition_gets_its_transfers_in_block_order_then_the_head():
    block = transfers(200, 30)
    parts = list(range(8))
    records = block_records(HEAD, block, parts)
    assert [p for p, _ in records] == parts, "one record per partition, the head on each (the watermark)"
    assert all(r.head == HEAD for _, r in records)
    for partition, record in records:
        assert record.transfers == [t for t in block if partition_for(t.exchange.encode(), parts) == partition]
    assert sorted((t for _, r in records for t in r.transfers), key=block.index) == block


def test_a_busy_partition_is_cut_into_records_and_only_its_last_carries_the_head():
    block = transfers(25, 1)  # one exchange: all on one partition
    records = block_records(HEAD, block, [0, 1], per_record=10)
    busy = partition_for(b"ex0", [0, 1])
    mine = [r for p, r in records if p == busy]
    assert [len(r.transfers) for r in mine] == [10, 10, 5]
    assert [r.head for r in mine] == [None, None, HEAD]
    assert [t for r in mine for t in r.transfers] == block
    assert [(r.transfers, r.head) for p, r in records if p != busy] == [([], HEAD)]


def test_the_layout_is_a_connector_option_and_a_typo_is_refused(monkeypatch):
    """``--transfer-records`` / ``HALTWATCH_TRANSFER_RECORDS`` reaches the publisher's process; a typo stops
    the command before anything connects."""
    import connectors.run_feed as run_feed
    from haltwatch.cli import app

    chosen: list[TransferLayout] = []
    monkeypatch.setattr(run_feed, "run_feed", lambda *args: chosen.append(args[-2]) or 0)  # (..., layout, security)
    command = ["connect", "--chain", "ethereum", "--ws-url", "ws://127.0.0.1:1", "--labels", "labels"]
    runner = CliRunner()
    assert runner.invoke(app, command, env={LAYOUT_ENV: None}).exit_code == 0
    assert runner.invoke(app, command, env={LAYOUT_ENV: "Event"}).exit_code == 0
    assert runner.invoke(app, [*command, "--transfer-records", "block"], env={LAYOUT_ENV: "event"}).exit_code == 0
    assert chosen == [TransferLayout.BLOCK, TransferLayout.EVENT, TransferLayout.BLOCK]
    refused = runner.invoke(app, command, env={LAYOUT_ENV: "blocks"})
    assert refused.exit_code == 2 and chosen == [TransferLayout.BLOCK, TransferLayout.EVENT, TransferLayout.BLOCK]
    said = " ".join(refused.output.split())
    assert "HALTWATCH_TRANSFER_RECORDS" in said and "'blocks' is not one of 'block', 'event'" in said, said
