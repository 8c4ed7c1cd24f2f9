"""The Solana connector against real Kafka and the loopback Solana node: restarts over skipped slots, junk.

The node speaks Solana's documented JSON-RPC and pubsub (tests/nodes/solana_node.py); the connector runs
as ``haltwatch connect --chain solana`` in a subprocess and is killed with SIGKILL mid-stream.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.connector_support import dead_letters
from tests.integration.feed_support import FeedProcess, assert_published, labels_of, topics_for, wait_for
from tests.nodes.solana_node import SolanaFaults, SolanaNode

FIRST = 5_000


def canonical(node: SolanaNode, last: int) -> list[tuple[int, str]]:
    return [(s, node.blocks[s]["blockhash"]) for s in node.produced(FIRST, last)]  # type: ignore[index]


def play(node: SolanaNode, rounds: int, per_round: int = 3, pause_s: float = 0.1) -> None:
    for _ in range(rounds):
        node.produce(per_round)
        time.sleep(pause_s)


def test_sigkill_and_restart_publish_every_produced_slot_once(kafka: str, run_dir: Path) -> None:
    topics, prefix = topics_for(kafka, "sol-kill")
    with SolanaNode(FIRST) as node:
        connector = FeedProcess(run_dir, kafka, prefix, [node.ws_url], labels_of("solana"), chain="solana",
                                urls=[node.url], extra=["--poll-s", "0.5"])
        try:
            node.produce(6)
            connector.start(start_block=FIRST)
            play(node, 15)
            wait_for(lambda: connector.published() >= FIRST + 20, "first blocks", connector)
            connector.kill()
            play(node, 20)  # slots (some skipped) go by while no connector runs
            connector.start()
            play(node, 10)
            connector.kill()
            connector.start()
            play(node, 15)
            last = max(node.produced(FIRST, node.finalized))
            wait_for(lambda: connector.published() >= last, f"slot {last}", connector)
        finally:
            connector.stop()
        assert any(node.blocks[s] is None for s in range(FIRST, last)), "the run crossed skipped slots"
        assert_published(kafka, topics, "solana", canonical(node, last), node.withdrawals(FIRST, last), max_repeats=2)


def test_junk_frames_and_bodies_are_dead_lettered_and_the_feed_goes_on(kafka: str, run_dir: Path) -> None:
    topics, prefix = topics_for(kafka, "sol-junk")
    faults = SolanaFaults(junk_after_notification=True, garbage_body_every=9, malformed_tx_every=4,
                          unavailable_once={FIRST + 2, FIRST + 9}, rate_limit_every=23)
    with SolanaNode(FIRST, faults=faults) as node:
        connector = FeedProcess(run_dir, kafka, prefix, [node.ws_url], labels_of("solana"), chain="solana",
                                urls=[node.url], extra=["--poll-s", "0.5"])
        try:
            node.produce(4)
            # the junk frames follow notifications, which only a subscribed connector gets: on a busy machine
            # one still starting up subscribed after the last slot was played and never saw a junk frame
            connector.start(start_block=FIRST, wait_live=True)
            play(node, 20)
            last = max(node.produced(FIRST, node.finalized))
            wait_for(lambda: connector.published() >= last, f"slot {last}", connector, timeout_s=90)
            connector.check_alive()
        finally:
            connector.stop()
        assert_published(kafka, topics, "solana", canonical(node, last), node.withdrawals(FIRST, last))
    letters = dead_letters(kafka, topics)
    reasons = [d.reason for d in letters]
    for expected in ("not JSON", "not an object", "unknown subscription", "no pending request", "body is not JSON",
                     "signatures"):
        assert any(expected in r for r in reasons), (expected, reasons[:20])
    assert {d.source for d in letters} == {"solana:solana"}
