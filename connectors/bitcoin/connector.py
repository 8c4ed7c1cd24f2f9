"""Follow one Bitcoin network through an Esplora endpoint and publish every block once, in order.

A session: check the genesis hash (when configured), open the mempool.space websocket when one is
configured (``want blocks``), ask the tip height, then read every height from the checkpoint up to
``tip - confirmations`` (height → hash, then block and transaction pages by hash) and publish it. After
that, each pushed block (or ``head_poll_s`` without one) triggers the same read-forward: pushes are
triggers, heights read from the checkpoint are the truth, so reconnects and restarts lose nothing.

A block whose ``previousblockhash`` is not the last published block is a reorg: the orphaned blocks'
events are retracted (``removed=True``) and the canonical blocks are read from the common ancestor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

import orjson

from connectors.bitcoin.blocks import parse_block
from connectors.bitcoin.config import BitcoinConfig
from connectors.bitcoin.esplora import EsploraApi
from connectors.bitcoin.stream import BlockStream
from connectors.feed import ChainFeed
from connectors.feed_loop import BlockUnavailable
from connectors.linked_writer import LinkedBlock, MalformedBlock

log = logging.getLogger(__name__)


class BitcoinConnector(ChainFeed):
    config: BitcoinConfig

    async def session(self, url: str) -> None:
        async with self.http(url) as http, contextlib.AsyncExitStack() as stack:
            api = EsploraApi(http, self.config.txs_per_page, self.config.page_concurrency)
            if self.config.genesis_hash is not None:
                await self.check_genesis(await api.block_hash(0) or "none")
            pushes: asyncio.Queue[Any] | None = None
            if self.ws_url is not None:
                pushes = (await stack.enter_async_context(BlockStream(self.ws_url, self.bad_payload))).heights
            self.connected = True
            tip = await api.tip_height()
            self.set_node_head(tip)
            self.start_at(tip)
            log.info("%s: %s at height %d, publishing from %d", self.config.chain, url, tip, self.writer.next_number)
            while not self.stopping.is_set():
                await self.publish_forward(tip - self.config.confirmations, partial(self._read, api), api.block_hash)
                await self.wait_for_push(pushes, "block")
                tip = await api.tip_height()
                self.set_node_head(tip)

    async def _read(self, api: EsploraApi, height: int) -> LinkedBlock:
        block_hash = await api.block_hash(height)
        if block_hash is None:
            raise BlockUnavailable(f"{self.config.chain}: endpoint has no block at height {height} yet")
        block = await api.block(block_hash)
        count = block.get("tx_count") if isinstance(block, dict) else None
        if not isinstance(count, int) or count < 1:
            self.writer.dead_letter(orjson.dumps(block).decode()[:100_000], f"block {block_hash}: no usable tx_count",
                                    "node_data")
            raise MalformedBlock(f"block {block_hash}: no usable tx_count ({count!r})")
        txs = await api.block_txs(block_hash, count)
        try:
            return parse_block(self.config.chain, block, txs, self.labels.registry, self.clock(), self.rotation)
        except MalformedBlock as exc:
            self.writer.dead_letter(orjson.dumps(block).decode()[:100_000], str(exc), "node_data")
            raise
