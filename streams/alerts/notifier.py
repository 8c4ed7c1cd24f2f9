"""Deliver outage state changes to an on-call channel over HTTP, retried, in order, never twice.

The detect path only *offers* an event (a non-blocking queue put); one task per channel delivers them in
order, so a slow or failing channel never delays detection and "resolved" never overtakes "open". Each POST
carries ``Idempotency-Key: <outage_id>:<version>``, identical on every retry, so a receiver that got a
request whose answer was lost can drop the repeat. A version counts as delivered (in the
:class:`~streams.alerts.ledger.DeliveryLedger` file) only after a 2xx; after a restart, versions in the
ledger are skipped. What the request says is the channel's (:mod:`streams.alerts.channels`).

What is sent: ``open`` and ``degraded`` by default, and ``resolved`` only for an incident whose open or
degraded state was announced (a suspicion that cleared by itself is not news).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential, wait_random

from access.secrets import redact
from schemas.records import OutageEvent, OutageState
from streams.alerts.channels import AlertChannel
from streams.alerts.ledger import DeliveryLedger

log = logging.getLogger(__name__)
DEFAULT_STATES = frozenset({"open", "degraded", "resolved"})
QUEUE_MAX = 10_000


class RetryableDelivery(Exception):
    """The channel was unreachable, timed out, or answered 408/425/429/5xx: the same POST may succeed later."""


class RefusedDelivery(Exception):
    """The channel answered another 4xx: resending the same body will not help."""


class AlertNotifier:
    """Delivers offered outage events to one channel."""

    def __init__(self, channel: AlertChannel, ledger: DeliveryLedger, states: Iterable[str] = DEFAULT_STATES,
                 timeout_s: float = 10.0, retry_for_s: float = 600.0, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, on_outcome: Callable[[str], None] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.channel = channel
        self.ledger = ledger
        self.states = frozenset(states)
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.wall = wall
        self.queue: asyncio.Queue[OutageEvent] = asyncio.Queue(QUEUE_MAX)
        self.attempts = 0
        self._announced: set[str] = set()
        """Outages whose open/degraded state this process tried to deliver (delivered or not)."""
        self._sending = asyncio.Lock()
        """One request at a time: a re-send of the firing alerts that overtook a resolution would fire the
        resolved alert again (for a day, in Alertmanager)."""

    def offer(self, event: OutageEvent) -> None:
        """Queue an event for delivery; never blocks (a full queue drops and logs: the topic has it)."""
        if event.state.value not in self.states:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.on_outcome("dropped")
            log.error("alert queue full: outage %s v%d not sent to %s", event.outage_id, event.version,
                      self.channel.name)

    async def run(self) -> None:
        """Deliver queued events in order until cancelled; keep the firing ones firing if the channel asks."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
            refresher = None
            if self.channel.refresh_s is not None:
                refresher = asyncio.ensure_future(self._refresh_every(session, self.channel.refresh_s))
            try:
                while True:
                    event = await self.queue.get()
                    try:
                        await self.deliver(session, event)
                    finally:
                        self.queue.task_done()
            finally:
                if refresher is not None:
                    refresher.cancel()

    async def _refresh_every(self, session: aiohttp.ClientSession, every_s: float) -> None:
        """Send the firing alerts again (those of the ledger: a restart keeps them), first at start."""
        while True:
            await self.refresh(session)
            await asyncio.sleep(every_s)

    async def refresh(self, session: aiohttp.ClientSession) -> str:
        """One re-send of every firing alert; its outcome (``refreshed``, ``failed`` or ``none``)."""
        async with self._sending:
            firing = self.ledger.firing()
            if not firing:
                return "none"
            try:
                await self._post(session, self.channel.refresh(firing, self.wall()),
                                 {"Content-Type": "application/json"})
            except (RetryableDelivery, RefusedDelivery) as exc:
                log.warning("%s: firing alerts not sent again: %s", self.channel.name, redact(str(exc)))
                self.on_outcome("failed")
                return "failed"
        self.on_outcome("refreshed")
        return "refreshed"

    def _wanted(self, event: OutageEvent) -> bool:
        if self.ledger.delivered(event.outage_id, event.version):
            return False
        if event.state is OutageState.RESOLVED:
            return event.outage_id in self._announced or self.ledger.announced(event.outage_id)
        return True

    async def deliver(self, session: aiohttp.ClientSession, event: OutageEvent) -> str:
        """Send one event; returns the outcome (``delivered``, ``duplicate``, ``skipped``, ``failed``)."""
        async with self._sending:
            return await self._deliver(session, event)

    async def _deliver(self, session: aiohttp.ClientSession, event: OutageEvent) -> str:
        if not self._wanted(event):
            outcome = "duplicate" if self.ledger.delivered(event.outage_id, event.version) else "skipped"
            self.on_outcome(outcome)
            return outcome
        if event.state in (OutageState.OPEN, OutageState.DEGRADED):
            self._announced.add(event.outage_id)
        body = self.channel.body(event, self.ledger.announced_events(event.outage_id), self.wall())
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
            log.error("%s did not take outage %s v%d: %s", self.channel.name, event.outage_id, event.version,
                      redact(str(exc)))
            return "failed"
        self.ledger.record(event.outage_id, event.version, event.state.value, event)
        self.on_outcome("delivered")
        return "delivered"

    async def _post(self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> None:
        self.attempts += 1
        try:
            async with session.post(self.channel.url, data=body, headers=headers) as response:
                status = response.status
                detail = (await response.text())[:200]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableDelivery(f"{type(exc).__name__}: {redact(str(exc))}") from None
        if status in (408, 425, 429) or status >= 500:
            log.warning("%s answered %d, retrying: %s", self.channel.name, status, detail)
            raise RetryableDelivery(f"HTTP {status}: {detail}")
        if status >= 400:
            raise RefusedDelivery(f"HTTP {status}: {detail}")
