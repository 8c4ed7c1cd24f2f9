"""Detection over several seeds: the incident run of each, pooled per incident class.

    python -m bench.detection.seeds [--seeds 5] [--workdir DIR] [--traffic bursty|smooth]

One seed has one incident per class, so one seed's delay ratio is one draw of the traffic's swings: the
targets are judged on the pooled members of every seed (median open delay against the median of the ideal
detector's, per class), with every halt detected, no outage in a stall or lost feed, and the OKX-sized full
halt of each seed within its limit. False alarms are judged by ``bench.detection.calibrate`` on quiet runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.detection.generate import INCIDENT_DAYS
from bench.detection.report import DELAY_RATIO_TARGETS, OKX_TARGET_S
from bench.detection.run import pipeline
from bench.detection.scenario import EXCHANGES, TRAFFIC, Config


def incident_run(workdir: Path, seed: int, traffic: str) -> dict[str, Any]:
    result = pipeline(f"seed {seed}", workdir / f"seed-{seed}", Config(INCIDENT_DAYS, seed, len(EXCHANGES),
                                                                        traffic=traffic))
    return {"seed": seed, "report": result.report, "seconds": result.seconds}


def pooled(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    members = [(r["seed"], m) for r in runs for m in r["report"]["members"]]
    lines.append(f"{'class':<12} {'members':>7} {'opened':>6} {'open med':>9} {'ideal med':>9} {'ratio':>6} "
                 f"{'target':>6}  per seed (open / ideal, s)")
    verdicts = []
    for kind, limit in DELAY_RATIO_TARGETS.items():
        group = [(seed, m) for seed, m in members if m["kind"] == kind]
        if not group:
            continue
        paired = [(m["open_delay_s"], m["ideal_delay_s"]) for _, m in group
                  if m["open_delay_s"] is not None and m["ideal_delay_s"] is not None]
        own = statistics.median(d for d, _ in paired) if paired else None
        ideal = statistics.median(i for _, i in paired) if paired else None
        ratio = own / max(ideal, 1.0) if own is not None and ideal is not None else None
        opened = sum(1 for _, m in group if m["open_delay_s"] is not None)
        detail = ", ".join(f"{seed}:{m['open_delay_s'] if m['open_delay_s'] is not None else '-'}/"
                           f"{m['ideal_delay_s'] if m['ideal_delay_s'] is not None else '-'}" for seed, m in group)
        lines.append(f"{kind:<12} {len(group):>7} {opened:>6} {_s(own):>9} {_s(ideal):>9} "
                     f"{'-' if ratio is None else f'{ratio:.2f}x':>6} {limit:>5}x  {detail}")
        verdicts.append((kind, ratio, limit))
    halts = [(seed, m) for seed, m in members if m["kind"] in ("full_halt", "chain_halt")]
    missed = [f"{m['kind']} {m['exchange']} (seed {seed})" for seed, m in halts if m["open_delay_s"] is None]
    ideal_missed = [f"{m['kind']} {m['exchange']} (seed {seed})" for seed, m in halts if m["ideal_delay_s"] is None]
    stalls = sum(len(r["report"]["stall_violations"]) for r in runs)
    okx = [(seed, m["open_delay_s"]) for seed, m in members
           if m["kind"] == "full_halt" and m.get("role") == "okx_sized"]
    lines.append("")
    lines.append(f"  [{'PASS' if not missed else 'FAIL'}] every full and chain halt opened: "
                 f"{len(halts) - len(missed)}/{len(halts)}" + (f"; missed {missed}" if missed else "")
                 + (f" (the ideal detector missed {ideal_missed})" if ideal_missed else ""))
    lines.append(f"  [{'PASS' if stalls == 0 else 'FAIL'}] outages during chain stalls / lost feeds: {stalls}")
    for kind, ratio, limit in verdicts:
        ok = ratio is not None and ratio <= limit
        lines.append(f"  [{'PASS' if ok else 'FAIL'}] {kind} median open delay <= {limit}x the ideal's: "
                     f"{'-' if ratio is None else f'{ratio:.2f}x'}")
    late = [(seed, d) for seed, d in okx if d is None or d > OKX_TARGET_S]
    lines.append(f"  [{'PASS' if okx and not late else 'FAIL'}] OKX-sized full halt opened within {OKX_TARGET_S} s: "
                 + ", ".join(f"seed {seed} {'-' if d is None else f'{d} s'}" for seed, d in okx))
    return lines


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection.seeds", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "haltwatch-seeds")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--traffic", choices=TRAFFIC, default="bursty")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(incident_run, [args.workdir] * args.seeds, range(1, args.seeds + 1),
                             [args.traffic] * args.seeds))
    print(f"incident runs of seeds 1..{args.seeds}, {args.traffic} traffic, {INCIDENT_DAYS:g} days each")
    print("\n".join(pooled(runs)))
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
