"""A protocol server on loopback, run in its own thread and event loop, that tests drive from outside.

Each chain family's fake node (``tests/nodes/*_node.py``) is an aiohttp application that speaks the
documented protocol of that chain's nodes over real HTTP and websockets; the connector under test talks
to it exactly as it would to a public endpoint. Tests call the node's methods from their own thread;
:meth:`NodeServer.call` runs them on the server's loop so the ledger is only ever touched there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

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


def expected_by_tx(rows: Iterable[Sequence[Any]]) -> dict[str, list[tuple[Any, ...]]]:
    """A fixture's hand-written oracle rows ``[txid, …]``, grouped by the fixture transaction they belong to."""
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(tuple(row[1:]))
    return grouped


@dataclass
class NodeFaults:
    """Faults every fixture chain node can inject; a family's node adds its own in a subclass."""

    garbage_body_every: int = 0
    """Every n-th answer of the node's busiest read is an HTML error page with status 200."""
    malformed_tx_every: int = 0
    """Every n-th block carries a transaction the documented shape does not allow."""
    rate_limit_every: int = 0
    """Every n-th request gets HTTP 429."""
    injected: list[str] = field(default_factory=list)
    """What was injected, so a test can ask for one dead letter per injection."""


class FixtureChainNode(NodeServer):
    """A node whose best chain the test makes: numbered blocks of copied fixture transactions, with an oracle.

    :meth:`produce` adds blocks at ``tip + 1`` and :meth:`reorg` replaces the newest ones (a new salt makes new
    hashes). Each block copied from the fixture carries the fixture's expected transfers into :attr:`expected`,
    so what a correct connector publishes is known without the connector. Subclasses make one block
    (:meth:`make_block`) and serve the family's protocol.
    """

    HASH_KEY: ClassVar[str]
    """The key of a block's hash in ``entry["block"]``."""

    def __init__(self, first: int, rows: Iterable[Sequence[Any]], faults: NodeFaults) -> None:
        super().__init__()
        self.first = first
        self.faults = faults
        self.chain: list[dict[str, Any]] = []
        """Best chain, from ``first``: each ``{"block": …}`` plus what else the family serves for it."""
        self.expected: list[tuple[Any, ...]] = []
        self.reorgs = 0
        self.salt = 0
        self._rows = expected_by_tx(rows)

    # -- the ledger ------------------------------------------------------------------------------------
    @property
    def tip(self) -> int:
        return self.first + len(self.chain) - 1

    def canonical_hashes(self) -> set[str]:
        return {str(entry["block"][self.HASH_KEY]) for entry in self.chain}

    def withdrawals(self) -> set[tuple[str, str, int]]:
        """(block_hash, txid, index) of okx withdrawals on the best chain."""
        best = self.canonical_hashes()
        return {(r[0], r[1], r[2]) for r in self.expected if r[0] in best and r[8] == "okx" and r[9] == "withdrawal"}

    def produce(self, count: int) -> int:
        """Add ``count`` blocks (thread-safe); returns the tip."""
        return self.call(self._produce, count)

    def reorg(self, depth: int) -> int:
        """Replace the newest ``depth`` blocks by ``depth + 1`` others (thread-safe); returns the tip."""
        return self.call(self._reorg, depth)

    async def _produce(self, count: int) -> int:
        for _ in range(count):
            entry = self.make_block(self.tip + 1)
            self.chain.append(entry)
            await self.added(entry)
        return self.tip

    async def _reorg(self, depth: int) -> int:
        del self.chain[len(self.chain) - depth:]
        self.salt += 1
        self.reorgs += 1
        return await self._produce(depth + 1)

    def make_block(self, number: int) -> dict[str, Any]:
        raise NotImplementedError

    async def added(self, entry: dict[str, Any]) -> None:
        """Called once a block joined the best chain (a family with a push feed announces it here)."""

    def copied(self, block_hash: str, old_txid: str, new_txid: str) -> None:
        """A fixture transaction was copied into a block under a new id: its expected transfers come along."""
        for row in self._rows.get(old_txid, []):
            self.expected.append((block_hash, new_txid, *row))

    # -- the protocol ----------------------------------------------------------------------------------
    def too_many_requests(self, request: web.Request) -> web.Response | None:
        """The family's HTTP 429 answer (None: this request is never limited)."""
        return web.Response(status=429, text="Too Many Requests")

    @web.middleware
    async def count_requests(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Counts requests, and answers every ``rate_limit_every``-th with the family's 429."""
        self.requests += 1
        every = self.faults.rate_limit_every
        refusal = self.too_many_requests(request) if every and self.requests % every == 0 else None
        if refusal is not None:
            return refusal
        response: web.StreamResponse = await handler(request)
        return response

    def garbage_page(self) -> web.Response:
        """An HTML error page with status 200, as proxies in front of nodes send (and count it as injected)."""
        self.faults.injected.append("html")
        return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
