"""End-to-end latency under load: a block on the node until its rows and outage decisions are in ClickHouse.

    .venv/bin/python -m bench.pipeline_latency [--duration 150] [--blocks-per-s 4] [--per-block 250]
                                               [--exchanges 4] [--halt-after 60] [--poll-ms 15]

Starts its own Kafka, ClickHouse server (Debian's 18.16) and anvil (``--no-mining``) on free ports with
``infra/*.sh``, then the real worker and connector processes (:class:`haltwatch.local.PipelineProcesses`,
worker writing to the ClickHouse server). Everything is stopped at the end.

The bench is the chain. ``--exchanges`` exchanges each have a labelled hot wallet (anvil dev accounts).

1. **Warm-up.** ``--warm-blocks`` blocks of 12 s of chain time (just over an hour, the detector's warm-up)
   with a couple of payouts per exchange per block, mined as fast as the node takes them. The detector
   only knows chain time, so an hour of history plays in seconds. The bench then waits until the worker
   has stored the last warm-up head.
2. **Load.** For ``--duration`` seconds, a block is mined every ``1/--blocks-per-s`` seconds on a fixed
   schedule, each with ``--per-block`` labelled withdrawals (native and ERC-20, half each, spread over the
   exchanges). The defaults are 4 blocks/s x 250 = 1,000 events/s. Fewer, bigger blocks would add
   block-sized bursts to every latency; more, smaller ones would mostly measure per-block overheads. Each
   block's timestamp is set with ``evm_setNextBlockTimestamp`` to 12 s after the previous one, as on
   Ethereum, so the detector sees a normal chain (chain time runs 48 times faster than the wall clock).
   The transactions of the next block go into the node's pool, with explicit nonces and gas so the node
   neither estimates nor serialises them, while the current slot runs.
3. **Halt.** After ``--halt-after`` seconds of load, the first exchange stops paying. Its share moves to
   the others, so the rate stays the same. The detector must open an outage for it.

Measured:

- **Block latency.** t0 is when ``evm_mine`` returns. The node pushes ``newHeads`` before answering, so
  the connector may have heard of the block slightly earlier: t0 is an upper bound of the arrival time and
  the latencies are conservative (a little too long, never too short). A poller with its own
  clickhouse-driver client asks ClickHouse every ``--poll-ms`` for the row count of each pending block in
  ``transfers``. The block's latency ends when that count equals the transactions mined in it. The poll
  interval adds up to one interval to each figure.
- **Outage latency.** The first ``suspected`` and ``open`` rows of the halting exchange in
  ``outage_events``. ``detected_at`` is the chain time of the deciding head, and every block has its own
  timestamp, so it names the deciding block. The latency runs from that block's t0 to the row being
  queryable.
- Where the time goes, per block: t0 to the connector having read the block (the head's ``received_at``),
  then to the block being published (the head's Kafka timestamp, sent only after all the block's
  transfers were acknowledged), then to the rows being queryable (Kafka, worker, sink, ClickHouse).
- The achieved events/s over the load, and the CPU (from ``/proc/<pid>/stat``; 100 % = one core) of the
  worker, the connector, the bench itself, anvil, Kafka and ClickHouse, and of the whole machine, with the
  load average. The machine may have other work on it: when the whole machine is at 100 % of its cores
  and the processes above use little of it, the figures measure the contention, not haltwatch.

The worker batches each sink for up to ``sink_within_s`` (0.25 s by default), so a row waits up to that
long after the worker has it. That is printed next to the figures so one can see how much of the latency
it explains.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
from clickhouse_driver import Client
from kafka import KafkaConsumer, TopicPartition

from bench.process_figures import cpu_seconds, infra_pid, machine_busy
from bench.withdrawals import alternating_withdrawal
from connectors.evm.rpc import JsonRpcSocket
from connectors.publisher import ensure_topics
from haltwatch.evm_token import token_runtime
from haltwatch.local import PipelineProcesses, free_port, infra
from haltwatch.traffic import TOKEN_ADDRESS, poisson
from schemas.codec import decode
from schemas.records import ChainHead
from streams.worker.settings import WorkerSettings

BLOCK_TIME_S = 12
TX_GAS = hex(60_000)
"""Explicit gas: without it the node estimates every transaction, which costs more than running it."""


@dataclass(slots=True)
class MinedBlock:
    """One block the bench mined, and what the poller saw of it."""

    number: int
    block_time: int
    t0: float
    expected: int
    seen_at: float | None = None


@dataclass(slots=True)
class OutageSeen:
    state: str
    detected_at: int
    seen_at: float


@dataclass
class Observations:
    """Shared between the driver (asyncio) and the ClickHouse poller (a thread); guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: dict[int, MinedBlock] = field(default_factory=dict)
    done: list[MinedBlock] = field(default_factory=list)
    outages: dict[str, OutageSeen] = field(default_factory=dict)
    polls: int = 0
    poll_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Exchange:
    name: str
    hot: str


def write_labels(path: Path, exchanges: list[Exchange]) -> None:
    path.write_text("".join(
        f'[[wallet]]\nexchange = "{e.name}"\nchain = "ethereum"\naddress = "{e.hot}"\nrole = "hot"\n'
        'source = "anvil dev account played by bench/pipeline_latency.py"\n\n'
        for e in exchanges
    ))


class Chain:
    """Sends withdrawals into anvil's pool and mines blocks with set timestamps."""

    def __init__(self, rpc: JsonRpcSocket, http_url: str, exchanges: list[Exchange], chain_time: int,
                 seed: int = 11) -> None:
        self.rpc = rpc
        self.http_url = http_url
        self.exchanges = exchanges
        self.chain_time = chain_time
        self.rng = random.Random(seed)
        self.nonces: dict[str, int] = {}

    async def load_nonces(self) -> None:
        for e in self.exchanges:
            self.nonces[e.hot] = int(await self.rpc.call("eth_getTransactionCount", [e.hot, "pending"]), 16)

    def _withdrawal(self, sender: str, i: int) -> dict[str, str]:
        tx = alternating_withdrawal(self.rng, sender, i)
        tx["gas"], tx["nonce"] = TX_GAS, hex(self.nonces[sender])
        self.nonces[sender] += 1
        return tx

    async def send(self, counts: dict[Exchange, int]) -> int:
        """Queue ``counts[e]`` withdrawals from each exchange's hot wallet for the next block.

        One JSON-RPC batch over HTTP: a call per transaction over the websocket costs the bench (and so the
        shared CPU) several times more than the node's own work.
        """
        txs = [self._withdrawal(e.hot, i) for e, n in counts.items() for i in range(n)]
        if txs:
            await asyncio.to_thread(post_batch, self.http_url, [("eth_sendTransaction", [tx]) for tx in txs])
        return len(txs)

    async def mine(self) -> tuple[int, int, float, int]:
        """(number, block time, t0 = when evm_mine returned, transactions in the block)."""
        self.chain_time += BLOCK_TIME_S
        await self.rpc.call("evm_setNextBlockTimestamp", [self.chain_time])
        await self.rpc.call("evm_mine", [])
        t0 = time.time()
        block = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        return int(block["number"], 16), self.chain_time, t0, len(block["transactions"])


def post_batch(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """One JSON-RPC batch request; raises when any call failed (a lost transaction would skew the counts)."""
    body = orjson.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)])
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        replies = orjson.loads(response.read())
    errors = [r["error"] for r in replies if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(calls)} calls failed; first: {errors[0]}")
    return [r.get("result") for r in replies]


def split(total: int, active: list[Exchange]) -> dict[Exchange, int]:
    share, extra = divmod(total, len(active))
    return {e: share + (1 if i < extra else 0) for i, e in enumerate(active)}


class ClickHousePoller(threading.Thread):
    """Asks ClickHouse every ``interval`` for pending blocks' row counts and the halting exchange's outages."""

    def __init__(self, url: str, obs: Observations, exchange: str, interval: float) -> None:
        super().__init__(name="clickhouse-poller", daemon=True)
        parsed = urlparse(url)
        self.client = Client(host=parsed.hostname or "127.0.0.1", port=parsed.port or 9000, user="default",
                             database=parsed.path.strip("/") or "haltwatch")
        self.obs = obs
        self.exchange = exchange
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            self._poll()
            took = time.monotonic() - started
            with self.obs.lock:
                self.obs.polls += 1
                self.obs.poll_seconds += took
            self.stopping.wait(max(self.interval - took, 0.0))

    def _poll(self) -> None:
        with self.obs.lock:
            numbers = list(self.obs.pending)
        if numbers:
            # count() reads one UInt64 column; uniqExact over tx hashes read ~70 bytes a row, and at 50 polls a
            # second on a growing table the poller itself became a load on the machine it measures. Duplicates
            # (which count() would count) come only from redelivery after a restart, which a run does not have.
            rows = self.client.execute(
                "SELECT block_number, count() FROM transfers "
                "WHERE block_number BETWEEN %(lo)s AND %(hi)s GROUP BY block_number",
                {"lo": min(numbers), "hi": max(numbers)},
            )
            now = time.time()
            with self.obs.lock:
                for number, count in rows:
                    block = self.obs.pending.get(number)
                    if block is not None and count >= block.expected:
                        block.seen_at = now
                        self.obs.done.append(self.obs.pending.pop(number))
        if len(self.obs.outages) < 2:
            rows = self.client.execute(
                "SELECT state, toUnixTimestamp(detected_at) FROM outage_events WHERE exchange = %(e)s "
                "AND state IN ('suspected', 'open') ORDER BY version", {"e": self.exchange},
            )
            now = time.time()
            with self.obs.lock:
                for state, detected_at in rows:
                    self.obs.outages.setdefault(state, OutageSeen(state, int(detected_at), now))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def warm_up(chain: Chain, exchanges: list[Exchange], blocks: int, per_exchange: float) -> int:
    """Mine ``blocks`` blocks of history quickly; returns the last block number."""
    last = 0
    for _ in range(blocks):
        counts = {e: poisson(chain.rng, per_exchange) for e in exchanges}
        await chain.send(counts)
        last = (await chain.mine())[0]
    return last


async def load(chain: Chain, obs: Observations, exchanges: list[Exchange], args: argparse.Namespace) -> tuple[
        int, float, int]:
    """Mine on the schedule; returns (events mined, seconds, the number of the first block without the halter)."""
    interval = 1.0 / args.blocks_per_s
    blocks = int(args.duration * args.blocks_per_s)
    halt_at = int(args.halt_after * args.blocks_per_s)
    halted_from = -1
    events = 0
    late = 0
    await chain.send(split(args.per_block, exchanges))
    started = time.monotonic()
    for k in range(blocks):
        slot = started + k * interval
        delay = slot - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -interval / 2:
            late += 1
        number, block_time, t0, in_block = await chain.mine()
        if k == halt_at:
            halted_from = number
        with obs.lock:
            obs.pending[number] = MinedBlock(number, block_time, t0, in_block)
        events += in_block
        if k + 1 < blocks:
            active = exchanges[1:] if k + 1 >= halt_at else exchanges
            await chain.send(split(args.per_block, active))
    seconds = time.monotonic() - started
    if late:
        print(f"  {late} of {blocks} blocks mined more than half an interval late (the machine was busy)",
              file=sys.stderr)
    return events, seconds, halted_from


def wait_drained(obs: Observations, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with obs.lock:
            if not obs.pending and len(obs.outages) == 2:
                return
        time.sleep(0.1)


async def wait_head_stored(url: str, number: int, timeout_s: float) -> None:
    parsed = urlparse(url)
    client = Client(host=parsed.hostname or "127.0.0.1", port=parsed.port or 9000, user="default",
                    database=parsed.path.strip("/") or "haltwatch")
    query = "SELECT max(number) FROM chain_heads WHERE chain = 'ethereum'"
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline:
        try:
            stored = int((await asyncio.to_thread(client.execute, query))[0][0])
        except Exception:  # the worker creates the tables when it starts; not there yet
            stored = 0
        if stored >= number:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the worker stored heads up to {stored}, not {number}, within {timeout_s} s")


def connector_times(kafka: str, topic: str) -> dict[int, tuple[float, float]]:
    """Block number -> (connector had the block: the head's ``received_at``, head sent: its Kafka timestamp).

    The connector sends a block's head only after Kafka acknowledged all its transfers, so the head's
    producer timestamp marks the block as published.
    """
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=3000)
    times: dict[int, tuple[float, float]] = {}
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        for message in consumer:
            record = decode(message.value)
            if isinstance(record, ChainHead):
                times.setdefault(record.number, (record.received_at, message.timestamp / 1000))
    finally:
        consumer.close()
    return times


def stage_line(name: str, values: list[float]) -> str:
    return (f"  {name:<44} p50 {percentile(values, 50):6.0f} ms  p90 {percentile(values, 90):6.0f} ms  "
            f"p99 {percentile(values, 99):6.0f} ms")


def report_stages(done: list[MinedBlock], times: dict[int, tuple[float, float]]) -> None:
    blocks = [b for b in done if b.number in times and b.seen_at is not None]
    if not blocks:
        return
    print(f"where the time goes ({len(blocks)} blocks; t0 is an upper bound, so the first stage can be < 0):")
    print(stage_line("evm_mine returned -> connector has the block",
                     [(times[b.number][0] - b.t0) * 1000 for b in blocks]))
    print(stage_line("-> block published (head sent, transfers acked)",
                     [(times[b.number][1] - times[b.number][0]) * 1000 for b in blocks]))
    print(stage_line("-> all rows queryable (Kafka, worker, sink)",
                     [((b.seen_at or 0) - times[b.number][1]) * 1000 for b in blocks]))


def report(obs: Observations, blocks_by_time: dict[int, MinedBlock], events: int, seconds: float,
           cpu: dict[str, float], machine: float, halter: str, halted_from: int) -> None:
    latencies = [(b.seen_at - b.t0) * 1000 for b in obs.done if b.seen_at is not None]
    mined = len(obs.done) + len(obs.pending)
    print(f"load: {mined} blocks, {events} labelled withdrawals in {seconds:.1f} s = {events / seconds:.0f} events/s "
          f"({mined / seconds:.2f} blocks/s)")
    if latencies:
        print(f"block latency (evm_mine returned -> all rows queryable), {len(latencies)} blocks: "
              f"p50 {percentile(latencies, 50):.0f} ms  p90 {percentile(latencies, 90):.0f} ms  "
              f"p99 {percentile(latencies, 99):.0f} ms  max {max(latencies):.0f} ms  "
              f"mean {statistics.fmean(latencies):.0f} ms")
    if obs.pending:
        print(f"  {len(obs.pending)} blocks never complete in ClickHouse: {sorted(obs.pending)[:10]} ...")
    print(f"halt: {halter} pays nothing from block {halted_from}")
    for state in ("suspected", "open"):
        seen = obs.outages.get(state)
        if seen is None:
            skipped = state == "suspected" and "open" in obs.outages
            print(f"  outage {state}: " + ("none: the first decision was already 'open'" if skipped else "not seen"))
            continue
        block = blocks_by_time.get(seen.detected_at)
        if block is None:
            print(f"  outage {state}: detected_at {seen.detected_at} is no block of the load")
            continue
        print(f"  outage {state}: decided on block {block.number} ({block.number - halted_from + 1} blocks into the "
              f"halt); latency from its evm_mine to the row queryable: {(seen.seen_at - block.t0) * 1000:.0f} ms")
    print("cpu over the load (100 % = one core): " + ", ".join(f"{k} {v:.0f} %" for k, v in cpu.items())
          + f"; whole machine {machine:.0f} % ({os.cpu_count()} cores = {100 * (os.cpu_count() or 1)} %); load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    polls = max(obs.polls, 1)
    print(f"poller: {obs.polls} ClickHouse polls, {obs.poll_seconds / polls * 1000:.1f} ms each on average; "
          f"sink batches up to {WorkerSettings().sink_within_s * 1000:.0f} ms (sink_within_s) per table")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of load")
    parser.add_argument("--blocks-per-s", type=float, default=4.0)
    parser.add_argument("--per-block", type=int, default=250, help="labelled withdrawals per block")
    parser.add_argument("--exchanges", type=int, default=4)
    parser.add_argument("--warm-blocks", type=int, default=320, help="12 s blocks of history before the load")
    parser.add_argument("--halt-after", type=float, default=60.0, help="seconds into the load the first halts")
    parser.add_argument("--poll-ms", type=float, default=15.0)
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs) after the run")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="haltwatch-latency-"))
    anvil_port, kafka_port, ch_port = free_port(), free_port(), free_port()
    history_s = (args.warm_blocks + int(args.duration * args.blocks_per_s) + 10) * BLOCK_TIME_S
    anvil_env = {"ANVIL_PORT": str(anvil_port), "ANVIL_ARGS": f"--no-mining --timestamp {int(time.time()) - history_s}"}
    kafka_env = {"KAFKA_PORT": str(kafka_port), "KAFKA_CONTROLLER_PORT": str(free_port()),
                 "KAFKA_DATA_DIR": str(work / "kafka"), "KAFKA_PARTITIONS": "4"}
    ch_env = {"CLICKHOUSE_TCP_PORT": str(ch_port), "CLICKHOUSE_HTTP_PORT": str(free_port()),
              "CLICKHOUSE_STATE_DIR": str(work / "clickhouse")}
    started: list[tuple[str, dict[str, str]]] = []
    pipeline: PipelineProcesses | None = None
    try:
        for component, env in (("anvil", anvil_env), ("kafka", kafka_env), ("clickhouse", ch_env)):
            infra(component, "start", env)
            started.append((component, env))
        ws_url = f"ws://127.0.0.1:{anvil_port}"
        clickhouse_url = f"clickhouse://default@127.0.0.1:{ch_port}/haltwatch"
        pipeline = PipelineProcesses(work / "run", f"127.0.0.1:{kafka_port}", ws_url, work / "labels.toml",
                                     f"latency{int(time.time())}", clickhouse_url=clickhouse_url)
        servers = [f"anvil-{anvil_port}", f"kafka-{kafka_port}", f"clickhouse-{ch_port}"]
        asyncio.run(run(args, pipeline, clickhouse_url, servers))
    finally:
        if pipeline is not None:
            pipeline.stop()
        for component, env in reversed(started):
            infra(component, "stop", env)
        if args.keep:
            print(f"run directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


async def run(args: argparse.Namespace, pipeline: PipelineProcesses, clickhouse_url: str, servers: list[str]) -> None:
    async with JsonRpcSocket(pipeline.ws_url, call_timeout=120) as rpc:
        accounts = [a.lower() for a in await rpc.call("eth_accounts")]
        exchanges = [Exchange(f"bench-exchange-{i}", accounts[i]) for i in range(args.exchanges)]
        write_labels(pipeline.labels, exchanges)
        await rpc.call("anvil_setCode", [TOKEN_ADDRESS, token_runtime(returns_bool=True)])
        latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
        http_url = pipeline.ws_url.replace("ws://", "http://", 1)
        chain = Chain(rpc, http_url, exchanges, int(latest["timestamp"], 16))
        await chain.load_nonces()
        first = int(latest["number"], 16) + 1

        # topics first: a worker subscribed to a topic that does not exist yet sees it only minutes later
        ensure_topics(pipeline.kafka, pipeline.topics, pipeline.partitions)
        pipeline.start_worker()
        await asyncio.to_thread(pipeline.wait_worker_ready, 180.0)
        pipeline.start_connector(start_block=first)
        print(f"warm-up: {args.warm_blocks} blocks of {BLOCK_TIME_S} s chain time, exchanges "
              f"{', '.join(e.name for e in exchanges)}", file=sys.stderr)
        last_warm = await warm_up(chain, exchanges, args.warm_blocks, 2.0)
        await wait_head_stored(clickhouse_url, last_warm, 300.0)
        pipeline.check_alive()

        obs = Observations()
        poller = ClickHousePoller(clickhouse_url, obs, exchanges[0].name, args.poll_ms / 1000)
        poller.start()
        pids = {name: proc.pid for name, proc in pipeline.procs.items()}
        pids["bench"] = os.getpid()
        for server in servers:
            pid = infra_pid(server)
            if pid is not None:
                pids[server.split("-")[0]] = pid
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        busy_before, total_before = machine_busy()
        print(f"load: {args.duration:.0f} s at {args.blocks_per_s:g} blocks/s x {args.per_block} withdrawals; "
              f"{exchanges[0].name} halts after {args.halt_after:.0f} s", file=sys.stderr)
        events, seconds, halted_from = await load(chain, obs, exchanges, args)
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / seconds * 100 for name, pid in pids.items()}
        busy_after, total_after = machine_busy()
        machine = (busy_after - busy_before) / max(total_after - total_before, 1) * 100 * (os.cpu_count() or 1)
        await asyncio.to_thread(wait_drained, obs, 60.0)
        poller.stopping.set()
        poller.join(5)
        pipeline.check_alive()
        with obs.lock:
            blocks_by_time = {b.block_time: b for b in [*obs.done, *obs.pending.values()]}
            report(obs, blocks_by_time, events, seconds, cpu, machine, exchanges[0].name, halted_from)
            done = list(obs.done)
        report_stages(done, await asyncio.to_thread(connector_times, pipeline.kafka, pipeline.topics.heads))


if __name__ == "__main__":
    raise SystemExit(main())
