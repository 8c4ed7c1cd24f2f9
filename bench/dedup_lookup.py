"""The transfers sink's read-before-write lookup against a growing day of data, on Debian's ClickHouse 18.16.

Why: the lookup (``streams/store/dedup.py``) runs once per inserted batch and names the batch's block-time
span, exchanges and transaction prefixes. The table is sorted by (exchange, chain, block_time, ...) and
partitioned by day, so when a day holds many (exchange, chain) pairs each index granule (8,192 rows) spans
dozens of them and the index cannot skip granules by time; only a part's block-time min/max can. The replay
benchmark showed the lookup as 43-45 % of the server's CPU, its worst case (1.7 h of chain time, every
batch overlapping every part); this one measures whether a lookup's cost grows with the rows already stored
in a live day (measured: it did not, ``docs/benchmarks.md``).

It fills one day with ``--exchanges`` x ``--chains`` pairs (random-looking transaction hashes, block times
in order, as a chain would give them) in inserts of ``--catch-up`` rows, as the sink writes them, leaving
the merging to the server, in steps up to ``--rows``. After each step it runs the sink's own lookup
(``TransferDedup.stored``) for batches of new transfers whose block times fall in the last ``--overlap-s``
seconds of what is stored, as a sink's batch overlaps the rows of other chains' blocks of the same seconds
and of blocks split over two batches: ``--live`` rows (what a live sink flushes every quarter second at
1,000 events/s) and ``--catch-up`` rows (a full batch).
Printed per step and batch size: the median wall time of ``--runs`` lookups, and the server's CPU per lookup
(user + system, from /proc). Run from the repository root:

    .venv/bin/python -m bench.dedup_lookup
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.process_figures import cpu_seconds, infra_pid
from haltwatch.local import free_port, infra
from streams.store.backend import DriverBackend
from streams.store.dedup import TransferDedup
from streams.store.migrate import apply_migrations

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC: every row stays within this day


class Day:
    """Transfers of one day in block-time order: each row one (exchange, chain) pair's payout."""

    def __init__(self, exchanges: int, chains: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.pairs = [(f"exchange{e:04d}", f"chain{c:02d}") for e in range(exchanges) for c in range(chains)]
        self.made = 0

    def rows(self, n: int, seconds_per_row: float) -> dict[str, list[Any]]:
        columns: dict[str, list[Any]] = {name: [] for name in (
            "exchange", "chain", "direction", "block_time", "block_number", "block_hash", "tx_hash", "log_index",
            "asset", "amount", "decimals", "from_address", "to_address", "removed", "ingest_version")}
        for _ in range(n):
            i = self.made
            self.made += 1
            exchange, chain = self.pairs[self.rng.randrange(len(self.pairs))]
            t = T0 + int(i * seconds_per_row)
            values = (exchange, chain, "withdrawal", t, t // 12, f"0x{self.rng.getrandbits(256):064x}",
                      f"0x{self.rng.getrandbits(256):064x}", -1, "native", "1000", 18,
                      f"0x{self.rng.getrandbits(160):040x}", f"0x{self.rng.getrandbits(160):040x}", 0, i)
            for name, value in zip(columns, values, strict=True):
                columns[name].append(value)
        return columns


def lookup_costs(backend: DriverBackend, day: Day, server_pid: int | None, size: int, runs: int,
                 seconds_per_row: float, overlap_s: float) -> tuple[float, float | None, int]:
    """(median wall ms, server CPU ms per lookup, stored rows found) for ``runs`` lookups of ``size`` new rows."""
    walls: list[float] = []
    found = 0
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    for _ in range(runs):
        made = day.made
        batch = day.rows(size, seconds_per_row)
        last = T0 + int((made - 1) * seconds_per_row)
        batch["block_time"] = [last - int(day.rng.random() * overlap_s) for _ in range(size)]
        day.made = made  # not stored: the next run looks up the same span again
        started = time.perf_counter()
        found = len(TransferDedup().stored(backend, batch))
        walls.append((time.perf_counter() - started) * 1000)
    cpu = (cpu_seconds(server_pid) - cpu_before) / runs * 1000 if server_pid else None
    return statistics.median(walls), cpu, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--rows", type=int, default=4_000_000, help="rows stored in the day at the last step")
    parser.add_argument("--steps", type=int, default=4, help="lookups are timed after each of this many equal fills")
    parser.add_argument("--live", type=int, default=250, help="rows of a live batch")
    parser.add_argument("--catch-up", type=int, default=5_000, help="rows of a catch-up batch (the sink's default)")
    parser.add_argument("--runs", type=int, default=7, help="lookups timed per step and batch size")
    parser.add_argument("--overlap-s", type=float, default=60.0,
                        help="a looked-up batch's block times fall within this many seconds before the last stored")
    args = parser.parse_args()
    seconds_per_row = 86_000 / (args.rows + (args.steps + 1) * args.catch_up * args.runs)
    folder = Path(tempfile.mkdtemp(prefix="haltwatch-dedup-"))
    port = free_port()
    env = {"CLICKHOUSE_TCP_PORT": str(port), "CLICKHOUSE_HTTP_PORT": str(free_port()),
           "CLICKHOUSE_STATE_DIR": str(folder / "server")}
    infra("clickhouse", "start", env)
    try:
        backend = DriverBackend(f"clickhouse://default@127.0.0.1:{port}/dedup")
        apply_migrations(backend)
        pid = infra_pid(f"clickhouse-{port}")
        version = backend.query("SELECT version() AS v")[0]["v"]
        print(f"ClickHouse {version}; {args.exchanges} exchanges x {args.chains} chains in one day's partition, "
              f"inserted {args.catch_up:,} rows at a time; lookups of {args.live:,} and {args.catch_up:,} new rows "
              f"within the last {args.overlap_s:g} s stored, median of {args.runs}", flush=True)
        print(f"{'rows stored':>12} | {'live: wall ms':>13} {'server CPU ms':>13} | "
              f"{'catch-up: wall ms':>17} {'server CPU ms':>13} | active parts", flush=True)
        day = Day(args.exchanges, args.chains)
        for step in range(1, args.steps + 1):
            target = args.rows * step // args.steps
            while day.made < target:
                backend.insert_columns("transfers", day.rows(min(args.catch_up, target - day.made), seconds_per_row))
            parts = backend.query(f"SELECT count() AS n FROM system.parts WHERE active AND "
                                  f"database = '{backend.database}' AND table = 'transfers'")[0]["n"]
            live = lookup_costs(backend, day, pid, args.live, args.runs, seconds_per_row, args.overlap_s)
            full = lookup_costs(backend, day, pid, args.catch_up, args.runs, seconds_per_row, args.overlap_s)
            assert live[2] == 0 and full[2] == 0, "new transfers were found stored"
            def cpu(ms: float | None) -> str:
                return f"{ms:>13.1f}" if ms is not None else f"{'n/a':>13}"  # server PID not found

            print(f"{day.made:>12,} | {live[0]:>13.1f} {cpu(live[1])} | {full[0]:>17.1f} {cpu(full[1])} | {parts}",
                  flush=True)
        backend.close()
    finally:
        infra("clickhouse", "stop", env)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
