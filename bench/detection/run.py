"""The whole detection benchmark: generate -> backtest -> score, for an incident run and a quiet run.

    python -m bench.detection.run [--workdir DIR] [--seed 1] [--days 4] [--quiet-days 9] [--exchanges 12]
                                  [--traffic bursty|smooth]

The incident run measures detection (halts, degradation, correlated halt, stalls and lost feeds); the
quiet run (no incidents, no stalls) measures false alarms over 12 x 8 exchange-days after warm-up. The two
pipelines run in parallel (one per core). Files are kept in the work directory for inspection; every figure
printed comes from running the code on them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.detection.generate import INCIDENT_DAYS, QUIET_DAYS, generate
from bench.detection.ideal import Budget
from bench.detection.report import format_report
from bench.detection.scenario import EXCHANGES, TRAFFIC, Config
from bench.detection.score import score_report
from streams.detection.backtest import run_backtest
from streams.detection.policy import DetectionPolicy


@dataclass(slots=True)
class RunResult:
    name: str
    directory: Path
    seconds: dict[str, float] = field(default_factory=dict)
    generated: str = ""
    backtest: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    table: str = ""


def pipeline(name: str, directory: Path, config: Config, progress: bool = False) -> RunResult:
    """Generate, replay and score one run; returns the texts and timings (picklable, for a worker process)."""
    result = RunResult(name, directory)
    policy = DetectionPolicy()
    started = time.perf_counter()
    truth = generate(directory, config)
    result.seconds["generate"] = time.perf_counter() - started
    stats = truth["stats"]
    result.generated = (f"{stats['records']:,} records ({stats['heads']:,} heads, "
                        f"{sum(stats['transfers'].values()):,} transfers), {len(truth['incidents'])} incidents, "
                        f"{len(truth['chain_events'])} chain events, "
                        f"{(directory / 'events.jsonl.gz').stat().st_size / 1e6:.0f} MB")
    started = time.perf_counter()
    summary = run_backtest(directory / "events.jsonl.gz", directory / "outages.jsonl", policy, progress=progress)
    result.seconds["backtest"] = time.perf_counter() - started
    result.backtest = summary.format()
    started = time.perf_counter()
    budget = Budget(policy.false_alarms_per_exchange, policy.budget_days)
    result.report = score_report(directory / "truth.json", directory / "events.jsonl.gz",
                                 directory / "outages.jsonl", budget)
    result.seconds["score"] = time.perf_counter() - started
    (directory / "score.json").write_bytes(orjson.dumps(result.report, option=orjson.OPT_INDENT_2))
    result.table = format_report(result.report, int(truth["start"]))
    return result


def overall(incident: RunResult, quiet: RunResult) -> list[str]:
    """Each target judged on the run it is about: false alarms on the quiet run, the rest on the incident run."""
    rows = []
    for t in incident.report["targets"]:
        if t["target"].startswith("false alarms"):
            t = next(q for q in quiet.report["targets"] if q["target"].startswith("false alarms"))
        rows.append(f"  [{t['status']:<4}] {t['target']}: {t['detail']}")
    return rows


def print_run(result: RunResult) -> None:
    print(f"=== {result.name} run ({result.directory}) ===")
    print(f"generate: {result.generated}")
    print(result.backtest)
    print()
    print(result.table)
    print("timings: " + ", ".join(f"{step} {s:.1f} s" for step, s in result.seconds.items()))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection.run", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "haltwatch-bench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=float, default=INCIDENT_DAYS, help="incident run length")
    parser.add_argument("--quiet-days", type=float, default=QUIET_DAYS, help="quiet run length")
    parser.add_argument("--exchanges", type=int, default=len(EXCHANGES))
    parser.add_argument("--serial", action="store_true", help="one run after the other (default: in parallel)")
    parser.add_argument("--traffic", choices=TRAFFIC, default="bursty",
                        help="bursty payout rates (bench/detection/bursty.py), or smooth (seasonality and drift only)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    jobs = [
        ("incident", args.workdir / "incident", Config(args.days, args.seed, args.exchanges, traffic=args.traffic)),
        ("quiet", args.workdir / "quiet", Config(args.quiet_days, args.seed + 1, args.exchanges, quiet=True,
                                                 traffic=args.traffic)),
    ]
    if args.serial:
        results = [pipeline(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(pipeline, *job) for job in jobs]
            results = [f.result() for f in futures]
    for result in results:
        print_run(result)
    print("=== targets (false alarms from the quiet run, the rest from the incident run) ===")
    print("\n".join(overall(results[0], results[1])))
    print(f"total wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
