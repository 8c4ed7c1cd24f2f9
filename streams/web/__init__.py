"""The operator's side of the worker: status page, JSON API, event stream, health, metrics and alerts.

``streams/app.py`` calls :func:`register_web` once (which also mounts the store's views,
:mod:`streams.web.store_api`) and then three hooks from its agents
(:class:`WorkerHooks`): ``observe`` after the detector handled a record, ``emitted`` for every outage or
correlated incident sent to the outage topic, and ``dead_letter``. Everything else lives here, so the
worker's detection code stays about detection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.records import ChainHead, OutageEvent, TransferEvent
from streams.alerts import AlertChannel, AlertmanagerApi, AlertNotifier, DeliveryLedger, PagerDutyEvents, SlackHook
from streams.alerts.channels import PAGERDUTY_EVENTS_URL
from streams.alerts.notifier import DEFAULT_STATES
from streams.detection.chains import ChainMonitor
from streams.detection.detector import OutageDetector
from streams.observability import WorkerMetrics
from streams.web.api import Handler, OperatorApi
from streams.web.board import LiveBoard
from streams.web.health import FaustKafkaProbe, HealthChecks
from streams.web.store_api import ReadStore, StoreApi

__all__ = ["OperatorSettings", "WorkerHooks", "register_web"]


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """Options of the operator features (the rest of the worker's settings are in ``WorkerSettings``)."""

    alert_webhook_url: str | None = None
    """POST outage open/degraded/resolved events here (Slack-compatible JSON); None: no webhook."""
    pagerduty_routing_key: str | None = None
    """Trigger and resolve PagerDuty incidents through the Events API v2 with this integration key."""
    pagerduty_url: str = PAGERDUTY_EVENTS_URL
    alertmanager_url: str | None = None
    """Base URL of a Prometheus Alertmanager (``http://alertmanager:9093``)."""
    alert_states: frozenset[str] = DEFAULT_STATES
    alert_ledger: Path | None = None
    """File remembering what the webhook got; default ``<data_dir>/alerts-delivered.jsonl`` (other channels:
    ``alerts-delivered-<channel>.jsonl`` beside it)."""

    def channels(self) -> list[AlertChannel]:
        """Every channel configured, in a fixed order."""
        found: list[AlertChannel] = []
        if self.alert_webhook_url:
            found.append(SlackHook(self.alert_webhook_url))
        if self.pagerduty_routing_key:
            found.append(PagerDutyEvents(self.pagerduty_routing_key, self.pagerduty_url))
        if self.alertmanager_url:
            found.append(AlertmanagerApi(self.alertmanager_url))
        return found
    alert_retry_for_s: float = 600.0
    health_cache_s: float = 5.0
    health_timeout_s: float = 2.0


class WorkerHooks:
    """What the worker's agents call; cheap and never blocking."""

    def __init__(self, board: LiveBoard, metrics: WorkerMetrics, notifiers: list[AlertNotifier],
                 api: OperatorApi) -> None:
        self.board = board
        self.metrics = metrics
        self.notifiers = notifiers
        self.api = api

    def observe(self, record: object) -> None:
        """After the detector handled ``record`` (a transfer, head or label suggestion)."""
        self.metrics.observe(record)
        if isinstance(record, TransferEvent):
            self.board.on_transfer(record)
        elif isinstance(record, ChainHead):
            self.board.touch()

    def emitted(self, outputs: list[Any]) -> None:
        """Outages and correlated incidents the worker sent to the outage topic."""
        for out in outputs:
            self.board.on_output(out)
            if isinstance(out, OutageEvent):
                self.metrics.outage(out)
                for notifier in self.notifiers:
                    notifier.offer(out)

    def dead_letter(self, source: str) -> None:
        self.metrics.dead_letter(source)


def _mount(app: Any, path: str, handler: Handler) -> None:
    from faust.web import View

    async def get(self: Any, request: Any) -> Any:
        return await handler(request)

    name = "operator_" + path.strip("/").replace("/", "_").replace(".", "_")
    view = type(name, (View,), {"get": get, "__doc__": handler.__doc__})
    app.page(path, name=name)(view)


def _delivery_task(notifier: AlertNotifier) -> Any:
    """A Faust task that runs one channel's deliveries (a function per channel: Faust names tasks by it)."""

    async def deliver_alerts() -> None:
        await notifier.run()

    deliver_alerts.__name__ = deliver_alerts.__qualname__ = f"deliver_alerts_{notifier.channel.name}"
    return deliver_alerts


def register_web(app: Any, *, detector: OutageDetector, monitor: ChainMonitor, sinks: Mapping[str, Any],
                 probe_store: Callable[[], object], read_store: ReadStore, data_dir: Path,
                 settings: OperatorSettings | None = None) -> WorkerHooks:
    """Mount the operator endpoints and the store's views on the Faust app's web server and start the alert
    tasks if configured.

    ``sinks`` is the worker's live table -> sink mapping (read at scrape time); ``probe_store`` runs one
    cheap ClickHouse query (raises when the store cannot answer); ``read_store`` runs a query off the loop.
    """
    settings = settings or OperatorSettings()
    board = LiveBoard(detector, monitor)
    metrics = WorkerMetrics(detector, monitor, sinks)
    health = HealthChecks(FaustKafkaProbe(app), monitor, probe_store,
                          crashed=lambda: bool(getattr(app, "crashed", False)),
                          cache_s=settings.health_cache_s, timeout_s=settings.health_timeout_s)
    api = OperatorApi(board, health, metrics)
    for path, handler in {**api.routes(), **StoreApi(read_store, detector).routes()}.items():
        _mount(app, path, handler)
    notifiers: list[AlertNotifier] = []
    for channel in settings.channels():
        file = "alerts-delivered.jsonl" if channel.name == "webhook" else f"alerts-delivered-{channel.name}.jsonl"
        ledger = settings.alert_ledger if settings.alert_ledger and channel.name == "webhook" else data_dir / file
        notifier = AlertNotifier(channel, DeliveryLedger(ledger), settings.alert_states,
                                 retry_for_s=settings.alert_retry_for_s, on_outcome=metrics.alert)
        notifiers.append(notifier)
        app.task(_delivery_task(notifier))
    return WorkerHooks(board, metrics, notifiers, api)
