"""Follow one EVM chain over websockets and publish every block, in order, with no gaps and no stale forks.

On every (re)connection the connector checks the node's chain id, reads by block number from its
checkpoint up to the node's head, then follows ``newHeads``; a header that skips numbers is filled in by
number, and when no header comes for a while the node is asked for its head. A block is published only
when it is ``confirmations`` deep. Blocks go out one at a time and the next is published only after Kafka
acknowledged the previous one (a few are read ahead, a bounded pipeline), so a slow broker slows the
reader instead of growing a buffer.

Reorgs: a block whose parent is not the block we published before it, or a header announcing a different
block at a height we published, makes the :class:`~connectors.linked_writer.LinkedWriter` walk back, retract
the orphaned blocks' events and republish the canonical chain from the common ancestor.

Failures never end the process (except a wrong chain id, which is a configuration error): a lost
connection, a node error, an oversized frame, a node that lags behind the other endpoints — each leads to
a reconnect (to the next endpoint when several are configured) after a jittered, growing wait, and the
reconnect reads again from the checkpoint. That loop, the heartbeats and the label reloads are the ones every
family shares (:class:`~connectors.feed_loop.FeedLoop`); this module adds what is EVM's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from connectors.checkpoint import Checkpoint
from connectors.endpoints import NodeLagging, lagging_behind
from connectors.evm.blocks import hex_field, hex_int
from connectors.evm.config import EvmChainConfig
from connectors.evm.head_probe import probe_heads
from connectors.evm.node import ChainIdMismatch, NodeClient, check_chain_id
from connectors.evm.reader import BlockReader
from connectors.evm.rpc import CONNECTION_LOST, JsonRpcSocket, NodeRefused, RpcConnectionLost, RpcError
from connectors.feed_loop import FeedLoop
from connectors.reorg import conflicts

__all__ = ["ChainIdMismatch", "EvmChainConfig", "EvmConnector"]
log = logging.getLogger(__name__)


class EvmConnector(FeedLoop[EvmChainConfig]):
    """Follows one EVM chain: its sessions are websockets with ``newHeads``, its blocks are read by number."""

    REFUSALS = (NodeRefused,)
    NODE_ERRORS = (RpcError,)
    REBASE_ON_NODE = True

    def __init__(self, config: EvmChainConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.decimals: dict[str, int] = {}
        self._last_lag_check = 0.0

    @property
    def checkpoint(self) -> Checkpoint | None:
        return self.writer.checkpoint

    async def session(self, url: str) -> None:
        async with JsonRpcSocket(
            url, on_bad_frame=self.bad_payload, call_timeout=self.config.call_timeout_s,
            max_frame_bytes=self.config.max_frame_bytes,
        ) as rpc:
            node = NodeClient(rpc, on_retry=self.metrics.rpc_retry)
            await self._check_chain_id(node)
            self.connected = True
            await self._follow(node, rpc)

    async def _check_chain_id(self, node: NodeClient) -> None:
        chain_id = await check_chain_id(node, self.config.chain, self.config.chain_id)
        log.info("%s: connected to %s (chain id %d)", self.config.chain, node.url, chain_id)

    async def _follow(self, node: NodeClient, rpc: JsonRpcSocket) -> None:
        heads = await rpc.subscribe("newHeads")
        tip = await node.block_number()
        self.set_node_head(tip)
        self.start_at(tip)
        log.info("%s: node head %d, publishing from %d", self.config.chain, tip, self.writer.next_number)
        reader = BlockReader(
            node, self.config, lambda: self.labels.registry, self.decimals, self.clock, rotation=self.rotation
        )
        await self._catch_up(node, reader, tip)
        while not self.stopping.is_set():
            header = await self._next_header(heads)
            if header is CONNECTION_LOST:
                raise RpcConnectionLost(f"subscription ended with the connection ({rpc.close_reason})")
            if header is None:  # no notification for a while: ask (a dead subscription sends nothing)
                tip = await node.block_number()
            else:
                number = self._header_number(header)
                if number is None:
                    continue
                tip = number
                if self._header_conflicts(number, header):
                    await self.writer.undo_reorg(node.block_hash)
            self.writer.node_head = tip
            self.metrics.node_head(tip, hex_field(header, "timestamp"))
            await self._catch_up(node, reader, tip)
            await self._check_lag(node)

    async def _next_header(self, heads: asyncio.Queue[Any]) -> Any:
        """The next newHeads notification, or None after ``head_poll_s`` without one (or on stop)."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(heads.get(), timeout=self.config.head_poll_s)
        return None

    def _header_number(self, header: Any) -> int | None:
        try:
            return hex_int(header.get("number") if isinstance(header, dict) else None, "number")
        except ValueError as exc:
            self.bad_payload(str(header)[:100_000], f"newHeads header: {exc}")
            return None

    def _header_conflicts(self, number: int, header: Any) -> bool:
        """A header for a height we already published, naming another block: a reorg reached us."""
        cp = self.writer.checkpoint
        if cp is None or number > cp.number:
            return False
        announced = header.get("hash") if isinstance(header, dict) else None
        return conflicts(cp.block(number), str(announced).lower() if isinstance(announced, str) else None)

    async def _catch_up(self, node: NodeClient, reader: BlockReader, tip: int) -> None:
        """Publish every block from the checkpoint up to ``tip - confirmations``, in order."""
        await self.publish_forward(tip - self.config.confirmations, reader.read, node.block_hash)

    async def _check_lag(self, node: NodeClient) -> None:
        """With several endpoints, every ``lag_check_s``: move away from a node that fell behind."""
        if len(self.endpoints.urls) < 2 or time.monotonic() - self._last_lag_check < self.config.lag_check_s:
            return
        self._last_lag_check = time.monotonic()
        others = await probe_heads(self.endpoints.others, min(self.config.call_timeout_s, 10.0))
        mine = await node.block_number()
        better = lagging_behind(mine, others, self.config.lag_blocks)
        if better is None:
            return
        url, head = better
        self.metrics.node_switch()
        self.endpoints.switch_to(url)
        raise NodeLagging(f"node {node.url} is at {mine}, {url} at {head} (more than "
                          f"{self.config.lag_blocks} blocks ahead): switching")

