"""JSON-RPC 2.0 over one websocket: calls matched to replies by id, subscriptions as queues.

Frames that are not JSON-RPC are handed to ``on_bad_frame`` with the raw text and a reason (the connector
dead-letters them) and never stop the reader. When the socket dies every pending call fails and every
subscription queue receives :data:`CONNECTION_LOST`, so the caller reconnects and backfills: a node
never replays what it sent while we were away.

A frame larger than ``max_frame_bytes`` makes the websockets library close the connection (code 1009)
without handing us the frame; we report that to ``on_bad_frame`` with the calls that were waiting, so the
loss is visible on the dead-letter topic, and the caller reconnects and reads the blocks again by number.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

CONNECTION_LOST: Any = object()
BadFrameHandler = Callable[[str, str], None]
MESSAGE_TOO_BIG = 1009

_RATE_LIMIT_CODES = {-32005, -32029, 429}
_RATE_LIMIT_WORDS = ("rate limit", "too many requests", "exceeded the quota", "request limit", "capacity exceeded")
_RANGE_WORDS = (
    "limit exceeded", "query returned more than", "too many results", "block range", "range is too large",
    "response size exceeded", "exceed maximum block range", "query timeout exceeded", "log response size",
)


class RpcError(RuntimeError):
    """The node answered a call with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: node error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message

    def _says(self, words: tuple[str, ...]) -> bool:
        text = self.message.lower()
        return any(w in text for w in words)

    @property
    def rate_limited(self) -> bool:
        """The node (or provider) asks us to slow down: back off and call again.

        -32005 is used by providers both for rate limits and for oversized ``eth_getLogs`` ranges; the
        message tells them apart, and a bare -32005 "limit exceeded" is read as a range problem.
        """
        if self._says(_RATE_LIMIT_WORDS) or self.code in _RATE_LIMIT_CODES - {-32005}:
            return True
        return self.code == -32005 and not self._says(_RANGE_WORDS)

    @property
    def range_too_large(self) -> bool:
        """An ``eth_getLogs`` range returned too much: ask again for a smaller range."""
        return self._says(_RANGE_WORDS) or (self.code == -32005 and not self._says(_RATE_LIMIT_WORDS))


class RpcTimeout(RpcError):
    """A call got no reply within the call timeout."""

    def __init__(self, method: str, seconds: float) -> None:
        super().__init__(method, -1, f"no reply within {seconds:g} s")


def retry_reason(exc: BaseException) -> str | None:
    """Why the same call is worth making again after a wait (the retry metric's reason), None when not: a
    timeout or a rate limit is, a wrong request is not, and a lost connection is the caller's to reconnect."""
    if isinstance(exc, RpcTimeout):
        return "timeout"
    if isinstance(exc, RpcError) and exc.rate_limited:
        return "rate_limited"
    return None


class RpcConnectionLost(ConnectionError):
    """The websocket closed while a call or subscription was waiting, or could not be opened."""


class NodeRefused(RpcConnectionLost):
    """The websocket handshake was refused with an HTTP status (429 means: rate limited)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url} refused the websocket with HTTP {status}")
        self.status = status


@dataclass(slots=True)
class _Pending:
    method: str
    params: list[Any]
    future: asyncio.Future[Any]
    subscription: asyncio.Queue[Any] | None = field(default=None)


class JsonRpcSocket:
    """One websocket connection to a node; use ``async with``."""

    def __init__(
        self,
        url: str,
        on_bad_frame: BadFrameHandler | None = None,
        call_timeout: float = 30.0,
        max_frame_bytes: int = 64 * 1024 * 1024,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.on_bad_frame = on_bad_frame or (lambda raw, reason: None)
        self.call_timeout = call_timeout
        self.max_frame_bytes = max_frame_bytes
        self.open_timeout = open_timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._abandoned: deque[int] = deque(maxlen=4096)
        """Ids of calls we stopped waiting for (timeout, cancellation): their late replies are not errors."""
        self._subs: dict[str, asyncio.Queue[Any]] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""

    async def __aenter__(self) -> JsonRpcSocket:
        try:
            self._ws = await connect(
                self.url, max_size=self.max_frame_bytes, open_timeout=self.open_timeout, ping_interval=20,
                ping_timeout=20, close_timeout=5,
            )
        except InvalidStatus as exc:
            raise NodeRefused(self.url, exc.response.status_code) from None
        except (WebSocketException, TimeoutError) as exc:
            raise RpcConnectionLost(f"cannot open {self.url}: {exc or type(exc).__name__}") from None
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
        return await self._call(method, params or [], None)

    async def _call(self, method: str, params: list[Any], queue: asyncio.Queue[Any] | None) -> Any:
        if self._ws is None or self.closed.is_set():
            raise RpcConnectionLost(f"{method}: not connected to {self.url} ({self.close_reason or 'closed'})")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(method, params, future, queue)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            await self._ws.send(orjson.dumps(message).decode())
            return await asyncio.wait_for(future, self.call_timeout)
        except TimeoutError:
            raise RpcTimeout(method, self.call_timeout) from None
        except ConnectionClosed as exc:
            raise RpcConnectionLost(f"{method}: connection closed: {exc}") from None
        finally:
            if future.cancelled() or not future.done():  # wait_for cancels it on timeout and on our cancellation
                self._abandoned.append(request_id)
            self._pending.pop(request_id, None)

    async def subscribe(self, kind: str, *params: Any) -> asyncio.Queue[Any]:
        """Subscribe; the queue is registered as soon as the reply arrives, so no early notification is lost."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        sub_id = await self._call("eth_subscribe", [kind, *params], queue)
        if not isinstance(sub_id, str):
            raise RpcError("eth_subscribe", -1, f"unexpected subscription id {sub_id!r}")
        return queue

    def _lost(self, reason: str) -> None:
        self.close_reason = reason
        self.closed.set()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(RpcConnectionLost(f"{pending.method}: {reason}"))
        for queue in self._subs.values():
            queue.put_nowait(CONNECTION_LOST)

    async def _read_loop(self) -> None:
        assert self._ws is not None
        reason = f"connection to {self.url} lost"
        try:
            async for raw in self._ws:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                self._dispatch(text)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == MESSAGE_TOO_BIG:
                reason = f"node sent a frame over {self.max_frame_bytes} bytes ({exc.sent.reason})"
                waiting = [{"method": p.method, "params": p.params} for p in self._pending.values()]
                self.on_bad_frame(orjson.dumps({"waiting_calls": waiting}).decode(), reason)
            else:
                reason = f"connection to {self.url} closed: {exc}"
        finally:
            self._lost(reason)

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
            self._notification(text, message.get("params"))
            return
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None:
            if request_id not in self._abandoned:  # a late reply to a call we gave up on is expected
                self.on_bad_frame(text, "reply to no pending request")
            return
        if pending.future.done():
            return
        error = message.get("error")
        if error is not None:
            code = error.get("code", -1) if isinstance(error, dict) else -1
            text_msg = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            pending.future.set_exception(
                RpcError(pending.method, int(code) if isinstance(code, int) else -1, str(text_msg))
            )
        elif "result" in message:
            result = message["result"]
            if pending.subscription is not None and isinstance(result, str):
                self._subs[result] = pending.subscription
            pending.future.set_result(result)
        else:
            self.on_bad_frame(text, "reply with neither result nor error")
            pending.future.set_exception(RpcError(pending.method, -1, "reply with neither result nor error"))

    def _notification(self, text: str, params: Any) -> None:
        if not isinstance(params, dict) or "subscription" not in params or "result" not in params:
            self.on_bad_frame(text, "eth_subscription frame without subscription/result")
            return
        queue = self._subs.get(params["subscription"]) if isinstance(params["subscription"], str) else None
        if queue is None:
            self.on_bad_frame(text, "notification for an unknown subscription")
            return
        queue.put_nowait(params["result"])
