"""Webhook alerts against a real HTTP server on loopback that fails the first attempts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas.records import OutageEvent, OutageState
from streams.alerts import AlertNotifier, DeliveryLedger, SlackHook


class Hook:
    """A webhook that answers ``failures`` with 503 (then 200) and records every request."""

    def __init__(self, failures: int, fail_status: int = 503) -> None:
        self.failures = failures
        self.fail_status = fail_status
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append((key, body))
        if len(self.requests) <= self.failures:
            return web.Response(status=self.fail_status, text="try later")
        self.accepted.append((key, body))
        return web.Response(text="ok")


@pytest.fixture
async def hook_server() -> AsyncIterator[tuple[Hook, str]]:
    hook = Hook(failures=2)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield hook, str(server.make_url("/hook"))
    finally:
        await server.close()


def outage(version: int, state: OutageState, oid: str = "abc123") -> OutageEvent:
    resolved = 1_700_003_600 if state is OutageState.RESOLVED else None
    return OutageEvent(oid, version, "okx", ["ethereum"], state, 1_700_000_000, 1_700_000_300, resolved, 450.0, 300,
                       37.5, 0, 0.9999, 1e-9, "0xtx", "ethereum", time.time(), "no withdrawal while 37.5 expected")


def notifier(url: str, ledger: Path, **kw: Any) -> AlertNotifier:
    return AlertNotifier(SlackHook(url), DeliveryLedger(ledger), backoff_s=0.01, max_backoff_s=0.05, **kw)


async def test_retries_with_one_idempotency_key_and_never_resends(hook_server: Any, tmp_path: Path) -> None:
    hook, url = hook_server
    ledger = tmp_path / "delivered.jsonl"
    outcomes: list[str] = []
    n = notifier(url, ledger, on_outcome=outcomes.append)
    async with aiohttp.ClientSession() as session:
        assert await n.deliver(session, outage(2, OutageState.OPEN)) == "delivered"
        assert [key for key, _ in hook.requests] == ["abc123:2"] * 3, "two 503s, then accepted; same key"
        assert await n.deliver(session, outage(2, OutageState.OPEN)) == "duplicate"
        assert await n.deliver(session, outage(3, OutageState.RESOLVED)) == "delivered"
    assert [k for k, _ in hook.accepted] == ["abc123:2", "abc123:3"]
    assert outcomes == ["delivered", "duplicate", "delivered"]
    (_, first), (_, second) = hook.accepted
    assert first["text"].startswith(":rotating_light: OPEN okx (ethereum)") and "confidence 0.9999" in first["text"]
    assert first["event"] == "outage.open" and first["outage"]["outage_id"] == "abc123"
    assert "RESOLVED okx" in second["text"] and "1 h 00 min" in second["text"]

    # a restarted worker replays its last decisions: the ledger file stops them
    restarted = notifier(url, ledger)
    async with aiohttp.ClientSession() as session:
        assert await restarted.deliver(session, outage(2, OutageState.OPEN)) == "duplicate"
        assert await restarted.deliver(session, outage(3, OutageState.RESOLVED)) == "duplicate"
    assert len(hook.accepted) == 2


async def test_queue_delivers_in_order_and_skips_unannounced_resolutions(hook_server: Any, tmp_path: Path) -> None:
    hook, url = hook_server
    hook.failures = 0
    n = notifier(url, tmp_path / "d.jsonl", states={"open", "resolved"})
    n.offer(outage(1, OutageState.SUSPECTED, "quiet"))  # not a wanted state
    n.offer(outage(2, OutageState.RESOLVED, "quiet"))  # a suspicion that cleared: never announced
    n.offer(outage(1, OutageState.OPEN, "loud"))
    n.offer(outage(2, OutageState.RESOLVED, "loud"))
    task = asyncio.create_task(n.run())
    try:
        await asyncio.wait_for(n.queue.join(), 10)
    finally:
        task.cancel()
    assert [k for k, _ in hook.accepted] == ["loud:1", "loud:2"]


async def test_a_refused_request_is_not_retried(tmp_path: Path) -> None:
    hook = Hook(failures=100, fail_status=400)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        n = notifier(str(server.make_url("/hook")), tmp_path / "d.jsonl")
        async with aiohttp.ClientSession() as session:
            assert await n.deliver(session, outage(1, OutageState.OPEN)) == "failed"
    assert len(hook.requests) == 1
    assert not DeliveryLedger(tmp_path / "d.jsonl").delivered("abc123", 1)


async def test_an_unreachable_webhook_gives_up_after_its_retry_budget(tmp_path: Path) -> None:
    n = notifier("http://127.0.0.1:9/hook", tmp_path / "d.jsonl", retry_for_s=0.3)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        assert await n.deliver(session, outage(1, OutageState.OPEN)) == "failed"
    assert n.attempts >= 2 and time.monotonic() - started < 5


def test_ledger_survives_a_torn_line_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    ledger = DeliveryLedger(path, max_entries=3)
    for v in range(1, 8):
        ledger.record("x", v, "open")
    with path.open("ab") as out:
        out.write(b'{"id": "x", "v"')  # a crash mid-write
    again = DeliveryLedger(path, max_entries=3)
    assert [again.delivered("x", v) for v in range(1, 8)] == [False] * 4 + [True] * 3
    assert again.announced("x") and not again.announced("y")
    assert len(path.read_bytes().splitlines()) <= 2 * 3 + 1


def test_payload_is_slack_compatible_for_every_state() -> None:
    for state in OutageState:
        body = orjson.loads(SlackHook("https://hooks.example/x").body(outage(1, state), [], time.time()))
        assert isinstance(body["text"], str) and body["text"]
        assert body["outage"]["state"] == state.value
