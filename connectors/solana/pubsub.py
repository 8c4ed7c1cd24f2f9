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
from typing import Any

from websockets.exceptions import ConnectionClosed

from connectors.feed_loop import ConnectionLost, NodeError
from connectors.push_socket import CONNECTION_LOST, BadFrameHandler, PushSocket


class SolanaPubsub(PushSocket):
    """One pubsub websocket; use ``async with``."""

    FRAME_KIND = "pubsub"
    PEER = "node"

    def __init__(self, url: str, on_bad_frame: BadFrameHandler, max_frame_bytes: int = 16 * 1024 * 1024,
                 open_timeout: float = 10.0, call_timeout: float = 30.0) -> None:
        super().__init__(url, on_bad_frame, max_frame_bytes, open_timeout)
        self.call_timeout = call_timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], asyncio.Queue[Any]]] = {}
        self._subs: dict[int, asyncio.Queue[Any]] = {}

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
            await self.send(message)
            await asyncio.wait_for(future, self.call_timeout)
        except TimeoutError:
            raise ConnectionLost(f"{method}: no reply from {self.url} within {self.call_timeout} s") from None
        except ConnectionClosed as exc:
            raise ConnectionLost(f"{method}: connection closed: {exc}") from None
        finally:
            self._pending.pop(request_id, None)
        return queue

    def closed(self, reason: str) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(reason))
        for queue in self._subs.values():
            queue.put_nowait(CONNECTION_LOST)

    def dispatch(self, text: str, message: dict[str, Any]) -> None:
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
