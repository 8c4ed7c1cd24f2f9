"""Is the false-alarm budget a promise kept? Configured budget against realised false alarms, on bursty traffic.

    python -m bench.detection.calibrate [--seeds 5] [--budgets 7,30,90,365] [--quiet-days 10]
                                        [--workdir DIR] [--plot docs/calibration.png]

For each seed, one quiet scenario (no incidents, no stalls) of bursty traffic is generated; each is
replayed once per budget ("1 false alarm per N days" for each N of ``--budgets``), and every alarm it
opens after the warm-up is false. Per budget, the realised rate (false alarms per exchange per N days,
over all seeds) is printed with its exact Poisson 95 % interval, beside the configured 1, and beside what
the detector itself estimated from its normal gaps (``OutageDetector.budget``). The picture puts the
configured rate against the realised one on log axes: a kept promise lies on or below the diagonal.
Scenarios are kept in the work directory and reused when their truth file is already there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.detection.generate import generate
from bench.detection.matching import match, read_outputs
from bench.detection.report import exchange_days, poisson_interval
from bench.detection.scenario import Config
from streams.detection.backtest import run_backtest
from streams.detection.policy import DetectionPolicy

YEAR = 365.0


@dataclass(frozen=True, slots=True)
class Replay:
    seed: int
    budget_days: float
    false_alarms: int
    opened_by_state: dict[str, int]
    exchange_days: float
    estimated_per_budget: float
    """Sum over exchanges of the detector's own estimate (false alarms per budget period), learning ones
    counted at the budget."""
    exchanges: int


def scenario(workdir: Path, seed: int, days: float, exchanges: int) -> Path:
    directory = workdir / f"seed-{seed}"
    if not (directory / "truth.json").exists():
        generate(directory, Config(days, seed, exchanges, quiet=True, traffic="bursty"))
    return directory


def replay(directory: Path, seed: int, budget_days: float) -> Replay:
    policy = DetectionPolicy(budget_days=budget_days)
    out = directory / f"outages-{budget_days:g}d.jsonl"
    summary = run_backtest(directory / "events.jsonl.gz", out, policy, progress=False)
    truth = orjson.loads((directory / "truth.json").read_bytes())
    warm_from = int(truth["start"]) + int(truth.get("warmup_s", 0))
    alarms = [fa for fa in match(truth, read_outputs(out)).false_alarms if fa["detected_at"] >= warm_from]
    states: dict[str, int] = {}
    for fa in alarms:
        states[str(fa["state"])] = states.get(str(fa["state"]), 0) + 1
    estimated = sum(b.estimated if b.estimated is not None else b.budget for b in summary.budgets)
    return Replay(seed, budget_days, len(alarms), states, exchange_days(truth), estimated, len(summary.budgets))


def aggregate(replays: list[Replay], budget_days: float) -> dict[str, Any]:
    """Realised false alarms per exchange per budget period over all seeds, with the Poisson 95% interval."""
    rows = [r for r in replays if r.budget_days == budget_days]
    count = sum(r.false_alarms for r in rows)
    days = sum(r.exchange_days for r in rows)
    lo, hi = poisson_interval(count)
    scale = budget_days / days
    states: dict[str, int] = {}
    for r in rows:
        for k, v in r.opened_by_state.items():
            states[k] = states.get(k, 0) + v
    return {
        "budget_days": budget_days, "seeds": len(rows), "exchange_days": days, "false_alarms": count,
        "by_state": states, "realised": count * scale, "low": lo * scale, "high": hi * scale,
        "estimated": sum(r.estimated_per_budget for r in rows) / max(1, sum(r.exchanges for r in rows)),
    }


def plot(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    """Configured against realised false alarms per exchange-year, log-log, 95% intervals as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configured = [YEAR / s["budget_days"] for s in summary]
    realised = [s["realised"] * YEAR / s["budget_days"] for s in summary]
    low = [max(s["low"] * YEAR / s["budget_days"], 1e-3) for s in summary]
    high = [s["high"] * YEAR / s["budget_days"] for s in summary]
    estimated = [s["estimated"] * YEAR / s["budget_days"] for s in summary]
    floor = min(configured) / 10.0
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    span = [min(configured) / 1.5, max(configured) * 1.5]
    ax.plot(span, span, color="0.5", linestyle="--", label="promise kept exactly")
    ax.fill_between(configured, [max(v, floor) for v in low], high, color="tab:blue", alpha=0.2,
                    label="realised, 95 % interval")
    seen = [(x, r) for x, r in zip(configured, realised, strict=True) if r > 0]
    ax.plot([x for x, _ in seen], [r for _, r in seen], "o-", color="tab:blue", label="realised")
    zeros = [x for x, r in zip(configured, realised, strict=True) if r == 0]
    if zeros:
        ax.plot(zeros, [floor] * len(zeros), "v", color="tab:blue", markersize=8, label="realised: none")
    ax.plot(configured, estimated, "s:", color="tab:orange", label="estimated by the detector")
    for x, s in zip(configured, summary, strict=True):
        ax.annotate(f"1 per {s['budget_days']:g} d\n{s['false_alarms']} alarms", (x, floor),
                    textcoords="offset points", xytext=(0, -26), ha="center", fontsize=7, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(span)
    ax.set_ylim(floor / 3, max(max(high), max(configured)) * 2)
    ax.set_xlabel("configured budget: false alarms per exchange-year")
    ax.set_ylabel("realised false alarms per exchange-year")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.subplots_adjust(bottom=0.2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "haltwatch-calibration")
    parser.add_argument("--seeds", type=int, default=5, help="scenarios (seeds 1..N)")
    parser.add_argument("--budgets", default="7,30,90,365", help="budget periods in days, 1 false alarm each")
    parser.add_argument("--quiet-days", type=float, default=10.0, help="chain days per scenario (1 is warm-up)")
    parser.add_argument("--exchanges", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=None, help="write the picture here (PNG)")
    parser.add_argument("--replot", action="store_true",
                        help="only draw the picture again from the work directory's calibration.json")
    args = parser.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")]
    saved = args.workdir / "calibration.json"
    if args.replot:
        stored = orjson.loads(saved.read_bytes())
        plot(stored["summary"], args.plot or Path("calibration.png"), stored["title"])
        return 0
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        dirs = list(pool.map(scenario, [args.workdir] * args.seeds, range(1, args.seeds + 1),
                             [args.quiet_days] * args.seeds, [args.exchanges] * args.seeds))
        jobs = [(d, seed, b) for seed, d in enumerate(dirs, start=1) for b in budgets]
        replays = list(pool.map(replay, *zip(*jobs, strict=True)))
    summary = [aggregate(replays, b) for b in budgets]
    print(f"{args.seeds} seeds x {args.exchanges} exchanges of quiet bursty traffic, "
          f"{summary[0]['exchange_days']:.0f} exchange-days after warm-up per budget")
    print(f"{'budget':>14} {'alarms':>7} {'open/degraded':>14} {'realised per period':>20} "
          f"{'95% interval':>14} {'estimated':>10}")
    for s in summary:
        split = f"{s['by_state'].get('open', 0)}/{s['by_state'].get('degraded', 0)}"
        print(f"{'1 per ' + format(s['budget_days'], 'g') + ' d':>14} {s['false_alarms']:>7} {split:>14} "
              f"{s['realised']:>20.2f} {s['low']:>6.2f}-{s['high']:<7.2f} {s['estimated']:>10.2f}")
    for r in replays:
        print(f"  seed {r.seed} budget {r.budget_days:g} d: {r.false_alarms} false alarms {r.opened_by_state}")
    title = (f"{args.seeds} seeds, {summary[0]['exchange_days']:.0f} incident-free exchange-days of bursty "
             f"traffic per budget")
    saved.write_bytes(orjson.dumps({"summary": summary, "title": title}))
    if args.plot is not None:
        plot(summary, args.plot, title)
        print(f"picture: {args.plot}")
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
