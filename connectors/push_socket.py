"""A websocket on which a node pushes JSON objects: the trigger feeds of the Bitcoin and Solana connectors.

What such a socket needs whatever the family: open it with a bounded frame size and time, turn a refused or
failed handshake into :class:`~connectors.feed_loop.ConnectionLost` (the session reconnects), read frames in
a task, send frames that are not JSON objects to ``on_bad_frame`` (dead letters) without stopping, and say
why it closed. A family's socket only says what to send once open and what a JSON object means.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Self

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from connectors.feed_loop import ConnectionLost

CONNECTION_LOST: Any = object()
"""Put in a push queue when its socket closed: the waiting session ends and reconnects."""
MESSAGE_TOO_BIG = 1009
BadFrameHandler = Callable[[str, str], None]


class PushSocket:
    """One websocket of pushed JSON objects; use ``async with``."""

    FRAME_KIND: ClassVar[str] = "websocket"
    """How bad-frame reasons name a frame of this socket."""
    PEER: ClassVar[str] = "server"
    """How bad-frame reasons name the other end."""

    def __init__(self, url: str, on_bad_frame: BadFrameHandler, max_frame_bytes: int = 16 * 1024 * 1024,
                 open_timeout: float = 10.0) -> None:
        self.url = url
        self.on_bad_frame = on_bad_frame
        self.max_frame_bytes = max_frame_bytes
        self.open_timeout = open_timeout
        self.close_reason = ""
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        try:
            self._ws = await connect(self.url, max_size=self.max_frame_bytes, open_timeout=self.open_timeout,
                                     ping_interval=20, ping_timeout=20, close_timeout=5)
            await self.opened(self._ws)
        except InvalidStatus as exc:
            raise ConnectionLost(f"{self.url} refused the websocket with HTTP {exc.response.status_code}") from None
        except (WebSocketException, TimeoutError) as exc:
            raise ConnectionLost(f"cannot open {self.url}: {exc or type(exc).__name__}") from None
        self._reader = asyncio.create_task(self._read_loop(), name=f"{self.FRAME_KIND} reader {self.url}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def send(self, message: Any) -> None:
        if self._ws is None:
            raise ConnectionLost(f"not connected to {self.url}")
        await self._ws.send(orjson.dumps(message).decode())

    async def opened(self, ws: ClientConnection) -> None:
        """Called once the handshake succeeded, before any frame is read (a subscription request goes here)."""

    def dispatch(self, text: str, message: dict[str, Any]) -> None:
        """One pushed JSON object (``text`` is its raw frame, for dead letters)."""
        raise NotImplementedError

    def closed(self, reason: str) -> None:
        """Called once when the socket closed, for whatever reason: wake whoever waits for pushes."""

    async def _read_loop(self) -> None:
        assert self._ws is not None
        reason = f"connection to {self.url} lost"
        try:
            async for raw in self._ws:
                self._receive(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == MESSAGE_TOO_BIG:
                reason = f"{self.PEER} sent a frame over {self.max_frame_bytes} bytes"
                self.on_bad_frame("", reason)
            else:
                reason = f"connection to {self.url} closed: {exc}"
        finally:
            self.close_reason = reason
            self.closed(reason)

    def _receive(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.on_bad_frame(text, f"{self.FRAME_KIND} frame is not JSON: {exc}")
            return
        if not isinstance(message, dict):
            self.on_bad_frame(text, f"{self.FRAME_KIND} frame is not an object")
            return
        self.dispatch(text, message)
