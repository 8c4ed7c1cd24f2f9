"""mempool.space's websocket as a push of new block heights (``{"action": "want", "data": ["blocks"]}``).

After the ``want``, the server sends ``{"blocks": [...]}`` (recent blocks) and then ``{"block": {...}}`` for
each new block, among other keys we ignore (``mempoolInfo``, ``conversions``, ``da`` …: the same socket
carries live statistics). Only the height is used, as a trigger: blocks are always read by height from
the checkpoint over REST, so a missed push costs latency, never data. Frames that are not JSON objects go
to ``on_bad_frame`` (dead letters). Plain Esplora servers have no websocket; the connector then polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from connectors.feed_loop import ConnectionLost

CONNECTION_LOST: Any = object()
WANT_BLOCKS = {"action": "want", "data": ["blocks"]}


def _height(block: Any) -> int | None:
    height = block.get("height") if isinstance(block, dict) else None
    return height if isinstance(height, int) and not isinstance(height, bool) and height >= 0 else None


class BlockStream:
    """One websocket to a mempool.space-style server; ``heights`` receives pushed block heights."""

    def __init__(self, url: str, on_bad_frame: Callable[[str, str], None], max_frame_bytes: int = 16 * 1024 * 1024,
                 open_timeout: float = 10.0) -> None:
        self.url = url
        self.on_bad_frame = on_bad_frame
        self.max_frame_bytes = max_frame_bytes
        self.open_timeout = open_timeout
        self.heights: asyncio.Queue[Any] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BlockStream:
        try:
            self._ws = await connect(self.url, max_size=self.max_frame_bytes, open_timeout=self.open_timeout,
                                     ping_interval=20, ping_timeout=20, close_timeout=5)
            await self._ws.send(orjson.dumps(WANT_BLOCKS).decode())
        except InvalidStatus as exc:
            raise ConnectionLost(f"{self.url} refused the websocket with HTTP {exc.response.status_code}") from None
        except (WebSocketException, TimeoutError) as exc:
            raise ConnectionLost(f"cannot open {self.url}: {exc or type(exc).__name__}") from None
        self._reader = asyncio.create_task(self._read_loop(), name=f"block stream {self.url}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                self._dispatch(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == 1009:
                self.on_bad_frame("", f"server sent a frame over {self.max_frame_bytes} bytes")
        finally:
            self.heights.put_nowait(CONNECTION_LOST)

    def _dispatch(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.on_bad_frame(text, f"websocket frame is not JSON: {exc}")
            return
        if not isinstance(message, dict):
            self.on_bad_frame(text, "websocket frame is not an object")
            return
        heights = []
        if "block" in message:
            heights.append(_height(message["block"]))
            if heights[-1] is None:
                self.on_bad_frame(text[:100_000], "'block' push without a height")
        blocks = message.get("blocks")
        if isinstance(blocks, list):
            heights += [_height(b) for b in blocks]
        known = [h for h in heights if h is not None]
        if known:
            self.heights.put_nowait(max(known))
