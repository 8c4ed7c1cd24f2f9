"""Read EVM blocks by number into labelled transfers: the block, its Transfer logs, receipts, token decimals.

A block is read by number and everything else by that block's hash, so all parts describe the same
block even when the chain reorganises meanwhile; a receipt that belongs to another block means the block
changed under us, and the block is read again. ``read_range`` keeps a bounded number of blocks in flight
ahead of the consumer (the publisher), so catching up is fast but memory stays bounded and a slow Kafka
still slows the reading down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

from connectors.evm.blocks import TRANSFER_TOPIC, parse_block
from connectors.evm.bloom import bloom_may_contain
from connectors.evm.config import EvmChainConfig
from connectors.evm.node import NodeClient
from connectors.evm.rpc import RpcError
from connectors.feed_loop import BlockUnavailable
from connectors.labels import LabelRegistry
from connectors.linked_writer import LinkedBlock, TransferWatch
from connectors.read_ahead import read_ahead

log = logging.getLogger(__name__)
_TRANSFER_TOPIC_BYTES = bytes.fromhex(TRANSFER_TOPIC[2:])
BLOCK_RECEIPTS_FROM = 4
"""From this many candidate transactions, a block's receipts are read in one ``eth_getBlockReceipts`` call
instead of one call each: at hundreds of labelled native transfers per block the per-transaction calls were
most of the time from a block's arrival to its publication. Below it, a few small calls cost less than every
receipt of a full block."""
_UNSUPPORTED = (-32601, -32602)
"""Method not found / invalid params: the node has no usable ``eth_getBlockReceipts``."""


class BlockChanged(RuntimeError):
    """The block was replaced while we read it (a receipt points to another block)."""


class BlockReader:
    """Reads blocks of one chain through one node connection."""

    def __init__(
        self,
        node: NodeClient,
        config: EvmChainConfig,
        labels: Callable[[], LabelRegistry],
        decimals: dict[str, int],
        clock: Callable[[], float],
        empty_logs_retries: int = 2,
        rotation: TransferWatch | None = None,
    ) -> None:
        self.node = node
        self.config = config
        self.labels = labels
        self.decimals = decimals
        self.clock = clock
        self.empty_logs_retries = empty_logs_retries
        self.rotation = rotation
        self.block_receipts_supported = True

    def log_filter(self, **where: Any) -> dict[str, Any]:
        """An ``eth_getLogs`` filter for ERC-20 Transfers (of the configured tokens, if any)."""
        flt: dict[str, Any] = {**where, "topics": [TRANSFER_TOPIC]}
        if self.config.tokens is not None:
            flt["address"] = sorted(self.config.tokens)
        return flt

    async def read(self, number: int, logs: list[Any] | None = None, attempts: int = 3) -> LinkedBlock:
        """One block; ``logs`` may come from a range query (they are checked against the block's hash)."""
        for attempt in range(attempts):
            block = await self.node.block_by_number(number)
            if block is None:
                raise BlockUnavailable(f"{self.config.chain}: node has no block {number} yet")
            try:
                return await self._complete(number, block, logs)
            except BlockChanged as exc:
                log.info("%s: %s (attempt %d); reading it again", self.config.chain, exc, attempt + 1)
                logs = None
        raise BlockUnavailable(f"{self.config.chain}: block {number} kept changing while read")

    async def _complete(self, number: int, block: Any, logs: list[Any] | None) -> LinkedBlock:
        received_at = self.clock()
        block_hash = block.get("hash") if isinstance(block, dict) else None
        if logs is not None and any(
            isinstance(entry, dict) and str(entry.get("blockHash", "")).lower() != str(block_hash).lower()
            for entry in logs
        ):
            logs = None  # the range query saw another version of this block: ask by hash
        if logs == [] and self._bloom_says_transfers(block):
            logs = None  # none in the range reply, but the header says there may be: ask by hash
        if logs is None:
            logs = await self._logs_by_hash(block)
        labels = self.labels()
        failed = await self._failed_transactions(block, labels)
        await self._learn_decimals(logs, labels)
        return parse_block(
            self.config.chain, block, logs, failed, labels, lambda token: self.decimals.get(token, -1),
            received_at, self.config.native_decimals, self.rotation,
        )

    async def _logs_by_hash(self, block: Any) -> Any:
        block_hash = block.get("hash") if isinstance(block, dict) else None
        logs = await self.node.logs(self.log_filter(blockHash=block_hash))
        for _ in range(self.empty_logs_retries):
            if logs != [] or not self._bloom_says_transfers(block):
                break
            await asyncio.sleep(0.2)  # the bloom says a Transfer may be there: an unindexed replica?
            logs = await self.node.logs(self.log_filter(blockHash=block_hash))
        return logs

    def _bloom_says_transfers(self, block: Any) -> bool:
        """The header's bloom admits a Transfer log (of a configured token, when tokens are configured)."""
        bloom = block.get("logsBloom") if isinstance(block, dict) else None
        if not isinstance(bloom, str) or not bloom_may_contain(bloom, _TRANSFER_TOPIC_BYTES):
            return False
        tokens = self.config.tokens
        return tokens is None or any(bloom_may_contain(bloom, bytes.fromhex(t[2:])) for t in tokens)

    async def _failed_transactions(self, block: Any, labels: LabelRegistry) -> set[str]:
        """Hashes of reverted transactions among those that could be labelled native transfers."""
        if not isinstance(block, dict) or not isinstance(block.get("transactions"), list):
            return set()
        watched = labels.addresses(self.config.chain)
        candidates = [
            tx for tx in block["transactions"]
            if isinstance(tx, dict) and tx.get("value") not in (None, "0x0")
            and (str(tx.get("from", "")).lower() in watched or str(tx.get("to", "")).lower() in watched)
        ]
        failed = set()
        block_hash = str(block.get("hash", "")).lower()
        receipts = await self._receipts(block_hash, candidates)
        for tx, receipt in zip(candidates, receipts, strict=True):
            if not isinstance(receipt, dict) or str(receipt.get("blockHash", "")).lower() != block_hash:
                raise BlockChanged(f"receipt of {tx.get('hash')} is not in block {block_hash}")
            if receipt.get("status") == "0x0":
                failed.add(str(tx.get("hash")).lower())
        return failed

    async def _receipts(self, block_hash: str, candidates: list[Any]) -> list[Any]:
        """The candidates' receipts, in their order (None for one the node does not have in this block)."""
        if len(candidates) >= BLOCK_RECEIPTS_FROM and self.block_receipts_supported:
            try:
                found = await self.node.block_receipts(block_hash)
            except RpcError as exc:
                if exc.code not in _UNSUPPORTED:
                    raise
                log.info("%s: the node has no eth_getBlockReceipts (%s); reading receipts one by one",
                         self.config.chain, exc)
                self.block_receipts_supported = False
            else:
                if not isinstance(found, list):
                    raise BlockChanged(f"the node no longer has block {block_hash}")
                by_hash = {str(r.get("transactionHash", "")).lower(): r for r in found if isinstance(r, dict)}
                return [by_hash.get(str(tx.get("hash")).lower()) for tx in candidates]
        return list(await asyncio.gather(*(self.node.receipt(str(tx.get("hash"))) for tx in candidates)))

    async def _learn_decimals(self, logs: Any, labels: LabelRegistry) -> None:
        if not isinstance(logs, list):
            return
        watched = labels.addresses(self.config.chain)
        for entry in logs:
            if not isinstance(entry, dict):
                continue
            token = str(entry.get("address", "")).lower()
            topics = entry.get("topics") or []
            if token in self.decimals or not isinstance(topics, list) or len(topics) != 3:
                continue
            touched = {"0x" + str(t)[-40:].lower() for t in topics[1:]}
            if touched & watched:
                self.decimals[token] = await self.node.decimals(token)

    async def read_range(
        self, first: int, last: int, logs_by_block: Mapping[int, list[Any]] | None = None
    ) -> AsyncGenerator[LinkedBlock, None]:
        """Blocks ``first..last`` in order, with up to ``config.prefetch`` reads in flight."""

        def read(number: int) -> Awaitable[LinkedBlock]:
            return self.read(number, None if logs_by_block is None else logs_by_block.get(number, []))

        async with contextlib.aclosing(read_ahead(range(first, last + 1), read, self.config.prefetch)) as reads:
            async for _, block in reads:
                yield block
