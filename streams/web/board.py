"""What the status page shows, built from the worker's memory: detector, chain monitor, recent incidents.

The page must answer "what is down right now?" even when ClickHouse is slow or down, so nothing here
queries the store. The detector already knows each (exchange, chain)'s state, last withdrawal and
warm-up; the chain monitor knows whether each chain moves. Two things the detector does not keep are
kept here, bounded: the latest version of recent incidents (fed from the worker's emit path, so resolved
ones stay visible for a while) and withdrawals per hour of chain time for the sparklines (24 buckets per
(exchange, chain), fed after the detector accepted a withdrawal, so redeliveries are not counted).

A worker knows only the exchanges of the partitions it owns; with several workers, each page shows its
share (ClickHouse's ``current_status`` view has the whole picture).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict
from typing import Any

from schemas.records import ChainState, CorrelatedIncident, OutageEvent, OutageState, TransferEvent
from streams.detection.chains import ChainMonitor
from streams.detection.detector import OutageDetector
from streams.detection.state import event_key
from streams.observability import cell_state
from streams.store.status import covering_incident

HOURS = 24
MAX_INCIDENTS = 200
MAX_CORRELATED = 50
STATES = ("open", "degraded", "suspected", "chain_stalled", "no_data", "warming_up", "ok")
"""Every state a cell can show, most severe first."""
LABELS = {
    "open": "Outage open",
    "degraded": "Degraded",
    "suspected": "Suspected",
    "chain_stalled": "Chain stalled",
    "no_data": "No data",
    "warming_up": "Warming up",
    "ok": "OK",
}


class HourlyCounts:
    """Withdrawals per hour of chain time for one (exchange, chain), at most ``HOURS`` buckets."""

    __slots__ = ("buckets", "newest")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.newest: int | None = None
        """The newest hour in ``buckets``: kept, because every withdrawal the worker counts lands here, and
        looking for it (and for hours to evict) on each was a visible share of a replay's time."""

    def add(self, block_time: int, n: int = 1) -> None:
        hour = block_time // 3600
        newest = self.newest
        if newest is not None and hour <= newest - HOURS:
            return  # older than the window: would be evicted at once
        self.buckets[hour] = max(0, self.buckets.get(hour, 0) + n)
        if newest is None or hour > newest:  # the window moved: evict what fell out of it
            self.newest = hour
            for old in [h for h in self.buckets if h <= hour - HOURS]:
                del self.buckets[old]

    def series(self, now_time: int | None) -> tuple[int, list[int]]:
        """(first hour's epoch seconds, 24 counts oldest first) ending at the hour of ``now_time``."""
        newest = now_time // 3600 if now_time is not None else (self.newest or 0)
        if self.newest is not None:
            newest = max(newest, self.newest)
        first = newest - HOURS + 1
        return first * 3600, [self.buckets.get(h, 0) for h in range(first, newest + 1)]


class LiveBoard:
    """The worker's live picture, as JSON for ``/api/status`` and the page's event stream."""

    def __init__(self, detector: OutageDetector, monitor: ChainMonitor, max_incidents: int = MAX_INCIDENTS) -> None:
        self.detector = detector
        self.monitor = monitor
        self.max_incidents = max_incidents
        self.incidents: OrderedDict[str, OutageEvent] = OrderedDict()
        """Latest version of each recent incident, oldest first."""
        self.correlated: OrderedDict[str, CorrelatedIncident] = OrderedDict()
        self.hourly: dict[tuple[str, str], HourlyCounts] = {}
        self._seen: dict[tuple[str, str], int] = {}
        """Withdrawals the detector had counted per (exchange, chain) at the last transfer."""
        self.version = 0
        """Grows on every change; the event stream sends a new picture only when it moved."""

    # -- feeding ---------------------------------------------------------------------------------
    def touch(self) -> None:
        self.version += 1

    def on_transfer(self, event: TransferEvent) -> None:
        """Called after the detector saw ``event``: count it if the detector accepted a new withdrawal."""
        key = (event.exchange, event.chain)
        ex = self.detector.view.get(event.exchange)
        c = ex.chains.get(event.chain) if ex else None
        if c is None:
            return
        counts = self.hourly.setdefault(key, HourlyCounts())
        seen = self._seen.get(key)
        if event.removed:
            counts.add(event.block_time, -1)  # a reorg took a withdrawal back (unknown ones floor at 0)
        elif seen is not None:
            if c.withdrawals > seen:  # the detector counts at most one per transfer, none for a redelivery
                counts.add(event.block_time)
        elif c.last is not None and c.last.key == event_key(event.event_id):  # first sight since (re)start
            counts.add(event.block_time)
        self._seen[key] = c.withdrawals
        self.touch()

    def on_output(self, record: object) -> None:
        """An outage or correlated incident the worker emitted."""
        if isinstance(record, OutageEvent):
            old = self.incidents.get(record.outage_id)
            if old is not None and old.version > record.version:
                return
            self.incidents[record.outage_id] = record
            self.incidents.move_to_end(record.outage_id)
            self._trim()
        elif isinstance(record, CorrelatedIncident):
            old_c = self.correlated.get(record.incident_id)
            if old_c is not None and old_c.version > record.version:
                return
            self.correlated[record.incident_id] = record
            self.correlated.move_to_end(record.incident_id)
            while len(self.correlated) > MAX_CORRELATED:
                self.correlated.popitem(last=False)
        self.touch()

    def _trim(self) -> None:
        """Drop the oldest resolved incidents first; unresolved ones only if there is nothing else."""
        while len(self.incidents) > self.max_incidents:
            victim = next((k for k, v in self.incidents.items() if v.state is OutageState.RESOLVED),
                          next(iter(self.incidents)))
            del self.incidents[victim]

    # -- reading ---------------------------------------------------------------------------------
    def _live_incidents(self) -> dict[str, OutageEvent]:
        """Every incident worth showing: recent ones, with the detector's unresolved ones (which survive
        a restart in its changelog table while the recent list does not) taking precedence."""
        merged = dict(self.incidents)
        for ex in self.detector.view.values():
            for inc in [ex.incident, *(c.incident for c in ex.chains.values())]:
                if inc is None:
                    continue
                old = merged.get(inc.last.outage_id)
                if old is None or old.version <= inc.last.version:
                    merged[inc.last.outage_id] = inc.last
        return merged

    def cells(self) -> list[dict[str, Any]]:
        rows = []
        self.detector.settle()  # every chain's latest head, not the last one each exchange was visited at
        for name in sorted(self.detector.view):
            ex = self.detector.view[name]
            for chain in sorted(ex.chains):
                c = ex.chains[chain]
                state = cell_state(self.detector, name, chain)
                view = self.monitor.chains.get(chain)
                chain_state = view.state.value if view is not None else None
                if state in ("ok", "warming_up") and chain_state in (ChainState.CHAIN_STALLED, ChainState.NO_DATA):
                    state = chain_state  # the detector cannot judge a chain that does not move
                last = c.last
                since = c.head_time - last.time if last is not None and c.head_time is not None else None
                first_hour, hourly = self.hourly.get((name, chain), HourlyCounts()).series(c.head_time)
                incident = covering_incident(ex, c)
                rows.append({
                    "exchange": name,
                    "chain": chain,
                    "state": state,
                    "label": LABELS[state],
                    "chain_state": chain_state,
                    "outage_id": incident.last.outage_id if incident else None,
                    "last_withdrawal_time": last.time if last else None,
                    "last_withdrawal_tx": last.tx if last else None,
                    "head_number": c.head_number,
                    "head_time": c.head_time,
                    "since_last_withdrawal_s": since,
                    "withdrawals_seen": c.withdrawals,
                    "expected_rate_per_hour": c.rate.at(c.head_time) * 3600.0 if c.head_time is not None else 0.0,
                    "hourly_start": first_hour,
                    "hourly": hourly,
                })
        return rows

    def chains(self) -> list[dict[str, Any]]:
        rows = []
        for chain in sorted(self.monitor.chains):
            view = self.monitor.chains[chain]
            rows.append({
                "chain": chain,
                "state": view.state.value,
                "head_number": view.head.number,
                "head_time": view.head.block_time,
                "last_received_at": view.head.received_at,
                "node_head_number": view.heartbeat.node_head_number if view.heartbeat else None,
            })
        return rows

    def incident_rows(self, exchange: str | None = None, state: str | None = None,
                      limit: int = MAX_INCIDENTS) -> list[dict[str, Any]]:
        """Newest first: unresolved ones before resolved ones, then by start."""
        grouped = {oid: c.incident_id for c in self.correlated.values() for oid in c.outage_ids}
        head_times = {chain: v.head.block_time for chain, v in self.monitor.chains.items()}
        rows = []
        for event in self._live_incidents().values():
            if (exchange and event.exchange != exchange) or (state and event.state.value != state):
                continue
            now_chain = max((head_times.get(ch, event.detected_at) for ch in event.scope), default=event.detected_at)
            end = event.resolved_at if event.resolved_at is not None else max(now_chain, event.detected_at)
            row = asdict(event)
            row["state"] = event.state.value
            row["duration_s"] = end - event.started_at
            row["correlated_incident_id"] = grouped.get(event.outage_id)
            rows.append(row)
        rows.sort(key=lambda r: (r["state"] != "resolved", r["started_at"]), reverse=True)
        return rows[:limit]

    def status(self, now: float) -> dict[str, Any]:
        cells = self.cells()
        counts = {state: sum(1 for c in cells if c["state"] == state) for state in STATES}
        return {
            "generated_at": now,
            "version": self.version,
            "states": [{"state": s, "label": LABELS[s]} for s in STATES],
            "counts": counts,
            "exchanges": sorted(self.detector.view),
            "budgets": [asdict(self.detector.budget(name)) for name in sorted(self.detector.view)],
            "chains": self.chains(),
            "cells": cells,
            "incidents": self.incident_rows(limit=50),
            "correlated": [
                {**asdict(c), "common": dict(c.common)} for c in reversed(self.correlated.values())
            ],
        }
