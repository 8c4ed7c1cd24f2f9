"""POST outage state changes to a webhook (Slack-compatible), retried, never twice.

The detect path only *offers* an event (a non-blocking queue put); one task delivers them in order, so
a slow or failing webhook never delays detection and "resolved" never overtakes "open". Each POST carries
``Idempotency-Key: <outage_id>:<version>``, identical on every retry, so a receiver that got a request
whose answer was lost can drop the repeat. A version counts as delivered (in the
:class:`~streams.alerts.ledger.DeliveryLedger` file) only after a 2xx; after a restart, versions in the
ledger are skipped.

What is sent: ``open`` and ``degraded`` by default, and ``resolved`` only for an incident whose open or
degraded state was announced (a suspicion that cleared by itself is not news). The body is
``{"text": ...}``, which Slack, Mattermost and Teams-style hooks display, plus ``event`` and ``outage``
with the record's fields for programs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential, wait_random

from haltwatch.secrets import redact
from schemas.records import OutageEvent, OutageState
from streams.alerts.ledger import DeliveryLedger

log = logging.getLogger(__name__)
DEFAULT_STATES = frozenset({"open", "degraded", "resolved"})
QUEUE_MAX = 10_000


class RetryableDelivery(Exception):
    """The webhook was unreachable, timed out, or answered 408/425/429/5xx: the same POST may succeed later."""


class RefusedDelivery(Exception):
    """The webhook answered another 4xx: resending the same body will not help."""


def _t(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: int) -> str:
    minutes, _ = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def slack_payload(event: OutageEvent) -> dict[str, Any]:
    """The JSON body for one outage state change."""
    scope = ", ".join(event.scope)
    if event.state is OutageState.RESOLVED:
        text = (f":white_check_mark: RESOLVED {event.exchange} ({scope}): withdrawals resumed at "
                f"{_t(event.resolved_at)} after {_duration(event.duration_s or 0)} without payouts")
    elif event.state is OutageState.DEGRADED:
        text = f":warning: DEGRADED {event.exchange} ({scope}): {event.reason}"
    else:
        icon = ":rotating_light:" if event.state is OutageState.OPEN else ":grey_question:"
        text = (f"{icon} {event.state.value.upper()} {event.exchange} ({scope}): no withdrawal since "
                f"{_t(event.started_at)} ({_duration(event.observed_gap_s)}); {event.expected_count:.1f} "
                f"expected; confidence {event.confidence:.4f}")
    outage = asdict(event)
    outage["state"] = event.state.value
    return {"text": text, "event": f"outage.{event.state.value}", "outage": outage}


class WebhookNotifier:
    """Delivers offered outage events to one webhook URL."""

    def __init__(self, url: str, ledger: DeliveryLedger, states: Iterable[str] = DEFAULT_STATES,
                 timeout_s: float = 10.0, retry_for_s: float = 600.0, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, on_outcome: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.ledger = ledger
        self.states = frozenset(states)
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.queue: asyncio.Queue[OutageEvent] = asyncio.Queue(QUEUE_MAX)
        self.attempts = 0
        self._announced: set[str] = set()
        """Outages whose open/degraded state this process tried to deliver (delivered or not)."""

    def offer(self, event: OutageEvent) -> None:
        """Queue an event for delivery; never blocks (a full queue drops and logs: the topic has it)."""
        if event.state.value not in self.states:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.on_outcome("dropped")
            log.error("alert queue full: outage %s v%d not sent to the webhook", event.outage_id, event.version)

    async def run(self) -> None:
        """Deliver queued events in order until cancelled."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
            while True:
                event = await self.queue.get()
                try:
                    await self.deliver(session, event)
                finally:
                    self.queue.task_done()

    def _wanted(self, event: OutageEvent) -> bool:
        if self.ledger.delivered(event.outage_id, event.version):
            return False
        if event.state is OutageState.RESOLVED:
            return event.outage_id in self._announced or self.ledger.announced(event.outage_id)
        return True

    async def deliver(self, session: aiohttp.ClientSession, event: OutageEvent) -> str:
        """Send one event; returns the outcome (``delivered``, ``duplicate``, ``skipped``, ``failed``)."""
        if not self._wanted(event):
            outcome = "duplicate" if self.ledger.delivered(event.outage_id, event.version) else "skipped"
            self.on_outcome(outcome)
            return outcome
        if event.state in (OutageState.OPEN, OutageState.DEGRADED):
            self._announced.add(event.outage_id)
        body = orjson.dumps(slack_payload(event))
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": f"{event.outage_id}:{event.version}"}
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(RetryableDelivery),
                wait=wait_exponential(multiplier=self.backoff_s, max=self.max_backoff_s) + wait_random(0, 0.1),
                stop=stop_after_delay(self.retry_for_s),
                reraise=True,
            ):
                with attempt:
                    await self._post(session, body, headers)
        except (RetryableDelivery, RefusedDelivery) as exc:
            self.on_outcome("failed")
            log.error("webhook did not take outage %s v%d: %s", event.outage_id, event.version, redact(str(exc)))
            return "failed"
        self.ledger.record(event.outage_id, event.version, event.state.value)
        self.on_outcome("delivered")
        return "delivered"

    async def _post(self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> None:
        self.attempts += 1
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                status = response.status
                detail = (await response.text())[:200]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableDelivery(f"{type(exc).__name__}: {redact(str(exc))}") from None
        if status in (408, 425, 429) or status >= 500:
            log.warning("webhook answered %d, retrying: %s", status, detail)
            raise RetryableDelivery(f"HTTP {status}: {detail}")
        if status >= 400:
            raise RefusedDelivery(f"HTTP {status}: {detail}")
