"""The Esplora REST calls the Bitcoin connector makes (Blockstream's esplora, mempool.space, electrs HTTP).

- ``GET /blocks/tip/height`` → the tip height (text)
- ``GET /block-height/:height`` → the hash of the block at that height (text; 404 above the tip)
- ``GET /block/:hash`` → the block (``id``, ``height``, ``previousblockhash``, ``timestamp``, ``tx_count``)
- ``GET /block/:hash/txs/:start_index`` → 25 transactions from ``start_index`` (a multiple of 25), each with
  ``vin[].prevout.scriptpubkey_address`` and ``vout[].scriptpubkey_address`` / ``value`` (sats)

Everything after the height lookup is asked by hash, so all parts describe the same block even when a reorg
happens while we read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from connectors.feed_loop import NodeError
from connectors.http_json import JsonHttp, NotFound

HEX = frozenset("0123456789abcdef")


def _block_hash(value: str, what: str) -> str:
    text = value.strip().lower()
    if len(text) != 64 or not set(text) <= HEX:
        raise NodeError(f"{what}: expected a 64-digit block hash, got {value[:100]!r}")
    return text


class EsploraApi:
    """Typed Esplora calls over one HTTP session (its base URL ends before ``/blocks``, e.g. ``…/api``)."""

    def __init__(self, http: JsonHttp, txs_per_page: int = 25, page_concurrency: int = 4) -> None:
        self.http = http
        self.txs_per_page = txs_per_page
        self._pages = asyncio.Semaphore(max(page_concurrency, 1))

    async def tip_height(self) -> int:
        text = await self.http.get_text("/blocks/tip/height")
        if not text.isdigit():
            raise NodeError(f"/blocks/tip/height: expected a height, got {text[:100]!r}")
        return int(text)

    async def block_hash(self, height: int) -> str | None:
        """The hash of the block at ``height`` on the endpoint's best chain; None above its tip."""
        try:
            text = await self.http.get_text(f"/block-height/{height}")
        except NotFound:
            return None
        return _block_hash(text, f"/block-height/{height}")

    async def block(self, block_hash: str) -> Any:
        return await self.http.get_json(f"/block/{block_hash}")

    async def _page(self, block_hash: str, start: int) -> Any:
        async with self._pages:
            return await self.http.get_json(f"/block/{block_hash}/txs/{start}")

    async def block_txs(self, block_hash: str, tx_count: int) -> list[Any]:
        """All ``tx_count`` transactions of a block, in block order, read page by page."""
        starts = range(0, tx_count, self.txs_per_page)
        reads = [asyncio.ensure_future(self._page(block_hash, s)) for s in starts]
        try:
            pages = await asyncio.gather(*reads)
        except BaseException:  # one page failed: stop reading the others before the error propagates
            for read in reads:
                read.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            raise
        txs: list[Any] = []
        for start, page in zip(starts, pages, strict=True):
            if not isinstance(page, list):
                raise NodeError(f"/block/{block_hash}/txs/{start}: expected a list, got {type(page).__name__}")
            txs.extend(page)
        return txs
