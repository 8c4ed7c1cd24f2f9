"""The operator API on a bare aiohttp app: board contents through a halt, SSE, OpenAPI, metrics, health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from schemas.records import ChainState, CorrelatedIncident, OutageEvent, OutageState
from streams.observability import WorkerMetrics
from streams.web import WorkerHooks
from streams.web.api import OperatorApi
from streams.web.board import HOURS, HourlyCounts, LiveBoard
from streams.web.health import HealthChecks
from streams.web.openapi import openapi_document
from streams.web.page import PAGE
from tests.unit.operator_support import Feed


class FakeKafka:
    def __init__(self, assigned: int = 4, connected: bool = True) -> None:
        self.assigned, self.connected = assigned, connected

    def assigned_partitions(self) -> int:
        return self.assigned

    def producer_connected(self) -> bool:
        return self.connected


class FakeSink:
    def __init__(self, rows: int, retries: int, written: int) -> None:
        self.rows, self.retries, self.rows_written = rows, retries, written

    def __len__(self) -> int:
        return self.rows


def wire(feed: Feed, sinks: dict[str, Any] | None = None) -> WorkerHooks:
    """What register_web builds, minus Faust: hooks fed by the feed like the worker's agents feed them."""
    board = LiveBoard(feed.detector, feed.monitor)
    metrics = WorkerMetrics(feed.detector, feed.monitor, sinks or {}, wall=lambda: feed.clock.now() + 0.25)
    health = HealthChecks(FakeKafka(), feed.monitor, lambda: None)
    hooks = WorkerHooks(board, metrics, [], OperatorApi(board, health, metrics, push_every_s=0.02))
    seen = len(feed.outputs)

    def after(record: Any) -> None:
        nonlocal seen
        hooks.emitted(feed.outputs[seen:])
        seen = len(feed.outputs)
        hooks.observe(record)

    feed.on_transfer = after
    feed.on_head = after
    return hooks


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], Feed, WorkerHooks]]:
    feed = Feed()
    hooks = wire(feed, {"transfers": FakeSink(12, 3, 900)})
    app = web.Application()
    for path, handler in hooks.api.routes().items():
        app.router.add_get(path, handler)
    async with TestClient(TestServer(app)) as c:
        yield c, feed, hooks


def cell(status: dict[str, Any]) -> dict[str, Any]:
    (only,) = status["cells"]
    return only


async def get_json(c: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    response = await c.get(path)
    assert response.status == status, await response.text()
    return orjson.loads(await response.read())


async def test_cell_goes_warming_up_ok_open_ok_with_incident_and_sparkline(client: Any) -> None:
    c, feed, _hooks = client
    assert (await get_json(c, "/api/status"))["cells"] == []
    feed.blocks(40, 1.5)
    first = cell(await get_json(c, "/api/status"))
    assert first["state"] == "warming_up" and first["label"] == "Warming up"

    feed.blocks(290, 1.5)
    steady = cell(await get_json(c, "/api/status"))
    assert steady["state"] == "ok"
    assert sum(steady["hourly"]) == len(feed.transfers) == steady["withdrawals_seen"]
    assert len(steady["hourly"]) == HOURS and steady["hourly"][-1] > 0
    assert steady["since_last_withdrawal_s"] == feed.time - feed.transfers[-1].block_time
    (budget,) = (await get_json(c, "/api/status"))["budgets"]
    assert (budget["exchange"], budget["budget"], budget["budget_days"]) == ("okx", 1.0, 90.0)
    assert (budget["state"], budget["estimated"]) == ("learning", None)  # hours of gaps: too few to tell

    feed.blocks(100, 0.0)
    halted = await get_json(c, "/api/status")
    assert cell(halted)["state"] == "open" and cell(halted)["outage_id"]
    assert cell(halted)["since_last_withdrawal_s"] >= 90 * 12
    assert halted["counts"]["open"] == 1
    (incident,) = halted["incidents"]
    assert incident["state"] == "open" and incident["outage_id"] == cell(halted)["outage_id"]
    assert incident["duration_s"] == feed.time - incident["started_at"]

    feed.blocks(30, 1.5)
    after = await get_json(c, "/api/status")
    assert cell(after)["state"] == "ok" and cell(after)["outage_id"] is None
    (resolved,) = after["incidents"]
    assert resolved["state"] == "resolved" and resolved["duration_s"] == resolved["resolved_at"] - resolved[
        "started_at"]
    assert await get_json(c, "/api/outages?state=open") == []
    assert [r["version"] for r in await get_json(c, "/api/outages?exchange=okx")] == [resolved["version"]]
    assert await get_json(c, "/api/outages?exchange=binance") == []
    await get_json(c, "/api/outages?limit=x", status=400)
    await get_json(c, "/api/outages?state=closed", status=400)

    jsonschema.validate(after, {**openapi_document()["components"]["schemas"]["Status"],
                                "components": openapi_document()["components"]})


async def test_a_stalled_chain_shows_instead_of_ok_and_an_outage_wins_over_it(client: Any) -> None:
    c, feed, _hooks = client
    feed.blocks(330, 1.5)
    feed.monitor.chains["ethereum"].state = ChainState.CHAIN_STALLED
    assert cell(await get_json(c, "/api/status"))["state"] == "chain_stalled"
    feed.blocks(100, 0.0)  # heads arrive again: the monitor says ok; then mark it lost during the outage
    feed.monitor.chains["ethereum"].state = ChainState.NO_DATA
    halted = cell(await get_json(c, "/api/status"))
    assert halted["state"] == "open" and halted["chain_state"] == "no_data"


async def test_event_stream_pushes_a_new_picture_when_something_changes(client: Any) -> None:
    c, feed, _hooks = client
    feed.blocks(10, 1.5)
    response = await c.get("/api/events")
    assert response.headers["Content-Type"] == "text/event-stream"

    async def next_status() -> dict[str, Any]:
        buffer = b""
        while b"\n\n" not in buffer or not buffer.startswith(b"event: status"):
            if b"\n\n" in buffer:  # a retry or keepalive frame
                buffer = buffer.split(b"\n\n", 1)[1]
                continue
            buffer += await asyncio.wait_for(response.content.readany(), 5)
        frame = buffer.split(b"\n\n", 1)[0]
        return dict(orjson.loads(frame.split(b"data: ", 1)[1]))

    first = await next_status()
    assert cell(first)["head_number"] == 10
    feed.blocks(5, 1.5)
    second = await next_status()
    assert cell(second)["head_number"] == 15 and second["version"] > first["version"]
    response.close()


async def test_page_is_self_contained_and_api_is_described(client: Any) -> None:
    c, _feed, hooks = client
    response = await c.get("/ui")
    html = await response.text()
    assert response.content_type == "text/html" and html == PAGE
    for needle in ("/api/events", "EventSource", "data-state", "aria-label"):
        assert needle in html
    for external in ("http://", "https://", "//cdn", "<link", "src="):
        assert external not in html, f"the page must not load anything from elsewhere ({external})"
    spec = await get_json(c, "/api/openapi.json")
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == set(hooks.api.routes())


async def test_metrics_count_events_latency_states_and_sinks(client: Any) -> None:
    c, feed, hooks = client
    feed.blocks(330, 1.5)
    feed.blocks(100, 0.0)
    hooks.dead_letter("topic:t")
    text = await (await c.get("/metrics")).text()
    m = hooks.metrics
    assert m.value("haltwatch_worker_events_total", type="chain_head") == 430
    assert m.value("haltwatch_worker_events_total", type="transfer") == len(feed.transfers)
    assert m.value("haltwatch_worker_head_latency_seconds_count", chain="ethereum") == 430
    assert m.value("haltwatch_worker_head_latency_seconds_bucket", chain="ethereum", le="0.1") == 0
    assert m.value("haltwatch_worker_head_latency_seconds_bucket", chain="ethereum", le="0.25") == 430
    assert m.value("haltwatch_worker_detector_chains", exchange="okx", state="open") == 1
    assert m.value("haltwatch_worker_detector_chains", exchange="okx", state="ok") == 0
    assert m.value("haltwatch_worker_open_incidents", state="open") == 1
    assert m.value("haltwatch_worker_outage_events_total", state="open") == 1
    assert m.value("haltwatch_worker_dead_letters_total", source="topic:t") == 1
    assert m.value("haltwatch_worker_sink_buffered_rows", table="transfers") == 12
    assert m.value("haltwatch_worker_sink_retries_total", table="transfers") == 3
    assert m.value("haltwatch_worker_sink_rows_written_total", table="transfers") == 900
    assert m.value("haltwatch_worker_chain_state", chain="ethereum", state="ok") == 1
    assert m.value("haltwatch_worker_false_alarm_budget_state", exchange="okx", state="learning") == 1
    assert m.value("haltwatch_worker_false_alarm_budget_state", exchange="okx", state="kept") == 0
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in samples if line.startswith("haltwatch_worker_false_alarms_estimated")]  # learning
    assert any(line.startswith("haltwatch_worker_false_alarm_budget_state{") for line in samples)
    assert "haltwatch_worker_open_incidents" in text


def outage(oid: str, version: int, state: OutageState, exchange: str = "okx") -> OutageEvent:
    return OutageEvent(oid, version, exchange, ["ethereum"], state, 100, 200, 300 if state is OutageState.RESOLVED
                       else None, 10.0, 100, 5.0, 0, 0.99, 0.001, "0xtx", "ethereum", time.time())


def test_board_keeps_latest_versions_groups_correlated_and_stays_bounded() -> None:
    feed = Feed()
    board = LiveBoard(feed.detector, feed.monitor, max_incidents=3)
    board.on_output(outage("a", 2, OutageState.OPEN))
    board.on_output(outage("a", 1, OutageState.SUSPECTED))  # late, older: ignored
    board.on_output(outage("b", 1, OutageState.OPEN, "binance"))
    board.on_output(CorrelatedIncident("g", 1, ["okx", "binance"], ["a", "b"], 100, 200, {"provider": "x"},
                                       "provider x", time.time()))
    rows = {r["outage_id"]: r for r in board.incident_rows()}
    assert rows["a"]["version"] == 2 and rows["a"]["correlated_incident_id"] == "g"
    assert board.status(0.0)["correlated"][0]["exchanges"] == ["okx", "binance"]
    board.on_output(outage("c", 2, OutageState.RESOLVED))
    board.on_output(outage("d", 1, OutageState.OPEN))
    assert set(board.incidents) == {"a", "b", "d"}, "the resolved one goes first"


def test_hourly_counts_keep_24_hours_and_floor_at_zero() -> None:
    counts = HourlyCounts()
    for hour in range(30):
        counts.add(hour * 3600 + 5, hour + 1)
    start, series = counts.series(29 * 3600)
    assert start == 6 * 3600 and series == list(range(7, 31))
    counts.add(0, 5)  # older than the window
    counts.add(29 * 3600, -100)
    assert counts.series(29 * 3600)[1][-1] == 0 and len(counts.buckets) == 24
    assert counts.series(40 * 3600)[1] == list(range(18, 30)) + [0] * 12
    counts.add(20 * 3600, 1)  # late, but inside the window: counted, and the window stays where it was
    assert counts.series(29 * 3600)[1][14] == 22 and counts.newest == 29 and len(counts.buckets) == 24
