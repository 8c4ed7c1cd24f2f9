"""The detector alone on the 1,000 x 10 replay: ``python -m bench.backtest_throughput``.

Writes the replay of :mod:`bench.replay_topic` (1,000 exchanges x 10 chains by default, one block record per
chain and block: its transfers, then its head) to a gzip JSONL file, then times, in one run on the same file:

- **read + orjson**: a loop that only reads the lines and ``orjson.loads`` them (the floor of any replay);
- **read + decode**: the same loop with the contract's validating decode (:func:`schemas.codec.decode`);
- **backtest**: ``haltwatch backtest`` itself (:func:`streams.detection.backtest.run_backtest`).

Each is printed in events per second (a block record counts as its transfers plus its head) and, for the
backtest, its share of the read + orjson rate, which a busy machine moves much less than the rates.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from bench.replay_topic import ReplayPlan, blocks
from schemas.codec import decode, encode
from schemas.records import BlockTransfers, events_of
from streams.detection.backtest import open_lines, run_backtest
from streams.detection.policy import DetectionPolicy


def write_replay(path: Path, plan: ReplayPlan) -> int:
    """The plan as block records, one line each; returns the events they hold."""
    events = 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        for block in blocks(plan):
            record = BlockTransfers(block.transfers, block.head)
            events += len(block.transfers) + 1
            out.write(encode(record) + b"\n")
    return events


def timed_loop(path: Path, parse: Callable[[bytes], object]) -> float:
    """CPU seconds to read every line of ``path`` and ``parse`` it."""
    started = time.process_time()
    raw, lines = open_lines(path)
    with raw:
        for line in lines:
            parse(line)
    return time.process_time() - started


def decode_events(line: bytes) -> int:
    return len(events_of(decode(line)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--exchanges", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=200, help="blocks per chain (30 s of chain time each)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    plan = ReplayPlan(exchanges=args.exchanges, chains=args.chains, blocks=args.blocks)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="haltwatch-backtest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    replay = work / "replay.jsonl.gz"
    started = time.perf_counter()
    events = write_replay(replay, plan)
    print(f"{plan.exchanges} exchanges x {plan.chains} chains x {plan.blocks} blocks: {events:,} events in "
          f"{replay.stat().st_size / 1e6:.0f} MB ({time.perf_counter() - started:.0f} s to write)", flush=True)
    floor = timed_loop(replay, orjson.loads)
    decoding = timed_loop(replay, decode_events)
    started = time.process_time()
    summary = run_backtest(replay, work / "outages.jsonl", DetectionPolicy(), progress=False)
    backtest = time.process_time() - started
    assert summary.events == events, (summary.events, events)
    print(f"{'read + orjson':<16} {events / floor:>10,.0f} events/s  {floor:6.1f} CPU s")
    print(f"{'read + decode':<16} {events / decoding:>10,.0f} events/s  {decoding:6.1f} CPU s  "
          f"({(decoding - floor) / events * 1e6:.1f} µs per event for the validating decode)")
    print(f"{'backtest':<16} {events / backtest:>10,.0f} events/s  {backtest:6.1f} CPU s  "
          f"({floor / backtest:.3f} of read + orjson; outputs {dict(summary.outputs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
