"""A halt becomes exactly one firing alert in a real Prometheus Alertmanager, a worker restart in the middle
does not fire it twice, and the resumption resolves it."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import Any

import orjson
import pytest

from haltwatch.traffic import Phase
from schemas.records import OutageState
from streams.alerts.channels import ALERT_NAME
from tests.integration.test_end_to_end import (
    EXCHANGE,
    exchange_pipeline,
    start_pipeline,
    wait_until_connector_published,
)


def alerts(alertmanager: str, prefix_outage_ids: set[str] | None = None) -> list[dict[str, Any]]:
    """Every alert Alertmanager holds for haltwatch (``GET /api/v2/alerts`` lists the active ones)."""
    with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=10) as response:
        listed = orjson.loads(response.read())
    return [a for a in listed if a["labels"].get("alertname") == ALERT_NAME
            and (prefix_outage_ids is None or a["labels"].get("outage_id") in prefix_outage_ids)]


def wait_alerts(alertmanager: str, ids: set[str], done: Any, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = alerts(alertmanager, ids)
        if done(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"Alertmanager holds {got}")
        time.sleep(0.3)


def test_a_halt_is_one_alert_that_resolves_and_survives_a_worker_restart_without_a_second(
    kafka: str, anvil: str, alertmanager: str, run_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HALTWATCH_ALERTMANAGER_URL", alertmanager)
    player, pipeline, watcher = exchange_pipeline(kafka, anvil, run_dir, "am", seed=17)
    try:
        start_pipeline(pipeline, anvil)
        asyncio.run(player.play([Phase("steady", 330, 1.5), Phase("halt", 40, 0.0)]))
        assert watcher.wait_for(lambda evs: any(e.state is OutageState.OPEN for e in evs), 60), watcher.events
        opened = next(e for e in watcher.events if e.state is OutageState.OPEN)
        ids = {opened.outage_id}
        (firing,) = wait_alerts(alertmanager, ids, lambda got: len(got) == 1)
        assert firing["labels"]["exchange"] == EXCHANGE and firing["labels"]["state"] == "open"
        assert firing["labels"]["chains"] == ",".join(opened.scope)
        assert firing["status"]["state"] == "active"

        pipeline.stop("worker")  # SIGTERM in the middle of the halt; the restarted worker sends the alert again
        played = asyncio.run(player.play([Phase("halt", 40, 0.0)]))
        wait_until_connector_published(pipeline, played[-1].number)
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        # the restarted worker sends the firing alert again from its ledger: updated, and still one alert
        still = wait_alerts(alertmanager, ids,
                            lambda got: len(got) == 1 and got[0]["updatedAt"] != firing["updatedAt"])
        assert [a["fingerprint"] for a in still] == [firing["fingerprint"]], "the same alert, not a second one"

        asyncio.run(player.play([Phase("resume", 30, 1.5)]))
        assert watcher.wait_for(lambda evs: any(e.state is OutageState.RESOLVED for e in evs), 60), watcher.events
        wait_alerts(alertmanager, ids, lambda got: got == [], timeout_s=60)  # resolved: no longer listed
    finally:
        watcher.close()
        pipeline.stop()
    states = [e.state for e in watcher.events if e.outage_id == opened.outage_id]
    assert states.count(OutageState.OPEN) >= 1 and states[-1] is OutageState.RESOLVED
