"""The writer of every connector: parent links over skipped slots, retries, fork retractions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.checkpoint import CheckpointFile
from connectors.linked_writer import LinkedBlock, LinkedWriter, Stopped
from connectors.metrics import ConnectorMetrics
from schemas.records import ChainHead, Direction, TransferEvent
from tests.unit.feed_fakes import RecordingPublisher


def block(number: int, parent: int, salt: str = "") -> LinkedBlock:
    head = ChainHead("solana", number, f"h{number}{salt}", f"h{parent}", 1_700_000_000 + number, 0.0)
    event = TransferEvent("solana", number, head.hash, head.block_time, f"tx{number}{salt}", 0, "native", "5", 9,
                          "hot", "user", "okx", Direction.WITHDRAWAL)
    return LinkedBlock(head, parent, [event])


def writer(path: Path, publisher: RecordingPublisher, window: int = 64, rebase_on_node: bool = False) -> LinkedWriter:
    return LinkedWriter("solana", "solana:solana", window, publisher, CheckpointFile(path),  # type: ignore[arg-type]
                        ConnectorMetrics("solana"), asyncio.Event(), rebase_on_node=rebase_on_node)


async def test_a_block_follows_its_parent_across_skipped_slots(tmp_path: Path) -> None:
    w = writer(tmp_path / "cp.json", RecordingPublisher())
    await w.publish(block(100, 99))
    assert w.extends(block(104, 100)) and not w.extends(block(104, 101)) and w.misses_parent(block(104, 102))
    await w.publish(block(104, 100))
    assert (w.checkpoint.number, w.checkpoint.hash, w.next_number) == (104, "h104", 105)
    with pytest.raises(ValueError, match="does not extend"):
        await w.publish(block(106, 105))


async def test_the_checkpoint_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    first = writer(path, RecordingPublisher())
    await first.publish(block(10, 9))
    await first.publish(block(12, 10))
    again = writer(path, RecordingPublisher())
    assert again.next_number == 13 and again.extends(block(13, 12))
    assert [b.number for b in again.checkpoint.recent] == [10, 12]


async def test_a_kafka_failure_is_retried_and_nothing_is_checkpointed_before_the_ack(tmp_path: Path) -> None:
    publisher = RecordingPublisher(fail_next=2)
    w = writer(tmp_path / "cp.json", publisher)
    await w.publish(block(1, 0))
    assert [h.number for h in publisher.heads] == [1] and w.published_number == 1


async def test_stop_during_kafka_retries_leaves_the_block_unpublished(tmp_path: Path) -> None:
    publisher = RecordingPublisher(fail_next=100)
    w = writer(tmp_path / "cp.json", publisher)
    w.stopping.set()
    with pytest.raises(Stopped):
        await w.publish(block(1, 0))
    assert w.checkpoint is None


async def test_a_fork_retracts_the_orphaned_blocks_events(tmp_path: Path) -> None:
    publisher = RecordingPublisher()
    w = writer(tmp_path / "cp.json", publisher)
    for number, parent in ((100, 99), (101, 100), (103, 101)):
        await w.publish(block(number, parent))
    canonical = {100: "h100", 101: None, 103: None}  # the node moved on from 100 on another fork

    async def canonical_hash(number: int) -> str | None:
        return canonical.get(number)

    assert await w.undo_reorg(canonical_hash) == 2
    assert [t.tx_hash for t in publisher.retractions] == ["tx103", "tx101"]
    assert all(t.removed for t in publisher.retractions)
    assert (w.checkpoint.number, w.checkpoint.hash) == (100, "h100")


async def test_a_fork_deeper_than_the_window_is_dead_lettered(tmp_path: Path) -> None:
    publisher = RecordingPublisher()
    w = writer(tmp_path / "cp.json", publisher, window=2)
    for number in range(1, 5):
        await w.publish(block(number, number - 1))

    async def nothing(number: int) -> str | None:
        return "other"

    assert await w.undo_reorg(nothing) == 2
    await w.flush_dead_letters()
    assert any("deeper than the 2 blocks remembered" in d.reason for d in publisher.dead)
    assert w.checkpoint.recent == () and w.checkpoint.number == 2


async def test_after_a_fork_deeper_than_the_window_an_evm_writer_rebases_on_the_nodes_block(tmp_path: Path) -> None:
    publisher = RecordingPublisher()
    w = writer(tmp_path / "cp.json", publisher, window=2, rebase_on_node=True)
    for number in range(1, 5):
        await w.publish(block(number, number - 1))

    async def node(number: int) -> str | None:
        return f"n{number}"

    assert await w.undo_reorg(node) == 2
    assert (w.checkpoint.number, w.checkpoint.hash, w.checkpoint.recent) == (2, "n2", ())
    replacement = LinkedBlock(ChainHead("solana", 3, "n3", "n2", 1_700_000_003, 0.0), 2)
    assert w.extends(replacement)  # the node's next block follows at once: no second, unverified rebase
