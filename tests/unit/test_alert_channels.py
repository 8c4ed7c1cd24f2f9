"""What each on-call channel is sent: PagerDuty's Events API v2 and Alertmanager's API v2, through the same
notifier (queue, retries, ledger) as the chat webhook, against a loopback HTTP server that records requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas.records import OutageState
from streams.alerts import AlertmanagerApi, AlertNotifier, DeliveryLedger, PagerDutyEvents
from streams.alerts.channels import ALERT_NAME
from tests.unit.test_alerts import Hook, outage

NOW = 1_700_010_000.0


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Hook, str]]:
    """The webhook tests' recording server, answering every POST, on PagerDuty's and Alertmanager's paths."""
    got = Hook(failures=0)
    app = web.Application()
    app.router.add_post("/v2/enqueue", got.handle)
    app.router.add_post("/api/v2/alerts", got.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield got, str(server.make_url("/"))
    finally:
        await server.close()


def bodies(hook: Hook) -> list[Any]:
    return [body for _key, body in hook.accepted]


def _notifier(channel: Any, ledger: Path) -> AlertNotifier:
    return AlertNotifier(channel, DeliveryLedger(ledger), backoff_s=0.01, max_backoff_s=0.05, wall=lambda: NOW)


async def test_pagerduty_triggers_once_per_outage_and_resolves_it(receiver: Any, tmp_path: Path) -> None:
    got, base = receiver
    n = _notifier(PagerDutyEvents("R0UTINGKEY", base + "v2/enqueue"), tmp_path / "pd.jsonl")
    async with aiohttp.ClientSession() as session:
        for version, state in ((1, OutageState.OPEN), (2, OutageState.DEGRADED), (3, OutageState.RESOLVED)):
            assert await n.deliver(session, outage(version, state)) == "delivered"
    trigger, degraded, resolve = bodies(got)
    assert {trigger["event_action"], degraded["event_action"], resolve["event_action"]} == {"trigger", "resolve"}
    assert trigger["dedup_key"] == degraded["dedup_key"] == resolve["dedup_key"] == "abc123", "one incident"
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UTINGKEY"
    assert resolve == {"routing_key": "R0UTINGKEY", "event_action": "resolve", "dedup_key": "abc123"}
    payload = trigger["payload"]
    assert (payload["severity"], degraded["payload"]["severity"]) == ("critical", "warning")
    assert payload["summary"].startswith("OPEN okx (ethereum): no withdrawal since")
    assert payload["source"] == "haltwatch:okx" and payload["component"] == "okx" and payload["group"] == "ethereum"
    assert payload["custom_details"]["outage_id"] == "abc123" and payload["custom_details"]["state"] == "open"
    datetime.fromisoformat(payload["timestamp"])  # ISO 8601, as the API requires


async def test_alertmanager_gets_one_alert_per_incident_state_ended_by_the_next(receiver: Any, tmp_path: Path) -> None:
    got, base = receiver
    ledger = tmp_path / "am.jsonl"
    n = _notifier(AlertmanagerApi(base), ledger)
    async with aiohttp.ClientSession() as session:
        assert await n.deliver(session, outage(1, OutageState.OPEN)) == "delivered"
        assert await n.deliver(session, outage(2, OutageState.DEGRADED)) == "delivered"
        assert await n.deliver(session, outage(3, OutageState.RESOLVED)) == "delivered"
    opened, degraded, resolved = bodies(got)
    (firing,) = opened
    assert firing["labels"] == {"alertname": ALERT_NAME, "exchange": "okx", "chains": "ethereum", "state": "open",
                                "outage_id": "abc123", "severity": "critical"}
    assert datetime.fromisoformat(firing["endsAt"]).timestamp() == NOW + 86_400, "firing for a day unless re-sent"
    assert datetime.fromisoformat(firing["startsAt"]).timestamp() == 1_700_000_000
    ended, now_degraded = degraded
    assert ended["labels"] == firing["labels"] and datetime.fromisoformat(ended["endsAt"]).timestamp() == NOW
    assert now_degraded["labels"]["state"] == "degraded"
    assert {a["labels"]["state"] for a in resolved} == {"open", "degraded"}
    assert all(datetime.fromisoformat(a["endsAt"]).timestamp() == NOW for a in resolved), "everything ends"


async def test_firing_alerts_are_sent_again_from_the_ledger_after_a_restart(receiver: Any, tmp_path: Path) -> None:
    got, base = receiver
    ledger = tmp_path / "am.jsonl"
    async with aiohttp.ClientSession() as session:
        first = _notifier(AlertmanagerApi(base), ledger)
        await first.deliver(session, outage(1, OutageState.OPEN))
        await first.deliver(session, outage(1, OutageState.OPEN, oid="other"))
        await first.deliver(session, outage(2, OutageState.RESOLVED, oid="other"))
        restarted = _notifier(AlertmanagerApi(base), ledger)  # a new process: only the file remembers
        assert await restarted.refresh(session) == "refreshed"
        (again,) = bodies(got)[-1]
        assert again["labels"]["outage_id"] == "abc123" and again["labels"]["state"] == "open"
        assert await restarted.deliver(session, outage(1, OutageState.OPEN)) == "duplicate", "never twice"
        assert await restarted.deliver(session, outage(2, OutageState.RESOLVED)) == "delivered"
        assert await restarted.refresh(session) == "none", "nothing firing any more"
    assert DeliveryLedger(ledger).firing() == []
    assert [e.state for e in DeliveryLedger(ledger).announced_events("abc123")] == [OutageState.OPEN]


def test_a_firing_alert_starts_no_later_than_it_is_sent() -> None:
    """Alertmanager refuses startsAt after endsAt: a block time a little ahead of this clock is clamped."""
    ahead = replace(outage(1, OutageState.OPEN), started_at=int(NOW) + 30)
    (alert,) = orjson.loads(AlertmanagerApi("http://am").refresh([ahead], NOW))
    assert datetime.fromisoformat(alert["startsAt"]).timestamp() == NOW


async def test_a_resolution_never_overtaken_by_a_re_send_of_the_firing_alert(tmp_path: Path) -> None:
    """The re-send of the firing alerts is slow to be answered while the resolution is ready: the resolution
    must still be the last word Alertmanager gets, or it would fire the resolved alert again for a day."""
    release = asyncio.Event()
    seen: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if seen and body[0]["endsAt"] != ends_now:  # the re-send of a firing alert: held until released
            await release.wait()
        seen.append(body)
        return web.Response(status=200)

    ends_now = datetime.fromtimestamp(NOW, UTC).isoformat().replace("+00:00", "Z")
    app = web.Application()
    app.router.add_post("/api/v2/alerts", handle)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        n = _notifier(AlertmanagerApi(str(server.make_url("/"))), tmp_path / "am.jsonl")
        await n.deliver(session, outage(1, OutageState.OPEN))
        resend = asyncio.create_task(n.refresh(session))
        while not n._sending.locked():  # the re-send holds the channel
            await asyncio.sleep(0.01)
        resolve = asyncio.create_task(n.deliver(session, outage(2, OutageState.RESOLVED)))
        # until the resolution either queues behind the re-send or (were it not made to) reaches the server
        while not (getattr(n._sending, "_waiters", None) or len(seen) > 1):
            await asyncio.sleep(0.01)
        release.set()
        assert (await resend, await resolve) == ("refreshed", "delivered")
    assert [(a["labels"]["state"], a["endsAt"]) for a in seen[-1]] == [("open", ends_now)], "resolution last"
