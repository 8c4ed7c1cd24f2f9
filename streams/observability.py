"""Prometheus metrics of the worker, served at ``/metrics`` on its web port.

Counters and the latency histogram are updated on the detect path; everything that is *state* (detector
states per exchange, open incidents, sink buffers and retries) is read when Prometheus scrapes, by a
collector that looks at the live objects. That way a gauge can never drift from what the detector and
the sinks actually hold, and the hot path pays nothing for it.

The worker's own registry (not the process-global one) keeps several apps in one test process apart.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.records import ChainHead, ChainState, OutageEvent, OutageState
from streams.detection.budget import BUDGET_STATES
from streams.detection.chains import ChainMonitor
from streams.detection.detector import OutageDetector
from streams.store.status import covering_incident

PREFIX = "haltwatch_worker"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds from a connector reading a block to the detector deciding on its head: sub-second when
healthy, minutes when Kafka or the worker fall behind."""


def cell_state(detector: OutageDetector, exchange: str, chain: str) -> str:
    """The state one (exchange, chain) is in for the detector alone: an incident, warming up, or ok."""
    ex = detector.view[exchange]
    c = ex.chains[chain]
    incident = covering_incident(ex, c)
    if incident is not None:
        return incident.state.value
    return "ok" if c.warm else "warming_up"


class _StateCollector(Collector):
    """Reads detector, chain monitor and sinks at scrape time."""

    def __init__(self, detector: OutageDetector, monitor: ChainMonitor, sinks: Mapping[str, Any]) -> None:
        self.detector = detector
        self.monitor = monitor
        self.sinks = sinks

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            f"{PREFIX}_detector_chains", "Tracked (exchange, chain) pairs by detector state.",
            labels=["exchange", "state"])
        open_incidents = GaugeMetricFamily(
            f"{PREFIX}_open_incidents", "Unresolved incidents (suspected, open or degraded) by state.",
            labels=["state"])
        incidents: Tally[str] = Tally()
        for name, ex in list(self.detector.view.items()):
            tally: Tally[str] = Tally(cell_state(self.detector, name, chain) for chain in ex.chains)
            for state in ("ok", "warming_up", *(s.value for s in OutageState if s is not OutageState.RESOLVED)):
                states.add_metric([name, state], tally.get(state, 0))
            for inc in [ex.incident, *(c.incident for c in ex.chains.values())]:
                if inc is not None and inc.state is not OutageState.RESOLVED:
                    incidents[inc.state.value] += 1
        for state in (OutageState.SUSPECTED, OutageState.OPEN, OutageState.DEGRADED):
            open_incidents.add_metric([state.value], incidents.get(state.value, 0))
        yield states
        yield open_incidents

        budget = self.detector.policy
        estimated = GaugeMetricFamily(
            f"{PREFIX}_false_alarms_estimated",
            f"False alarms per {budget.budget_days:g} days the thresholds are estimated to give on the "
            f"exchange's own normal gaps (budget {budget.false_alarms_per_exchange:g}); absent while learning.",
            labels=["exchange"])
        budget_state = GaugeMetricFamily(
            f"{PREFIX}_false_alarm_budget_state", "1 for the state of each exchange's false-alarm budget.",
            labels=["exchange", "state"])
        for name in list(self.detector.view):
            found = self.detector.budget(name)
            if found.estimated is not None:
                estimated.add_metric([name], found.estimated)
            for state in BUDGET_STATES:
                budget_state.add_metric([name, state], 1.0 if found.state == state else 0.0)
        yield estimated
        yield budget_state

        chains = GaugeMetricFamily(f"{PREFIX}_chain_state", "1 for the state each chain is in.",
                                   labels=["chain", "state"])
        for chain, view in list(self.monitor.chains.items()):
            for state in ChainState:
                chains.add_metric([chain, state.value], 1.0 if view.state is state else 0.0)
        yield chains

        queue = GaugeMetricFamily(f"{PREFIX}_sink_buffered_rows", "Rows waiting in a ClickHouse sink's buffer.",
                                  labels=["table"])
        retries = CounterMetricFamily(f"{PREFIX}_sink_retries", "Insert attempts retried (read from the sink).",
                                      labels=["table"])
        written = CounterMetricFamily(f"{PREFIX}_sink_rows_written", "Rows inserted (read from the sink).",
                                      labels=["table"])
        for table, sink in list(self.sinks.items()):
            queue.add_metric([table], float(len(sink)))
            retries.add_metric([table], float(getattr(sink, "retries", 0)))
            written.add_metric([table], float(getattr(sink, "rows_written", 0)))
        yield queue
        yield retries
        yield written


class WorkerMetrics:
    """The worker's metrics; ``observe`` and ``dead_letter`` are called from the detect path."""

    def __init__(self, detector: OutageDetector, monitor: ChainMonitor, sinks: Mapping[str, Any],
                 wall: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.wall = wall
        r = self.registry
        self.events = Counter(f"{PREFIX}_events_total", "Records the detector consumed, by type "
                              "(rate() gives events per second).", ["type"], registry=r)
        self.latency = Histogram(f"{PREFIX}_head_latency_seconds", "Wall time from a connector receiving a block "
                                 "to the detector having processed its head.", ["chain"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.outages = Counter(f"{PREFIX}_outage_events_total", "Outage state changes emitted, by state.",
                               ["state"], registry=r)
        self.dead_letters = Counter(f"{PREFIX}_dead_letters_total", "Records sent to the dead-letter topic, by "
                                    "source.", ["source"], registry=r)
        self.alerts = Counter(f"{PREFIX}_alert_deliveries_total", "Webhook deliveries, by outcome.", ["outcome"],
                              registry=r)
        r.register(_StateCollector(detector, monitor, sinks))
        self._counted: dict[str, Any] = {}
        """Record type → its child of ``events``."""

    def observe(self, record: object) -> None:
        kind = str(getattr(record, "TYPE", type(record).__name__))
        counter = self._counted.get(kind)
        if counter is None:  # ``labels()`` takes a lock and builds a key: a visible share of a transfer's cost
            counter = self._counted[kind] = self.events.labels(kind)
        counter.inc()
        if isinstance(record, ChainHead):
            self.latency.labels(record.chain).observe(max(0.0, self.wall() - record.received_at))

    def outage(self, event: OutageEvent) -> None:
        self.outages.labels(event.state.value).inc()

    def dead_letter(self, source: str) -> None:
        self.dead_letters.labels(source).inc()

    def alert(self, outcome: str) -> None:
        self.alerts.labels(outcome).inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (tests read figures through this)."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got
