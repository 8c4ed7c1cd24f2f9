"""The Tron connector against real Kafka and the loopback full-node HTTP API: restarts, forks, bad replies.

The node speaks java-tron's ``/wallet/*`` HTTP API (tests/nodes/tron_node.py); the connector runs as
``haltwatch connect --chain tron`` in a subprocess, polls it, and is killed with SIGKILL mid-stream.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.connector_support import dead_letters
from tests.integration.feed_support import FeedProcess, assert_published, labels_of, topics_for, wait_for
from tests.nodes.tron_node import TronFaults, TronNode

FIRST = 66_000_000


def canonical(node: TronNode) -> list[tuple[int, str]]:
    return [(e["block"]["block_header"]["raw_data"]["number"], e["block"]["blockID"]) for e in node.chain]


def play(node: TronNode, blocks: int, pause_s: float = 0.1) -> None:
    for _ in range(blocks):
        node.produce(1)
        time.sleep(pause_s)


def process(node: TronNode, run_dir: Path, kafka: str, prefix: str) -> FeedProcess:
    return FeedProcess(run_dir, kafka, prefix, [], labels_of("tron"), chain="tron", urls=[node.url],
                       extra=["--poll-s", "0.3"])


def test_sigkill_restart_and_a_fork_lose_nothing(kafka: str, run_dir: Path) -> None:
    topics, prefix = topics_for(kafka, "trx-kill")
    with TronNode(FIRST) as node:
        connector = process(node, run_dir, kafka, prefix)
        try:
            node.produce(3)
            connector.start(start_block=FIRST)
            play(node, 20)
            wait_for(lambda: connector.published() >= FIRST + 12, "first blocks", connector)
            connector.kill()
            play(node, 15)  # blocks go by while no connector runs
            connector.start()
            play(node, 10)
            wait_for(lambda: connector.published() >= node.tip, "caught up", connector)
            node.reorg(2)  # a live fork replaces the two newest blocks
            play(node, 5)
            connector.kill()
            connector.start()
            play(node, 5)
            wait_for(lambda: connector.published() >= node.tip, f"block {node.tip}", connector)
            time.sleep(1)
        finally:
            connector.stop()
        assert_published(kafka, topics, "tron", canonical(node), node.withdrawals(), max_repeats=2, orphaned_ok=True)


def test_error_replies_and_junk_bodies_are_dead_lettered_and_the_feed_goes_on(kafka: str, run_dir: Path) -> None:
    topics, prefix = topics_for(kafka, "trx-junk")
    faults = TronFaults(error_every=11, garbage_body_every=7, malformed_tx_every=4, rate_limit_every=19)
    with TronNode(FIRST, faults) as node:
        connector = process(node, run_dir, kafka, prefix)
        try:
            node.produce(3)
            connector.start(start_block=FIRST)
            play(node, 30)
            wait_for(lambda: connector.published() >= node.tip, f"block {node.tip}", connector, timeout_s=90)
            connector.check_alive()
        finally:
            connector.stop()
        assert_published(kafka, topics, "tron", canonical(node), node.withdrawals())
        assert "Error" in faults.injected and "html" in faults.injected
    letters = dead_letters(kafka, topics)
    reasons = [d.reason for d in letters]
    for expected in ("body is not JSON", "amount"):
        assert any(expected in r for r in reasons), (expected, reasons[:20])
    assert {d.source for d in letters} == {"tron:tron"}
