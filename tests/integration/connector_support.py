"""What the connector fault tests share: a connector subprocess, readers of the topics, and the node oracle.

The oracle reads the canonical withdrawals straight from the node (blocks with full transactions,
receipts, and ``eth_getLogs`` over the range), independent of the code under test, so every fault test
can end with: nothing missing, nothing extra, nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from connectors.evm.rpc import JsonRpcSocket
from haltwatch.local import REPO
from schemas.codec import decode
from schemas.records import ChainHead, DeadLetter, Direction, TransferEvent, events_of
from schemas.topics import Topics

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
EXCHANGE = "demo-exchange"


def unique_prefix(name: str) -> str:
    return f"{name}{int(time.time() * 1000)}"


LIVE_MARK = "publishing from"
"""Every connector family logs this once it is connected and about to publish."""


@dataclass
class ConnectorProcess:
    """``haltwatch connect`` as a subprocess with its log in ``run_dir``."""

    run_dir: Path
    kafka: str
    prefix: str
    ws_urls: list[str]
    labels: Path
    extra: list[str] = field(default_factory=list)
    partitions: int = 4
    chain: str = "ethereum"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / f"checkpoint-{self.chain}.json"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "connector.log"

    def command_args(self) -> list[str]:
        args = ["connect", "--chain", self.chain, "--labels", str(self.labels), "--checkpoint", str(self.checkpoint),
                "--kafka", self.kafka, "--prefix", self.prefix, "--partitions", str(self.partitions), *self.extra]
        for url in self.ws_urls:
            args += ["--ws-url", url]
        return args

    def start(self, start_block: int | None = None, wait_live: bool = False) -> None:
        """``wait_live``: return only once the connector logged that it is publishing (it has subscribed), so a
        test that then mines a few blocks quickly hits a running connector, not one still importing Python."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        before = self.log_tail(10**9).count(LIVE_MARK)
        args = self.command_args()
        if start_block is not None:
            args += ["--start-block", str(start_block)]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        env = {k: v for k, v in os.environ.items() if not k.startswith("HALTWATCH_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "haltwatch", *args], stdout=log, stderr=subprocess.STDOUT,
                                     env={**env, "PYTHONUNBUFFERED": "1"}, cwd=REPO, start_new_session=True)
        if wait_live:
            deadline = time.monotonic() + 60
            while self.log_tail(10**9).count(LIVE_MARK) <= before:
                self.check_alive()
                if time.monotonic() > deadline:
                    raise AssertionError(f"connector never started publishing:\n{self.log_tail()}")
                time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"connector exited ({self.proc and self.proc.returncode}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def published(self) -> int:
        try:
            return int(orjson.loads(self.checkpoint.read_bytes())["number"])
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError):
            return -1

    def wait_published(self, number: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if self.published() >= number:
                return
            time.sleep(0.1)
        raise AssertionError(f"connector did not publish block {number} (at {self.published()}):\n{self.log_tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass(frozen=True)
class Read:
    """One record read back from a topic, with where it was."""

    partition: int
    offset: int
    record: Any


def read_topic(kafka: str, topic: str, idle_ms: int = 1500) -> list[Read]:
    """Every record of a topic, from the beginning, as a downstream consumer would see it (the transfers and
    head of a :class:`BlockTransfers` as records of their own)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=idle_ms)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        seen = {tp.partition: consumer.beginning_offsets([tp])[tp] for tp in parts}
        out = []
        for message in consumer:  # position() may run ahead of what was yielded: count yielded offsets
            record = decode(message.value)
            # a block's records stand for the transfers and head they hold, at the block record's offset
            for one in events_of(record):
                out.append(Read(message.partition, message.offset, one))
            seen[message.partition] = message.offset + 1
            if all(seen[tp.partition] >= ends[tp] for tp in parts):
                break
        return out
    finally:
        consumer.close()


def transfers(kafka: str, topics: Topics) -> list[Read]:
    return [r for r in read_topic(kafka, topics.transfers) if isinstance(r.record, TransferEvent)]


def heads(kafka: str, topics: Topics, chain: str = "ethereum") -> list[ChainHead]:
    return [r.record for r in read_topic(kafka, topics.heads)
            if isinstance(r.record, ChainHead) and r.record.chain == chain]


def dead_letters(kafka: str, topics: Topics) -> list[DeadLetter]:
    return [r.record for r in read_topic(kafka, topics.dead_letters) if isinstance(r.record, DeadLetter)]


WithdrawalKey = tuple[str, str, int]
"""(block_hash, tx_hash, log_index) of one withdrawal."""


def key(t: TransferEvent) -> WithdrawalKey:
    return (t.block_hash, t.tx_hash, t.log_index)


def canonical_withdrawals(reads: list[Read], exchange: str = EXCHANGE) -> set[WithdrawalKey]:
    """What a consumer that honours retractions ends with: per event, the newest record (by offset) decides."""
    newest: dict[tuple[str, WithdrawalKey], Read] = {}
    for r in reads:
        t = r.record
        if t.exchange != exchange or t.direction is not Direction.WITHDRAWAL:
            continue
        k = (t.exchange, key(t))
        if k not in newest or r.offset > newest[k].offset:
            newest[k] = r
    return {k[1] for k, r in newest.items() if not r.record.removed}


def withdrawal_counts(reads: list[Read], exchange: str = EXCHANGE) -> dict[WithdrawalKey, int]:
    """How many times each withdrawal (not retraction) record was published."""
    counts: dict[WithdrawalKey, int] = defaultdict(int)
    for r in reads:
        t = r.record
        if t.exchange == exchange and t.direction is Direction.WITHDRAWAL and not t.removed:
            counts[key(t)] += 1
    return counts


async def oracle_withdrawals(ws_url: str, hot: str, first: int, last: int) -> set[WithdrawalKey]:
    """Withdrawals from ``hot`` in blocks ``first..last`` read straight from the node (canonical chain)."""
    found: set[WithdrawalKey] = set()
    async with JsonRpcSocket(ws_url) as rpc:
        for number in range(first, last + 1):
            block = await rpc.call("eth_getBlockByNumber", [hex(number), True])
            for tx in block["transactions"]:
                if tx["from"].lower() == hot and int(tx["value"], 16) > 0 and tx.get("to"):
                    receipt = await rpc.call("eth_getTransactionReceipt", [tx["hash"]])
                    if receipt["status"] == "0x1":
                        found.add((block["hash"].lower(), tx["hash"].lower(), -1))
        logs = await rpc.call("eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(last),
                                               "topics": [TRANSFER_TOPIC, "0x" + hot[2:].rjust(64, "0")]}])
        for entry in logs:
            if len(entry["topics"]) == 3 and entry["topics"][2] != "0x" + hot[2:].rjust(64, "0"):
                found.add((entry["blockHash"].lower(), entry["transactionHash"].lower(), int(entry["logIndex"], 16)))
    return found


async def tip(ws_url: str) -> int:
    async with JsonRpcSocket(ws_url) as rpc:
        return int(await rpc.call("eth_blockNumber"), 16)


def head_numbers_continuous(found: list[ChainHead], first: int, last: int) -> list[str]:
    """Problems with the heads of ``first..last``: missing numbers, and numbers with two different hashes."""
    by_number: dict[int, set[str]] = defaultdict(set)
    for h in found:
        by_number[h.number].add(h.hash)
    problems = [f"no head for block {n}" for n in range(first, last + 1) if n not in by_number]
    problems += [f"block {n} has heads {sorted(hs)}" for n, hs in by_number.items() if len(hs) > 1]
    return problems


def run(coro: Any) -> Any:
    return asyncio.run(coro)
