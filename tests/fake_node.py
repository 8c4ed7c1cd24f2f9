"""A websocket JSON-RPC "node" on loopback that relays to anvil and misbehaves on request.

It is a real ``websockets`` server: every client connection gets its own upstream connection to anvil,
frames are relayed both ways, and the test switches on faults: garbage frames after notifications,
unknown fields in replies, one oversized frame, rate-limit errors, ``eth_getLogs`` range limits, or a
frozen head (a node that stopped importing blocks but still answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


@dataclass
class Faults:
    garbage_after_notification: bool = False
    """After each newHeads notification: a non-JSON frame, a JSON array, a notification for an unknown
    subscription and a reply to a request nobody made."""
    unknown_fields: bool = False
    """Extra, unknown fields in every reply object and in block objects."""
    oversized_once: int = 0
    """Send one frame of this many bytes (then 0 again) after the next notification."""
    rate_limit_every: int = 0
    """Answer every n-th request with HTTP-429-like JSON-RPC error -32005 instead of relaying it."""
    max_log_range: int = 0
    """Refuse eth_getLogs ranges wider than this many blocks with -32005 "limit exceeded"."""
    frozen_head: int | None = None
    """Report this as eth_blockNumber and swallow newHeads notifications."""
    injected: list[str] = field(default_factory=list)


class FakeNode:
    """Use as a context manager; ``url`` is its websocket address."""

    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = upstream
        self.faults = faults or Faults()
        self.port = 0
        self.requests = 0
        self.refused_ranges = 0
        self.rate_limited = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name="fake-node", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeNode:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._client, "127.0.0.1", 0, max_size=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    async def _client(self, ws: ServerConnection) -> None:
        self.connections += 1
        async with connect(self.upstream, max_size=None) as up:
            down = asyncio.create_task(self._downstream(up, ws))
            try:
                async for raw in ws:
                    reply = self._intercept(orjson.loads(raw))
                    if reply is not None:
                        await ws.send(orjson.dumps(reply).decode())
                    else:
                        await up.send(raw)
            except ConnectionClosed:
                pass
            finally:
                down.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await down

    def _intercept(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """A reply made here instead of relaying the request, or None to relay it."""
        self.requests += 1
        f = self.faults
        rid, method, params = request.get("id"), request.get("method"), request.get("params") or []
        if f.rate_limit_every and self.requests % f.rate_limit_every == 0 and method != "eth_subscribe":
            self.rate_limited += 1
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32005, "message": "rate limit: too many requests"}}
        if f.max_log_range and method == "eth_getLogs" and params and "fromBlock" in params[0]:
            width = int(params[0]["toBlock"], 16) - int(params[0]["fromBlock"], 16) + 1
            if width > f.max_log_range:
                self.refused_ranges += 1
                message = f"query returned more than 10000 results ({width} blocks)"
                return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32005, "message": message}}
        if f.frozen_head is not None and method == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": rid, "result": hex(f.frozen_head)}
        return None

    async def _downstream(self, up: Any, ws: ServerConnection) -> None:
        f = self.faults
        async for raw in up:
            message = orjson.loads(raw)
            is_note = isinstance(message, dict) and message.get("method") == "eth_subscription"
            if is_note and f.frozen_head is not None:
                continue
            if f.unknown_fields and isinstance(message, dict):
                message["x-node-extra"] = {"nested": [1, 2, 3], "big": 10**30}
                result = message.get("result")
                if isinstance(result, dict):
                    result["xUnknownField"] = "0x" + "ab" * 40
                raw = json.dumps(message)  # the standard library writes integers of any size
            await ws.send(raw)
            if is_note and f.garbage_after_notification:
                for junk in ("{not json", "[1, 2, 3]",
                             '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xdead","result":{}}}',
                             '{"jsonrpc":"2.0","id":987654321,"result":"0x1"}'):
                    f.injected.append(junk)
                    await ws.send(junk)
            if is_note and f.oversized_once:
                size, f.oversized_once = f.oversized_once, 0
                f.injected.append(f"oversized {size}")
                await ws.send('{"jsonrpc":"2.0","method":"eth_subscription","params":{"result":"' + "x" * size + '"}}')

