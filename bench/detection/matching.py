"""Which outage records detect which incident members, and which are false alarms or stall violations.

An outage record *alerts* on an incident member when it is an outage in state open, suspected or degraded
of the member's exchange, its scope shares a chain with the member's halted chains, and its ``detected_at``
lies in [member start, member end + 10 min]. It *opens* it when its state is open or degraded: that is
the alarm the detector spends its false-alarm budget on (suspected is a 20x weaker, advisory state). The
same holds for stalls and lost feeds: the target is that no outage is *opened* there; suspicions near one are
listed apart.

Everything else the detector says is counted against it: an outage id that reached open or degraded and
alerted on nothing is a false alarm (suspected-only ones are listed apart); an outage record on a chain
while that chain was stalled or its feed lost (until 10 min after) is a stall violation, listed on its own
and not also counted as a false alarm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.detection.ideal import GRACE_S, IdealDelay
from streams.detection.backtest import open_lines

CLASSES = ("full_halt", "chain_halt", "degradation", "correlated")
ALERT_STATES = ("open", "suspected", "degraded")
OPENED_STATES = ("open", "degraded")


@dataclass(slots=True)
class Member:
    """One exchange's part of an incident: the unit that is detected or missed."""

    incident_id: str
    kind: str
    exchange: str
    chains: tuple[str, ...]
    start: int
    end: int
    role: str = ""
    first: dict[str, Any] | None = None
    """The earliest matching outage record."""
    first_opened: dict[str, Any] | None = None
    """The earliest matching record in state open or degraded."""
    ideal: IdealDelay | None = None

    def matches(self, record: Mapping[str, Any], grace_s: int) -> bool:
        return (record["exchange"] == self.exchange and bool(set(record["scope"]) & set(self.chains))
                and self.start <= record["detected_at"] <= self.end + grace_s)

    @property
    def delay_s(self) -> int | None:
        return None if self.first is None else int(self.first["detected_at"]) - self.start

    @property
    def open_delay_s(self) -> int | None:
        return None if self.first_opened is None else int(self.first_opened["detected_at"]) - self.start


@dataclass(slots=True)
class Outputs:
    outages: list[dict[str, Any]] = field(default_factory=list)
    correlated: list[dict[str, Any]] = field(default_factory=list)
    other: int = 0
    invalid: int = 0


def read_outputs(path: Path) -> Outputs:
    """Outage and correlated-incident records of a backtest output file, in file order."""
    result = Outputs()
    raw, lines = open_lines(path)
    with raw:
        for line in lines:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                result.invalid += 1
                continue
            kind = record.get("type") if isinstance(record, dict) else None
            if kind == "outage":
                result.outages.append(record)
            elif kind == "correlated_incident":
                result.correlated.append(record)
            else:
                result.other += 1
    return result


def members_of(truth: Mapping[str, Any]) -> list[Member]:
    roles = {name: str(spec.get("role", "")) for name, spec in truth["exchanges"].items()}
    return [Member(str(inc["id"]), str(inc["kind"]), str(m["exchange"]), tuple(m["chains"]), int(m["start"]),
                   int(m["end"]), roles.get(str(m["exchange"]), ""))
            for inc in truth.get("incidents", []) for m in inc["members"]]


@dataclass(slots=True)
class Matching:
    members: list[Member]
    false_alarms: list[dict[str, Any]]
    """First opening record of each outage id that matched nothing (and was no stall violation)."""
    suspicions: list[dict[str, Any]]
    """Outage ids that stayed suspected and matched nothing: not false alarms, reported for information."""
    stall_violations: list[dict[str, Any]]
    correlated: list[dict[str, Any]]
    """Per correlated incident: members, the best grouping record and what it got right."""
    spurious_groups: list[str]
    """Correlated-incident ids that group no correlated halt."""
    stall_suspicions: list[dict[str, Any]]
    """Suspicions (never opened) within a stall or lost feed window: informational."""


def match(truth: Mapping[str, Any], outputs: Outputs, grace_s: int = GRACE_S) -> Matching:
    """Assign every outage record to incident members, chain events, or false alarms.

    A stall violation is one outage id per chain event (its first record in the event's window).
    """
    members = members_of(truth)
    matched_ids: set[str] = set()
    violations: dict[tuple[str, int], dict[str, Any]] = {}
    near_stalls: dict[tuple[str, int], dict[str, Any]] = {}
    """Suspicions (never opened) near a stall or lost feed: listed, but the target is about opened outages."""
    events = truth.get("chain_events", [])
    for record in outputs.outages:
        if record["state"] not in ALERT_STATES:
            continue
        for member in members:
            if member.matches(record, grace_s):
                matched_ids.add(record["outage_id"])
                if member.first is None:
                    member.first = record
                if member.first_opened is None and record["state"] in OPENED_STATES:
                    member.first_opened = record
        for i, event in enumerate(events):
            key = (record["outage_id"], i)
            target = violations if record["state"] in OPENED_STATES else near_stalls
            if (key not in target and event["chain"] in record["scope"]
                    and event["start"] <= record["detected_at"] <= event["end"] + grace_s):
                target[key] = {**_brief(record), "chain_event": f"{event['kind']} of {event['chain']}",
                               "event_start": event["start"], "event_end": event["end"]}
    violating_ids = {oid for oid, _ in violations} | {oid for oid, _ in near_stalls}
    first_by_id: dict[str, dict[str, Any]] = {}
    opened_ids: set[str] = set()
    for record in outputs.outages:
        first_by_id.setdefault(record["outage_id"], record)
        if record["state"] in OPENED_STATES and record["outage_id"] not in opened_ids:
            opened_ids.add(record["outage_id"])
            first_by_id[record["outage_id"]] = record
    unmatched = [oid for oid in first_by_id if oid not in matched_ids and oid not in violating_ids]
    false_alarms = [_brief(first_by_id[oid]) for oid in unmatched if oid in opened_ids]
    suspicions = [_brief(first_by_id[oid]) for oid in unmatched
                  if oid not in opened_ids and first_by_id[oid]["state"] == "suspected"]
    correlated, spurious = match_correlated(truth, outputs.correlated, grace_s)
    return Matching(members, false_alarms, suspicions, list(violations.values()), correlated, spurious,
                    list(near_stalls.values()))


def match_correlated(truth: Mapping[str, Any], records: list[dict[str, Any]],
                     grace_s: int) -> tuple[list[dict[str, Any]], list[str]]:
    result = []
    used: set[str] = set()
    for inc in truth.get("incidents", []):
        if inc["kind"] != "correlated":
            continue
        wanted = {str(m["exchange"]) for m in inc["members"]}
        best: dict[str, Any] | None = None
        for record in records:
            if not inc["start"] <= record["detected_at"] <= inc["end"] + grace_s:
                continue
            if best is None or len(wanted & set(record["exchanges"])) > len(wanted & set(best["exchanges"])):
                best = record
            if wanted & set(record["exchanges"]):
                used.add(record["incident_id"])
        got = set(best["exchanges"]) if best else set()
        result.append({"incident_id": inc["id"], "exchanges": sorted(wanted), "grouped": sorted(wanted & got),
                       "extra": sorted(got - wanted), "complete": wanted <= got,
                       "record": best["incident_id"] if best else None})
    spurious = sorted({r["incident_id"] for r in records} - used)
    return result, spurious


def _brief(record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("outage_id", "exchange", "scope", "state", "started_at", "detected_at", "reason")
    return {k: record.get(k) for k in keys}


