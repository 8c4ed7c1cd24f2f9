"""The Bitcoin connector in-process against the loopback Esplora server: pages, pushes, reorgs, restarts.

No Kafka here (a recording publisher stands in); the same scenarios run against real Kafka in
tests/integration/test_connector_bitcoin.py.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from connectors.bitcoin.config import BitcoinConfig
from connectors.bitcoin.connector import BitcoinConnector
from connectors.checkpoint import CheckpointFile
from connectors.label_watch import LabelSource
from tests.nodes.esplora_node import EsploraFaults, EsploraNode
from tests.unit.feed_fakes import RecordingPublisher, run_until

LABELS = Path(__file__).parents[1] / "fixtures" / "bitcoin" / "labels.toml"
FIRST = 870_000


def connector(node: EsploraNode, publisher: RecordingPublisher, checkpoint: Path, ws: bool = True,
              **overrides: Any) -> BitcoinConnector:
    config = BitcoinConfig("bitcoin", (node.url + "/api",), ws_urls=(node.ws_url + "/api/v1/ws",) if ws else (),
                           start_block=FIRST, head_poll_s=0.5, heartbeat_s=0.5, **overrides)
    return BitcoinConnector(config, LabelSource([LABELS]), publisher, CheckpointFile(checkpoint))  # type: ignore[arg-type]


def canonical(publisher: RecordingPublisher) -> set[tuple[Any, ...]]:
    """Events a consumer that honours retractions ends with."""
    events = {(t.block_hash, t.tx_hash, t.log_index, t.exchange) for t in publisher.transfers}
    removed = {(t.block_hash, t.tx_hash, t.log_index, t.exchange) for t in publisher.retractions}
    return events - removed


def assert_complete(publisher: RecordingPublisher, node: EsploraNode) -> None:
    best = [e["block"] for e in node.chain]
    last_by_number = {h.number: h for h in publisher.heads}  # the newest head per height is the canonical one
    assert [last_by_number[b["height"]].hash for b in best] == [b["id"] for b in best]
    expected = {(r[0], r[1], r[2], r[8]) for r in node.expected if r[0] in node.canonical_hashes()}
    assert canonical(publisher) == expected


async def test_every_block_once_with_all_its_pages(tmp_path: Path) -> None:
    with EsploraNode(FIRST, EsploraFaults(filler_txs=60)) as node:
        await asyncio.to_thread(node.produce, 3)
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")
        await asyncio.to_thread(node.produce, 5)
        await run_until(feed, lambda: feed.writer.published_number >= node.tip)
    assert [h.number for h in publisher.heads] == list(range(FIRST, node.tip + 1))
    assert all(b.parent_hash == a.hash for a, b in itertools.pairwise(publisher.heads))
    assert_complete(publisher, node)


async def test_a_reorg_retracts_the_orphaned_block_and_publishes_the_new_ones(tmp_path: Path) -> None:
    with EsploraNode(FIRST) as node:
        await asyncio.to_thread(node.produce, 6)
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")

        async def reorg_then_more() -> None:
            while feed.writer.published_number < node.tip:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(node.reorg, 2)
            await asyncio.to_thread(node.produce, 2)

        changer = asyncio.create_task(reorg_then_more())
        await run_until(feed, lambda: changer.done() and feed.writer.published_number >= node.tip
                        and feed.writer.checkpoint.hash == node.chain[-1]["block"]["id"])
    assert publisher.retractions, "the orphaned blocks' events were retracted"
    assert_complete(publisher, node)


async def test_polling_alone_follows_without_a_websocket(tmp_path: Path) -> None:
    with EsploraNode(FIRST) as node:
        await asyncio.to_thread(node.produce, 4)
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json", ws=False)
        await run_until(feed, lambda: feed.writer.published_number >= node.tip)
        await asyncio.to_thread(node.produce, 3)
        feed2 = connector(node, publisher, tmp_path / "cp.json", ws=False)
        await run_until(feed2, lambda: feed2.writer.published_number >= node.tip)
    assert_complete(publisher, node)


async def test_junk_pushes_and_bodies_are_dead_lettered_and_the_feed_goes_on(tmp_path: Path) -> None:
    faults = EsploraFaults(junk_after_push=True, garbage_body_every=4, malformed_tx_every=3, rate_limit_every=13)
    with EsploraNode(FIRST, faults) as node:
        await asyncio.to_thread(node.produce, 2)
        publisher = RecordingPublisher()
        feed = connector(node, publisher, tmp_path / "cp.json")

        async def mine() -> None:
            for _ in range(8):
                await asyncio.to_thread(node.produce, 1)
                await asyncio.sleep(0.1)

        miner = asyncio.create_task(mine())
        await run_until(feed, lambda: miner.done() and feed.writer.published_number >= node.tip)
    assert_complete(publisher, node)
    reasons = [d.reason for d in publisher.dead]
    for expected in ("not JSON", "not an object", "without a height", "body is not JSON", "value"):
        assert any(expected in r for r in reasons), (expected, reasons[:10])
    assert all(d.source == "bitcoin:bitcoin" for d in publisher.dead)
