"""Group outages of several exchanges that start together: one cloud region can take many down at once.

Pure and order-driven: feed it outage events in detection order; it returns a new version of a
:class:`CorrelatedIncident` whenever a group forms or grows. Exchange metadata (hosting provider,
region, ...) is optional; what all members share is reported as the likely common cause.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from schemas.records import CorrelatedIncident, OutageEvent, OutageState
from streams.detection.clock import Clock


class MetadataError(ValueError):
    """The exchange metadata file is wrong; the message names the file and the entry."""


def load_exchange_metadata(path: Path) -> dict[str, dict[str, str]]:
    """``[exchange.okx] provider = "alibaba-cloud"  region = "cn-hongkong"`` → {"okx": {...}}."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MetadataError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("exchange", {})
    if not isinstance(table, dict):
        raise MetadataError(f"{path}: 'exchange' must be a table of exchanges")
    result: dict[str, dict[str, str]] = {}
    for name, fields in table.items():
        if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
            raise MetadataError(f"{path}: exchange.{name} must map names to text values")
        result[name.lower()] = dict(fields)
    return result


@dataclass(slots=True)
class _Group:
    incident_id: str
    version: int
    outages: dict[str, OutageEvent] = field(default_factory=dict)  # exchange -> first open outage
    last_detected: int = 0


class IncidentCorrelator:
    def __init__(self, window_s: int, clock: Clock, metadata: dict[str, dict[str, str]] | None = None) -> None:
        self.window_s = window_s
        self.clock = clock
        self.metadata = metadata or {}
        self.pending: dict[str, OutageEvent] = {}  # exchange -> latest open outage not yet grouped
        self.groups: list[_Group] = []

    def on_outage(self, event: OutageEvent) -> list[CorrelatedIncident]:
        if event.state not in (OutageState.OPEN, OutageState.DEGRADED):
            return []
        self._expire(event.detected_at)
        for group in self.groups:
            if event.exchange in group.outages:
                return []  # a later state of a member: the group already counts it
            if event.detected_at - group.last_detected <= self.window_s:
                group.outages[event.exchange] = event
                group.last_detected = max(group.last_detected, event.detected_at)
                group.version += 1
                return [self._record(group)]
        near = [o for o in self.pending.values()
                if o.exchange != event.exchange and abs(event.detected_at - o.detected_at) <= self.window_s]
        if not near:
            self.pending[event.exchange] = event
            return []
        members = sorted([*near, event], key=lambda o: (o.detected_at, o.outage_id))
        group = _Group(
            incident_id=hashlib.sha256(f"correlated|{members[0].outage_id}".encode()).hexdigest()[:24],
            version=1,
            outages={o.exchange: o for o in members},
            last_detected=max(o.detected_at for o in members),
        )
        for o in members:
            self.pending.pop(o.exchange, None)
        self.groups.append(group)
        return [self._record(group)]

    def _expire(self, now: int) -> None:
        horizon = now - self.window_s
        self.pending = {ex: o for ex, o in self.pending.items() if o.detected_at >= horizon}
        self.groups = [g for g in self.groups if g.last_detected >= horizon]

    def _record(self, group: _Group) -> CorrelatedIncident:
        members = sorted(group.outages.values(), key=lambda o: o.exchange)
        exchanges = [o.exchange for o in members]
        shared: dict[str, str] = {}
        metas = [self.metadata.get(ex) for ex in exchanges]
        if all(metas):
            first = metas[0] or {}
            shared = {k: v for k, v in first.items() if all((m or {}).get(k) == v for m in metas)}
        cause = (
            "shared " + ", ".join(f"{k} {v}" for k, v in sorted(shared.items()))
            if shared else "unknown: no metadata shared by all members"
        )
        return CorrelatedIncident(
            incident_id=group.incident_id,
            version=group.version,
            exchanges=exchanges,
            outage_ids=[o.outage_id for o in members],
            started_at=min(o.started_at for o in members),
            detected_at=group.last_detected,
            common=shared,
            likely_cause=cause,
            emitted_at=self.clock.now(),
        )
