"""A protocol server on loopback, run in its own thread and event loop, that tests drive from outside.

Each chain family's fake node (``tests/nodes/*_node.py``) is an aiohttp application that speaks the
documented protocol of that chain's nodes over real HTTP and websockets; the connector under test talks
to it exactly as it would to a public endpoint. Tests call the node's methods from their own thread;
:meth:`NodeServer.call` runs them on the server's loop so the ledger is only ever touched there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class NodeServer:
    """Use as a context manager; ``url`` is the HTTP address, ``ws_url`` the websocket one (same port)."""

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> Any:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake node did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the server's loop (coroutines are awaited) and return its result."""
        async def run() -> T:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                return await result  # type: ignore[no-any-return]
            return result

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return future.result(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = self.loop.create_future()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        try:
            await self._stop
        finally:
            await runner.cleanup()


class WebSocketClients:
    """The websockets currently open on a fake node, to push frames to all of them."""

    def __init__(self) -> None:
        self.open: set[web.WebSocketResponse] = set()
        self.connections = 0

    async def broadcast(self, frames: list[str]) -> None:
        for ws in list(self.open):
            for frame in frames:
                if ws.closed:
                    break
                try:
                    await ws.send_str(frame)
                except (ConnectionError, RuntimeError):
                    self.open.discard(ws)

    async def close_all(self) -> None:
        for ws in list(self.open):
            await ws.close()
        self.open.clear()
