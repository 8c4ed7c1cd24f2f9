"""Follow one EVM chain over a websocket and publish every block, in order, with no gaps.

On every (re)connection the connector first reads by block number from its checkpoint up to the node's
head, then follows ``newHeads``; a header that skips numbers is filled in by number too. A block is
published only when it is ``confirmations`` deep. Blocks are published one at a time and the next one is
read only after Kafka acknowledged the previous, so a slow broker slows the reader instead of growing a
buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.checkpoint import Checkpoint, CheckpointFile
from connectors.evm.blocks import TRANSFER_TOPIC, MalformedBlock, ParsedBlock, hex_int, parse_block
from connectors.evm.rpc import CONNECTION_LOST, JsonRpcSocket, RpcConnectionLost, RpcError
from connectors.labels import LabelRegistry
from connectors.publisher import BlockPublisher, PublishError
from schemas.records import DeadLetter, FeedHeartbeat

log = logging.getLogger(__name__)
DECIMALS_SELECTOR = "0x313ce567"


@dataclass(frozen=True, slots=True)
class EvmChainConfig:
    """What one connector process needs to know about its chain."""

    chain: str
    ws_url: str
    confirmations: int = 0
    start_block: int | None = None
    """Where to start without a checkpoint; None means the node's current head."""
    native_decimals: int = 18
    heartbeat_s: float = 5.0


class ChainReorgedError(RuntimeError):
    """The next block does not extend the last published one."""


class EvmConnector:
    def __init__(
        self,
        config: EvmChainConfig,
        labels: LabelRegistry,
        publisher: BlockPublisher,
        checkpoint: CheckpointFile,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.labels = labels
        self.publisher = publisher
        self.checkpoint_file = checkpoint
        self.clock = clock
        self.checkpoint = checkpoint.load()
        self.decimals: dict[str, int] = {}
        self.stopping = asyncio.Event()
        self.blocks_published = 0
        self.reconnects = 0
        self.node_head = -1
        self.connected = False
        self._dead: list[DeadLetter] = []

    def stop(self) -> None:
        self.stopping.set()

    # -- dead letters ------------------------------------------------------------------------------
    def _bad_frame(self, raw: str, reason: str) -> None:
        log.warning("%s: unusable node frame (%s)", self.config.chain, reason)
        self._dead.append(
            DeadLetter(
                source=f"evm:{self.config.chain}",
                reason=reason,
                payload=raw[:1_000_000],
                received_at=self.clock(),
            )
        )

    async def _flush_dead_letters(self) -> None:
        if self._dead:
            letters, self._dead = self._dead, []
            await asyncio.to_thread(self.publisher.dead_letter, letters)

    # -- main loop ---------------------------------------------------------------------------------
    async def _heartbeats(self) -> None:
        while not self.stopping.is_set():
            published = self.checkpoint.number if self.checkpoint else -1
            beat = FeedHeartbeat(self.config.chain, max(self.node_head, published), published, self.connected,
                                 self.clock())
            try:
                await asyncio.to_thread(self.publisher.heartbeat, beat)
            except PublishError as exc:
                log.warning("%s: heartbeat not delivered: %s", self.config.chain, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.config.heartbeat_s)

    async def run(self) -> None:
        """Run until :meth:`stop`; reconnects with exponential backoff and jitter."""
        beats = asyncio.create_task(self._heartbeats(), name="heartbeats")
        try:
            await self._run()
        finally:
            self.stopping.set()
            await asyncio.gather(beats, return_exceptions=True)

    async def _run(self) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                async with JsonRpcSocket(self.config.ws_url, on_bad_frame=self._bad_frame) as rpc:
                    delay = 0.5
                    self.connected = True
                    try:
                        await self._follow(rpc)
                    finally:
                        self.connected = False
            except (OSError, RpcConnectionLost, TimeoutError) as exc:
                log.warning("%s: connection to node lost (%s); reconnecting", self.config.chain, exc)
            except RpcError as exc:
                log.warning("%s: node error (%s); reconnecting", self.config.chain, exc)
            if self.stopping.is_set():
                break
            self.reconnects += 1
            await self._flush_dead_letters()
            sleep = delay * (0.5 + random.random())
            delay = min(delay * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=sleep)

    async def _follow(self, rpc: JsonRpcSocket) -> None:
        heads = await rpc.subscribe("newHeads")
        tip = hex_int(await rpc.call("eth_blockNumber"), "eth_blockNumber")
        self.node_head = max(self.node_head, tip)
        if self.checkpoint is None:
            start = self.config.start_block if self.config.start_block is not None else tip
            self.next_block = max(start, 0)
        else:
            self.next_block = self.checkpoint.number + 1
        log.info("%s: connected; head %d, publishing from %d", self.config.chain, tip, self.next_block)
        await self._catch_up(rpc, tip)
        stop_wait = asyncio.ensure_future(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                get = asyncio.ensure_future(heads.get())
                done, _ = await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                header = get.result()
                if header is CONNECTION_LOST:
                    raise RpcConnectionLost("subscription ended with the connection")
                try:
                    number = hex_int(header.get("number") if isinstance(header, dict) else None, "number")
                except ValueError as exc:
                    self._bad_frame(str(header), f"newHeads header: {exc}")
                    continue
                self.node_head = max(self.node_head, number)
                await self._catch_up(rpc, number)
        finally:
            stop_wait.cancel()

    async def _catch_up(self, rpc: JsonRpcSocket, tip: int) -> None:
        """Publish every block from ``next_block`` up to ``tip - confirmations``, in order."""
        last = tip - self.config.confirmations
        while self.next_block <= last and not self.stopping.is_set():
            parsed = await self._read_block(rpc, self.next_block)
            if self.checkpoint is not None and parsed.head.parent_hash != self.checkpoint.hash:
                log.warning(
                    "%s: block %d does not extend published %s (reorg deeper than confirmations)",
                    self.config.chain, parsed.head.number, self.checkpoint.hash,
                )
            for item in parsed.malformed:
                self._bad_frame(item.raw, item.reason)
            await self._flush_dead_letters()
            await asyncio.to_thread(self.publisher.publish_block, parsed.head, parsed.transfers)
            self.checkpoint = Checkpoint(self.config.chain, parsed.head.number, parsed.head.hash)
            await asyncio.to_thread(self.checkpoint_file.save, self.checkpoint)
            self.blocks_published += 1
            self.next_block += 1

    async def _read_block(self, rpc: JsonRpcSocket, number: int) -> ParsedBlock:
        block = await rpc.call("eth_getBlockByNumber", [hex(number), True])
        if block is None:
            raise RpcConnectionLost(f"node does not have block {number} yet")
        received_at = self.clock()
        block_hash = block.get("hash") if isinstance(block, dict) else None
        logs = await rpc.call("eth_getLogs", [{"blockHash": block_hash, "topics": [TRANSFER_TOPIC]}])
        failed = await self._failed_transactions(rpc, block)
        await self._learn_decimals(rpc, logs)
        try:
            return parse_block(
                self.config.chain, block, logs, failed, self.labels,
                lambda token: self.decimals.get(token, -1), received_at, self.config.native_decimals,
            )
        except MalformedBlock as exc:
            self._bad_frame(str(block)[:100_000], f"block {number}: {exc}")
            await self._flush_dead_letters()
            raise RpcConnectionLost(f"malformed block {number} from node: {exc}") from None

    async def _failed_transactions(self, rpc: JsonRpcSocket, block: Any) -> set[str]:
        """Hashes of reverted transactions among those that could be labelled native transfers."""
        if not isinstance(block, dict) or not isinstance(block.get("transactions"), list):
            return set()
        watched = self.labels.addresses(self.config.chain)
        candidates = [
            tx for tx in block["transactions"]
            if isinstance(tx, dict) and tx.get("value") not in (None, "0x0")
            and (str(tx.get("from", "")).lower() in watched or str(tx.get("to", "")).lower() in watched)
        ]
        failed = set()
        for tx in candidates:
            receipt = await rpc.call("eth_getTransactionReceipt", [tx.get("hash")])
            if isinstance(receipt, dict) and receipt.get("status") == "0x0":
                failed.add(str(tx.get("hash")).lower())
        return failed

    async def _learn_decimals(self, rpc: JsonRpcSocket, logs: Any) -> None:
        if not isinstance(logs, list):
            return
        watched = self.labels.addresses(self.config.chain)
        for entry in logs:
            if not isinstance(entry, dict):
                continue
            token = str(entry.get("address", "")).lower()
            topics = entry.get("topics") or []
            if token in self.decimals or len(topics) != 3:
                continue
            touched = {"0x" + str(t)[-40:].lower() for t in topics[1:]}
            if not touched & watched:
                continue
            try:
                result = await rpc.call("eth_call", [{"to": token, "data": DECIMALS_SELECTOR}, "latest"])
                value = int(result, 16) if isinstance(result, str) and len(result) == 66 else -1
                self.decimals[token] = value if 0 <= value <= 255 else -1
            except RpcError:
                self.decimals[token] = -1
