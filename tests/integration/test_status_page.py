"""The status page in a real browser during the end-to-end halt: the cell turns to the outage and back,
live (server-sent events, no reload), with screenshots kept as artifacts.

anvil → connector → Kafka → worker (whose web server serves /ui) → headless Chromium, which loads the page
once, before the first block; the test then only reads that page's DOM over the DevTools protocol.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from haltwatch.local import REPO, PipelineProcesses
from schemas.records import OutageState
from tests.integration.browser import Chromium, chromium_binary
from tests.integration.test_end_to_end import EXCHANGE, run_scenario

CHROMIUM = chromium_binary()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH: install Debian's package (apt-get install -y chromium)"
)
CELL = f"document.querySelector('td.cell[data-exchange=\"{EXCHANGE}\"][data-chain=\"ethereum\"]')"


class PageWatcher:
    """Polls the cell's state in the loaded page and screenshots the first time each state shows."""

    def __init__(self, browser: Chromium, artifacts: Path) -> None:
        self.browser = browser
        self.artifacts = artifacts
        self.states: list[tuple[float, str | None]] = []
        self.shots: dict[str, Path] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="page-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                state = self.browser.evaluate(f"{CELL}?.dataset.state ?? null")
            except Exception as exc:  # recorded and asserted on: the page must stay readable
                self.errors.append(repr(exc))
                state = None
            if not self.states or self.states[-1][1] != state:
                self.states.append((time.time(), state))
                if state and state not in self.shots:
                    self.shots[state] = self.browser.screenshot(self.artifacts / f"{len(self.shots):02d}-{state}.png")
            self._stop.wait(0.2)

    def sequence(self) -> list[str | None]:
        return [s for _, s in self.states]

    def wait_for(self, state: str, after: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if state in self.sequence()[after:]:
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Webhook:
    """A desk's webhook on loopback: refuses the first POST with 503, records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key", "")
                hook.requests.append((key, body))
                ok = len(hook.requests) > 1
                if ok:
                    hook.accepted.append((key, body))
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    hook = Webhook()
    monkeypatch.setenv("HALTWATCH_ALERT_WEBHOOK_URL", hook.url)  # the worker subprocess inherits it
    yield hook
    hook.server.shutdown()


def get(pipeline: PipelineProcesses, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{pipeline.web_port}{path}", timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_status_page_shows_the_halt_live_and_back(kafka, anvil, run_dir, tmp_path, webhook):
    artifacts = REPO / "tests" / "artifacts" / f"status-page-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"\nstatus page screenshots: {artifacts}")
    assert CHROMIUM is not None
    browser = Chromium(CHROMIUM, tmp_path / "chromium-profile", tmp_path / "chromium.log")
    watchers: list[PageWatcher] = []

    def open_page(pipeline: PipelineProcesses) -> None:
        browser.open(f"http://127.0.0.1:{pipeline.web_port}/ui")
        deadline = time.monotonic() + 20
        while browser.evaluate("document.getElementById('conn')?.dataset.live ?? null") != "true":
            assert time.monotonic() < deadline, "the page never connected its event stream"
            time.sleep(0.2)
        browser.evaluate("window.__loadedOnce = 42")  # a reload would lose it
        watcher = PageWatcher(browser, artifacts)
        watchers.append(watcher)
        watcher.start()

    try:
        _player, _played, events, pipeline = run_scenario("halt", kafka, anvil, run_dir, None, on_started=open_page)
        (watcher,) = watchers
        try:
            assert events.wait_for(lambda evs: any(e.state is OutageState.RESOLVED for e in evs), 90), events.events
            opened_at = watcher.sequence().index("open") if "open" in watcher.sequence() else None
            assert opened_at is not None, f"the cell never showed the outage: {watcher.states}"
            assert watcher.wait_for("ok", opened_at, 30), f"the cell did not turn back to ok: {watcher.states}"
            panel_script = ("[...document.querySelectorAll('li.incident')].map(li => [li.dataset.outageId, "
                            "li.dataset.state, li.innerText])")
            deadline = time.monotonic() + 30  # the incident panel's last push lands after the cell's
            while not ((panel := browser.evaluate(panel_script)) and panel[0][1] == "resolved"):
                assert time.monotonic() < deadline, f"the incident panel never showed the resolution: {panel}"
                time.sleep(0.2)
            final = browser.screenshot(artifacts / "99-final.png")

            sequence = [s for s in watcher.sequence() if s is not None]
            assert sequence[0] == "warming_up" and "ok" in sequence[:sequence.index("open")], sequence
            assert sequence[-1] == "ok" and watcher.errors == []
            assert browser.evaluate("window.__loadedOnce") == 42, "the page reloaded instead of updating live"
            (outage_id, state, text) = panel[0]
            assert outage_id == events.events[-1].outage_id and state == "resolved"
            for label in ("Resolved", EXCHANGE, "Started", "Duration", "Confidence"):
                assert label in text, text
            cell_text = browser.evaluate(f"{CELL}.innerText")
            assert "OK" in cell_text and "last withdrawal" in cell_text
            bars = browser.evaluate(f"{CELL}.querySelectorAll('svg.spark rect').length")
            assert bars == 24
            assert final.stat().st_size > 10_000 and {"open", "ok", "warming_up"} <= set(watcher.shots)

            # the rest of the operator surface, from the same worker
            code, body = get(pipeline, "/health/ready")
            ready = orjson.loads(body)
            assert code == 200 and {c["name"]: c["status"] for c in ready["checks"]} == {
                "kafka": "ok", "clickhouse": "ok", "chains": "ok"}, ready
            assert get(pipeline, "/health/live")[0] == 200
            metrics = get(pipeline, "/metrics")[1].decode()
            assert 'haltwatch_worker_outage_events_total{state="open"} 1.0' in metrics
            assert 'haltwatch_worker_head_latency_seconds_count{chain="ethereum"}' in metrics
            outages = orjson.loads(get(pipeline, f"/api/outages?exchange={EXCHANGE}")[1])
            assert [(o["outage_id"], o["state"]) for o in outages] == [(outage_id, "resolved")]

            # the desk's webhook: open and resolved once each, the refused first POST retried with the same key
            opened = next(e for e in events.events if e.state is OutageState.OPEN)
            resolved = events.events[-1]
            deadline = time.monotonic() + 30
            while len(webhook.accepted) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            keys = [f"{outage_id}:{opened.version}", f"{outage_id}:{resolved.version}"]
            assert [k for k, _ in webhook.accepted] == keys, webhook.requests
            assert [k for k, _ in webhook.requests] == [keys[0], *keys]
            assert [b["event"] for _, b in webhook.accepted] == ["outage.open", "outage.resolved"]
            assert webhook.accepted[0][1]["text"].startswith(":rotating_light: OPEN demo-exchange (ethereum)")
            ledger = (run_dir / "worker" / "alerts-delivered.jsonl").read_text().splitlines()
            assert len(ledger) == 2
        finally:
            watcher.stop()
            events.close()
            pipeline.stop()
    finally:
        browser.close()
    print(f"cell states seen: {' -> '.join(str(s) for s in watcher.sequence())}")


class _StaticBoard:
    """A board whose picture is given: every state at once, to see that each renders with its words."""

    def __init__(self, status: dict[str, object]) -> None:
        self.version = 1
        self.picture = status
        self.monitor = type("Monitor", (), {"chains": {}})()

    def status(self, now: float) -> dict[str, object]:
        return {**self.picture, "generated_at": now, "version": self.version}


def _every_state_picture() -> dict[str, object]:
    from streams.web.board import LABELS, STATES

    t = 1_790_000_000
    states = list(STATES)
    cells = []
    for i, state in enumerate(states):
        exchange, chain = (f"exchange-{i // 2}", ("ethereum", "tron")[i % 2])
        cells.append({"exchange": exchange, "chain": chain, "state": state, "label": LABELS[state],
                      "chain_state": {"chain_stalled": "chain_stalled", "no_data": "no_data"}.get(state, "ok"),
                      "outage_id": None, "last_withdrawal_time": t - 600 * i, "last_withdrawal_tx": "0x1",
                      "head_number": 100, "head_time": t, "since_last_withdrawal_s": 95 * i + 12,
                      "withdrawals_seen": 1000 + i, "expected_rate_per_hour": 400.0 + i,
                      "hourly_start": t - 23 * 3600, "hourly": [(h * 7 + i * 3) % 40 for h in range(24)]})

    def incident(oid: str, exchange: str, state: str, resolved: int | None) -> dict[str, object]:
        return {"outage_id": oid, "version": 2, "exchange": exchange, "scope": ["ethereum"], "state": state,
                "started_at": t - 3000, "detected_at": t - 2500, "resolved_at": resolved,
                "duration_s": (resolved or t) - (t - 3000), "confidence": 0.99993, "p_value": 1e-6,
                "expected_count": 20.0, "observed_count": 0, "reason": "no withdrawal while 20.0 were expected",
                "correlated_incident_id": "g1" if oid in ("o1", "o2") else None}

    return {
        "states": [{"state": s, "label": LABELS[s]} for s in STATES],
        "counts": {s: 1 for s in STATES},
        "exchanges": sorted({c["exchange"] for c in cells}),
        "chains": [{"chain": "ethereum", "state": "ok", "head_number": 100, "head_time": t, "last_received_at": t,
                    "node_head_number": 100},
                   {"chain": "tron", "state": "no_data", "head_number": 99, "head_time": t, "last_received_at": t,
                    "node_head_number": 140}],
        "cells": cells,
        "incidents": [incident("o1", "exchange-0", "open", None), incident("o2", "exchange-1", "open", None),
                      incident("o3", "exchange-2", "resolved", t - 100)],
        "correlated": [{"incident_id": "g1", "version": 1, "exchanges": ["exchange-0", "exchange-1"],
                        "outage_ids": ["o1", "o2"], "started_at": t - 3000, "detected_at": t - 2400,
                        "common": {"provider": "alibaba-cloud"}, "likely_cause": "provider alibaba-cloud",
                        "emitted_at": t}],
    }


def test_every_state_has_its_words_not_only_a_colour(tmp_path):
    import asyncio

    from aiohttp import web

    from streams.web.api import OperatorApi
    from streams.web.board import LABELS

    picture = _every_state_picture()
    api = OperatorApi(_StaticBoard(picture), None, None)  # type: ignore[arg-type]
    artifacts = REPO / "tests" / "artifacts" / f"status-page-states-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"\nstatus page screenshots: {artifacts}")
    loop = asyncio.new_event_loop()
    app = web.Application()
    for path in ("/ui", "/api/status", "/api/events"):
        app.router.add_get(path, api.routes()[path])
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    serving = threading.Thread(target=loop.run_forever, daemon=True)
    serving.start()
    assert CHROMIUM is not None
    browser = Chromium(CHROMIUM, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(f"http://127.0.0.1:{port}/ui")
        deadline = time.monotonic() + 20
        while browser.evaluate("document.querySelectorAll('td.cell').length") != len(picture["cells"]):
            assert time.monotonic() < deadline, "the grid never rendered"
            time.sleep(0.2)
        cells = browser.evaluate("[...document.querySelectorAll('td.cell')].map(td => [td.dataset.state, "
                                 "td.querySelector('.label').innerText, td.getAttribute('aria-label')])")
        assert {state for state, _, _ in cells} == set(LABELS)
        for state, label, aria in cells:
            assert label == LABELS[state] and LABELS[state] in aria
        group = browser.evaluate("document.querySelector('.group').innerText")
        assert "Correlated: exchange-0, exchange-1" in group and "alibaba-cloud" in group
        assert browser.evaluate("document.querySelectorAll('.group li.incident').length") == 2
        assert browser.evaluate("document.querySelectorAll('td.empty').length") == 1  # exchange-3 has no tron
        browser.screenshot(artifacts / "every-state.png")
    finally:
        browser.close()
        loop.call_soon_threadsafe(loop.stop)
        serving.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
