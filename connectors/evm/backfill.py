"""Publish a range of past blocks exactly as the live connector would, to pre-warm detector baselines.

Token transfers come from ``eth_getLogs`` over block ranges whose size adapts: halved when the node says
the range is too large (-32005 "limit exceeded", "query returned more than N results", ...), doubled
again after a success. Native transfers and the heads need every block anyway, so each block is read by
number (a bounded number in flight) and published through the same
:class:`~connectors.linked_writer.LinkedWriter` as live blocks: same events, same heads, same checkpoint
format, same reorg handling. The backfill keeps its own
checkpoint file, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]  # stubs: types-tqdm
from websockets.exceptions import WebSocketException

from connectors.backoff import Backoff
from connectors.checkpoint import CheckpointError, CheckpointFile
from connectors.endpoints import EndpointPool
from connectors.evm.blocks import hex_field
from connectors.evm.config import EvmChainConfig
from connectors.evm.node import NodeClient, check_chain_id
from connectors.evm.reader import BlockReader
from connectors.evm.rpc import JsonRpcSocket, RpcConnectionLost, RpcError
from connectors.feed_loop import BlockUnavailable
from connectors.label_watch import LabelSource
from connectors.linked_writer import LinkedWriter, MalformedBlock, Stopped
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackfillResult:
    first: int
    last: int
    blocks: int
    events: int
    seconds: float
    final_span: int

    @property
    def blocks_per_s(self) -> float:
        return self.blocks / self.seconds if self.seconds > 0 else 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class LogRange:
    """The adaptive ``eth_getLogs`` span: halve on "too large", double (up to a cap) on success."""

    def __init__(self, initial: int = 100, maximum: int = 2_000) -> None:
        self.span = max(1, min(initial, maximum))
        self.maximum = maximum

    def shrink(self) -> bool:
        """Halve the span; False when it is already one block (then only waiting helps)."""
        if self.span == 1:
            return False
        self.span = max(1, self.span // 2)
        return True

    def grow(self) -> None:
        self.span = min(self.span * 2, self.maximum)


class Backfill:
    """Publishes blocks ``from_block..to_block`` once, resumably."""

    def __init__(
        self,
        config: EvmChainConfig,
        labels: LabelSource,
        publisher: BlockPublisher,
        checkpoint: CheckpointFile,
        from_block: int,
        to_block: int,
        metrics: ConnectorMetrics | None = None,
        progress: bool = True,
        log_range: LogRange | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if from_block < 0 or to_block < from_block:
            raise ValueError(f"bad block range {from_block}..{to_block}")
        self.config = config
        self.labels = labels
        self.from_block = from_block
        self.to_block = to_block
        self.metrics = metrics or ConnectorMetrics(config.chain)
        self.progress = progress
        self.range = log_range or LogRange()
        self.clock = clock
        self.stopping = asyncio.Event()
        self.writer = LinkedWriter(config.chain, config.source, config.window, publisher, checkpoint, self.metrics,
                                   self.stopping, clock, rebase_on_node=True)
        self.endpoints = EndpointPool(config.ws_urls)
        self.decimals: dict[str, int] = {}
        cp = self.writer.checkpoint
        if cp is not None and not from_block - 1 <= cp.number <= to_block:
            raise CheckpointError(
                f"backfill checkpoint {checkpoint.path} is at block {cp.number}, outside {from_block}..{to_block}; "
                "pass another --checkpoint or delete it"
            )
        self.writer.first_number = from_block

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> BackfillResult:
        """Publish the range; on a lost connection or node error reconnect (next endpoint) and resume."""
        started = time.monotonic()
        first = self.writer.next_number
        already = first - self.from_block
        backoff = Backoff(initial=0.5, maximum=30.0)
        bar = tqdm(total=self.to_block - self.from_block + 1, initial=already, unit="block", disable=not self.progress,
                   desc=f"backfill {self.config.chain}", dynamic_ncols=True)
        try:
            while self.writer.next_number <= self.to_block and not self.stopping.is_set():
                url = self.endpoints.current
                try:
                    async with JsonRpcSocket(
                        url, on_bad_frame=lambda raw, why: self.writer.dead_letter(raw, why, "frame"),
                        call_timeout=self.config.call_timeout_s, max_frame_bytes=self.config.max_frame_bytes,
                    ) as rpc:
                        node = NodeClient(rpc, on_retry=self.metrics.rpc_retry)
                        await check_chain_id(node, self.config.chain, self.config.chain_id)
                        await self._run_on(node, bar)
                        backoff.reset()
                except Stopped:
                    break
                except (RpcConnectionLost, RpcError, OSError, TimeoutError, WebSocketException, MalformedBlock,
                        BlockUnavailable) as exc:
                    self.metrics.reconnect(type(exc).__name__)
                    log.warning("%s: backfill interrupted at block %d (%s); resuming", self.config.chain,
                                self.writer.next_number, exc)
                    await self.writer.flush_dead_letters()
                    if len(self.endpoints.urls) > 1:
                        self.endpoints.rotate()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=backoff.next_delay())
        finally:
            bar.close()
            await self.writer.flush_dead_letters()
        blocks = self.writer.next_number - first
        return BackfillResult(first, self.writer.next_number - 1, blocks, self.writer.events_published,
                              time.monotonic() - started, self.range.span)

    async def _run_on(self, node: NodeClient, bar: tqdm[Any]) -> None:
        reader = BlockReader(node, self.config, lambda: self.labels.registry, self.decimals, self.clock)
        while self.writer.next_number <= self.to_block and not self.stopping.is_set():
            lo = self.writer.next_number
            hi = min(lo + self.range.span - 1, self.to_block)
            logs = await self._range_logs(reader, lo, hi)
            if logs is None:
                continue  # the span shrank: ask again
            by_block: dict[int, list[Any]] = defaultdict(list)
            for entry in logs:
                number = hex_field(entry, "blockNumber")
                if number is None or not lo <= number <= hi:
                    self.writer.dead_letter(str(entry)[:100_000], f"eth_getLogs {lo}..{hi}: log outside the range "
                                            "or without blockNumber", "node_data")
                    continue
                by_block[number].append(entry)
            await self._publish(node, reader, lo, hi, by_block, bar)

    async def _range_logs(self, reader: BlockReader, lo: int, hi: int) -> list[Any] | None:
        """Transfer logs of ``lo..hi``; None when the node refused the span (it was halved)."""
        try:
            logs = await reader.node.logs(reader.log_filter(fromBlock=hex(lo), toBlock=hex(hi)))
        except RpcError as exc:
            if exc.range_too_large and self.range.shrink():
                self.metrics.rpc_retry("range_too_large")
                log.info("%s: eth_getLogs %d..%d too large (%s); span now %d", self.config.chain, lo, hi,
                         exc.message, self.range.span)
                return None
            raise
        if not isinstance(logs, list):
            raise RpcError("eth_getLogs", -1, f"expected a list of logs, got {type(logs).__name__}")
        self.range.grow()
        return logs

    async def _publish(self, node: NodeClient, reader: BlockReader, lo: int, hi: int,
                       by_block: dict[int, list[Any]], bar: tqdm[Any]) -> None:
        async with contextlib.aclosing(reader.read_range(lo, hi, by_block)) as blocks:
            async for parsed in blocks:
                if self.stopping.is_set():
                    return
                if not self.writer.extends(parsed):
                    if self.writer.can_walk_back:
                        if await self.writer.undo_reorg(node.block_hash) == 0:
                            await asyncio.sleep(0.5)  # the block we read was already replaced: read again
                        bar.n = self.writer.next_number - self.from_block
                        return
                    self.writer.accept_unverified(parsed)
                await self.writer.publish(parsed)
                bar.update(1)
                bar.set_postfix(events=self.writer.events_published, span=self.range.span, refresh=False)

