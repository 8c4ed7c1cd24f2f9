"""Follow one Tron network by polling a full node's HTTP API and publish every block once, in order.

Tron has no websocket feed, so a session polls ``getnowblock`` every ``head_poll_s`` and reads every number
from the checkpoint up to ``now - confirmations``: the block (``getblockbynum``: TRX transfers) and its
receipts (``gettransactioninfobyblocknum``: TRC-20 ``Transfer`` logs). Reading by number from the
checkpoint is what makes restarts and endpoint failures lose nothing. A block whose ``parentHash`` is not the
last published block is a fork: the orphaned blocks are retracted and the canonical ones read again.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import orjson

from connectors.feed import ChainFeed
from connectors.feed_loop import BlockUnavailable
from connectors.linked_writer import LinkedBlock, MalformedBlock
from connectors.tron.api import TronApi
from connectors.tron.blocks import labelled_tokens, parse_block
from connectors.tron.config import KNOWN_DECIMALS, TronConfig

log = logging.getLogger(__name__)


class TronConnector(ChainFeed):
    config: TronConfig

    def __init__(self, config: TronConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.decimals: dict[str, int] = dict(KNOWN_DECIMALS)

    async def session(self, url: str) -> None:
        async with self.http(url) as http:
            api = TronApi(http)
            if self.config.genesis_hash is not None:
                await self.check_genesis(await api.block_hash(0) or "none")
            self.connected = True
            first = True
            while not self.stopping.is_set():
                tip = await api.now_block_number()
                self.set_node_head(tip)
                self.start_at(tip)
                if first:
                    log.info("%s: %s at block %d, publishing from %d", self.config.chain, url, tip,
                             self.writer.next_number)
                    first = False
                await self.publish_forward(tip - self.config.confirmations, partial(self._read, api), api.block_hash)
                await self.sleep(self.config.head_poll_s)

    async def _read(self, api: TronApi, number: int) -> LinkedBlock:
        block = await api.block(number)
        if block is None:
            raise BlockUnavailable(f"{self.config.chain}: node has no block {number} yet")
        infos = await api.transaction_info(number)
        registry = self.labels.registry
        for token in labelled_tokens(infos, registry.addresses(self.config.chain)) - self.decimals.keys():
            self.decimals[token] = await api.token_decimals(token)
        try:
            return parse_block(self.config.chain, block, infos, registry, lambda t: self.decimals.get(t, -1),
                               self.clock(), self.config.tokens, self.rotation)
        except MalformedBlock as exc:
            self.writer.dead_letter(orjson.dumps(block).decode()[:100_000], str(exc), "node_data")
            raise
