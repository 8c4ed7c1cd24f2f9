"""Replay throughput, Faust's own ceiling, worker memory and scale-out: ``python -m bench.replay_throughput``.

One command prints everything. It starts its own Kafka (``infra/kafka.sh``) and ClickHouse server
(``infra/clickhouse.sh``, Debian's 18.16) on free ports, writes one transfers topic of 1,000 exchanges x 10
chains (:mod:`bench.replay_topic`, in the connectors' default ``block`` layout or, with ``--transfer-records
event``, one record per event) under one topic prefix per pipeline run (identical copies: the workers'
consumer groups are named after their prefix, so each run needs its own), then measures on this machine, in
events (transfers, and each head once per partition: the same count in either layout):

- **raw**: an ``aiokafka`` consumer reading the whole transfers topic from the earliest offset, nothing else;
- **faust alone** (:mod:`bench.faust_ceiling`, each in its own process and consumer group, on the first
  copy): a Faust app whose only agent consumes the topic the way the worker's ``detect`` agent does
  (``take_events``, same batch and window) and does nothing with the events (**no-op**), then the same
  agent running the validating decode on every value (**+ decode**). With one Kafka record per event,
  the no-op rate is the ceiling of any Faust pipeline on this machine. It is measured in the same run, under
  the same load, to separate what the framework costs from what haltwatch's agents cost: raw → no-op is
  Faust's share, no-op → pipeline haltwatch's. ``--skip-ceiling`` leaves it out;
- **pipeline** (``--layouts``, each on its own copy): the real workers (``python -m haltwatch worker``, the
  environment ``haltwatch demo`` gives them) from the first consumed event until their groups' committed
  offsets reach the end of every partition *and* ClickHouse holds every transfer row. Committed offsets
  cover every agent of a group on the topic (with ``--role all``, ``detect`` and the transfers sink),
  because a message is committed only when all of them acked it. Layouts: ``one`` worker with ``--role
  all``; ``two`` such workers sharing the partitions; ``split``, a ``--role detect`` and a ``--role store``
  worker, the layout docker-compose runs (two consumer groups, so one process per core here); ``split2``,
  that layout with a second ``--role detect`` worker (the detect worker is the one that finishes last: this
  shows whether sharing its partitions helps on the same cores);
- each worker's resident memory at the end (VmRSS, and the peak VmHWM), with every exchange's state loaded
  in the detecting workers;
- whether every later layout made the same outage decisions as the first.

The figures depend on the machine's load: the load averages (``/proc/loadavg``) are printed beside them, and
the CPU seconds the measured processes used, which depend on it much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from clickhouse_driver import Client
from kafka import KafkaConsumer
from kafka import TopicPartition as SyncPartition

from bench.faust_ceiling import MODES, RESULT
from bench.process_figures import cpu_seconds, infra_pid, machine_busy, memory
from bench.replay_topic import ReplayPlan, produce
from connectors.block_layout import TransferLayout
from connectors.publisher import ensure_topics
from haltwatch.local import PipelineProcesses, free_port, infra
from schemas.codec import decode_as
from schemas.records import OutageEvent
from schemas.topics import Topics


def load() -> str:
    """The 1, 5 and 15 minute load averages: other processes' share of the 2 cores beside each figure."""
    return " ".join(Path("/proc/loadavg").read_text().split(" ")[:3])


def say(text: str) -> None:
    print(text, flush=True)


def end_offsets(kafka: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        parts = [SyncPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


async def raw_consume(kafka: str, topic: str, ends: dict[int, int]) -> tuple[int, float]:
    """Read every message of ``topic`` with aiokafka alone; returns (messages, seconds)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in ends]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        left = {tp: ends[tp.partition] for tp in parts}
        count = 0
        started: float | None = None
        while left:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batch:
                started = time.perf_counter()
            for tp, records in batch.items():
                count += len(records)
                if records and records[-1].offset + 1 >= left.get(tp, 0):
                    left.pop(tp, None)
        return count, time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()


@dataclass
class CeilingRun:
    """One :mod:`bench.faust_ceiling` run: what Faust alone moved."""

    mode: str
    records: int
    seconds: float
    cpu_s: float
    load: str
    """``/proc/loadavg`` when it ended."""
    peak_mb: float
    """The process's VmHWM: what Faust alone holds, against which the worker's memory reads."""


CEILING_LABELS = {"noop": "faust alone, no-op take_events agent", "decode": "faust alone + validating decode"}


def run_ceiling(kafka: str, topic: str, partitions: int, expect: int, mode: str, app_id: str, work: Path,
                timeout_s: float) -> CeilingRun:
    """Run ``python -m bench.faust_ceiling`` in its own process (its log is ``work/<app_id>.log``)."""
    if app_id.endswith(("-worker", "-store")):
        raise ValueError(f"{app_id} could be a worker's consumer group")
    log_path = work / f"{app_id}.log"
    args = [sys.executable, "-m", "bench.faust_ceiling", "--kafka", kafka, "--topic", topic, "--partitions",
            str(partitions), "--expect", str(expect), "--mode", mode, "--app-id", app_id]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, cwd=Path(__file__).resolve().parents[1],
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise TimeoutError(f"faust {mode} did not read {expect:,} records in {timeout_s} s; "
                               f"see {log_path}") from None
    ended = load()
    lines = [line.partition(RESULT)[2] for line in out.decode(errors="replace").splitlines() if RESULT in line]
    if not lines:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"faust {mode} exited with {proc.returncode} and no result; {log_path} ends:\n{tail}")
    result = orjson.loads(lines[-1])
    if result.get("bad"):
        say(f"  faust {mode}: {result['bad']:,} records did not decode")
    return CeilingRun(mode, result["records"], result["seconds"], result["cpu_s"], ended, result["peak_mb"])


def describe_ceiling(run: CeilingRun, raw_rate: float, events: int) -> None:
    """``events``: what the topic's records hold (the run read them all)."""
    rate = events / run.seconds
    say(f"{CEILING_LABELS[run.mode]}: {run.records:,} records in {run.seconds:.1f} s = {rate:,.0f} events/s "
        f"({rate / raw_rate:.3f} of raw), CPU {run.cpu_s:.1f} s = "
        f"{events / max(run.cpu_s, 1e-9):,.0f} events per CPU-second, peak VmHWM {run.peak_mb:.0f} MB; "
        f"load {run.load}")


def committed(kafka: str, group: str, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """The group's committed offsets (read without joining the group)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(SyncPartition(topic, p)) or 0 for p in partitions}
    finally:
        consumer.close()


def events_seen(port: int) -> float:
    """The worker's ``haltwatch_worker_events_total`` (0 while it is not up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(m) for m in re.findall(r"^haltwatch_worker_events_total\{[^}]*\} (\S+)$", text, re.M))


SERVER_COUNTERS = ("SelectQuery", "InsertQuery", "InsertedRows", "CompressedReadBufferBytes",
                   "MergedRows", "MergedUncompressedBytes")
"""ClickHouse's own counters (``system.events``, since the server started) that say what its CPU went to."""


def server_counters(client: Client) -> dict[str, int]:
    names = ", ".join(f"'{name}'" for name in SERVER_COUNTERS)
    found = dict(client.execute(f"SELECT event, value FROM system.events WHERE event IN ({names})"))
    return {name: int(found.get(name, 0)) for name in SERVER_COUNTERS}


def outages(kafka: str, topics: Topics) -> list[OutageEvent]:
    consumer = KafkaConsumer(topics.outages, bootstrap_servers=kafka, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=3000)
    try:
        found = []
        for message in consumer:
            if message.key != b"correlated":
                found.append(decode_as(message.value, OutageEvent))
        return found
    finally:
        consumer.close()


@dataclass(frozen=True)
class Layout:
    """Which workers a pipeline run starts: (name, ``--role``) per process."""

    key: str
    title: str
    members: tuple[tuple[str, str], ...]

    @property
    def groups(self) -> list[str]:
        """Consumer-group suffixes whose committed offsets must reach the end (see ``haltwatch worker``)."""
        roles = {role for _, role in self.members}
        return (["worker"] if roles & {"all", "detect"} else []) + (["store"] if "store" in roles else [])


LAYOUTS = {
    "one": Layout("one", "1 worker (--role all)", (("worker", "all"),)),
    "two": Layout("two", "2 workers (--role all)", (("worker", "all"), ("worker2", "all"))),
    "split": Layout("split", "detect + store workers (--role detect, --role store: docker-compose's layout)",
                    (("worker", "detect"), ("store", "store"))),
    "split2": Layout("split2", "2 detect + 1 store workers (--role detect twice, --role store: scaled out)",
                     (("worker", "detect"), ("worker2", "detect"), ("store", "store"))),
}


@dataclass
class PipelineRun:
    layout: Layout
    seconds: float
    events: int
    startup_s: float
    outages: list[OutageEvent]
    memory_mb: list[tuple[float, float]] = field(default_factory=list)
    """(VmRSS, VmHWM) per member of the layout, in its order."""
    cpu_s: float = 0.0
    """CPU seconds the worker processes used between the first event and the end."""
    member_cpu_s: list[float] = field(default_factory=list)
    """The same per member of the layout, in its order."""
    servers_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the Kafka broker and the ClickHouse server over the same span."""
    machine_cpu_s: float = 0.0
    """CPU seconds of every process on the machine over the same span (the bench's own polling included)."""
    clickhouse_work: dict[str, int] = field(default_factory=dict)
    """Growth of :data:`SERVER_COUNTERS` over the same span (the bench's own count() polls included)."""
    caught_up_s: dict[str, float] = field(default_factory=dict)
    """Seconds from the first event until each consumer group's committed offsets reached the end, and
    (``rows``) until ClickHouse held every transfer row: which part of the pipeline finished last."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def decisions(self) -> set[tuple[str, str, int, str, int]]:
        """Outage decisions without wall-clock fields: (exchange, scope, version, state, detected_at)."""
        return {(o.exchange, ",".join(o.scope), o.version, o.state.value, o.detected_at) for o in self.outages}


def run_pipeline(kafka: str, clickhouse: str, prefix: str, transfers: int, messages: int, partitions: int,
                 layout: Layout, work: Path, timeout_s: float, servers: dict[str, int]) -> PipelineRun:
    topics = Topics(prefix)
    database = prefix.replace("-", "_")
    url = f"clickhouse://{clickhouse}/{database}"
    pipeline = PipelineProcesses(work / prefix, kafka, "ws://unused", work / "unused.toml", prefix,
                                 clickhouse_url=url, partitions=partitions)
    client = Client.from_url(url.replace(f"/{database}", "/default"))
    ends = end_offsets(kafka, topics.transfers)
    spawned = time.perf_counter()
    for name, role in layout.members:
        pipeline.start_worker(name, role)
    ports = [pipeline.worker_ports[name] for name, _ in layout.members]

    def pids() -> list[int]:
        return [pipeline.procs[name].pid for name, _ in layout.members]

    try:
        first: float | None = None
        cpu_first: list[float] = []
        caught_up: dict[str, float] = {}
        deadline = spawned + timeout_s
        while time.perf_counter() < deadline:
            pipeline.check_alive()
            if first is None:
                if any(events_seen(port) > 0 for port in ports):
                    first = time.perf_counter()
                    cpu_first = [cpu_seconds(pid) for pid in pids()]
                    servers_first = {name: cpu_seconds(pid) for name, pid in servers.items()}
                    busy_first = machine_busy()[0]
                    counters_first = server_counters(client)
                else:
                    time.sleep(0.2)
                    continue
            now = time.perf_counter()
            for group in layout.groups:
                done = committed(kafka, f"{prefix}-{group}", topics.transfers, list(ends))
                if group not in caught_up and all(done.get(part, 0) >= end for part, end in ends.items()):
                    caught_up[group] = now - first
            if "rows" not in caught_up:
                try:
                    stored = client.execute(f"SELECT count() FROM {database}.transfers")[0][0]
                except Exception:  # table not created yet
                    stored = 0
                if stored >= transfers:
                    caught_up["rows"] = now - first
            if len(caught_up) == len(layout.groups) + 1:
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{layout.title} did not finish {prefix} in {timeout_s} s; see {work}")
        finished = time.perf_counter()
        assert first is not None
        cpu = [cpu_seconds(pid) - before for pid, before in zip(pids(), cpu_first, strict=True)]
        servers_cpu = {name: cpu_seconds(pid) - servers_first[name] for name, pid in servers.items()}
        machine_cpu = (machine_busy()[0] - busy_first) / os.sysconf("SC_CLK_TCK")
        work_done = {name: value - counters_first[name] for name, value in server_counters(client).items()}
        mem = [memory(pid) for pid in pids()]
        return PipelineRun(layout, finished - first, messages, first - spawned, outages(kafka, topics), mem,
                           sum(cpu), cpu, servers_cpu, machine_cpu, work_done, caught_up)
    finally:
        pipeline.stop()
        client.disconnect()


def describe(run: PipelineRun, raw_rate: float, ceiling_rate: float | None) -> None:
    ceiling = f", {run.rate / ceiling_rate:.2f} of the Faust no-op ceiling" if ceiling_rate else ""
    say(f"pipeline, {run.layout.title}: {run.events:,} events in {run.seconds:.1f} s = {run.rate:,.0f} events/s "
        f"({run.rate / raw_rate:.2f} of raw{ceiling}; worker start-up before the first event {run.startup_s:.1f} s); "
        f"load {load()}")
    say(f"  worker CPU: {run.cpu_s:.1f} s = {run.events / max(run.cpu_s, 1e-9):,.0f} events per CPU-second "
        "(wall-time rates depend on the machine's other load; this one much less)")
    say("  caught up after: " + ", ".join(f"{what} {s:.1f} s" for what, s in run.caught_up_s.items())
        + " (consumer groups' committed offsets at the end; rows: every transfer row in ClickHouse)")
    states: dict[str, int] = {}
    for o in run.outages:
        states[o.state.value] = states.get(o.state.value, 0) + 1
    exchanges = sorted({o.exchange for o in run.outages})
    say(f"  outage events: {len(run.outages)} {states}; exchanges: {', '.join(exchanges) or '-'}")
    for (name, role), (rss, hwm) in zip(run.layout.members, run.memory_mb, strict=True):
        say(f"  {name} (--role {role}) memory at the end: VmRSS {rss:.0f} MB, peak VmHWM {hwm:.0f} MB")
    say("  CPU per worker: " + ", ".join(
        f"{name} {cpu:.1f} s" for (name, _), cpu in zip(run.layout.members, run.member_cpu_s, strict=True)))
    servers = ", ".join(f"{name} {cpu:.1f} s" for name, cpu in run.servers_cpu_s.items())
    cores = os.cpu_count() or 1
    say(f"  CPU of the servers: {servers or 'not found'}; the whole machine: {run.machine_cpu_s:.1f} s of "
        f"{cores * run.seconds:.1f} ({run.machine_cpu_s / (cores * run.seconds):.0%} of {cores} cores) = "
        f"{run.machine_cpu_s / run.events * 1e6:.1f} us of CPU per event, where {cores} cores at 50,000 "
        f"events/s leave {cores / 50_000 * 1e6:.0f}")
    work = run.clickhouse_work
    if work:
        say(f"  ClickHouse's own counters: {work['InsertQuery']:,} inserts of {work['InsertedRows']:,} rows, "
            f"{work['SelectQuery']:,} selects; {work['CompressedReadBufferBytes'] / 1e9:.1f} GB decompressed "
            f"by all reads, of which merges {work['MergedUncompressedBytes'] / 1e9:.1f} GB "
            f"({work['MergedRows']:,} rows merged)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exchanges", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=200, help="blocks per chain (30 s of chain time each)")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--layouts", default="one,two,split",
                        help=f"pipeline runs, comma-separated, each on its own copy of the topic: {', '.join(LAYOUTS)}")
    parser.add_argument("--skip-ceiling", action="store_true", help="skip the Faust-alone runs (bench.faust_ceiling)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for one pipeline run")
    parser.add_argument("--ceiling-timeout", type=float, default=900.0, help="seconds allowed for one Faust-alone run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (worker logs)")
    parser.add_argument("--transfer-records", choices=[v.value for v in TransferLayout], default="block",
                        help="the transfers topic's layout, as a connector writes it (connectors/block_layout.py)")
    args = parser.parse_args(argv)
    layouts = [LAYOUTS[key] for key in args.layouts.split(",") if key]
    if not layouts or any(key not in LAYOUTS for key in args.layouts.split(",") if key):
        parser.error(f"--layouts: choose from {', '.join(LAYOUTS)}")
    plan = ReplayPlan(exchanges=args.exchanges, chains=args.chains, blocks=args.blocks)
    kafka_port, ch_port = free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="haltwatch-replay-"))
    kafka_env = {"KAFKA_PORT": str(kafka_port), "KAFKA_CONTROLLER_PORT": str(free_port()),
                 "KAFKA_PARTITIONS": str(args.partitions), "KAFKA_DATA_DIR": str(work / "kafka")}
    ch_env = {"CLICKHOUSE_TCP_PORT": str(ch_port), "CLICKHOUSE_HTTP_PORT": str(free_port()),
              "CLICKHOUSE_STATE_DIR": str(work / "clickhouse")}
    kafka, clickhouse = f"127.0.0.1:{kafka_port}", f"127.0.0.1:{ch_port}"
    say(f"machine: {os.cpu_count()} cores, load {load()}")
    infra("kafka", "start", kafka_env)
    try:
        infra("clickhouse", "start", ch_env)
        try:
            stamp = int(time.time())
            prefixes = [f"replay{stamp}-{layout.key}" for layout in layouts]
            for prefix in prefixes:
                ensure_topics(kafka, Topics(prefix), args.partitions)
            started = time.perf_counter()
            layout_of_records = TransferLayout(args.transfer_records)
            produced = produce(kafka, [Topics(p).transfers for p in prefixes], args.partitions, plan, layout_of_records)
            say(f"topic: {plan.exchanges} exchanges x {plan.chains} chains, {plan.blocks} blocks per chain "
                f"({plan.blocks * plan.block_s / 3600:.1f} h of chain time), {args.partitions} partitions: "
                f"{produced.transfers:,} transfers ({produced.withdrawals:,} withdrawals) + {produced.heads:,} heads "
                f"x {args.partitions} partitions = {produced.events:,} events in {produced.records:,} records "
                f"({layout_of_records.value} layout); {len(prefixes)} copies written "
                f"in {time.perf_counter() - started:.0f} s")
            say(f"scripted halts: {plan.halt_all} exchange-wide, {plan.halt_one} on one chain "
                f"({', '.join(sorted(plan.halting))}), blocks {plan.halt_from}.."
                f"{plan.halt_from + plan.halt_blocks - 1}")
            topic = Topics(prefixes[0]).transfers
            ends = end_offsets(kafka, topic)
            count, seconds = asyncio.run(raw_consume(kafka, topic, ends))
            raw_rate = produced.events / seconds  # it read every record, so every event
            say(f"raw aiokafka consume: {count:,} records in {seconds:.1f} s = {raw_rate:,.0f} events/s; load {load()}")
            ceiling_rate: float | None = None
            if not args.skip_ceiling:
                for mode in MODES:  # own consumer groups, never the pipeline's {prefix}-worker
                    ceiling = run_ceiling(kafka, topic, args.partitions, sum(ends.values()), mode,
                                          f"{prefixes[0]}-faust-ceiling-{mode}", work, args.ceiling_timeout)
                    describe_ceiling(ceiling, raw_rate, produced.events)
                    if mode == "noop":
                        ceiling_rate = produced.events / ceiling.seconds
            runs = []
            names = {"broker": f"kafka-{kafka_port}", "clickhouse": f"clickhouse-{ch_port}"}
            servers = {name: pid for name, key in names.items() if (pid := infra_pid(key)) is not None}
            for layout, prefix in zip(layouts, prefixes, strict=True):
                run = run_pipeline(kafka, clickhouse, prefix, produced.transfers, produced.events,
                                   args.partitions, layout, work, args.timeout, servers)
                describe(run, raw_rate, ceiling_rate)
                runs.append(run)
            first_run = runs[0]
            for other in runs[1:]:
                a, b = first_run.decisions(), other.decisions()
                verdict = "the same" if a == b else f"DIFFERENT: {len(a - b)} only in one, {len(b - a)} only in another"
                say(f"outage decisions, {first_run.layout.key} vs {other.layout.key}: {len(a)} vs {len(b)}, {verdict}")
                for d in sorted(a ^ b)[:20]:
                    say(f"  {first_run.layout.key if d in a else other.layout.key} only: {d}")
        finally:
            infra("clickhouse", "stop", ch_env)
    finally:
        infra("kafka", "stop", kafka_env)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"work folder kept: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
