"""The provisioned Grafana dashboard: valid JSON on the provisioned data source, and every query runs on
the real schema (on chdb, with the ClickHouse plugin's macros expanded as the plugin expands them)."""

from __future__ import annotations

import json
import re

import pytest

from haltwatch.local import REPO
from streams.store.backend import ChdbBackend
from streams.store.migrate import apply_migrations

GRAFANA = REPO / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "haltwatch.json"


def queries(dashboard: dict) -> list[tuple[str, str]]:
    found = [(p["title"], t["rawSql"]) for p in dashboard["panels"] for t in p["targets"]]
    found += [(a["name"], a["target"]["rawSql"]) for a in dashboard["annotations"]["list"]]
    found += [(v["name"], v["query"]) for v in dashboard["templating"]["list"]]
    return found


def expand(sql: str) -> str:
    """What grafana-clickhouse-datasource sends for a 24 h range at 60 s resolution, exchange = All."""
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(\1, INTERVAL 60 second)", sql)
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 r"\1 >= toDateTime(1700000000) AND \1 <= toDateTime(1700086400)", sql)
    sql = sql.replace("$__interval_s", "60").replace("${exchange:singlequote}", "'okx','o''kx'")
    assert "$" not in sql, sql
    return sql


def test_dashboard_uses_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    provisioned = (GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text()
    (uid,) = re.findall(r"^\s+uid:\s*(\S+)\s*$", provisioned, re.MULTILINE)  # no YAML parser in the deps
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    provider = (GRAFANA / "provisioning" / "dashboards" / "haltwatch.yaml").read_text()
    assert re.search(r"^\s+path:\s*/etc/grafana/dashboards\s*$", provider, re.MULTILINE)


@pytest.fixture
def chdb(tmp_path):
    backend = ChdbBackend(tmp_path / "chdb")
    apply_migrations(backend)
    try:
        yield backend
    finally:
        backend.close()


def test_every_dashboard_query_runs_on_the_schema(chdb):
    for title, sql in queries(json.loads(DASHBOARD.read_text())):
        try:
            chdb.query(expand(sql))
        except Exception as exc:
            raise AssertionError(f"{title}: {exc}") from None
