"""Where alerts go, and in which words: a Slack-style hook, PagerDuty's Events API v2, Prometheus Alertmanager.

A channel turns one outage state change into one HTTP request; :class:`~streams.alerts.notifier.AlertNotifier`
does the rest the same way for all of them (queue, order, retries, the delivery ledger, never twice). What
differs is the words each on-call tool speaks:

- **Slack-style hook:** ``{"text": ...}`` plus the record for programs.
- **PagerDuty Events v2:** ``trigger`` on open or degraded and ``resolve`` on resolved, with
  ``dedup_key = outage_id``, so the whole incident is one PagerDuty incident however many versions it has.
- **Alertmanager:** ``POST /api/v2/alerts`` with labels ``alertname, exchange, chains, state, outage_id`` and
  ``endsAt`` on resolution. An alert whose ``endsAt`` passes resolves by itself, so a firing alert carries an
  ``endsAt`` a day ahead and is sent again every :data:`ALERTMANAGER_REFRESH_S` while firing (Prometheus
  re-sends its alerts the same way); the same labels are the same alert to Alertmanager, so a re-send or a
  restart never makes a second one. A move from open to degraded ends the ``state=open`` alert and fires the
  ``state=degraded`` one.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from schemas.records import OutageEvent, OutageState

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
ALERTMANAGER_REFRESH_S = 600.0
ALERTMANAGER_TTL_S = 86_400.0
"""How long a firing alert stays firing in Alertmanager without being sent again."""
ALERT_NAME = "ExchangeWithdrawalHalt"


def _t(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _duration(seconds: int) -> str:
    minutes, _ = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def summary(event: OutageEvent) -> str:
    """One line a person reads first, in every channel."""
    scope = ", ".join(event.scope)
    if event.state is OutageState.RESOLVED:
        return (f"RESOLVED {event.exchange} ({scope}): withdrawals resumed at {_t(event.resolved_at)} after "
                f"{_duration(event.duration_s or 0)} without payouts")
    if event.state is OutageState.DEGRADED:
        return f"DEGRADED {event.exchange} ({scope}): {event.reason}"
    return (f"{event.state.value.upper()} {event.exchange} ({scope}): no withdrawal since {_t(event.started_at)} "
            f"({_duration(event.observed_gap_s)}); {event.expected_count:.1f} expected; "
            f"confidence {event.confidence:.4f}")


def record_fields(event: OutageEvent) -> dict[str, Any]:
    outage = asdict(event)
    outage["state"] = event.state.value
    return outage


class AlertChannel(Protocol):
    """One on-call tool's request for an outage state change."""

    name: str
    url: str
    refresh_s: float | None
    """Send the firing alerts again this often (None: never)."""

    def body(self, event: OutageEvent, announced: list[OutageEvent], now: float) -> bytes:
        """The request body; ``announced`` holds the earlier open/degraded versions delivered for the outage."""

    def refresh(self, firing: list[OutageEvent], now: float) -> bytes:
        """The body that keeps ``firing`` firing (only called when ``refresh_s`` is set)."""


class SlackHook:
    """A Slack-compatible incoming webhook (Mattermost and Teams-style hooks read ``text`` too)."""

    name = "webhook"
    refresh_s: float | None = None

    def __init__(self, url: str) -> None:
        self.url = url

    def body(self, event: OutageEvent, announced: list[OutageEvent], now: float) -> bytes:
        icon = {OutageState.RESOLVED: ":white_check_mark:", OutageState.DEGRADED: ":warning:",
                OutageState.OPEN: ":rotating_light:"}.get(event.state, ":grey_question:")
        return orjson.dumps({"text": f"{icon} {summary(event)}", "event": f"outage.{event.state.value}",
                             "outage": record_fields(event)})

    def refresh(self, firing: list[OutageEvent], now: float) -> bytes:
        raise NotImplementedError("a chat hook is not refreshed")


class PagerDutyEvents:
    """PagerDuty Events API v2: one PagerDuty incident per outage (``dedup_key``), triggered and resolved."""

    name = "pagerduty"
    refresh_s: float | None = None

    def __init__(self, routing_key: str, url: str = PAGERDUTY_EVENTS_URL) -> None:
        self.routing_key = routing_key
        self.url = url

    def body(self, event: OutageEvent, announced: list[OutageEvent], now: float) -> bytes:
        if event.state is OutageState.RESOLVED:
            return orjson.dumps({"routing_key": self.routing_key, "event_action": "resolve",
                                 "dedup_key": event.outage_id})
        return orjson.dumps({
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": event.outage_id,
            "payload": {
                "summary": summary(event)[:1024],
                "source": f"haltwatch:{event.exchange}",
                "severity": "critical" if event.state is OutageState.OPEN else "warning",
                "timestamp": _iso(event.emitted_at),
                "component": event.exchange,
                "group": ",".join(event.scope),
                "class": f"withdrawals {event.state.value}",
                "custom_details": record_fields(event),
            },
        })

    def refresh(self, firing: list[OutageEvent], now: float) -> bytes:
        raise NotImplementedError("PagerDuty keeps a triggered incident until it is resolved")


class AlertmanagerApi:
    """Prometheus Alertmanager's API v2, ``POST <url>/api/v2/alerts``."""

    name = "alertmanager"
    refresh_s: float | None = ALERTMANAGER_REFRESH_S

    def __init__(self, base_url: str, ttl_s: float = ALERTMANAGER_TTL_S) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self.ttl_s = ttl_s

    @staticmethod
    def labels(event: OutageEvent) -> dict[str, str]:
        """What makes the alert one alert to Alertmanager: the same for every send of one incident state."""
        return {"alertname": ALERT_NAME, "exchange": event.exchange, "chains": ",".join(event.scope),
                "state": event.state.value, "outage_id": event.outage_id,
                "severity": "critical" if event.state is OutageState.OPEN else "warning"}

    def _alert(self, event: OutageEvent, ends_at: float, now: float) -> dict[str, Any]:
        return {
            "labels": self.labels(event),
            "annotations": {"summary": summary(event), "description": event.reason,
                            "p_value": f"{event.p_value:.3g}", "started_at": _t(event.started_at)},
            "startsAt": _iso(min(float(event.started_at), now)),
            "endsAt": _iso(ends_at),
        }

    def body(self, event: OutageEvent, announced: list[OutageEvent], now: float) -> bytes:
        ended = [a for a in announced if a.state is not event.state]  # the states this change leaves behind
        alerts = [self._alert(a, now, now) for a in _latest_per_state(ended)]
        if event.state is not OutageState.RESOLVED:
            alerts.append(self._alert(event, now + self.ttl_s, now))
        return orjson.dumps(alerts)

    def refresh(self, firing: list[OutageEvent], now: float) -> bytes:
        return orjson.dumps([self._alert(e, now + self.ttl_s, now) for e in firing])


def _latest_per_state(events: list[OutageEvent]) -> list[OutageEvent]:
    latest: dict[OutageState, OutageEvent] = {}
    for e in events:
        if e.state not in latest or e.version > latest[e.state].version:
            latest[e.state] = e
    return list(latest.values())
