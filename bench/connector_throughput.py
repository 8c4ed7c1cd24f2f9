"""Connector throughput: blocks/s and events/s from a local anvil into Kafka.

    .venv/bin/python -m bench.connector_throughput [--blocks 500] [--per-block 50] [--kafka HOST:PORT]

Prepares ``--blocks`` blocks on a fresh anvil (started here with ``infra/anvil.sh`` on a free port), each
with ``--per-block`` labelled withdrawals from the exchange's hot wallet (native and ERC-20, half each),
then publishes the range twice into Kafka, each time under a fresh topic prefix:

- ``backfill``: :class:`connectors.evm.backfill.Backfill` (range ``eth_getLogs`` + blocks by number);
- ``live catch-up``: :class:`connectors.evm.connector.EvmConnector` started at the first block, timed
  until its checkpoint reaches the last (the path a connector takes after downtime).

Without ``--kafka`` a Kafka is started with ``infra/kafka.sh`` on free ports and stopped at the end.
Everything runs on loopback; the figures measure this machine (2 cores), not a real node over a network.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.withdrawals import alternating_withdrawal
from connectors.checkpoint import CheckpointFile
from connectors.evm.backfill import Backfill
from connectors.evm.config import EvmChainConfig
from connectors.evm.connector import EvmConnector
from connectors.evm.rpc import JsonRpcSocket
from connectors.label_watch import LabelSource
from connectors.publisher import BlockPublisher, ensure_topics
from haltwatch.local import free_port, infra
from haltwatch.traffic import ExchangePlayer
from schemas.topics import Topics

EXCHANGE = "bench-exchange"


async def prepare(ws_url: str, blocks: int, per_block: int, labels: Path) -> tuple[int, int]:
    """Mine the blocks; returns (first, last) block numbers."""
    player = ExchangePlayer(ws_url)
    await player.setup()
    player.write_labels(labels, EXCHANGE)
    rng = random.Random(5)
    async with JsonRpcSocket(ws_url, call_timeout=120) as rpc:
        first = int(await rpc.call("eth_blockNumber"), 16) + 1
        nonce = int(await rpc.call("eth_getTransactionCount", [player.hot, "pending"]), 16)
        started = time.monotonic()
        for b in range(blocks):
            txs = [alternating_withdrawal(rng, player.hot, i) for i in range(per_block)]
            for tx in txs:  # explicit nonces let the sends of a block go out concurrently
                tx["nonce"], nonce = hex(nonce), nonce + 1
            await asyncio.gather(*(rpc.call("eth_sendTransaction", [tx]) for tx in txs))
            await rpc.call("evm_mine", [])
            if (b + 1) % 100 == 0:
                print(f"  prepared {b + 1}/{blocks} blocks ({time.monotonic() - started:.0f} s)", file=sys.stderr)
        last = int(await rpc.call("eth_blockNumber"), 16)
    return first, last


def report(mode: str, blocks: int, events: int, seconds: float) -> None:
    print(f"{mode:<15} {blocks:>6} blocks {events:>7} events in {seconds:6.1f} s: "
          f"{blocks / seconds:8.1f} blocks/s {events / seconds:9.0f} events/s")


def run_backfill(config: EvmChainConfig, labels: Path, kafka: str, work: Path, first: int, last: int) -> None:
    topics = Topics(f"benchbf{int(time.time() * 1000)}")
    ensure_topics(kafka, topics, 8)
    publisher = BlockPublisher(kafka, topics)
    try:
        backfill = Backfill(config, LabelSource([labels]), publisher, CheckpointFile(work / "backfill.json"), first,
                            last, progress=False)
        result = asyncio.run(backfill.run())
    finally:
        publisher.close()
    report("backfill", result.blocks, result.events, result.seconds)


def run_live(config: EvmChainConfig, labels: Path, kafka: str, work: Path, first: int, last: int) -> None:
    topics = Topics(f"benchlive{int(time.time() * 1000)}")
    ensure_topics(kafka, topics, 8)
    publisher = BlockPublisher(kafka, topics)

    async def main() -> tuple[int, int, float]:
        connector = EvmConnector(config, LabelSource([labels]), publisher, CheckpointFile(work / "live.json"))
        started = time.monotonic()
        task = asyncio.create_task(connector.run())
        while connector.writer.published_number < last:
            if task.done():
                task.result()
                raise RuntimeError("connector stopped early")
            await asyncio.sleep(0.01)
        seconds = time.monotonic() - started
        connector.stop()
        await task
        return connector.writer.blocks_published, connector.writer.events_published, seconds

    try:
        blocks, events, seconds = asyncio.run(main())
    finally:
        publisher.close()
    report("live catch-up", blocks, events, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--per-block", type=int, default=50)
    parser.add_argument("--kafka", help="bootstrap servers of a running Kafka (default: start one)")
    args = parser.parse_args()
    anvil_env = {"ANVIL_PORT": str(free_port()), "ANVIL_ARGS": "--no-mining"}
    kafka_port = free_port()
    kafka_env = {"KAFKA_PORT": str(kafka_port), "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_PARTITIONS": "8"}
    with tempfile.TemporaryDirectory(prefix="haltwatch-bench-") as tmp:
        work = Path(tmp)
        kafka_env["KAFKA_DATA_DIR"] = str(work / "kafka")
        infra("anvil", "start", anvil_env)
        if args.kafka is None:
            infra("kafka", "start", kafka_env)
        kafka = args.kafka or f"127.0.0.1:{kafka_port}"
        try:
            ws_url = f"ws://127.0.0.1:{anvil_env['ANVIL_PORT']}"
            labels = work / "labels.toml"
            print(f"preparing {args.blocks} blocks x {args.per_block} withdrawals on anvil ...", file=sys.stderr)
            first, last = asyncio.run(prepare(ws_url, args.blocks, args.per_block, labels))
            config = EvmChainConfig("ethereum", (ws_url,), start_block=first, heartbeat_s=60.0)
            print(f"blocks {first}..{last}, {args.per_block} labelled withdrawals each; Kafka {kafka}, 8 partitions")
            run_backfill(config, labels, kafka, work, first, last)
            run_live(config, labels, kafka, work, first, last)
        finally:
            infra("anvil", "stop", anvil_env)
            if args.kafka is None:
                infra("kafka", "stop", kafka_env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
