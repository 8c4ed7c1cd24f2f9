"""Figures, targets and the printed table of a scored run.

Delays are chain seconds from the incident member's start. Two are reported: to the first alert (any of
open, suspected, degraded) and to the first *open* (open or degraded). Targets use the open delay: it is
the alarm calibrated to the false-alarm budget, like the ideal detector's, so the ratio compares equals.
False alarms count after the warm-up only, because the exposure (exchange-days) does; those raised during
the warm-up are listed apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from bench.detection.ideal import IdealDelay
from bench.detection.matching import CLASSES, Member, Outputs, match
from bench.detection.model import DAY

OKX_TARGET_S = 240
DELAY_RATIO_TARGETS = {"full_halt": 1.3, "chain_halt": 1.3, "correlated": 1.3, "degradation": 2.0}
"""Median open delay allowed per class, as a multiple of the ideal detector's (which knows the process)."""


def poisson_interval(count: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) two-sided interval for the mean of a Poisson variable observed at ``count``."""
    tail = (1.0 - level) / 2.0

    def cdf(k: int, mean: float) -> float:  # P(N <= k)
        term = total = math.exp(-mean)
        for i in range(1, k + 1):
            term *= mean / i
            total += term
        return total

    def solve(target: float, k: int) -> float:  # the mean at which P(N <= k) = target (decreasing in mean)
        lo, hi = 0.0, max(10.0, 4.0 * k + 10.0)
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if cdf(k, mid) > target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    lower = 0.0 if count == 0 else solve(1.0 - tail, count - 1)
    return lower, solve(tail, count)


def p95(values: list[int]) -> float | None:
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])


def median(values: Iterable[float]) -> float | None:
    items = [float(v) for v in values]
    return float(statistics.median(items)) if items else None


def class_figures(members: list[Member]) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for kind in CLASSES:
        group = [m for m in members if m.kind == kind]
        if not group:
            continue
        alerts = [m.delay_s for m in group if m.delay_s is not None]
        opens = [m.open_delay_s for m in group if m.open_delay_s is not None]
        paired = [(m.open_delay_s, m.ideal.delay_s) for m in group
                  if m.open_delay_s is not None and m.ideal is not None and m.ideal.delay_s is not None]
        ideal_all = [m.ideal.delay_s for m in group if m.ideal is not None and m.ideal.delay_s is not None]
        own, ideal = median(d for d, _ in paired), median(i for _, i in paired)
        figures[kind] = {
            "members": len(group), "alerted": len(alerts), "opened": len(opens),
            "detection_rate": len(opens) / len(group),
            "median_alert_delay_s": median(alerts), "p95_alert_delay_s": p95(alerts),
            "median_open_delay_s": median(opens), "p95_open_delay_s": p95(opens),
            "ideal_detected": len(ideal_all), "ideal_median_delay_s": median(ideal_all),
            "ratio_to_ideal": None if own is None or ideal is None else own / max(ideal, 1.0),
        }
    return figures


def exchange_days(truth: Mapping[str, Any]) -> float:
    """Exchange-days of exposure after the warm-up."""
    days = max(0.0, (int(truth["end"]) - int(truth["start"]) - int(truth.get("warmup_s", 0))) / DAY)
    return days * len(truth["exchanges"])


def _target(name: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"target": name, "status": "N/A" if ok is None else ("PASS" if ok else "FAIL"), "detail": detail}


def targets(truth: Mapping[str, Any], members: list[Member], report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """PASS / FAIL / N/A (nothing to measure) / INFO (measured, but the target is judged on the other run)."""
    out = []
    halts = [m for m in members if m.kind in ("full_halt", "chain_halt")]
    missed = [f"{m.incident_id}:{m.exchange}" + (" (suspected only)" if m.first else "")
              for m in halts if m.first_opened is None]
    out.append(_target("every full_halt and chain_halt detected (opened)", None if not halts else not missed,
                       f"{len(halts) - len(missed)}/{len(halts)} opened" + (f"; missed {missed}" if missed else "")))
    n_events = len(truth.get("chain_events", []))
    violations = len(report["stall_violations"])
    out.append(_target("0 outages during chain stalls / lost feeds", None if n_events == 0 else violations == 0,
                       f"{violations} outages in {n_events} stalls/lost feeds"))
    budget_days = report["budget_days"]
    rate = report["false_alarms_per_exchange_per_budget"]
    count = len(report["false_alarms"])
    lo, hi = poisson_interval(count)
    scale = budget_days / report["exchange_days"] if report["exchange_days"] else 0.0
    fa = _target(f"false alarms <= 1 per exchange per {budget_days:g} days (quiet run)", rate <= 1.0,
                 f"{count} in {report['exchange_days']:.0f} exchange-days = {rate:.2f} "
                 f"per exchange per {budget_days:g} days (95% interval {lo * scale:.2f}-{hi * scale:.2f})")
    if not truth.get("quiet"):
        fa["status"] = "INFO"
        fa["detail"] += " (incident run: judged on the quiet run)"
    out.append(fa)
    ratios = {k: f["ratio_to_ideal"] for k, f in report["classes"].items() if f["ratio_to_ideal"] is not None}
    bad = [k for k, r in ratios.items() if r > DELAY_RATIO_TARGETS[k]]
    limits = ", ".join(f"{k} {v:g}x" for k, v in DELAY_RATIO_TARGETS.items())
    out.append(_target(f"median open delay <= the ideal's times ({limits})",
                       None if not ratios else not bad,
                       ", ".join(f"{k} {r:.2f}x" for k, r in ratios.items()) or "no class with both delays"))
    okx = [m for m in members if m.kind == "full_halt" and m.role == "okx_sized"]
    delay = okx[0].open_delay_s if okx else None
    out.append(_target(f"OKX-sized full halt opened within {OKX_TARGET_S} s of chain time",
                       None if not okx else delay is not None and delay <= OKX_TARGET_S,
                       "no such incident" if not okx else
                       ("not opened" if delay is None else f"{delay} s = {delay / 60:.1f} min")))
    return out


def build_report(truth: Mapping[str, Any], outputs: Outputs, ideal: list[IdealDelay],
                 budget_days: float) -> dict[str, Any]:
    matching = match(truth, outputs)
    by_member = {(d.incident_id, d.exchange): d for d in ideal}
    for m in matching.members:
        m.ideal = by_member.get((m.incident_id, m.exchange))
    warm_from = int(truth["start"]) + int(truth.get("warmup_s", 0))
    counted = [fa for fa in matching.false_alarms if fa["detected_at"] >= warm_from]
    ex_days = exchange_days(truth)
    okx = [m for m in matching.members if m.kind == "full_halt" and m.role == "okx_sized"]
    report: dict[str, Any] = {
        "quiet": bool(truth.get("quiet")),
        "exchanges": len(truth["exchanges"]),
        "exchange_days": ex_days,
        "outage_records": len(outputs.outages),
        "invalid_output_lines": outputs.invalid,
        "classes": class_figures(matching.members),
        "members": [member_row(m) for m in matching.members],
        "false_alarms": counted,
        "false_alarms_in_warmup": [fa for fa in matching.false_alarms if fa["detected_at"] < warm_from],
        "false_alarms_per_exchange_day": len(counted) / ex_days if ex_days else None,
        "false_alarms_per_exchange_per_budget": len(counted) / ex_days * budget_days if ex_days else 0.0,
        "budget_days": budget_days,
        "unmatched_suspicions": matching.suspicions,
        "stall_violations": matching.stall_violations,
        "stall_suspicions": matching.stall_suspicions,
        "chain_events": list(truth.get("chain_events", [])),
        "correlated": matching.correlated,
        "spurious_correlated_incidents": matching.spurious_groups,
        "okx_full_halt_open_delay_min": (okx[0].open_delay_s / 60
                                         if okx and okx[0].open_delay_s is not None else None),
    }
    report["targets"] = targets(truth, matching.members, report)
    return report


def member_row(m: Member) -> dict[str, Any]:
    return {
        "incident_id": m.incident_id, "kind": m.kind, "exchange": m.exchange, "role": m.role,
        "chains": list(m.chains),
        "start": m.start, "end": m.end, "alert_delay_s": m.delay_s, "open_delay_s": m.open_delay_s,
        "first_state": m.first["state"] if m.first else None,
        "open_scope": m.first_opened["scope"] if m.first_opened else None,
        "ideal_delay_s": m.ideal.delay_s if m.ideal else None, "ideal_scope": m.ideal.scope if m.ideal else None,
        "ideal_threshold_nats": m.ideal.threshold_nats if m.ideal else None,
    }


# -- text ------------------------------------------------------------------------------------------------

def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} s"


def _when(t: int, start: int) -> str:
    return f"{datetime.fromtimestamp(t, UTC).strftime('%a %H:%M:%S')} (+{(t - start) / 3600:.1f} h)"


def _classes(report: Mapping[str, Any]) -> list[str]:
    rows = ["", f"{'class':<12}{'opened':>8}{'alerted':>9}{'alert med':>11}{'open med':>10}{'open p95':>10}"
                f"{'ideal med':>11}{'ratio':>8}"]
    for kind, f in report["classes"].items():
        ratio = "-" if f["ratio_to_ideal"] is None else f"{f['ratio_to_ideal']:.2f}x"
        rows.append(f"{kind:<12}{f['opened']:>5}/{f['members']:<2}{f['alerted']:>6}/{f['members']:<2}"
                    f"{_s(f['median_alert_delay_s']):>11}{_s(f['median_open_delay_s']):>10}"
                    f"{_s(f['p95_open_delay_s']):>10}{_s(f['ideal_median_delay_s']):>11}{ratio:>8}")
    rows += ["", "per member (chain seconds from its start; ratio = open delay / ideal delay):"]
    for m in report["members"]:
        scope = ",".join(m["open_scope"]) if m["open_scope"] else "-"
        rows.append(f"  {m['incident_id']:<15}{m['exchange']:<9}{','.join(m['chains']):<26}"
                    f"{_when(m['start'], report['_start']):<23} alert {_s(m['alert_delay_s']):>8}  "
                    f"open {_s(m['open_delay_s']):>8} [{scope}]  ideal {_s(m['ideal_delay_s']):>8} "
                    f"[{m['ideal_scope'] or '-'}]")
    return rows


def _alarms(title: str, items: list[dict[str, Any]], start: int, extra: str = "") -> list[str]:
    rows = [title]
    for fa in items[:20]:
        rows.append(f"  {fa['exchange']:<9}{','.join(fa['scope']):<26}{fa['state']:<10}"
                    f"detected {_when(fa['detected_at'], start)}  silent {fa['detected_at'] - fa['started_at']} s"
                    + (f"  during {fa[extra]}" if extra else ""))
    if len(items) > 20:
        rows.append(f"  ... {len(items) - 20} more")
    return rows


def format_report(report: Mapping[str, Any], start: int) -> str:
    """The human-readable table."""
    report = {**report, "_start": start}
    rows = [f"{'QUIET' if report['quiet'] else 'INCIDENT'} RUN: {report['exchanges']} exchanges, "
            f"{report['exchange_days']:.1f} exchange-days after warm-up, {report['outage_records']} outage records"]
    if report["classes"]:
        rows += _classes(report)
    if report["okx_full_halt_open_delay_min"] is not None:
        rows.append(f"OKX-sized full halt opened after {report['okx_full_halt_open_delay_min']:.1f} min of chain time")
    per_day = report["false_alarms_per_exchange_day"]
    rows.append("")
    rows += _alarms(
        f"false alarms after warm-up: {len(report['false_alarms'])} ("
        f"{'-' if per_day is None else f'{per_day:.4f}'} per exchange-day, "
        f"{report['false_alarms_per_exchange_per_budget']:.2f} per exchange per {report['budget_days']:g} days)",
        report["false_alarms"], start)
    rows += _alarms(f"false alarms during warm-up (not counted): {len(report['false_alarms_in_warmup'])}",
                    report["false_alarms_in_warmup"], start)
    rows.append(f"unmatched suspicions (suspected, never opened): {len(report['unmatched_suspicions'])}")
    rows.append(f"suspicions (never opened) near chain stalls / lost feeds: {len(report['stall_suspicions'])}")
    rows += _alarms(f"outages opened during chain stalls / lost feeds: {len(report['stall_violations'])} "
                    f"(in {len(report['chain_events'])} events)", report["stall_violations"], start, "chain_event")
    for c in report["correlated"]:
        rows.append(f"correlated halt {c['incident_id']} ({', '.join(c['exchanges'])}): "
                    + ("grouped completely" if c["complete"] else f"grouped {len(c['grouped'])}/{len(c['exchanges'])}")
                    + (f", plus unrelated {c['extra']}" if c["extra"] else ""))
    if report["spurious_correlated_incidents"]:
        rows.append(f"correlated incidents grouping no correlated halt: {len(report['spurious_correlated_incidents'])}")
    rows.append("")
    rows += [f"  [{t['status']:<4}] {t['target']}: {t['detail']}" for t in report["targets"]]
    return "\n".join(rows)
