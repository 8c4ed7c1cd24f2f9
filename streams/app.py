"""The Faust worker: detection agent, ClickHouse sink agents and a small JSON API.

Agents and the state they own:
- ``detect`` reads the transfers topic (transfers keyed by exchange plus every block's head written to
  every partition) one event at a time, feeds :class:`OutageDetector`, keeps each exchange's detector
  state in a changelog-backed table, and sends outage state changes to the outage topic. It runs with
  concurrency 1: with more, Faust can commit past an event still in flight.
- ``sink_transfers`` / ``sink_heads`` / ``sink_outages`` batch their topics into ClickHouse. A batch is
  acknowledged only after its insert succeeded, so a crash re-reads it (the tables collapse duplicates).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import EventT
from faust.web import Request, Response, View

from schemas.codec import SchemaError, decode
from schemas.records import ChainHead, DeadLetter, OutageEvent, TransferEvent
from schemas.topics import Topics
from streams.detection import DetectionPolicy, OutageDetector, WallClock
from streams.store.backend import ClickHouseBackend, open_backend
from streams.store.migrate import apply_migrations
from streams.store.queries import recent_outages, withdrawal_count
from streams.store.rows import head_row, outage_row, transfer_row
from streams.store.sink import TableSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    topics: Topics = field(default_factory=Topics)
    partitions: int = 8
    app_id: str = "haltwatch"
    clickhouse_url: str | None = None
    chdb_path: Path = Path(".haltwatch/chdb")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Path(".haltwatch/worker")
    sink_batch: int = 5_000
    sink_within_s: float = 0.25
    policy: DetectionPolicy = field(default_factory=DetectionPolicy)


def create_app(settings: WorkerSettings) -> faust.App:
    """Build the Faust app; nothing connects until a worker starts it."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=str(settings.data_dir),
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
    )
    topics = settings.topics

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=settings.partitions)

    transfers_topic = topic(topics.transfers)
    heads_topic = topic(topics.heads)
    outages_topic = topic(topics.outages)
    dead_topic = topic(topics.dead_letters)
    state_table = app.Table("detector-state", default=None, partitions=settings.partitions)

    detector = OutageDetector(settings.policy, WallClock())
    owners: dict[int, set[str]] = {}
    """partition → exchanges whose transfers arrive there (they are evaluated on that partition's heads)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
    store: dict[str, ClickHouseBackend] = {}

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _forget_after_rebalance(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Ownership may have moved; the recovered table is the truth, reloaded on demand.
        for exchange in list(detector.exchanges()):
            detector.forget(exchange)
        owners.clear()
        loaded.clear()
        restored_partitions.clear()

    loaded: set[tuple[str, int]] = set()
    restored_partitions: set[int] = set()

    def load(exchange: str, partition: int) -> None:
        if (exchange, partition) in loaded:
            return
        stored = state_table.get(exchange)
        if stored is not None and not any(ex == exchange for ex, _ in detector.states):
            detector.restore(exchange, orjson.loads(stored)["chains"])
        owners.setdefault(partition, set()).add(exchange)
        loaded.add((exchange, partition))

    def save(exchange: str, partition: int) -> None:
        state_table[exchange] = orjson.dumps({"partition": partition, "chains": detector.export(exchange)})

    def restore_partition(partition: int) -> None:
        """After a restart or rebalance, exchanges of this partition are known only to the table."""
        restored_partitions.add(partition)
        for exchange, stored in state_table.items():
            data = orjson.loads(stored)
            if data["partition"] == partition:
                load(exchange, partition)

    async def dead_letter(raw: bytes, reason: str, source: str) -> None:
        letter = DeadLetter(source, reason, raw.decode("utf-8", "replace"), time.time())
        await dead_topic.send(key=source.encode(), value=orjson.dumps(letter))

    async def emit(outages: list[OutageEvent]) -> None:
        for outage in outages:
            log.warning("outage %s %s on %s (%s)", outage.state, outage.exchange, outage.scope, outage.reason)
            await outages_topic.send(key=outage.exchange.encode(), value=orjson.dumps(outage))

    @app.agent(transfers_topic, concurrency=1)
    async def detect(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            partition = event.message.partition
            if partition not in restored_partitions:
                restore_partition(partition)
            try:
                record = decode(event.value)
            except SchemaError as exc:
                await dead_letter(event.value, str(exc), f"topic:{topics.transfers}")
                continue
            if isinstance(record, TransferEvent):
                load(record.exchange, partition)
                outages = detector.on_transfer(record)
                save(record.exchange, partition)
                await emit(outages)
            elif isinstance(record, ChainHead):
                mine = owners.get(partition, set())
                outages = detector.on_head(record, mine)
                for exchange in mine:
                    save(exchange, partition)
                await emit(outages)
            else:
                await dead_letter(event.value, f"unexpected {record.TYPE} record", f"topic:{topics.transfers}")
            yield None

    def backend() -> ClickHouseBackend:
        if "b" not in store:
            b = open_backend(settings.clickhouse_url, settings.chdb_path)
            applied = apply_migrations(b)
            if applied:
                log.info("applied ClickHouse migrations %s", applied)
            store["b"] = b
        return store["b"]

    async def insert(table: str, rows: list[dict[str, Any]]) -> None:
        def run() -> None:
            sink = TableSink(backend(), table)
            for row in rows:
                sink.add(row)
            sink.flush()

        await asyncio.get_running_loop().run_in_executor(executor, run)

    Events = list[EventT[bytes]]

    def decoded(events: Events, kind: type[Any]) -> tuple[list[tuple[Any, EventT[bytes]]], Events]:
        good: list[tuple[Any, EventT[bytes]]] = []
        bad: Events = []
        for event in events:
            try:
                record = decode(event.value)
            except SchemaError:
                bad.append(event)
                continue
            if isinstance(record, kind):
                good.append((record, event))
        return good, bad

    @app.agent(transfers_topic, concurrency=1)
    async def sink_transfers(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(settings.sink_batch, within=settings.sink_within_s):
            good, _ = decoded(list(events), TransferEvent)  # bad ones are dead-lettered by ``detect``
            rows = [transfer_row(t, e.message.offset) for t, e in good]
            await insert("transfers", rows)
            yield None

    @app.agent(heads_topic, concurrency=1)
    async def sink_heads(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(settings.sink_batch, within=settings.sink_within_s):
            good, bad = decoded(list(events), ChainHead)
            for event in bad:
                await dead_letter(event.value, "not a valid chain head", f"topic:{topics.heads}")
            await insert("chain_heads", [head_row(h) for h, _ in good])
            yield None

    @app.agent(outages_topic, concurrency=1)
    async def sink_outages(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(settings.sink_batch, within=settings.sink_within_s):
            good, bad = decoded(list(events), OutageEvent)
            for event in bad:
                await dead_letter(event.value, "not a valid outage event", f"topic:{topics.outages}")
            await insert("outage_events", [outage_row(o) for o, _ in good])
            yield None

    @app.page("/outages")
    class Outages(View):
        """Outage state changes as stored in ClickHouse (what a query sees now)."""

        async def get(self, request: Request) -> Response:
            exchange = request.query.get("exchange")
            rows = await asyncio.get_running_loop().run_in_executor(
                executor, lambda: recent_outages(backend(), exchange)
            )
            return self.json(rows)

    @app.page("/withdrawals/count")
    class WithdrawalCount(View):
        """How many distinct withdrawals of an exchange the store holds (reorg retractions excluded)."""

        async def get(self, request: Request) -> Response:
            exchange = request.query.get("exchange", "")
            count = await asyncio.get_running_loop().run_in_executor(
                executor, lambda: withdrawal_count(backend(), exchange)
            )
            return self.json({"exchange": exchange, "count": count})

    @app.page("/detector")
    class DetectorView(View):
        """What this worker's detector knows right now, per (exchange, chain) it owns."""

        async def get(self, request: Request) -> Response:
            return self.json(
                [
                    {
                        "exchange": st.exchange,
                        "chain": st.chain,
                        "head_number": st.head_number,
                        "head_time": st.head_time,
                        "last_withdrawal_time": st.last_time,
                        "withdrawals_in_window": st.rate.withdrawals,
                        "outage_id": st.outage.outage_id if st.outage else None,
                    }
                    for st in detector.states.values()
                ]
            )

    return app
