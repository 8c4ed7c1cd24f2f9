"""The Tron connector in-process against the loopback full-node API: polling, forks, restarts, bad replies.

No Kafka here (a recording publisher stands in); the same scenarios run against real Kafka in
tests/integration/test_connector_tron.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from connectors.checkpoint import CheckpointFile
from connectors.label_watch import LabelSource
from connectors.tron.config import TronConfig
from connectors.tron.connector import TronConnector
from tests.nodes.tron_node import TronFaults, TronNode
from tests.unit.feed_fakes import RecordingPublisher, run_until

LABELS = Path(__file__).parents[1] / "fixtures" / "tron" / "labels.toml"
FIRST = 66_000_000


def connector(node: TronNode, publisher: RecordingPublisher, checkpoint: Path, **overrides: Any) -> TronConnector:
    config = TronConfig("tron", (node.url,), start_block=FIRST, head_poll_s=0.2, heartbeat_s=0.5, **overrides)
    return TronConnector(config, LabelSource([LABELS]), publisher, CheckpointFile(checkpoint))  # type: ignore[arg-type]


def assert_complete(publisher: RecordingPublisher, node: TronNode) -> None:
    newest = {h.number: h for h in publisher.heads}
    assert [newest[e["block"]["block_header"]["raw_data"]["number"]].hash for e in node.chain] == [
        e["block"]["blockID"] for e in node.chain]
    got = {(t.block_hash, t.tx_hash, t.log_index, t.exchange, t.asset, t.amount, t.decimals)
           for t in publisher.transfers} - {(t.block_hash, t.tx_hash, t.log_index, t.exchange, t.asset, t.amount,
                                             t.decimals) for t in publisher.retractions}
    expected = {(r[0], r[1], r[2], r[8], r[3], r[4], r[5]) for r in node.expected if r[0] in node.canonical_hashes()}
    assert got == expected


async def test_every_block_once_and_token_decimals_asked_once(tmp_path: Path) -> None:
    with TronNode(FIRST) as node:
        await asyncio.to_thread(node.produce, 20)
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")
        await run_until(feed, lambda: feed.writer.published_number >= node.tip)
    assert [h.number for h in publisher.heads] == list(range(FIRST, node.tip + 1))
    assert_complete(publisher, node)
    assert node.decimals_asked == [node.odd_token_hex], "USDT's decimals are known; the odd token's asked once"


async def test_a_fork_is_retracted_and_the_new_blocks_published(tmp_path: Path) -> None:
    with TronNode(FIRST) as node:
        await asyncio.to_thread(node.produce, 10)
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")

        async def fork() -> None:
            while feed.writer.published_number < node.tip:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(node.reorg, 3)

        forker = asyncio.create_task(fork())
        newest = lambda: node.chain[-1]["block"]["blockID"]  # noqa: E731
        await run_until(feed, lambda: forker.done() and feed.writer.checkpoint.hash == newest())
    assert publisher.retractions
    assert_complete(publisher, node)


async def test_confirmations_hold_back_the_newest_blocks(tmp_path: Path) -> None:
    with TronNode(FIRST) as node:
        await asyncio.to_thread(node.produce, 30)
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json", confirmations=19)
        await run_until(feed, lambda: feed.writer.published_number >= node.tip - 19)
        await asyncio.sleep(0.5)
    assert publisher.heads[-1].number == node.tip - 19


async def test_error_replies_and_junk_bodies_are_dead_lettered_and_the_feed_goes_on(tmp_path: Path) -> None:
    faults = TronFaults(error_every=9, garbage_body_every=7, malformed_tx_every=4, rate_limit_every=17)
    with TronNode(FIRST, faults) as node:
        await asyncio.to_thread(node.produce, 25)
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")
        await run_until(feed, lambda: feed.writer.published_number >= node.tip, timeout_s=60)
    assert_complete(publisher, node)
    assert "Error" in faults.injected and "html" in faults.injected
    reasons = [d.reason for d in publisher.dead]
    for expected in ("body is not JSON", "amount"):
        assert any(expected in r for r in reasons), (expected, reasons[:10])
