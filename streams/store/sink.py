"""Buffered, columnar, retried inserts into one ClickHouse table.

Shaped like the sinks of quix-streams and arroyo: ``add()`` buffers, ``flush()`` writes, and ``full``
is the backpressure signal a caller must honour (flush before adding more): ``add()`` on a full buffer
raises instead of letting the buffer grow, and nothing is ever dropped to make room. The worker honours
it by awaiting each flush before it takes the next batch from Kafka, so a slow or absent ClickHouse
slows consumption down (Kafka keeps the backlog) instead of filling memory.

``flush()`` is blocking and meant to run in a worker thread. It retries with exponential backoff while
the server is down, busy or short of memory, and only empties the buffer after the insert succeeded,
so nothing is lost. An optional filter (:class:`streams.store.dedup.TransferDedup`) runs inside every
attempt, so neither a retry after an insert that did reach the server nor a Kafka redelivery writes a
row twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from streams.store.backend import ClickHouseBackend, StoreError, is_transient
from streams.store.columns import Columns, column_length, take

log = logging.getLogger(__name__)


class BatchFilter(Protocol):
    """Chooses which buffered rows to insert, looking at what the store already holds."""

    def keep(self, backend: ClickHouseBackend, columns: Mapping[str, Sequence[Any]]) -> list[int] | None: ...

    def after_insert(self, backend: ClickHouseBackend) -> None: ...


class TableSink:
    """One table's insert buffer (columns) with retried flushes."""

    def __init__(
        self,
        backend: ClickHouseBackend,
        table: str,
        max_rows: int = 10_000,
        retry_for_s: float | None = 600.0,
        dedup: BatchFilter | None = None,
        retry_refused: bool = False,
        max_backoff_s: float = 10.0,
        replicated: bool = False,
    ) -> None:
        """``retry_for_s=None`` retries until the insert succeeds or ``flush(stop=...)`` is set.

        ``retry_refused`` also retries statements the server refused (not only unreachable/busy
        servers): the worker sets it, because stopping on a bad batch keeps it in Kafka for a fix,
        while skipping it would lose it from the store.

        ``replicated`` (a table of a replicated cluster): the filter runs once per batch, and every retry
        sends the very block the first attempt sent. A replicated table keeps the checksums of the blocks
        inserted lately in ZooKeeper, for every replica of the shard, and drops a block it already has, so
        an attempt whose answer was lost, retried on another replica (the first one killed before it was
        copied) leaves each row once; filtering again there would find nothing yet, send a smaller block
        that is not a duplicate, and store the rows twice once the killed replica is back.
        """
        self.backend = backend
        self.table = table
        self.max_rows = max_rows
        self.retry_for_s = retry_for_s
        self.dedup = dedup
        self.retry_refused = retry_refused
        self.max_backoff_s = max_backoff_s
        self._columns: Columns = {}
        self._pending: list[Mapping[str, Any]] = []
        """Rows added one by one, turned into columns in bulk (much cheaper than appending per cell)."""
        self._rows = 0
        self.rows_written = 0
        self.rows_dropped = 0
        """Rows the filter found already stored (or without effect) and did not insert."""
        self.retries = 0
        self.replicated = replicated
        self._sent: Columns | None = None
        """The block the current batch was first sent as (``replicated`` only): what every retry sends."""

    @property
    def full(self) -> bool:
        return self._rows >= self.max_rows

    def __len__(self) -> int:
        return self._rows

    def add(self, row: Mapping[str, Any]) -> None:
        """Buffer one row; every row of a sink must have the same columns."""
        if self._rows >= self.max_rows:
            raise BufferError(f"{self.table} sink holds {self._rows} rows: flush() before adding more")
        self._pending.append(row)
        self._rows += 1
        self._sent = None

    def extend(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Buffer many rows at once (all of them, or none when they do not fit)."""
        if self._rows + len(rows) > self.max_rows:
            raise BufferError(f"{self.table} sink would hold {self._rows + len(rows)} rows: flush() first")
        self._pending.extend(rows)
        self._rows += len(rows)
        self._sent = None

    def _columnar(self) -> Columns:
        """Everything buffered, as columns (the rows added one by one are moved over only on success)."""
        if self._pending:
            rows = self._pending
            names = list(self._columns or rows[0])
            try:
                if any(len(r) != len(names) for r in rows):
                    raise KeyError("column count")
                columns = {name: [r[name] for r in rows] for name in names}
            except KeyError:
                raise ValueError(f"{self.table}: rows must all have exactly the columns {names}") from None
            if self._columns:
                for name in names:
                    self._columns[name].extend(columns[name])
            else:
                self._columns = columns
            self._pending = []
        return self._columns

    def add_columns(self, columns: Mapping[str, Sequence[Any]]) -> None:
        """Buffer a block of rows given as columns (the fast path for bulk loads)."""
        n = column_length(columns)
        if self._rows + n > self.max_rows and self._rows:
            raise BufferError(f"{self.table} sink would hold {self._rows + n} rows: flush() first")
        self._columnar()
        if not self._columns:
            self._columns = {name: list(values) for name, values in columns.items()}
        else:
            if set(columns) != set(self._columns):
                raise ValueError(f"columns {sorted(columns)} differ from the buffered {sorted(self._columns)}")
            for name, values in columns.items():
                self._columns[name].extend(values)
        self._rows += n
        self._sent = None

    def _retryable(self, exc: BaseException) -> bool:
        return is_transient(exc) or (self.retry_refused and isinstance(exc, StoreError))

    def _insert_once(self, columns: Columns) -> int:
        if self._sent is not None:
            batch = self._sent
        else:
            keep = self.dedup.keep(self.backend, columns) if self.dedup is not None else None
            batch = columns if keep is None else take(columns, keep)
            if self.replicated:
                self._sent = batch
        self.backend.insert_columns(self.table, batch)
        if self.dedup is not None:
            self.dedup.after_insert(self.backend)
        return column_length(batch)

    def flush(self, stop: threading.Event | None = None) -> int:
        """Insert everything buffered; returns the rows written (the filter may have dropped some).

        Raises the last error after ``retry_for_s`` of failures, at once for a refused statement
        (unless ``retry_refused``), or when ``stop`` is set; the rows then stay buffered.
        """
        if not self._rows:
            return 0
        columns = self._columnar()

        def before_sleep(state: RetryCallState) -> None:
            self.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            log.warning("insert into %s (%d rows) failed, attempt %d, retrying in %.1f s: %s",
                        self.table, self._rows, state.attempt_number, state.upcoming_sleep, exc)

        give_up: stop_base = stop_never if self.retry_for_s is None else stop_after_delay(self.retry_for_s)
        if stop is not None:
            give_up = give_up | stop_when_event_set(stop)
        written = 0
        for attempt in Retrying(
            retry=retry_if_exception(self._retryable),
            wait=wait_exponential(multiplier=0.2, max=self.max_backoff_s) + wait_random(0, 0.5),
            stop=give_up,
            sleep=sleeper(stop),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                written = self._insert_once(columns)
        self.rows_written += written
        self.rows_dropped += self._rows - written
        self._columns = {}
        self._rows = 0
        self._sent = None
        return written

    def discard(self) -> int:
        """Forget the buffered rows (their source is re-read, e.g. unacked Kafka messages); returns how many."""
        dropped, self._columns, self._pending, self._rows, self._sent = self._rows, {}, [], 0, None
        return dropped


def sleeper(stop: threading.Event | None) -> Callable[[float], None]:
    """A backoff sleep that wakes at once when ``stop`` is set (so shutdown never waits out a backoff)."""
    if stop is None:
        return time.sleep

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep
