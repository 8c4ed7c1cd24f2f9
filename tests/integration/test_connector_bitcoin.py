"""The Bitcoin connector against real Kafka and the loopback Esplora server: restarts, reorgs, junk.

The server speaks Esplora's REST API and mempool.space's websocket (tests/nodes/esplora_node.py); the
connector runs as ``haltwatch connect --chain bitcoin`` in a subprocess and is killed with SIGKILL mid-stream.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.connector_support import dead_letters
from tests.integration.feed_support import FeedProcess, assert_published, labels_of, topics_for, wait_for
from tests.nodes.esplora_node import EsploraFaults, EsploraNode

FIRST = 870_000


def canonical(node: EsploraNode) -> list[tuple[int, str]]:
    return [(e["block"]["height"], e["block"]["id"]) for e in node.chain]


def mine(node: EsploraNode, blocks: int, pause_s: float = 0.2) -> None:
    for _ in range(blocks):
        node.produce(1)
        time.sleep(pause_s)


def process(node: EsploraNode, run_dir: Path, kafka: str, prefix: str) -> FeedProcess:
    return FeedProcess(run_dir, kafka, prefix, [node.ws_url + "/api/v1/ws"], labels_of("bitcoin"), chain="bitcoin",
                       urls=[node.url + "/api"], extra=["--poll-s", "1"])


def test_sigkill_restart_and_reorgs_lose_nothing_and_retract_orphans(kafka: str, run_dir: Path) -> None:
    topics, prefix = topics_for(kafka, "btc-kill")
    with EsploraNode(FIRST, EsploraFaults(filler_txs=30)) as node:
        connector = process(node, run_dir, kafka, prefix)
        try:
            node.produce(2)
            connector.start(start_block=FIRST)
            mine(node, 6)
            wait_for(lambda: connector.published() >= node.tip, "first blocks", connector)
            node.reorg(2)  # a live reorg: the connector must retract two published blocks
            mine(node, 3)
            wait_for(lambda: connector.published() >= node.tip, "blocks after the live reorg", connector)
            connector.kill()
            mine(node, 2)
            node.reorg(1)  # while nobody watches: the checkpointed tip itself may be orphaned
            mine(node, 2)
            connector.start()
            mine(node, 3)
            wait_for(lambda: connector.published() >= node.tip, f"block {node.tip}", connector)
            time.sleep(1)
        finally:
            connector.stop()
        assert node.reorgs == 2
        assert_published(kafka, topics, "bitcoin", canonical(node), node.withdrawals(), max_repeats=1,
                         orphaned_ok=True)


def test_junk_pushes_and_bodies_are_dead_lettered_and_the_feed_goes_on(kafka: str, run_dir: Path) -> None:
    topics, prefix = topics_for(kafka, "btc-junk")
    faults = EsploraFaults(junk_after_push=True, garbage_body_every=5, malformed_tx_every=3, rate_limit_every=17)
    with EsploraNode(FIRST, faults) as node:
        connector = process(node, run_dir, kafka, prefix)
        try:
            node.produce(2)
            connector.start(start_block=FIRST, wait_live=True)
            mine(node, 10)
            wait_for(lambda: connector.published() >= node.tip, f"block {node.tip}", connector, timeout_s=90)
            connector.check_alive()
        finally:
            connector.stop()
        assert_published(kafka, topics, "bitcoin", canonical(node), node.withdrawals())
    letters = dead_letters(kafka, topics)
    reasons = [d.reason for d in letters]
    for expected in ("not JSON", "not an object", "without a height", "body is not JSON", "value"):
        assert any(expected in r for r in reasons), (expected, reasons[:20])
    assert {d.source for d in letters} == {"bitcoin:bitcoin"}
