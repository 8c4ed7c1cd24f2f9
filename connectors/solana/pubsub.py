"""Solana's websocket pubsub: subscribe to slot or root notifications, as a trigger to read blocks.

Notifications only say "a new slot exists"; blocks are read over HTTP by slot from the checkpoint, so a
dropped or late notification (solana-labs/solana#18587, #35489) costs latency, never data. Subscription ids
are integers and notifications arrive as ``{"method": "<kind>Notification", "params": {"subscription": id,
"result": …}}``. Frames that are not such JSON-RPC messages go to ``on_bad_frame`` (dead letters) and never
stop the reader. When the socket closes, each subscription queue receives :data:`CONNECTION_LOST`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from connectors.feed_loop import ConnectionLost, NodeError

CONNECTION_LOST: Any = object()
MESSAGE_TOO_BIG = 1009
BadFrameHandler = Callable[[str, str], None]


class SolanaPubsub:
    """One pubsub websocket; use ``async with``."""

    def __init__(self, url: str, on_bad_frame: BadFrameHandler, max_frame_bytes: int = 16 * 1024 * 1024,
                 open_timeout: float = 10.0, call_timeout: float = 30.0) -> None:
        self.url = url
        self.on_bad_frame = on_bad_frame
        self.max_frame_bytes = max_frame_bytes
        self.open_timeout = open_timeout
        self.call_timeout = call_timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], asyncio.Queue[Any]]] = {}
        self._subs: dict[int, asyncio.Queue[Any]] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.close_reason = ""

    async def __aenter__(self) -> SolanaPubsub:
        try:
            self._ws = await connect(self.url, max_size=self.max_frame_bytes, open_timeout=self.open_timeout,
                                     ping_interval=20, ping_timeout=20, close_timeout=5)
        except InvalidStatus as exc:
            raise ConnectionLost(f"{self.url} refused the websocket with HTTP {exc.response.status_code}") from None
        except (WebSocketException, TimeoutError) as exc:
            raise ConnectionLost(f"cannot open {self.url}: {exc or type(exc).__name__}") from None
        self._reader = asyncio.create_task(self._read_loop(), name=f"pubsub reader {self.url}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def subscribe(self, method: str, params: list[Any] | None = None) -> asyncio.Queue[Any]:
        """Subscribe; notifications (their ``result``) arrive in the returned queue."""
        if self._ws is None:
            raise ConnectionLost(f"{method}: not connected to {self.url}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pending[request_id] = (future, queue)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or []}
        try:
            await self._ws.send(orjson.dumps(message).decode())
            await asyncio.wait_for(future, self.call_timeout)
        except TimeoutError:
            raise ConnectionLost(f"{method}: no reply from {self.url} within {self.call_timeout} s") from None
        except ConnectionClosed as exc:
            raise ConnectionLost(f"{method}: connection closed: {exc}") from None
        finally:
            self._pending.pop(request_id, None)
        return queue

    async def _read_loop(self) -> None:
        assert self._ws is not None
        reason = f"connection to {self.url} lost"
        try:
            async for raw in self._ws:
                self._dispatch(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == MESSAGE_TOO_BIG:
                reason = f"node sent a frame over {self.max_frame_bytes} bytes"
                self.on_bad_frame("", reason)
            else:
                reason = f"connection to {self.url} closed: {exc}"
        finally:
            self.close_reason = reason
            for future, _ in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionLost(reason))
            for queue in self._subs.values():
                queue.put_nowait(CONNECTION_LOST)

    def _dispatch(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.on_bad_frame(text, f"pubsub frame is not JSON: {exc}")
            return
        if not isinstance(message, dict):
            self.on_bad_frame(text, "pubsub frame is not an object")
            return
        method = message.get("method")
        if isinstance(method, str) and method.endswith("Notification"):
            params = message.get("params")
            sub = params.get("subscription") if isinstance(params, dict) else None
            queue = self._subs.get(sub) if isinstance(sub, int) else None
            if queue is None or not isinstance(params, dict) or "result" not in params:
                self.on_bad_frame(text, "notification for an unknown subscription or without result")
                return
            queue.put_nowait(params["result"])
            return
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None:
            self.on_bad_frame(text, "pubsub reply to no pending request")
            return
        future, queue = pending
        if future.done():
            return
        if "error" in message:
            future.set_exception(NodeError(f"subscription refused: {message['error']}"))
        elif isinstance(message.get("result"), int) and not isinstance(message.get("result"), bool):
            self._subs[message["result"]] = queue
            future.set_result(message["result"])
        else:
            self.on_bad_frame(text, "subscription reply without an integer id")
            future.set_exception(NodeError(f"unexpected subscription reply: {text[:200]}"))
