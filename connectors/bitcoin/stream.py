"""mempool.space's websocket as a push of new block heights (``{"action": "want", "data": ["blocks"]}``).

After the ``want``, the server sends ``{"blocks": [...]}`` (recent blocks) and then ``{"block": {...}}`` for
each new block, among other keys we ignore (``mempoolInfo``, ``conversions``, ``da`` …: the same socket
carries live statistics). Only the height is used, as a trigger: blocks are always read by height from
the checkpoint over REST, so a missed push costs latency, never data. Frames that are not JSON objects go
to ``on_bad_frame`` (dead letters). Plain Esplora servers have no websocket; the connector then polls.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection

from connectors.push_socket import CONNECTION_LOST, BadFrameHandler, PushSocket

WANT_BLOCKS = {"action": "want", "data": ["blocks"]}


def _height(block: Any) -> int | None:
    height = block.get("height") if isinstance(block, dict) else None
    return height if isinstance(height, int) and not isinstance(height, bool) and height >= 0 else None


class BlockStream(PushSocket):
    """One websocket to a mempool.space-style server; ``heights`` receives pushed block heights."""

    def __init__(self, url: str, on_bad_frame: BadFrameHandler, max_frame_bytes: int = 16 * 1024 * 1024,
                 open_timeout: float = 10.0) -> None:
        super().__init__(url, on_bad_frame, max_frame_bytes, open_timeout)
        self.heights: asyncio.Queue[Any] = asyncio.Queue()

    async def opened(self, ws: ClientConnection) -> None:
        await self.send(WANT_BLOCKS)

    def closed(self, reason: str) -> None:
        self.heights.put_nowait(CONNECTION_LOST)

    def dispatch(self, text: str, message: dict[str, Any]) -> None:
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
