"""The worker's JSON views of what ClickHouse holds, and of what its own detector knows right now.

Plain aiohttp handlers like :mod:`streams.web.api`'s, mounted on the worker's web server by
:func:`streams.web.register_web`; a query runs on the store's reader thread (``read``), and a store that
cannot answer gives 503 with the reason rather than a hung request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from streams.detection.detector import OutageDetector
from streams.store.backend import ClickHouseBackend, StoreError
from streams.store.queries import current_status, recent_outages, withdrawal_count
from streams.web.api import Handler, json_response

ReadStore = Callable[[Callable[[ClickHouseBackend], Any]], Awaitable[Any]]
"""Run a query against the store off the event loop (``ClickHouseStore.read``)."""


class StoreApi:
    def __init__(self, read: ReadStore, detector: OutageDetector) -> None:
        self.read = read
        self.detector = detector

    def routes(self) -> dict[str, Handler]:
        return {
            "/outages": self.outages,
            "/status": self.status,
            "/withdrawals/count": self.withdrawal_count,
            "/detector": self.detector_rows,
        }

    async def _answer(self, query: Callable[[ClickHouseBackend], Any]) -> web.Response:
        try:
            return json_response(await self.read(query))
        except StoreError as exc:
            return json_response({"error": str(exc)}, status=503)

    async def outages(self, request: web.Request) -> web.Response:
        """Outage state changes as stored: ?exchange=X&since=SECONDS&latest=1&limit=N (all versions unless
        latest=1, one per outage)."""
        exchange = request.query.get("exchange")
        latest = request.query.get("latest", "") in ("1", "true", "yes")
        try:
            raw_since = request.query.get("since")
            since = int(raw_since) if raw_since else None
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return json_response({"error": "since and limit must be integers"}, status=400)
        return await self._answer(lambda b: recent_outages(b, exchange, limit, since, latest))

    async def status(self, request: web.Request) -> web.Response:
        """What is down right now: one row per (exchange, chain) from the current_status view."""
        exchange = request.query.get("exchange")
        return await self._answer(lambda b: current_status(b, exchange))

    async def withdrawal_count(self, request: web.Request) -> web.Response:
        """How many distinct withdrawals of an exchange the store holds (reorg retractions excluded)."""
        exchange = request.query.get("exchange", "")
        return await self._answer(lambda b: {"exchange": exchange, "count": withdrawal_count(b, exchange)})

    async def detector_rows(self, request: web.Request) -> web.Response:
        """What this worker's detector knows right now, per (exchange, chain) it owns."""
        rows = []
        self.detector.settle()  # every chain's latest head, not the last one each exchange was visited at
        for ex in self.detector.view.values():
            for c in ex.chains.values():
                last = c.last
                rows.append({
                    "exchange": ex.exchange,
                    "chain": c.chain,
                    "head_number": c.head_number,
                    "head_time": c.head_time,
                    "last_withdrawal_time": last.time if last else None,
                    "withdrawals_seen": c.withdrawals,
                    "expected_in_gap": c.gap_u(),
                    "outage_id": c.incident.last.outage_id if c.incident else None,
                    "exchange_outage_id": ex.incident.last.outage_id if ex.incident else None,
                })
        return json_response(rows)
