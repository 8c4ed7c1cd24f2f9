"""The Faust worker: wires detection, correlation, chain monitoring, ClickHouse sinks and the web views.

Agents, and where their work lives:
- ``detect`` reads the transfers topic in batches (``take_events``) and runs each through
  :class:`~streams.worker.detect.DetectStep`: the detector, its state parts in a changelog-backed table
  (:mod:`streams.worker.state`), and the pacing of saves and status snapshots. Then it sends the batch's
  outage events, saves the parts it changed and publishes the due snapshots. Faust acks a batch's events only
  when the agent asks for the next batch, that is after all that was handed to the producer, which Faust
  flushes before it commits. Concurrency 1: with more, Faust can commit past an event still in flight.
- ``correlate`` sees every outage (copied to a one-partition internal topic) and groups those of several
  exchanges that start together into correlated incidents on the outage topic.
- ``monitor_chains`` reads heads and connector heartbeats per chain and, on a timer, reports chains that
  stalled or that we lost (wall-clock judgement; outages never depend on it).
- the ``sink_*`` agents store their topics in ClickHouse (:mod:`streams.worker.sinks`); ``sink_status``
  stores the detector's status snapshots behind the ``current_status`` view.
- ``--role detect`` runs only the first three, ``--role store`` only the sinks, each as its own consumer
  group: a ClickHouse outage long enough to fill a sink's stream buffer then cannot pause detection, as it
  does with ``--role all`` (one consumer delivers each topic to all its agents).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import faust
import orjson

from access.kafka_topics import TopicSpec
from schemas.codec import SchemaError, decode
from schemas.records import (
    BlockTransfers,
    ChainHead,
    ChainStatus,
    CorrelatedIncident,
    DeadLetter,
    FeedHeartbeat,
    LabelSuggestion,
    OutageEvent,
    TransferEvent,
)
from streams.detection import ChainMonitor, IncidentCorrelator, OutageDetector, WallClock
from streams.group_membership import heartbeat_interval
from streams.recovery_guard import RecoveryGuard
from streams.roles import WorkerRole
from streams.store.rows import chain_status_row, correlated_row, head_row, outage_row, suggestion_row, transfer_rows
from streams.store.status import snapshot
from streams.web import register_web
from streams.worker.detect import STATUS_EVERY_S, Delivery, DetectStep
from streams.worker.faust_app import WorkerApp, changelog_writer
from streams.worker.settings import PRODUCER_BATCH_BYTES, WorkerSettings, consuming_options
from streams.worker.sinks import ClickHouseStore, Tables, one_row, record_sink_agent, status_sink_agent
from streams.worker.state import DetectorStateTable

log = logging.getLogger(__name__)
STATUS_ROWS_PER_MESSAGE = 500


def create_app(settings: WorkerSettings) -> faust.App:
    """Build the Faust app; nothing connects until a worker starts it."""
    app = WorkerApp(
        settings.app_id,
        **consuming_options(settings.kafka_bootstrap, settings.partitions, settings.kafka_security),
        topic_replication_factor=settings.replication_factor, web_host=settings.web_host,
        web_port=settings.web_port, datadir=str(settings.data_dir), producer_acks=-1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES, broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=heartbeat_interval(settings.kafka_session_timeout_s),
    )
    topics = settings.topics
    detects = settings.role in (WorkerRole.ALL, WorkerRole.DETECT)
    stores = settings.role in (WorkerRole.ALL, WorkerRole.STORE)

    def topic(name: str, partitions: int = settings.partitions, internal: bool = False) -> Any:
        # value_type=bytes selects Faust's raw codec (with JSON, changelog recovery gives back something else
        # than was written). internal: created by Faust at start-up; a consumer subscribed to a topic that
        # does not exist yet only sees it after its next metadata refresh (minutes), so topics only it writes are.
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=partitions, internal=internal)

    transfers_topic, heads_topic, outages_topic = topic(topics.transfers), topic(topics.heads), topic(topics.outages)
    status_topic = topic(topics.chain_status, internal=True)
    dead_topic = topic(topics.dead_letters)
    correlation_topic = topic(f"{topics.prefix}.internal.correlation.v1", partitions=1, internal=True)
    snapshot_topic = topic(f"{topics.prefix}.internal.status.v1", partitions=1, internal=True)
    # a table's changelog is read back at every start: only a detecting worker has one
    table: Any = app.Table("detector-state", default=None, partitions=settings.partitions, key_type=str,
                           value_type=bytes) if detects else None
    changelog = table.changelog_topic.get_topic_name() if detects else ""
    app.bootstrap, app.security = settings.kafka_bootstrap, settings.kafka_security
    app.quiet_clients, app.replication_factor = settings.quiet_clients, settings.replication_factor
    app.topic_specs = [
        *(TopicSpec(name, settings.partitions) for name in (topics.transfers, topics.heads, topics.outages,
                                                             topics.chain_status, topics.dead_letters)),
        TopicSpec(correlation_topic.get_topic_name(), 1), TopicSpec(snapshot_topic.get_topic_name(), 1),
        *([TopicSpec(changelog, settings.partitions, compacted=True)] if detects else []),
    ]
    app.recovery_guard = RecoveryGuard(app) if detects else None

    def agent(channel: Any, runs: bool, **options: Any) -> Callable[[Any], Any]:
        """``app.agent``, in a worker whose role runs this agent (elsewhere the function is never started)."""
        return app.agent(channel, **options) if runs else (lambda fn: fn)

    def timer(interval: float, runs: bool) -> Callable[[Any], Any]:
        return app.timer(interval=interval) if runs else (lambda fn: fn)

    clock = WallClock()
    detector = OutageDetector(settings.policy, clock)
    correlator = IncidentCorrelator(settings.policy.correlation_window_s, clock, settings.exchange_metadata)
    monitor = ChainMonitor(clock)
    store = ClickHouseStore(settings.clickhouse_url, settings.chdb_path, settings.sink_batch,
                            settings.clickhouse_cluster)
    hooks = register_web(app, detector=detector, monitor=monitor, sinks=store.sinks, probe_store=store.probe,
                         read_store=store.read, data_dir=settings.data_dir, settings=settings.operator)

    state = DetectorStateTable(detector, table if detects else {}, changelog_writer(app, table))
    step = DetectStep(detector, state, clock, observe=hooks.observe)

    @app.on_partitions_revoked.connect
    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _forget_after_rebalance(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Ownership may have moved; the recovered table is the truth, reloaded on demand. Forgotten as soon
        # as partitions are revoked (Faust sends that once the in-flight events are done and the producer
        # flushed), so that /detector never shows exchanges another worker already decides; again when the
        # rebalance completes, in case events were read in between. The transfers sink forgets what it
        # stored lately for the same reason: the partitions it wrote may be another worker's now.
        step.forget()
        store.forget_recent()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _stop_inserts(sender: Any, *args: Any, **kwargs: Any) -> None:
        store.stopping.set()

    async def dead_letter(raw: bytes, reason: str, source: str) -> None:
        letter = DeadLetter(source, reason, raw.decode("utf-8", "replace"), clock.now())
        await dead_topic.send(key=source.encode(), value=orjson.dumps(letter))
        hooks.dead_letter(source)

    async def publish_status(exchanges: Iterable[str]) -> None:
        rows = snapshot(detector, sorted(exchanges))
        for start in range(0, len(rows), STATUS_ROWS_PER_MESSAGE):
            chunk = rows[start : start + STATUS_ROWS_PER_MESSAGE]
            await snapshot_topic.send(key=b"status", value=orjson.dumps({"rows": chunk}))

    @agent(transfers_topic, detects, concurrency=1)
    async def detect(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(settings.detect_batch, within=settings.detect_within_s):
            batch = [Delivery(e.message.partition, e.message.offset, e.value, e.message.timestamp) for e in events]
            result = step.run(batch)
            for raw, reason in result.dead:
                await dead_letter(raw, reason, f"topic:{topics.transfers}")
            for out in result.outputs:
                log.warning("outage %s %s on %s (%s)", out.state, out.exchange, out.scope, out.reason)
                payload = orjson.dumps(out)
                await outages_topic.send(key=out.exchange.encode(), value=payload)
                await correlation_topic.send(key=b"all", value=payload)
            hooks.emitted(result.outputs)
            await step.state.save(result.dirty)
            if result.status:
                await publish_status(result.status)
            yield None

    @timer(STATUS_EVERY_S, detects)
    async def snapshot_stale_status() -> None:
        """The last heads of a burst (catch-up, or a chain that then stops) still reach the status table."""
        await publish_status(step.stale_status())

    @agent(correlation_topic, detects, concurrency=1)
    async def correlate(stream: Any) -> AsyncIterator[None]:
        async for value in stream:
            try:
                record = decode(value)
            except SchemaError:
                continue  # only our own detector writes here
            if isinstance(record, OutageEvent):
                for incident in correlator.on_outage(record):
                    log.warning("correlated incident %s: %s", incident.incident_id, incident.exchanges)
                    await outages_topic.send(key=b"correlated", value=orjson.dumps(incident))
                    hooks.emitted([incident])
            yield None

    async def send_statuses(statuses: list[ChainStatus]) -> None:
        for status in statuses:
            await status_topic.send(key=status.chain.encode(), value=orjson.dumps(status))

    @agent(heads_topic, detects, concurrency=1)
    async def monitor_chains(stream: Any) -> AsyncIterator[None]:
        async for value in stream:
            try:
                record = decode(value)
            except SchemaError as exc:
                await dead_letter(value, str(exc), f"topic:{topics.heads}")
                continue
            if isinstance(record, ChainHead):
                await send_statuses(monitor.on_head(record))
            elif isinstance(record, FeedHeartbeat):
                await send_statuses(monitor.on_heartbeat(record))
            yield None

    @timer(settings.chain_check_s, detects)
    async def check_chains() -> None:
        statuses = monitor.on_tick()
        for status in statuses:
            log.warning("chain %s is %s: %s", status.chain, status.state, status.reason)
        await send_statuses(statuses)

    def store_topic(source: Any, name: str, tables: Tables, bad: str | None = None) -> None:
        dead = functools.partial(dead_letter, source=f"topic:{bad}") if bad else None
        sink = record_sink_agent(store, tables, settings.sink_batch, settings.sink_within_s, dead)
        agent(source, stores, name=name, concurrency=1)(sink)

    # bad records of the transfers topic are ``detect``'s to dead-letter (a ``--role store`` worker's too)
    store_topic(transfers_topic, "sink_transfers", {
        TransferEvent: ("transfers", transfer_rows), BlockTransfers: ("transfers", transfer_rows),
        LabelSuggestion: ("label_suggestions", one_row(suggestion_row))})
    store_topic(heads_topic, "sink_heads", {ChainHead: ("chain_heads", one_row(head_row))}, bad=topics.heads)
    store_topic(outages_topic, "sink_outages", {
        OutageEvent: ("outage_events", one_row(outage_row)),
        CorrelatedIncident: ("correlated_incidents", one_row(correlated_row))}, bad=topics.outages)
    store_topic(status_topic, "sink_chain_status", {ChainStatus: ("chain_status", one_row(chain_status_row))},
                bad=topics.chain_status)
    agent(snapshot_topic, stores, name="sink_status", concurrency=1)(
        status_sink_agent(store, settings.sink_batch, settings.sink_within_s))
    return app
