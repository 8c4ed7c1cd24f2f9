"""A reorg made with ``anvil_reorg``: orphaned withdrawals are retracted, the new canonical ones published.

The transfers topic (read as a consumer honouring retractions would) and ClickHouse (through a real worker
with embedded chdb) must both end with exactly the canonical withdrawals read straight from the node.
"""

from __future__ import annotations

import time
from pathlib import Path

from connectors.evm.rpc import JsonRpcSocket
from connectors.publisher import ensure_topics
from haltwatch.evm_token import transfer_calldata
from haltwatch.local import PipelineProcesses
from haltwatch.traffic import TOKEN_ADDRESS, ExchangePlayer, Phase
from schemas.records import Direction
from streams.store.backend import open_backend
from tests.integration.connector_support import (
    EXCHANGE,
    ConnectorProcess,
    canonical_withdrawals,
    head_numbers_continuous,
    heads,
    key,
    oracle_withdrawals,
    run,
    tip,
    transfers,
    unique_prefix,
    withdrawal_counts,
)

DEPTH = 4


async def reorg(ws_url: str, hot: str, depth: int) -> list[str]:
    """Replace the last ``depth`` blocks with blocks holding two new withdrawals; returns their hashes."""
    users = ["0x" + "77" * 19 + f"{i:02x}" for i in range(2)]
    txs = [
        [{"from": hot, "to": users[0], "value": hex(3 * 10**17)}, 0],
        [{"from": hot, "to": TOKEN_ADDRESS, "data": transfer_calldata(users[1], 123_000_000)}, depth - 1],
    ]
    async with JsonRpcSocket(ws_url) as rpc:
        await rpc.call("anvil_reorg", [depth, txs])
        new_blocks = [await rpc.call("eth_getBlockByNumber", ["latest", False])]
        first = int(new_blocks[0]["number"], 16) - depth + 1
        hashes = []
        for number in range(first, first + depth):
            block = await rpc.call("eth_getBlockByNumber", [hex(number), False])
            hashes += [h.lower() for h in block["transactions"]]
    return hashes


def test_reorg_retracts_orphaned_withdrawals_everywhere(kafka: str, anvil: str, run_dir: Path) -> None:
    player = ExchangePlayer(anvil, seed=31)
    run(player.setup())
    run_dir.mkdir(parents=True)
    labels = run_dir / "labels.toml"
    player.write_labels(labels, EXCHANGE)
    prefix = unique_prefix("reorg")
    pipeline = PipelineProcesses(run_dir / "worker", kafka, anvil, labels, prefix)
    ensure_topics(kafka, pipeline.topics, pipeline.partitions)
    connector = ConnectorProcess(run_dir, kafka, prefix, [anvil], labels)
    first = run(tip(anvil)) + 1
    try:
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        connector.start(start_block=first)
        played = run(player.play([Phase("steady", 20, 2.0)]))
        connector.wait_published(played[-1].number)
        orphaned_from = played[-1].number - DEPTH + 1
        before_all = {(r.record.exchange, r.record.direction, key(r.record)) for r in transfers(kafka, pipeline.topics)
                      if r.record.block_number >= orphaned_from}
        before = {k for _, d, k in before_all if d is Direction.WITHDRAWAL}
        assert before, "the blocks to be orphaned hold withdrawals (else the test proves nothing)"

        new_txs = run(reorg(anvil, player.hot, DEPTH))
        more = run(player.play([Phase("after", 3, 1.0)]))
        last = more[-1].number
        connector.wait_published(last)
        time.sleep(1)

        reads = transfers(kafka, pipeline.topics)
        oracle = run(oracle_withdrawals(anvil, player.hot, first, last))
        assert canonical_withdrawals(reads) == oracle
        assert {tx for _, tx, _ in oracle} >= set(new_txs), "the reorg's own withdrawals are published"
        retracted = [(r.record.exchange, r.record.direction, key(r.record)) for r in reads if r.record.removed]
        assert sorted(retracted) == sorted(before_all), "each orphaned event (any direction) retracted exactly once"
        assert not before & oracle
        assert set(withdrawal_counts(reads).values()) == {1}, "no withdrawal published twice"
        for r in reads:  # a retraction lands after its original in the same partition
            if r.record.removed:
                original = next(o for o in reads if not o.record.removed and key(o.record) == key(r.record)
                                and o.record.exchange == r.record.exchange)
                assert (original.partition, original.offset < r.offset) == (r.partition, True)
        problems = head_numbers_continuous([h for h in heads(kafka, pipeline.topics)
                                            if h.number <= last - DEPTH - 3], first, last - DEPTH - 3)
        assert problems == []

        deadline = time.monotonic() + 60  # the worker's ClickHouse sink catches up
        while time.monotonic() < deadline and pipeline.api(f"/withdrawals/count?exchange={EXCHANGE}")["count"] != len(
            oracle
        ):
            time.sleep(0.5)
    finally:
        connector.stop()
        pipeline.stop()
    backend = open_backend(None, run_dir / "worker" / "chdb")
    try:
        rows = backend.query(
            f"SELECT block_hash, tx_hash, log_index FROM {backend.database}.transfers FINAL "
            "WHERE exchange = {ex:String} AND direction = 'withdrawal' AND removed = 0",
            {"ex": EXCHANGE},
        )
    finally:
        backend.close()
    assert {(r["block_hash"], r["tx_hash"], int(r["log_index"])) for r in rows} == oracle
