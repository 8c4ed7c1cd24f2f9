"""Follow one EVM chain over websockets and publish every block, in order, with no gaps and no stale forks.

On every (re)connection the connector checks the node's chain id, reads by block number from its
checkpoint up to the node's head, then follows ``newHeads``; a header that skips numbers is filled in by
number, and when no header comes for a while the node is asked for its head. A block is published only
when it is ``confirmations`` deep. Blocks go out one at a time and the next is published only after Kafka
acknowledged the previous one (a few are read ahead, a bounded pipeline), so a slow broker slows the
reader instead of growing a buffer.

Reorgs: a block whose parent is not the block we published before it, or a header announcing a different
block at a height we published, makes the :class:`~connectors.evm.writer.BlockWriter` walk back, retract
the orphaned blocks' events and republish the canonical chain from the common ancestor.

Failures never end the process (except a wrong chain id, which is a configuration error): a lost
connection, a node error, an oversized frame, a node that lags behind the other endpoints — each leads to
a reconnect (to the next endpoint when several are configured) after a jittered, growing wait, and the
reconnect reads again from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import WebSocketException

from connectors.backoff import Backoff
from connectors.checkpoint import CheckpointFile
from connectors.evm.blocks import MalformedBlock, hex_int
from connectors.evm.config import EvmChainConfig
from connectors.evm.endpoints import EndpointPool, NodeLagging, lagging_behind, probe_heads
from connectors.evm.node import ChainIdMismatch, NodeClient, check_chain_id
from connectors.evm.reader import BlockReader, BlockUnavailable
from connectors.evm.reorg import conflicts
from connectors.evm.rpc import CONNECTION_LOST, JsonRpcSocket, NodeRefused, RpcConnectionLost, RpcError
from connectors.evm.writer import BlockWriter, Stopped
from connectors.label_watch import LabelSource
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher, PublishError
from connectors.rotation import RotationWatch
from schemas.records import NATIVE_ASSET, FeedHeartbeat

__all__ = ["ChainIdMismatch", "EvmChainConfig", "EvmConnector"]
log = logging.getLogger(__name__)
STABLE_CONNECTION_S = 30.0
"""A connection that lasted this long resets the reconnect backoff."""


class EvmConnector:
    def __init__(
        self,
        config: EvmChainConfig,
        labels: LabelSource,
        publisher: BlockPublisher,
        checkpoint: CheckpointFile,
        metrics: ConnectorMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.labels = labels
        self.publisher = publisher
        self.clock = clock
        self.metrics = metrics or ConnectorMetrics(config.chain)
        self.stopping = asyncio.Event()
        self.reload_labels = asyncio.Event()
        self.writer = BlockWriter(config, publisher, checkpoint, self.metrics, self.stopping, clock)
        self.endpoints = EndpointPool(config.ws_urls)
        self.decimals: dict[str, int] = {}
        self.rotation = (
            RotationWatch(
                config.chain,
                lambda: self.labels.registry,
                {NATIVE_ASSET: config.rotation_min_funding * 10**config.native_decimals},
                min_recipients=config.rotation_min_recipients,
                clock=clock,
            )
            if config.rotation_min_funding > 0 else None
        )
        self.reconnects = 0
        self.connected = False
        self._last_lag_check = 0.0

    @property
    def checkpoint(self) -> Any:
        return self.writer.checkpoint

    def stop(self) -> None:
        self.stopping.set()

    @property
    def delivering(self) -> bool:
        """Connected, and not held by a checkpoint that cannot be written: the heartbeat's ``connected``, so
        that the worker reports a lost feed (not a stalled chain) while the connector holds at a block."""
        return self.connected and self.writer.checkpoint_file.last_error is None

    def request_label_reload(self) -> None:
        """SIGHUP: reload label files now."""
        self.reload_labels.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep that ends early on stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    # -- background duties -------------------------------------------------------------------------
    async def _heartbeats(self) -> None:
        while not self.stopping.is_set():
            published = self.writer.published_number
            beat = FeedHeartbeat(self.config.chain, max(self.writer.node_head, published), published,
                                 self.delivering, self.clock())
            try:
                await asyncio.to_thread(self.publisher.heartbeat, beat)
            except PublishError as exc:
                log.warning("%s: heartbeat not delivered: %s", self.config.chain, exc)
            await self._sleep(self.config.heartbeat_s)

    async def _label_reloads(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reload_labels.wait(), timeout=self.config.labels_poll_s)
            forced = self.reload_labels.is_set()
            self.reload_labels.clear()
            result = await asyncio.to_thread(self.labels.poll, forced)
            if result.registry is not None:
                self.metrics.label_reload("ok")
            elif result.error is not None:
                self.metrics.label_reload("error")
                self.writer.dead_letter(result.error, "label files not reloaded; previous labels kept", "labels")
                await self.writer.flush_dead_letters()

    # -- main loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until :meth:`stop`; reconnects with exponential backoff and jitter."""
        duties = [
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._label_reloads(), name="label reloads"),
        ]
        try:
            await self._run()
        finally:
            self.stopping.set()
            self.reload_labels.set()
            await asyncio.gather(*duties, return_exceptions=True)
            with contextlib.suppress(PublishError):
                await self.writer.flush_dead_letters()

    async def _run(self) -> None:
        backoff = Backoff(initial=0.5, maximum=30.0)
        while not self.stopping.is_set():
            url = self.endpoints.current
            started = time.monotonic()
            reason = "connection"
            try:
                async with JsonRpcSocket(
                    url, on_bad_frame=self._bad_frame, call_timeout=self.config.call_timeout_s,
                    max_frame_bytes=self.config.max_frame_bytes,
                ) as rpc:
                    node = NodeClient(rpc, on_retry=self.metrics.rpc_retry)
                    await self._check_chain_id(node)
                    self.connected = True
                    await self._follow(node, rpc)
            except Stopped:
                break
            except ChainIdMismatch:
                raise
            except NodeLagging as exc:
                reason = "node_lagging"
                log.warning("%s: %s", self.config.chain, exc)
            except NodeRefused as exc:
                reason = "rate_limited" if exc.status == 429 else "refused"
                log.warning("%s: %s", self.config.chain, exc)
            except (RpcConnectionLost, OSError, TimeoutError, WebSocketException) as exc:
                log.warning("%s: connection to %s lost (%s)", self.config.chain, url, exc)
            except RpcError as exc:
                reason = "node_error"
                log.warning("%s: node error from %s (%s)", self.config.chain, url, exc)
            except MalformedBlock as exc:
                reason = "malformed_block"
                log.warning("%s: malformed block from %s (%s)", self.config.chain, url, exc)
            except Exception:  # a bug must not end the feed silently: log it, reconnect, read again
                reason = "unexpected"
                log.exception("%s: unexpected error; reconnecting", self.config.chain)
            finally:
                self.connected = False
            if self.stopping.is_set():
                break
            self.reconnects += 1
            self.metrics.reconnect(reason)
            await self.writer.flush_dead_letters()
            if time.monotonic() - started >= STABLE_CONNECTION_S:
                backoff.reset()
            if reason == "node_lagging":
                continue  # the pool already points at the better endpoint
            if len(self.endpoints.urls) > 1:
                log.info("%s: failing over to %s", self.config.chain, self.endpoints.rotate())
            await self._sleep(backoff.next_delay())

    def _bad_frame(self, raw: str, reason: str) -> None:
        self.writer.dead_letter(raw, reason, "frame")

    async def _check_chain_id(self, node: NodeClient) -> None:
        chain_id = await check_chain_id(node, self.config.chain, self.config.chain_id)
        log.info("%s: connected to %s (chain id %d)", self.config.chain, node.url, chain_id)

    async def _follow(self, node: NodeClient, rpc: JsonRpcSocket) -> None:
        heads = await rpc.subscribe("newHeads")
        tip = await node.block_number()
        self.writer.node_head = tip
        self.metrics.node_head(tip)
        if self.writer.checkpoint is None and self.writer.first_block is None:
            start = self.config.start_block if self.config.start_block is not None else tip
            self.writer.first_block = max(start, 0)
        log.info("%s: node head %d, publishing from %d", self.config.chain, tip, self.writer.next_block)
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
            self.metrics.node_head(tip, _header_time(header))
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
            self._bad_frame(str(header)[:100_000], f"newHeads header: {exc}")
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
        last = tip - self.config.confirmations
        while self.writer.next_block <= last and not self.stopping.is_set():
            try:
                if not await self._publish_range(node, reader, self.writer.next_block, last):
                    return
            except BlockUnavailable as exc:
                log.info("%s: %s; waiting for the node", self.config.chain, exc)
                return

    async def _publish_range(self, node: NodeClient, reader: BlockReader, first: int, last: int) -> bool:
        """Publish ``first..last``; True when a reorg cut it short and the range must be read again."""
        async with contextlib.aclosing(reader.read_range(first, last)) as blocks:
            async for parsed in blocks:
                if self.stopping.is_set():
                    return False
                if not self.writer.extends(parsed.head):
                    if self.writer.can_walk_back:
                        if await self.writer.undo_reorg(node.block_hash) == 0:
                            await self._sleep(0.5)  # the block we read was already replaced: read again, gently
                        return True
                    self.writer.accept_unverified(parsed.head)
                await self.writer.publish(parsed)
        return False

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


def _header_time(header: Any) -> int | None:
    if not isinstance(header, dict):
        return None
    try:
        return hex_int(header.get("timestamp"), "timestamp")
    except ValueError:
        return None
