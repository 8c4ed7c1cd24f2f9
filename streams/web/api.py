"""The operator endpoints as plain aiohttp handlers: page, JSON API, server-sent events, health, metrics.

They are plain aiohttp handlers (Faust's web driver is aiohttp and its views may return aiohttp
responses), so the worker mounts them with ``@app.page`` and the unit tests mount the same handlers on a
bare aiohttp application, without Kafka.

Every handler runs on the worker's event loop, like the detect agent, so reading the detector needs no
lock: a handler never awaits in the middle of reading it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from streams.observability import CONTENT_TYPE, WorkerMetrics
from streams.web.board import MAX_INCIDENTS, LiveBoard
from streams.web.health import HealthChecks
from streams.web.openapi import openapi_document
from streams.web.page import PAGE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_STREAMS = 100
"""Open event streams at once; more are refused with 503 rather than slowing the detector down."""


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class OperatorApi:
    def __init__(self, board: LiveBoard, health: HealthChecks, metrics: WorkerMetrics,
                 push_every_s: float = 1.0, keepalive_s: float = 15.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.board = board
        self.health = health
        self.metrics = metrics
        self.push_every_s = push_every_s
        self.keepalive_s = keepalive_s
        self.wall = wall
        self.streams = 0
        self._cached: tuple[object, bytes] | None = None

    def routes(self) -> dict[str, Handler]:
        return {
            "/ui": self.page,
            "/api/status": self.status,
            "/api/events": self.events,
            "/api/outages": self.outages,
            "/api/openapi.json": self.openapi,
            "/health/live": self.live,
            "/health/ready": self.ready,
            "/metrics": self.prometheus,
        }

    def _fingerprint(self) -> object:
        """Changes whenever the picture may have: a detector/incident change or a chain state change."""
        return self.board.version, tuple((c, v.state) for c, v in self.board.monitor.chains.items())

    def status_bytes(self) -> bytes:
        """The /api/status body, computed once per change however many streams are open."""
        key = self._fingerprint()
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, orjson.dumps(self.board.status(self.wall())))
        return self._cached[1]

    async def page(self, request: web.Request) -> web.Response:
        """The live status page."""
        return web.Response(text=PAGE, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def status(self, request: web.Request) -> web.Response:
        """Exchanges x chains, chain states and recent incidents."""
        return web.Response(body=self.status_bytes(), content_type="application/json")

    async def outages(self, request: web.Request) -> web.Response:
        """Recent incidents in memory; ?exchange=&state=&limit=."""
        try:
            limit = int(request.query.get("limit", "100"))
            if limit < 1:
                raise ValueError
        except ValueError:
            return json_response({"error": "limit must be a positive integer"}, status=400)
        state = request.query.get("state")
        if state is not None and state not in ("suspected", "open", "degraded", "resolved"):
            return json_response({"error": "state must be one of suspected, open, degraded, resolved"}, status=400)
        rows = self.board.incident_rows(request.query.get("exchange"), state, min(limit, MAX_INCIDENTS))
        return json_response(rows)

    async def openapi(self, request: web.Request) -> web.Response:
        """OpenAPI description of these endpoints."""
        return json_response(openapi_document())

    async def live(self, request: web.Request) -> web.Response:
        """Liveness."""
        code, body = self.health.live()
        return json_response(body, status=code)

    async def ready(self, request: web.Request) -> web.Response:
        """Readiness, with a reason per check."""
        code, body = await self.health.ready()
        return json_response(body, status=code)

    async def prometheus(self, request: web.Request) -> web.Response:
        """Prometheus text format."""
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the status whenever it changes (at most every ``push_every_s``)."""
        if self.streams >= MAX_STREAMS:
            return json_response({"error": f"more than {MAX_STREAMS} open event streams"}, status=503)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        self.streams += 1
        try:
            await response.write(b"retry: 2000\n\n")
            sent: object = None
            last_write = time.monotonic()
            while True:
                key = self._fingerprint()
                if key != sent:
                    await response.write(b"event: status\ndata: " + self.status_bytes() + b"\n\n")
                    sent, last_write = key, time.monotonic()
                elif time.monotonic() - last_write >= self.keepalive_s:
                    await response.write(b": keepalive\n\n")  # keeps proxies from closing an idle stream
                    last_write = time.monotonic()
                await asyncio.sleep(self.push_every_s)
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self.streams -= 1
        return response
