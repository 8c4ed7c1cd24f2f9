"""Buffered, retried inserts into one ClickHouse table.

Shaped like the sinks of quix-streams and arroyo: ``add()`` buffers, ``flush()`` writes, and ``full``
is the backpressure signal a caller must honour (flush before adding more) instead of letting the buffer
grow. ``flush()`` is blocking and meant to run in a worker thread; it retries with exponential backoff
while the server is down, and only empties the buffer after the insert succeeded, so nothing is lost.
Duplicates from retries or redelivery are collapsed by the tables' replacing keys.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from streams.store.backend import ClickHouseBackend, StoreError

log = logging.getLogger(__name__)


class TableSink:
    def __init__(
        self,
        backend: ClickHouseBackend,
        table: str,
        max_rows: int = 10_000,
        retry_for_s: float = 600.0,
    ) -> None:
        self.backend = backend
        self.table = table
        self.max_rows = max_rows
        self.retry_for_s = retry_for_s
        self._rows: list[Mapping[str, Any]] = []
        self.rows_written = 0
        self.retries = 0

    @property
    def full(self) -> bool:
        return len(self._rows) >= self.max_rows

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: Mapping[str, Any]) -> None:
        self._rows.append(row)

    def flush(self) -> int:
        """Insert everything buffered; raises after ``retry_for_s`` of failures (rows stay buffered)."""
        if not self._rows:
            return 0
        rows = self._rows

        warn = before_sleep_log(log, logging.WARNING)

        def before_sleep(state: RetryCallState) -> None:
            self.retries += 1
            warn(state)

        for attempt in Retrying(
            retry=retry_if_exception_type((StoreError, EOFError, OSError)),
            wait=wait_exponential_jitter(initial=0.2, max=10.0),
            stop=stop_after_delay(self.retry_for_s),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                self.backend.insert(self.table, rows)
        self._rows = []
        self.rows_written += len(rows)
        return len(rows)
