"""Prometheus metrics of one connector process, served over HTTP when a port is configured.

Each connector gets its own registry so several can live in one test process. Every metric carries the
chain as a label, because dashboards aggregate connectors of many chains. The figures answer the
questions an on-call person asks when a feed looks quiet: is the node moving, are we keeping up, are
we reconnecting, is Kafka refusing us, is the node sending junk.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

PREFIX = "haltwatch_connector"


class ConnectorMetrics:
    """Gauges and counters of one chain's connector (or backfill)."""

    def __init__(self, chain: str, registry: CollectorRegistry | None = None) -> None:
        self.chain = chain
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, ["chain"], registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, ["chain", *labels], registry=r)

        self._node_head = gauge("node_head_block", "Newest block number the node reported.")
        self._published = gauge("published_block", "Newest block fully published to Kafka.")
        self._behind = gauge("blocks_behind", "Node head minus newest published block.")
        self._lag_s = gauge("head_lag_seconds", "Wall-clock age of the newest published block's timestamp.")
        self._node_lag_s = gauge("node_head_lag_seconds", "Newest published block's timestamp behind the node head's.")
        self._events = counter("events_total", "Transfer events published (retractions included).",
                               ("direction", "removed"))
        self._blocks = counter("blocks_total", "Blocks published.")
        self._reorgs = counter("reorgs_total", "Reorgs that orphaned published blocks.")
        self._reconnects = counter("reconnects_total", "Reconnections to a node, by reason.", ("reason",))
        self._dead = counter("dead_letters_total", "Records sent to the dead-letter topic, by kind.", ("kind",))
        self._publish_retries = counter("publish_retries_total", "Block publications retried after a Kafka error.")
        self._rpc_retries = counter("rpc_retries_total", "Node calls retried, by reason.", ("reason",))
        self._switches = counter("node_lag_switches_total", "Switches away from a node that fell behind others.")
        self._label_reloads = counter("label_reloads_total", "Label registry reloads, by outcome.", ("outcome",))
        self._checkpoint_ok = gauge("checkpoint_ok", "1 while the checkpoint file is written, 0 while writes fail.")
        self._checkpoint_errors = counter("checkpoint_errors_total", "Failed checkpoint writes, by OS error.",
                                          ("reason",))
        self._node_head_time = 0

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``port`` (0 = disabled)."""
        if port > 0:
            start_http_server(port, addr=host, registry=self.registry)

    def node_head(self, number: int, block_time: int | None = None) -> None:
        self._node_head.labels(self.chain).set(number)
        if block_time is not None:
            self._node_head_time = block_time

    def published(self, number: int, block_time: int, node_head: int) -> None:
        self._published.labels(self.chain).set(number)
        self._behind.labels(self.chain).set(max(node_head - number, 0))
        self._lag_s.labels(self.chain).set(max(time.time() - block_time, 0.0))
        if self._node_head_time:
            self._node_lag_s.labels(self.chain).set(max(self._node_head_time - block_time, 0))
        self._blocks.labels(self.chain).inc()

    def events(self, direction: str, removed: bool, count: int = 1) -> None:
        self._events.labels(self.chain, direction, str(removed).lower()).inc(count)

    def reorg(self) -> None:
        self._reorgs.labels(self.chain).inc()

    def reconnect(self, reason: str) -> None:
        self._reconnects.labels(self.chain, reason).inc()

    def dead_letter(self, kind: str, count: int = 1) -> None:
        self._dead.labels(self.chain, kind).inc(count)

    def publish_retry(self) -> None:
        self._publish_retries.labels(self.chain).inc()

    def rpc_retry(self, reason: str) -> None:
        self._rpc_retries.labels(self.chain, reason).inc()

    def node_switch(self) -> None:
        self._switches.labels(self.chain).inc()

    def label_reload(self, outcome: str) -> None:
        self._label_reloads.labels(self.chain, outcome).inc()

    def checkpoint_written(self) -> None:
        self._checkpoint_ok.labels(self.chain).set(1)

    def checkpoint_failed(self, reason: str) -> None:
        self._checkpoint_ok.labels(self.chain).set(0)
        self._checkpoint_errors.labels(self.chain, reason).inc()

    def value(self, name: str, **labels: str) -> float:
        """Current value of one sample (tests and the benchmark read figures through this)."""
        got = self.registry.get_sample_value(f"{PREFIX}_{name}", {"chain": self.chain, **labels})
        return 0.0 if got is None else got
