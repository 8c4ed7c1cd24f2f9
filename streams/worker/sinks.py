"""The worker's way into ClickHouse: the store it opens on first use, and a sink per agent.

Every sink agent buffers the rows of its batch's records in the tables' own buffers (:class:`TableSink`, one
per table, the only buffer) with :meth:`RecordSink.add`, and calls :meth:`RecordSink.flush` before it asks
Faust for the next batch, which is what acknowledges the batch: a crash re-reads a batch whose insert did not
succeed, and the tables' keys (and the transfers' dedup) collapse what a re-read writes twice. A full buffer
is the backpressure signal: ``add`` then waits for that table's insert, retried until it succeeds, so a slow
or absent ClickHouse slows consumption down (Kafka keeps the backlog) instead of filling memory.

Inserts run one at a time on a thread of their own; the web API's queries on another, so that an insert
being retried never holds them up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from schemas.codec import SchemaError, decode
from streams.store.backend import ClickHouseBackend, StoreError
from streams.store.dedup import TransferDedup
from streams.store.migrate import open_migrated
from streams.store.sink import TableSink

log = logging.getLogger(__name__)
T = TypeVar("T")
Agent = Callable[[Any], AsyncIterator[None]]
"""A Faust agent's function: its stream in, a value per processed batch out (which acks the batch)."""
RowsOf = Callable[[Any, int], list[dict[str, Any]]]
"""A record and its offset → its rows in one table."""
Tables = Mapping[type, tuple[str, RowsOf]]
"""Record type → (table, rows of a record)."""


def one_row(to_row: Callable[[Any], dict[str, Any]]) -> RowsOf:
    """A :data:`RowsOf` for records that make one row each."""
    return lambda record, _offset: [to_row(record)]


class ClickHouseStore:
    """The worker's ClickHouse: opened and migrated on first use (retried while a server is down), the
    tables' sinks, and the two threads that talk to it."""

    def __init__(self, url: str | None, chdb_path: Path, batch_rows: int, cluster: str | None = None) -> None:
        self.url = url
        self.cluster = cluster
        self.chdb_path = chdb_path
        self.batch_rows = batch_rows
        """Rows a table's buffer holds before ``add`` waits for its insert."""
        self.sinks: dict[str, TableSink] = {}
        """table → its sink; read by the metrics at scrape time."""
        self.stopping = threading.Event()
        """Set on shutdown: an insert still being retried gives up (its batch is unacked, so re-read later)."""
        self._backend: ClickHouseBackend | None = None
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-read")

    def backend(self, wait_s: float | None = None) -> ClickHouseBackend:
        """The store (blocking: call it on a thread). A reader passes ``wait_s`` so that it fails fast instead of
        queueing behind a first open that is still retrying."""
        if not self._lock.acquire(timeout=-1 if wait_s is None else wait_s):
            raise StoreError(
                "ClickHouse is not reachable yet (the first connection is still being retried)", retryable=True
            )
        try:
            if self._backend is None:
                self._backend = open_migrated(self.url, self.chdb_path, self.stopping, cluster=self.cluster)
            return self._backend
        finally:
            self._lock.release()

    def probe(self) -> object:
        """One cheap query (raises when the store cannot answer): the health check's."""
        return self.backend(wait_s=1.0).query("SELECT 1 AS ok")

    def sink_for(self, table: str) -> TableSink:
        """The table's sink, created with the store (blocking: on the insert thread)."""
        if table not in self.sinks:
            self.sinks[table] = TableSink(
                self.backend(), table, max_rows=self.batch_rows, retry_for_s=None, retry_refused=True,
                max_backoff_s=30.0, dedup=TransferDedup() if table == "transfers" else None,
                replicated=self.cluster is not None,
            )
        return self.sinks[table]

    def forget_recent(self) -> None:
        """After a rebalance: the transfers sink's memory of what it stored lately may be another worker's
        business now (:mod:`streams.store.recent_transfers`)."""
        sink = self.sinks.get("transfers")
        recent = getattr(sink.dedup, "recent", None) if sink is not None else None
        if recent is not None:
            recent.forget()

    async def write(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the insert thread. Only shutdown cancels the agents: the thread then gives up too."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, fn)
        except asyncio.CancelledError:
            self.stopping.set()
            raise

    async def read(self, query: Callable[[ClickHouseBackend], T]) -> T:
        """Run a store query on the reader thread (StoreError when ClickHouse cannot answer)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, lambda: query(self.backend(wait_s=5.0))
        )


class RecordSink:
    """The tables one agent writes: ``add`` per record, ``flush`` before the batch is acknowledged."""

    def __init__(self, store: ClickHouseStore, tables: Tables | None = None) -> None:
        self.store = store
        self.tables: Tables = tables or {}
        self._touched: dict[str, TableSink] = {}

    async def add(self, record: Any, offset: int) -> None:
        """Buffer the record's rows in its table (records of other types are not this agent's to store)."""
        target = self.tables.get(type(record))
        if target is not None:
            table, rows_of = target
            await self.add_rows(table, rows_of(record, offset))

    async def add_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Buffer rows of ``table``; a full buffer is written before it takes another row (the backpressure)."""
        if not rows:
            return
        sink = self._touched.get(table) or self.store.sinks.get(table)
        if sink is None:
            sink = await self.store.write(lambda: self.store.sink_for(table))
        self._touched[table] = sink
        for row in rows:
            if sink.full:
                await self._flush(sink)
            sink.add(row)

    async def flush(self) -> None:
        """Write everything this agent buffered; returns only once it is stored (retried until then)."""
        for sink in self._touched.values():
            await self._flush(sink)
        self._touched.clear()

    async def _flush(self, sink: TableSink) -> None:
        def run() -> None:
            try:
                sink.flush(self.store.stopping)
            except BaseException:
                sink.discard()  # only shutdown gets here; the batch is unacked and will be re-read
                raise

        await self.store.write(run)


def record_sink_agent(store: ClickHouseStore, tables: Tables, batch: int, within_s: float,
                      bad: Callable[[bytes, str], Awaitable[None]] | None = None) -> Agent:
    """An agent storing a topic's records in their tables, a batch at a time; ``bad`` gets what cannot be
    decoded (None: another agent of the topic dead-letters it)."""

    async def sink(stream: Any) -> AsyncIterator[None]:
        records = RecordSink(store, tables)
        async for events in stream.take_events(batch, within=within_s):
            for event in events:
                try:
                    record = decode(event.value)
                except SchemaError as exc:
                    if bad is not None:
                        await bad(event.value, str(exc))
                    continue
                await records.add(record, event.message.offset)
            await records.flush()
            yield None

    return sink


def status_sink_agent(store: ClickHouseStore, batch: int, within_s: float) -> Agent:
    """The agent storing the detector's status snapshots (``{"rows": [...]}`` messages) in ``detector_status``."""

    async def sink_status(stream: Any) -> AsyncIterator[None]:
        records = RecordSink(store)
        async for events in stream.take_events(batch, within=within_s):
            for event in events:
                try:
                    await records.add_rows("detector_status", orjson.loads(event.value)["rows"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    log.exception("bad status snapshot at offset %d", event.message.offset)
            await records.flush()
            yield None

    return sink_status
