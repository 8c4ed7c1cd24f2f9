"""The Solana connector in-process against the loopback node: skipped slots, lagging replicas, restarts.

No Kafka here (a recording publisher stands in); the same scenarios run against real Kafka in
tests/integration/test_connector_solana.py.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from connectors.checkpoint import CheckpointFile
from connectors.label_watch import LabelSource
from connectors.solana.config import SolanaConfig
from connectors.solana.connector import SolanaConnector
from tests.nodes.solana_node import SolanaFaults, SolanaNode
from tests.unit.feed_fakes import RecordingPublisher, run_until

LABELS = Path(__file__).parents[1] / "fixtures" / "solana" / "labels.toml"
FIRST = 1_000


def connector(node: SolanaNode, publisher: RecordingPublisher, checkpoint: Path, **overrides: Any) -> SolanaConnector:
    config = SolanaConfig("solana", (node.url,), ws_urls=(node.ws_url,), start_block=FIRST, head_poll_s=0.3,
                          heartbeat_s=0.5, **overrides)
    return SolanaConnector(config, LabelSource([LABELS]), publisher, CheckpointFile(checkpoint))  # type: ignore[arg-type]


def assert_linked(publisher: RecordingPublisher, node: SolanaNode, last: int) -> None:
    heads = publisher.heads
    assert [h.number for h in heads] == node.produced(FIRST, last), "every produced slot once, skipped ones never"
    for before, after in itertools.pairwise(heads):
        assert after.parent_hash == before.hash, f"slot {after.number} does not follow {before.number}"
    expected = {r for r in node.expected if r[0] in {h.hash for h in heads}}
    got = {(t.block_hash, t.tx_hash, t.log_index, t.asset, t.amount, t.decimals, t.from_address, t.to_address,
            t.exchange, t.direction.value) for t in publisher.transfers}
    assert got == expected and len(publisher.transfers) == len(expected)


async def produce(node: SolanaNode, rounds: int, per_round: int = 5) -> int:
    finalized = FIRST
    for _ in range(rounds):
        finalized = await asyncio.to_thread(node.produce, per_round)
        await asyncio.sleep(0.05)
    return finalized


async def test_every_block_once_in_parent_order_with_skipped_slots(tmp_path: Path) -> None:
    with SolanaNode(FIRST) as node:
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")
        await asyncio.to_thread(node.produce, 5)
        producer = asyncio.create_task(produce(node, 20))
        await run_until(feed, lambda: producer.done() and feed.writer.published_number >= max(
            node.produced(FIRST, node.finalized)))
        last = feed.writer.published_number
    assert any(node.blocks[s] is None for s in range(FIRST, last)), "the run crossed skipped slots"
    assert_linked(publisher, node, last)
    assert publisher.beats and publisher.dead == []


async def test_not_available_yet_is_never_taken_for_skipped(tmp_path: Path) -> None:
    with SolanaNode(FIRST, faults=SolanaFaults(unavailable_once={FIRST + 1, FIRST + 2, FIRST + 12})) as node:
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")
        await asyncio.to_thread(node.produce, 30)
        await run_until(feed, lambda: feed.writer.published_number >= max(node.produced(FIRST, node.finalized)))
        assert_linked(publisher, node, feed.writer.published_number)


async def test_a_restart_reads_on_from_the_checkpoint(tmp_path: Path) -> None:
    with SolanaNode(FIRST) as node:
        publisher = RecordingPublisher()
        await asyncio.to_thread(node.produce, 25)
        first = connector(node, publisher, tmp_path / "cp.json")
        await run_until(first, lambda: first.writer.published_number >= FIRST + 10)
        await asyncio.to_thread(node.produce, 40)  # the chain goes on while we are down
        second = connector(node, publisher, tmp_path / "cp.json")
        await run_until(second, lambda: second.writer.published_number >= max(node.produced(FIRST, node.finalized)))
        assert_linked(publisher, node, second.writer.published_number)


async def test_confirmed_commitment_follows_slot_notifications(tmp_path: Path) -> None:
    with SolanaNode(FIRST, finalized_lag=30) as node:
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json", commitment="confirmed")
        await asyncio.to_thread(node.produce, 20)
        await run_until(feed, lambda: feed.writer.published_number >= max(node.produced(FIRST, node.tip)))
        assert feed.writer.published_number > node.finalized
        assert_linked(publisher, node, feed.writer.published_number)


async def test_junk_and_broken_bodies_are_dead_lettered_and_the_feed_goes_on(tmp_path: Path) -> None:
    faults = SolanaFaults(junk_after_notification=True, garbage_body_every=7, malformed_tx_every=5,
                          rate_limit_every=11, headless_once={FIRST + 8})
    with SolanaNode(FIRST, faults=faults) as node:
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")
        producer = asyncio.create_task(produce(node, 10))
        await run_until(feed, lambda: producer.done() and feed.writer.published_number >= max(
            node.produced(FIRST, node.finalized)))
        assert_linked(publisher, node, feed.writer.published_number)
    reasons = [d.reason for d in publisher.dead]
    for expected in ("not JSON", "not an object", "unknown subscription", "no pending request", "body is not JSON",
                     "signatures", "block header"):
        assert any(expected in r for r in reasons), (expected, reasons[:10])
    assert all(d.source == "solana:solana" for d in publisher.dead)
    assert node.blocks[FIRST + 8] is None or f"headless {FIRST + 8}" in faults.injected


@pytest.mark.parametrize("commitment", ["processed", "max"])
def test_commitments_other_than_finalized_and_confirmed_are_refused(commitment: str) -> None:
    with pytest.raises(ValueError, match="commitment"):
        SolanaConfig("solana", ("http://x",), commitment=commitment)


async def test_heartbeats_do_not_take_skipped_head_slots_for_a_lagging_feed(tmp_path: Path) -> None:
    with SolanaNode(FIRST, finalized_lag=0, skipped=lambda s: s >= FIRST + 10) as node:
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")
        await asyncio.to_thread(node.produce, 20)  # the last ten slots have no block: a halted cluster, say
        await run_until(feed, lambda: feed.cursor > node.tip and len(publisher.beats) >= 2)
    beat = publisher.beats[-1]
    assert (beat.published_number, beat.node_head_number) == (FIRST + 9, FIRST + 9)
    assert feed.writer.node_head == node.tip
