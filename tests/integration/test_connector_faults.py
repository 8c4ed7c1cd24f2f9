"""The connector under faults, against anvil and Kafka: nothing missing, nothing extra, no gap in heads.

Each test plays withdrawals on anvil, injects one kind of fault with a real mechanism (SIGKILL, a TCP
proxy cutting connections, a websocket node that sends junk or lags), and ends by comparing the topics
with the canonical withdrawals read straight from the node.

About duplicates after SIGKILL: a block is checkpointed after Kafka acknowledged it. A process killed in
between publishes that block again on restart, with identical records (same event ids, same content;
only the head's wall-clock ``received_at`` differs). So at most one block per kill may appear twice, and
the test checks exactly that bound rather than pretending Kafka gives exactly-once here.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from connectors.publisher import ensure_topics
from haltwatch.evm_token import transfer_calldata
from haltwatch.local import OutageWatcher, PipelineProcesses, free_port
from haltwatch.traffic import NO_RETURN_TOKEN_ADDRESS, TOKEN_ADDRESS, BlockPlayed, ExchangePlayer, Phase
from schemas.records import TransferEvent
from schemas.topics import Topics
from tests.fake_node import FakeNode, Faults
from tests.integration.connector_support import (
    EXCHANGE,
    ConnectorProcess,
    canonical_withdrawals,
    dead_letters,
    head_numbers_continuous,
    heads,
    oracle_withdrawals,
    run,
    tip,
    transfers,
    unique_prefix,
    withdrawal_counts,
)
from tests.tcp_proxy import TcpProxy


def setup(kafka: str, anvil: str, run_dir: Path, name: str, seed: int) -> tuple[ExchangePlayer, Path, Topics, str]:
    player = ExchangePlayer(anvil, seed=seed)
    run(player.setup())
    run_dir.mkdir(parents=True, exist_ok=True)
    labels = run_dir / "labels.toml"
    player.write_labels(labels, EXCHANGE)
    prefix = unique_prefix(name)
    topics = Topics(prefix)
    ensure_topics(kafka, topics, 4)
    return player, labels, topics, prefix


def metric(port: int, name: str) -> float:
    """Sum of a counter's samples on the connector's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def assert_complete(kafka: str, topics: Topics, anvil: str, hot: str, first: int, last: int,
                    max_duplicated_blocks: int = 0) -> None:
    """Topics hold exactly the node's canonical withdrawals and one head per block (bounded repeats)."""
    reads = transfers(kafka, topics)
    oracle = run(oracle_withdrawals(anvil, hot, first, last))
    assert oracle, "the played blocks hold withdrawals (else this proves nothing)"
    assert canonical_withdrawals(reads) == oracle
    counts = withdrawal_counts(reads)
    repeated_blocks = {k[0] for k, n in counts.items() if n > 1}
    assert len(repeated_blocks) <= max_duplicated_blocks, f"withdrawals published twice in blocks {repeated_blocks}"
    by_id: dict[str, TransferEvent] = {}
    for r in reads:  # any repeat is the identical record
        t = r.record
        assert by_id.setdefault(f"{t.event_id}:{t.removed}", t) == t
    found = [h for h in heads(kafka, topics) if first <= h.number <= last]
    assert head_numbers_continuous(found, first, last) == []
    repeated_heads = len(found) - (last - first + 1)
    assert 0 <= repeated_heads <= max_duplicated_blocks, f"{repeated_heads} heads repeated"


def test_sigkill_and_restart_lose_nothing(kafka: str, anvil: str, run_dir: Path) -> None:
    player, labels, topics, prefix = setup(kafka, anvil, run_dir, "kill", 41)
    connector = ConnectorProcess(run_dir, kafka, prefix, [anvil], labels)
    first = run(tip(anvil)) + 1
    kills = 0

    def kill_at(n: int) -> Callable[[BlockPlayed], None]:
        def on_block(block: BlockPlayed) -> None:
            nonlocal kills
            if block.number == first + n and connector.alive():
                connector.kill()  # mid-stream: the connector is busy with the blocks just mined
                kills += 1
        return on_block

    try:
        connector.start(start_block=first, wait_live=True)
        run(player.play([Phase("a", 25, 2.0)], on_block=kill_at(12)))
        run(player.play([Phase("down", 15, 2.0)]))  # paid out while no connector runs
        connector.start(wait_live=True)
        more = run(player.play([Phase("b", 25, 2.0)], on_block=kill_at(25 + 15 + 8)))
        connector.start()
        last = more[-1].number
        connector.wait_published(last)
        assert kills == 2
    finally:
        connector.stop()
    assert_complete(kafka, topics, anvil, player.hot, first, last, max_duplicated_blocks=kills)


def test_dropped_websocket_reconnects_and_backfills(kafka: str, anvil: str, run_dir: Path) -> None:
    """Cuts and a refused node mid-stream: nothing missing, and a warm detector sees no outage in the gap."""
    player, labels, topics, prefix = setup(kafka, anvil, run_dir, "drop", 43)
    port = free_port()
    worker = PipelineProcesses(run_dir / "worker", kafka, anvil, labels, prefix)
    watcher = OutageWatcher(kafka, topics)
    warmup = 330  # an hour of chain time: past the detector's warm-up, so silence would be seen
    with TcpProxy("127.0.0.1", int(anvil.rsplit(":", 1)[1])) as proxy:
        connector = ConnectorProcess(run_dir, kafka, prefix, [proxy.url], labels, extra=["--metrics-port", str(port)])
        first = run(tip(anvil)) + 1

        def faults(block: BlockPlayed) -> None:
            offset = block.number - first - warmup
            if offset in (10, 25):
                proxy.cut()  # the websocket dies mid-stream
            elif offset == 40:
                proxy.refuse(True)  # the node is unreachable for 30 blocks (6 minutes of chain time) ...
            elif offset == 70:
                proxy.refuse(False)  # ... and back

        try:
            worker.start_worker()
            worker.wait_worker_ready()
            connector.start(start_block=first)
            played = run(player.play([Phase("steady", warmup + 90, 2.0)], on_block=faults))
            last = played[-1].number
            connector.wait_published(last, timeout_s=90)
            assert proxy.cuts >= 3 and proxy.connections >= 3
            assert metric(port, "haltwatch_connector_reconnects_total") >= 3
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(
                s["head_number"] >= last for s in worker.api("/detector")
            ):
                time.sleep(0.5)
            (state,) = worker.api("/detector")
            assert state["head_number"] >= last and state["withdrawals_seen"] >= 50, state
            time.sleep(2)
            assert watcher.events == [], "the detector must not take our own lost feed for a halt"
        finally:
            watcher.close()
            connector.stop()
            worker.stop()
    assert_complete(kafka, topics, anvil, player.hot, first, last)


async def odd_withdrawals(ws_url: str, hot: str) -> list[str]:
    """A token payout of 2**256 - 1 units and a payout with a USDT-style token that returns nothing."""
    from connectors.evm.rpc import JsonRpcSocket

    user = "0x" + "42" * 20
    async with JsonRpcSocket(ws_url) as rpc:
        hashes = [
            await rpc.call("eth_sendTransaction", [{"from": hot, "to": TOKEN_ADDRESS,
                                                    "data": transfer_calldata(user, 2**256 - 1)}]),
            await rpc.call("eth_sendTransaction", [{"from": hot, "to": NO_RETURN_TOKEN_ADDRESS,
                                                    "data": transfer_calldata(user, 5 * 10**6)}]),
        ]
        await rpc.call("evm_mine", [])
    return [h.lower() for h in hashes]


def test_malformed_and_oversized_frames_are_dead_lettered_and_the_feed_goes_on(
    kafka: str, anvil: str, run_dir: Path
) -> None:
    player, labels, topics, prefix = setup(kafka, anvil, run_dir, "junk", 47)
    faults = Faults(garbage_after_notification=True, unknown_fields=True, rate_limit_every=9)
    with FakeNode(anvil, faults) as node:
        connector = ConnectorProcess(run_dir, kafka, prefix, [node.url], labels, extra=["--max-frame-mb", "1"])
        first = run(tip(anvil)) + 1

        def oversize(block: BlockPlayed) -> None:
            if block.number == first + 15:
                faults.oversized_once = 2 * 1024 * 1024

        try:
            connector.start(start_block=first, wait_live=True)  # junk follows notifications: only a subscriber sees it
            run(player.play([Phase("steady", 30, 2.0)], on_block=oversize))
            assert f"oversized {2 * 1024 * 1024}" in faults.injected, "the big frame went out on a notification"
            odd = run(odd_withdrawals(anvil, player.hot))
            played = run(player.play([Phase("after", 5, 1.0)]))
            last = played[-1].number
            connector.wait_published(last, timeout_s=90)
            connector.check_alive()
            assert node.rate_limited > 0 and node.connections >= 2, "rate limited, and reconnected after the big frame"
        finally:
            connector.stop()
    assert_complete(kafka, topics, anvil, player.hot, first, last)
    reads = transfers(kafka, topics)
    amounts = {r.record.tx_hash: r.record.amount for r in reads if r.record.tx_hash in odd}
    assert amounts == {odd[0]: str(2**256 - 1), odd[1]: str(5 * 10**6)}
    reasons = [d.reason for d in dead_letters(kafka, topics)]
    for expected in ("not JSON", "not an object", "unknown subscription", "reply to no pending request",
                     "frame over 1048576 bytes"):
        assert any(expected in r for r in reasons), (expected, reasons[:20])
    oversized = next(d for d in dead_letters(kafka, topics) if "frame over" in d.reason)
    assert oversized.source == "evm:ethereum" and "waiting_calls" in oversized.payload


def test_lagging_node_is_left_for_one_that_keeps_up(kafka: str, anvil: str, run_dir: Path) -> None:
    player, labels, topics, prefix = setup(kafka, anvil, run_dir, "lag", 53)
    first = run(tip(anvil)) + 1
    port = free_port()
    with FakeNode(anvil, Faults(frozen_head=first + 4)) as stuck:
        connector = ConnectorProcess(
            run_dir, kafka, prefix, [stuck.url, anvil], labels,
            extra=["--lag-blocks", "3", "--lag-check-s", "1", "--metrics-port", str(port)],
        )
        try:
            connector.start(start_block=first)
            played = run(player.play([Phase("steady", 30, 2.0)]))
            last = played[-1].number
            connector.wait_published(last, timeout_s=60)
            assert metric(port, "haltwatch_connector_node_lag_switches_total") >= 1
        finally:
            connector.stop()
    assert_complete(kafka, topics, anvil, player.hot, first, last)


def test_wrong_chain_id_publishes_nothing(kafka: str, anvil: str, run_dir: Path) -> None:
    _player, labels, topics, prefix = setup(kafka, anvil, run_dir, "chainid", 59)
    connector = ConnectorProcess(run_dir, kafka, prefix, [anvil], labels, extra=["--chain-id", "1"])
    connector.start()
    assert connector.proc is not None
    assert connector.proc.wait(60) == 2
    assert "serves chain id 31337, configured 1" in connector.log_tail()
    assert heads(kafka, topics) == [] and transfers(kafka, topics) == []
    assert not connector.checkpoint.exists()
