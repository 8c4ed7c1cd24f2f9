"""The Grafana operations dashboard and the Prometheus scrape config match the metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from connectors.metrics import ConnectorMetrics
from schemas.records import ChainHead, OutageState
from streams.observability import WorkerMetrics
from tests.unit.operator_support import Feed
from tests.unit.test_alerts import outage
from tests.unit.test_web_api import FakeSink

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "infra/grafana/dashboards/haltwatch-operations.json"


def exported_samples() -> set[str]:
    feed = Feed()
    feed.blocks(5, 1.0)
    worker = WorkerMetrics(feed.detector, feed.monitor, {"transfers": FakeSink(1, 1, 1)})
    worker.observe(feed.transfers[0])
    worker.observe(ChainHead("ethereum", 1, "0x1", "0x0", 1, 1.0))
    worker.outage(outage(1, OutageState.OPEN))
    worker.dead_letter("x")
    worker.alert("delivered")
    connector = ConnectorMetrics("ethereum")
    connector.published(1, 1, 1)
    connector.events("withdrawal", False)
    connector.reconnect("closed")
    connector.publish_retry()
    connector.dead_letter("bad")
    names = set()
    for registry in (worker.registry, connector.registry):
        for family in registry.collect():
            names |= {sample.name for sample in family.samples}
            names.add(family.name)
    return names


def test_every_dashboard_query_uses_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\bhaltwatch_[a-z_]+", e)}
    assert len(used) >= 15
    missing = used - exported_samples()
    assert not missing, f"dashboard queries metrics nobody exports: {sorted(missing)}"
    datasources = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert datasources == {"haltwatch-prometheus"}
    provisioned = (REPO / "infra/grafana/provisioning/datasources/prometheus.yaml").read_text()
    assert "uid: haltwatch-prometheus" in provisioned


def test_prometheus_scrapes_the_compose_services_on_their_metrics_ports() -> None:
    scrape = (REPO / "infra/prometheus/prometheus.yml").read_text()
    compose = (REPO / "docker-compose.yml").read_text()
    assert '"worker:6066"' in scrape and "HALTWATCH_WEB_PORT: 6066" in compose
    assert '"connector-ethereum:9108"' in scrape and "HALTWATCH_METRICS_PORT: 9108" in compose
    assert "./infra/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose
