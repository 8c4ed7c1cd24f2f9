"""ClickHouse store benchmark: sink insert rate and query latency, on embedded chdb and on a server.

Loads ``--rows`` transfer events (default 10 million) for ``--exchanges`` exchanges (default 200), spread
over ``--days`` days of block time, through :class:`streams.store.sink.TableSink` as the worker writes
them (row dicts in, columnar insert out, read-before-write dedup unless ``--dedup off``), then
times the queries the product answers from: the current status of every exchange, and one exchange's
day (withdrawals per minute from the materialized view, and its raw transfers).

The server is Debian's ClickHouse 18.16, started with ``infra/clickhouse.sh`` on a spare port in a
private state folder and stopped at the end. Run from the repository root:

    .venv/bin/python bench/clickhouse_bench.py --backend both            # 10M rows on each
    .venv/bin/python bench/clickhouse_bench.py --rows 1000000 --dedup both
    .venv/bin/python bench/clickhouse_bench.py --rows 1000000 --backend pair   # one server, then a replicated pair

``--backend pair`` loads the same rows into one server and then into two 18.16 replicas of one shard (with an
Apache ZooKeeper, all started with ``infra/``), the worker's way: ``--clickhouse-cluster`` tables, inserts
through the Distributed table, each batch's block kept for its retries.

"Sink rate" counts only the time spent in ``TableSink.extend`` and ``flush`` (columnar conversion, the
dedup read, the insert, the view); generating the rows in Python is timed separately.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from haltwatch.local import free_port, infra  # noqa: E402
from streams.store.backend import ChdbBackend, ClickHouseBackend, DriverBackend, open_backend  # noqa: E402
from streams.store.dedup import TransferDedup  # noqa: E402
from streams.store.migrate import apply_migrations  # noqa: E402
from streams.store.queries import (  # noqa: E402
    current_status,
    transfers_between,
    withdrawal_count,
    withdrawal_summary,
    withdrawals_per_minute,
)
from streams.store.sink import TableSink  # noqa: E402

DAY = 86_400
T0 = 1_767_225_600  # 2026-01-01 00:00 UTC
CHAINS = (("ethereum", 0.6, 12), ("tron", 0.25, 3), ("bsc", 0.15, 3))
ASSETS = ("native", "0xdac17f958d2ee523a2206206994597c13d831ec7", "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
DECIMALS = {"native": 18, ASSETS[1]: 6, ASSETS[2]: 6}


@dataclass
class Load:
    """What a load inserted and how long each part took."""

    rows: int = 0
    written: int = 0
    generate_s: float = 0.0
    sink_s: float = 0.0
    wall_s: float = 0.0
    withdrawals: dict[str, int] = field(default_factory=dict)


def exchange_name(i: int) -> str:
    return f"exchange-{i:03d}"


def generate(rows: int, exchanges: int, days: int, batch: int, seed: int = 1) -> Iterator[list[dict[str, Any]]]:
    """Batches of transfer rows in block-time order, shaped like the worker's (see streams/store/rows.py)."""
    rng = random.Random(seed)
    span = days * DAY
    names = [exchange_name(i) for i in range(exchanges)]
    weights = [1.0 / (1 + i) ** 0.5 for i in range(exchanges)]  # a few big exchanges, a long tail
    chain_names = [c[0] for c in CHAINS]
    chain_weights = [c[1] for c in CHAINS]
    intervals = {c[0]: c[2] for c in CHAINS}
    produced = 0
    while produced < rows:
        n = min(batch, rows - produced)
        picks = rng.choices(range(exchanges), weights, k=n)
        chains = rng.choices(chain_names, chain_weights, k=n)
        out = []
        for k in range(n):
            i = produced + k
            t = T0 + span * i // rows
            chain = chains[k]
            ex = picks[k]
            roll = rng.random()
            direction = "withdrawal" if roll < 0.7 else ("deposit" if roll < 0.95 else "internal")
            asset = ASSETS[i % 3]
            number = (t - T0) // intervals[chain]
            out.append({
                "exchange": names[ex], "chain": chain, "direction": direction, "block_time": t,
                "block_number": number, "block_hash": f"0x{number * 7 + len(chain):064x}", "tx_hash": f"0x{i:064x}",
                "log_index": -1 if asset == "native" else i % 50, "asset": asset,
                "amount": str(rng.randrange(10**5, 10**21)), "decimals": DECIMALS[asset],
                "from_address": f"0x{ex + 1:040x}", "to_address": f"0x{i * 2654435761 % 2**160:040x}",
                "removed": 0, "ingest_version": i,
            })
        produced += n
        yield out


def load(backend: ClickHouseBackend, args: argparse.Namespace, dedup: bool, replicated: bool = False) -> Load:
    sink = TableSink(backend, "transfers", max_rows=args.batch, retry_for_s=120,
                     dedup=TransferDedup() if dedup else None, replicated=replicated)
    result = Load()
    started = time.perf_counter()
    clock = time.perf_counter()
    for batch in generate(args.rows, args.exchanges, args.days, args.batch):
        t1 = time.perf_counter()
        result.generate_s += t1 - clock
        sink.extend(batch)
        result.written += sink.flush()
        result.rows += len(batch)
        for row in batch:
            if row["direction"] == "withdrawal":
                result.withdrawals[row["exchange"]] = result.withdrawals.get(row["exchange"], 0) + 1
        clock = time.perf_counter()
        result.sink_s += clock - t1
        if result.rows % (args.batch * 10) == 0 or result.rows == args.rows:
            print(f"  {result.rows:>11,} rows  sink {result.rows / result.sink_s:>9,.0f} rows/s", flush=True)
    result.wall_s = time.perf_counter() - started
    return result


def status_data(backend: ClickHouseBackend, exchanges: int, rounds: int = 10) -> None:
    """What the worker writes for the status view: snapshots of every (exchange, chain), chain states,
    and a few thousand outage versions."""
    now = int(time.time())
    version = time.time_ns()
    for r in range(rounds):
        rows = []
        for i in range(exchanges):
            for chain, _, interval in CHAINS:
                version += 1
                state = "open" if (i + r) % 37 == 0 else ("warming_up" if i % 50 == 49 else "ok")
                rows.append({
                    "exchange": exchange_name(i), "chain": chain, "state": state,
                    "outage_id": f"o{i}-{chain}" if state == "open" else "",
                    "last_withdrawal_time": T0 + r * 600, "head_number": r * 100, "head_time": T0 + r * 600 + interval,
                    "gap_s": interval, "expected_rate_per_hour": 100.0 + i, "withdrawals_seen": 1000 + r,
                    "updated_at": now, "version": version,
                })
        backend.insert("detector_status", rows)
    backend.insert("chain_status", [
        {"chain": chain, "state": "ok" if chain != "bsc" else "chain_stalled", "last_number": 1, "last_block_time": T0,
         "last_received_at": float(now), "node_head_number": None, "reason": "bench", "emitted_at": float(now + k)}
        for k, (chain, _, _) in enumerate(CHAINS)
    ])
    backend.insert("outage_events", [
        {"outage_id": f"o{i}-{v}", "version": w, "exchange": exchange_name(i % exchanges), "scope": ["ethereum"],
         "state": "open" if w == 1 else "resolved", "started_at": T0 + i * 60, "detected_at": T0 + i * 60 + 120,
         "resolved_at": None if w == 1 else T0 + i * 60 + 3600, "expected_rate_per_hour": 100.0,
         "observed_gap_s": 120, "expected_count": 10.0, "observed_count": 0, "confidence": 0.99, "p_value": 1e-4,
         "last_withdrawal_tx": "0x", "last_withdrawal_chain": "ethereum", "emitted_at": float(now), "reason": "bench"}
        for i in range(2000) for v in (0,) for w in (1, 2)
    ])


def timed(query: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """p50 and p99 latency in milliseconds, and the last result."""
    result = query()  # warm-up
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        result = query()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return statistics.median(samples), p99, result


def run(name: str, backend: ClickHouseBackend, args: argparse.Namespace, dedup: bool,
        cluster: str | None = None) -> None:
    print(f"\n== {name}, ClickHouse {'.'.join(map(str, backend.server_version()))}, "
          f"dedup {'on' if dedup else 'off'}: loading {args.rows:,} transfers for {args.exchanges} exchanges "
          f"over {args.days} days, batches of {args.batch:,}", flush=True)
    apply_migrations(backend, cluster)
    result = load(backend, args, dedup, replicated=cluster is not None)
    status_data(backend, args.exchanges)
    print(f"sink insert rate: {result.rows / result.sink_s:,.0f} rows/s ({result.rows:,} rows in "
          f"{result.sink_s:.1f} s of sink time; {result.written:,} written)")
    print(f"end to end incl. generating rows in Python: {result.rows / result.wall_s:,.0f} rows/s "
          f"({result.wall_s:.1f} s, of which generation {result.generate_s:.1f} s)")

    busiest = exchange_name(0)
    day = T0 + (args.days // 2) * DAY
    checks = {
        "transfers (FINAL, withdrawals)": (withdrawal_count(backend, busiest), result.withdrawals.get(busiest, 0)),
        "view (sum of withdrawals)": (withdrawal_summary(backend, busiest)["withdrawals"],
                                      result.withdrawals.get(busiest, 0)),
    }
    for what, (stored, sent) in checks.items():
        print(f"check {busiest} {what}: {stored:,} stored, {sent:,} sent -> {'OK' if stored == sent else 'MISMATCH'}")

    queries: list[tuple[str, Callable[[], Any]]] = [
        ("current status, all exchanges", lambda: current_status(backend)),
        ("current status, one exchange", lambda: current_status(backend, busiest)),
        ("withdrawals per minute, one exchange, one day (view)",
         lambda: withdrawals_per_minute(backend, busiest, day, day + DAY)),
        ("raw transfers, one exchange, one day (FINAL)", lambda: transfers_between(backend, busiest, day, day + DAY)),
    ]
    for label, query in queries:
        runs = args.queries if "status" in label else max(10, args.queries // 4)
        p50, p99, rows = timed(query, runs)
        print(f"{label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(rows):,} rows, {runs} runs)", flush=True)


def chdb_backend(folder: Path) -> ClickHouseBackend:
    return ChdbBackend(folder / "chdb", database="bench")


def replicated_pair(args: argparse.Namespace, folder: Path, modes: list[bool]) -> None:
    """Two replicas of one shard and a ZooKeeper on spare ports; the load goes through the cluster's tables."""
    zookeeper = {"ZOOKEEPER_PORT": str(free_port()), "ZOOKEEPER_STATE_DIR": str(folder / "zookeeper"),
                 "HALTWATCH_CACHE": str(folder / "cache")}
    ports = [free_port(), free_port()]
    replicas = [{"CLICKHOUSE_TCP_PORT": str(p), "CLICKHOUSE_HTTP_PORT": str(free_port()),
                 "CLICKHOUSE_INTERSERVER_PORT": str(free_port()),
                 "CLICKHOUSE_ZOOKEEPER_PORT": zookeeper["ZOOKEEPER_PORT"],
                 "CLICKHOUSE_REPLICAS": f"{ports[0]} {ports[1]}", "CLICKHOUSE_REPLICA": f"replica{i + 1}",
                 "CLICKHOUSE_STATE_DIR": str(folder / f"replica{i + 1}"), "HALTWATCH_CACHE": str(folder / "cache")}
                for i, p in enumerate(ports)]
    infra("zookeeper", "start", zookeeper)
    try:
        for env in replicas:
            infra("clickhouse", "start", env)
        for k, dedup in enumerate(modes):
            url = f"clickhouse://default@127.0.0.1:{ports[0]}/pair{k}?alt_hosts=127.0.0.1:{ports[1]}"
            backend = open_backend(url, folder, "haltwatch")  # as the worker opens it on a cluster
            try:
                run("replicated pair (2 replicas, ZooKeeper)", backend, args, dedup, cluster="haltwatch")
            finally:
                backend.execute(f"DROP DATABASE IF EXISTS pair{k} ON CLUSTER haltwatch")
                backend.close()
    finally:
        for env in replicas:
            infra("clickhouse", "stop", env)
        infra("zookeeper", "stop", zookeeper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="transfer events to load (default 10M)")
    parser.add_argument("--exchanges", type=int, default=200)
    parser.add_argument("--days", type=int, default=7, help="days of block time the load spans")
    parser.add_argument("--batch", type=int, default=100_000, help="rows per sink flush")
    parser.add_argument("--backend", choices=["chdb", "server", "both", "pair"], default="both",
                        help="both: chdb and one server; pair: one server and a replicated pair, in one run")
    parser.add_argument("--dedup", choices=["on", "off", "both"], default="on",
                        help="read-before-write dedup of transfer batches (the worker always uses it)")
    parser.add_argument("--queries", type=int, default=200, help="runs per status query (history: a quarter)")
    parser.add_argument("--keep", action="store_true", help="keep the data folders")
    args = parser.parse_args()
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.dedup]
    folder = Path(tempfile.mkdtemp(prefix="haltwatch-bench-"))
    started = time.time()
    try:
        if args.backend in ("chdb", "both"):
            for dedup in modes:
                shutil.rmtree(folder / "chdb", ignore_errors=True)
                backend = chdb_backend(folder)
                try:
                    run("embedded chdb", backend, args, dedup)
                finally:
                    backend.close()
        if args.backend in ("server", "both", "pair"):
            port, http = free_port(), free_port()
            env = {"CLICKHOUSE_TCP_PORT": str(port), "CLICKHOUSE_HTTP_PORT": str(http),
                   "CLICKHOUSE_STATE_DIR": str(folder / "server"), "HALTWATCH_CACHE": str(folder / "cache")}
            infra("clickhouse", "start", env)
            try:
                for k, dedup in enumerate(modes):
                    server = DriverBackend(f"clickhouse://default@127.0.0.1:{port}/bench{k}")
                    try:
                        run("ClickHouse server (clickhouse-driver)", server, args, dedup)
                    finally:
                        server.execute(f"DROP DATABASE IF EXISTS bench{k}")
                        server.close()
            finally:
                infra("clickhouse", "stop", env)
        if args.backend == "pair":
            replicated_pair(args, folder, modes)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"\nbenchmark took {time.time() - started:.0f} s (cpus: {os.cpu_count()})")


if __name__ == "__main__":
    main()
