"""Score a backtest's outputs against a scenario's ground truth.

    python -m bench.detection.score --truth DIR/truth.json --events DIR/events.jsonl.gz --outages OUT.jsonl
                                    [--budget-days 90] [--false-alarms 1] [--json]

Matching rules are in :mod:`.matching`, figures and targets in :mod:`.report`; the ideal detector's
delays (:mod:`.ideal`) are computed here from the same events with the same false-alarm budget.
This is a measurement: the exit code is 0 whatever the figures; PASS/FAIL lines say which targets hold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.detection.ideal import Budget, IdealDetector
from bench.detection.matching import read_outputs
from bench.detection.report import build_report, format_report


def score_report(truth_path: Path, events: Path, outages: Path, budget: Budget) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    truth = orjson.loads(truth_path.read_bytes())
    ideal = IdealDetector(truth, budget).delays(events)
    return build_report(truth, read_outputs(outages), ideal, budget.days)


def score(truth_path: Path, events: Path, outages: Path, budget: Budget, as_json: bool = False) -> str:
    """The report as printed: a table, or JSON."""
    report = score_report(truth_path, events, outages, budget)
    if as_json:
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    start = int(orjson.loads(truth_path.read_bytes())["start"])
    return format_report(report, start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection.score", description=__doc__.split("\n")[0])
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--outages", type=Path, required=True, help="backtest output (JSONL)")
    parser.add_argument("--budget-days", type=float, default=90.0, help="false-alarm budget period (policy)")
    parser.add_argument("--false-alarms", type=float, default=1.0, help="false alarms allowed per budget period")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    print(score(args.truth, args.events, args.outages, Budget(args.false_alarms, args.budget_days), args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
