"""JSON-RPC 2.0 over one websocket: calls matched to replies by id, subscriptions as queues.

Frames that are not JSON-RPC are handed to ``on_bad_frame`` with the raw text and a reason (the connector
dead-letters them) and never stop the reader. When the socket dies every pending call fails and every
subscription queue receives :data:`CONNECTION_LOST`, so the caller reconnects and backfills: a node
never replays what it sent while we were away.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CONNECTION_LOST: Any = object()
BadFrameHandler = Callable[[str, str], None]


class RpcError(RuntimeError):
    """The node answered a call with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: node error {code}: {message}")
        self.method = method
        self.code = code


class RpcConnectionLost(ConnectionError):
    """The websocket closed while a call or subscription was waiting."""


class JsonRpcSocket:
    """One websocket connection to a node; use ``async with``."""

    def __init__(
        self,
        url: str,
        on_bad_frame: BadFrameHandler | None = None,
        call_timeout: float = 30.0,
        max_frame_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.on_bad_frame = on_bad_frame or (lambda raw, reason: None)
        self.call_timeout = call_timeout
        self.max_frame_bytes = max_frame_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subs: dict[str, asyncio.Queue[Any]] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def __aenter__(self) -> JsonRpcSocket:
        self._ws = await connect(self.url, max_size=self.max_frame_bytes, open_timeout=10, ping_interval=20)
        self._reader = asyncio.create_task(self._read_loop(), name=f"rpc-reader {self.url}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        if self._ws is None or self.closed.is_set():
            raise RpcConnectionLost(f"{method}: not connected to {self.url}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or []}
        try:
            await self._ws.send(orjson.dumps(message).decode())
            return await asyncio.wait_for(future, self.call_timeout)
        except ConnectionClosed as exc:
            raise RpcConnectionLost(f"{method}: connection closed: {exc}") from None
        finally:
            self._pending.pop(request_id, None)

    async def subscribe(self, kind: str, *params: Any) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        sub_id = await self.call("eth_subscribe", [kind, *params])
        if not isinstance(sub_id, str):
            raise RpcError("eth_subscribe", -1, f"unexpected subscription id {sub_id!r}")
        self._subs[sub_id] = queue
        return queue

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                self._dispatch(text)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(RpcConnectionLost(f"connection to {self.url} lost"))
            for queue in self._subs.values():
                queue.put_nowait(CONNECTION_LOST)

    def _dispatch(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.on_bad_frame(text, f"not JSON: {exc}")
            return
        if not isinstance(message, dict):
            self.on_bad_frame(text, "JSON-RPC frame is not an object")
            return
        if message.get("method") == "eth_subscription":
            params = message.get("params")
            if not isinstance(params, dict) or "subscription" not in params or "result" not in params:
                self.on_bad_frame(text, "eth_subscription frame without subscription/result")
                return
            queue = self._subs.get(params["subscription"])
            if queue is None:
                self.on_bad_frame(text, "notification for an unknown subscription")
                return
            queue.put_nowait(params["result"])
            return
        request_id = message.get("id")
        future = self._pending.get(request_id) if isinstance(request_id, int) else None
        if future is None:
            self.on_bad_frame(text, "reply to no pending request")
            return
        if future.done():
            return
        error = message.get("error")
        if error is not None:
            code = error.get("code", -1) if isinstance(error, dict) else -1
            text_msg = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            future.set_exception(RpcError("call", int(code) if isinstance(code, int) else -1, str(text_msg)))
        elif "result" in message:
            future.set_result(message["result"])
        else:
            self.on_bad_frame(text, "reply with neither result nor error")
            future.set_exception(RpcError("call", -1, "reply with neither result nor error"))
