"""Follow one Solana cluster by slot and publish every produced block once, in parent order.

A session: check the genesis hash (when configured), subscribe to ``rootSubscribe`` (finalized) or
``slotSubscribe`` (confirmed) on the pubsub websocket, ask ``getSlot`` at our commitment, then read every slot
from the checkpoint up to it with ``getBlock``; after that, each notification (or ``head_poll_s`` without
one: notifications get dropped when a node lags) triggers the same read-forward. Notifications are never the
source of truth: slots are always read by number from the checkpoint, so a reconnect or a restart loses
nothing.

Skipped slots publish nothing and are not a gap: a block is published when its ``parentSlot`` and
``previousBlockhash`` are the last published block, whatever lies between. The node's "skipped" and "not
available" answers are hints; the parent link decides: a block whose parent we have not published means
a block in between was not readable yet (we wait and read again), and a block whose parent is older than
what we published is a fork (only possible at ``confirmed``): the orphaned blocks are retracted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson

from connectors.feed import ChainFeed
from connectors.feed_loop import NodeError
from connectors.linked_writer import LinkedBlock, MalformedBlock
from connectors.read_ahead import read_ahead
from connectors.solana.blocks import parse_block
from connectors.solana.config import SolanaConfig
from connectors.solana.pubsub import SolanaPubsub
from connectors.solana.rpc import SlotSkipped, SlotUnavailable, SolanaRpc

log = logging.getLogger(__name__)
STUCK_LIMIT_S = 120.0
"""A block whose parent stays unreadable this long means the node contradicts itself: change node."""
Read = LinkedBlock | SlotSkipped | SlotUnavailable


class SolanaConnector(ChainFeed):
    config: SolanaConfig

    def __init__(self, config: SolanaConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.cursor = -1
        """The next slot to read in this session (skipped slots move it past the checkpoint)."""
        self.last_block_time: int | None = None
        self._stuck_since: float | None = None

    def heartbeat_node_head(self) -> int:
        """The newest slot with a block that we know of: the published one once every slot up to the node's
        head is read. Slots at the head may be skipped; reporting the head slot itself would then look like
        a feed that lags its node, and a halted cluster like lost data instead of a stalled chain."""
        caught_up = self.cursor > self.writer.node_head - self.config.confirmations
        return self.writer.published_number if caught_up else self.writer.node_head

    async def session(self, url: str) -> None:
        async with self.http(url) as http, contextlib.AsyncExitStack() as stack:
            rpc = SolanaRpc(http, self.config.commitment)
            if self.config.genesis_hash is not None:
                await self.check_genesis(await rpc.genesis_hash())
            notes: asyncio.Queue[Any] | None = None
            if self.ws_url is not None:
                pubsub = await stack.enter_async_context(SolanaPubsub(self.ws_url, self.bad_payload))
                notes = await pubsub.subscribe(self.config.subscription)
            self.connected = True
            tip = await rpc.get_slot()
            self.set_node_head(tip)
            self.start_at(tip)
            self.cursor = self.writer.next_number
            log.info("%s: %s at %s slot %d, publishing from slot %d", self.config.chain, url,
                     self.config.commitment, tip, self.cursor)
            while not self.stopping.is_set():
                await self._catch_up(rpc, tip - self.config.confirmations)
                await self.wait_for_push(notes, "pubsub")
                tip = await rpc.get_slot()
                self.set_node_head(tip)

    async def _read(self, rpc: SolanaRpc, slot: int) -> Read:
        reply = await rpc.get_block(slot)
        if not isinstance(reply, dict):
            return reply
        try:
            return parse_block(self.config.chain, slot, reply, self.labels.registry, self.clock(),
                               self.last_block_time, self.rotation)
        except MalformedBlock as exc:
            self.writer.dead_letter(orjson.dumps(reply).decode()[:100_000], str(exc), "node_data")
            raise

    async def _catch_up(self, rpc: SolanaRpc, last: int) -> None:
        """Read slots from the cursor up to ``last``; publish each block that extends the checkpoint."""
        again = True
        while again and self.cursor <= last and not self.stopping.is_set():
            again = False
            unavailable_from: int | None = None
            slots = range(self.cursor, last + 1)
            async with contextlib.aclosing(read_ahead(slots, lambda s: self._read(rpc, s),
                                                      self.config.prefetch)) as reads:
                async for slot, result in reads:
                    if self.stopping.is_set():
                        return
                    if isinstance(result, SlotSkipped):
                        if unavailable_from is None:
                            self.cursor = slot + 1
                        continue
                    if isinstance(result, SlotUnavailable):
                        unavailable_from = slot if unavailable_from is None else unavailable_from
                        continue
                    if await self.publish_or_undo(result, rpc.block_hash):
                        self.cursor = slot + 1
                        unavailable_from = None
                        self.last_block_time = result.head.block_time
                        self._stuck_since = None
                        continue
                    again = self._after_unpublished(result)
                    self.cursor = self.writer.next_number
                    break

    def _after_unpublished(self, block: LinkedBlock) -> bool:
        """After a block that could not be published: True to read again at once (fork undone)."""
        if not self.writer.misses_parent(block):
            return True
        now = time.monotonic()
        self._stuck_since = self._stuck_since or now
        if now - self._stuck_since > STUCK_LIMIT_S:
            self._stuck_since = None
            raise NodeError(f"slot {block.head.number} names parent slot {block.parent_number}, which this node has "
                            f"not served for {STUCK_LIMIT_S:.0f} s (published: {self.writer.published_number})")
        return False
