"""Read a range of blocks of any family and show every transfer in them to a watch, as the connectors read them.

Discovery must see a chain exactly as the live connector does, or a wallet it proposes would not behave the
same once labelled. So each family's source here calls that family's own node API and block parser (EVM:
:class:`~connectors.evm.reader.BlockReader`; Solana, Bitcoin, Tron: their ``parse_block``), with the
discovery's evidence book as the parser's transfer watch. Transient node trouble (HTTP 429, 5xx, timeouts,
JSON-RPC rate limits) is retried by the same clients with the same jittered waits; anything else ends the
session and the caller opens a new one (next endpoint) and goes on from the last block it finished.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
from websockets.exceptions import WebSocketException

from connectors.bitcoin import blocks as bitcoin_blocks
from connectors.bitcoin.esplora import EsploraApi
from connectors.evm import blocks as evm_blocks
from connectors.evm.blocks import TRANSFER_TOPIC
from connectors.evm.node import NodeClient
from connectors.evm.rpc import JsonRpcSocket, RpcConnectionLost, RpcError
from connectors.family import ChainFamily
from connectors.feed_loop import BlockUnavailable, NodeError
from connectors.http_json import BadPayload, HttpError, HttpUnavailable, JsonHttp, RequestTimeout
from connectors.labels import LabelRegistry
from connectors.linked_writer import MalformedBlock, TransferWatch
from connectors.read_ahead import read_ahead
from connectors.solana import blocks as solana_blocks
from connectors.solana.rpc import SolanaRpc
from connectors.tron import blocks as tron_blocks
from connectors.tron.api import TronApi

SESSION_ERRORS: tuple[type[BaseException], ...] = (
    RpcConnectionLost, RpcError, OSError, TimeoutError, WebSocketException, MalformedBlock, BlockUnavailable,
    NodeError, HttpError, HttpUnavailable, RequestTimeout, BadPayload, aiohttp.ClientError,
)
"""What ends a reading session (after the clients' own retries): reconnect and go on."""


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Where and how to read: the endpoint, extra HTTP headers, how many blocks in flight."""

    chain: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    prefetch: int = 8
    call_timeout_s: float = 30.0


class BlockSource(Protocol):
    """One open session on a node of one family."""

    async def tip(self) -> int:
        """The newest block (slot, height) the node serves."""

    async def block_time(self, number: int) -> int | None:
        """A block's chain time (None for a skipped Solana slot): to turn ``--hours`` into a range."""

    def read(self, first: int, last: int) -> AsyncGenerator[tuple[int, int | None], None]:
        """Blocks ``first..last`` in order, each shown to the watch: yields (number, block time or None)."""


Numbered = AsyncGenerator[tuple[int, int | None], None]
C = TypeVar("C")


async def _in_order(first: int, last: int, fetch: Callable[[int], Awaitable[Any]],
                    parse: Callable[[int, Any], int | None], depth: int) -> Numbered:
    """Fetch up to ``depth`` blocks at once but parse them in block order, so the watch sees time in order."""
    async with contextlib.aclosing(read_ahead(range(first, last + 1), fetch, depth)) as reads:
        async for number, raw in reads:
            yield number, parse(number, raw)


class FamilySource(Generic[C]):
    """What every family's source shares: its node client, the settings, and reading in block order."""

    def __init__(self, client: C, settings: SourceSettings, labels: LabelRegistry, watch: TransferWatch) -> None:
        self.client, self.settings, self.labels, self.watch = client, settings, labels, watch

    async def _fetch(self, number: int) -> Any:
        raise NotImplementedError

    def _parse(self, number: int, raw: Any) -> int | None:
        raise NotImplementedError

    def read(self, first: int, last: int) -> Numbered:
        return _in_order(first, last, self._fetch, self._parse, self.settings.prefetch)


class EvmSource(FamilySource[NodeClient]):
    """Blocks with full transactions and their ERC-20 ``Transfer`` logs, parsed like the connector's."""

    async def tip(self) -> int:
        return await self.client.block_number()

    async def block_time(self, number: int) -> int | None:
        block = await self.client.block_by_number(number, full=False)
        return int(block["timestamp"], 16) if isinstance(block, dict) else None

    async def _fetch(self, number: int) -> tuple[Any, Any]:
        block = await self.client.block_by_number(number)
        if not isinstance(block, dict):
            raise BlockUnavailable(f"{self.settings.chain}: node has no block {number}")
        logs = await self.client.logs({"blockHash": block.get("hash"), "topics": [TRANSFER_TOPIC]})
        return block, logs

    def _parse(self, number: int, raw: tuple[Any, Any]) -> int | None:
        block, logs = raw
        # reverted transactions are not told apart here (that takes a receipt each): a reverted payout
        # counts as evidence, which at worst adds one payout to a wallet that was paying anyway
        parsed = evm_blocks.parse_block(self.settings.chain, block, logs, set(), self.labels, lambda t: -1,
                                        time.time(), 18, self.watch)
        return parsed.head.block_time


class SolanaSource(FamilySource[SolanaRpc]):
    """Finalized slots by ``getBlock`` (jsonParsed); a skipped slot shows nothing."""

    async def tip(self) -> int:
        return await self.client.get_slot()

    async def block_time(self, number: int) -> int | None:
        reply = await self.client.get_block(number, full=False)
        value = reply.get("blockTime") if isinstance(reply, dict) else None
        return value if isinstance(value, int) else None

    async def _fetch(self, slot: int) -> Any:
        return await self.client.get_block(slot)

    def _parse(self, slot: int, reply: Any) -> int | None:
        if not isinstance(reply, dict):
            return None  # skipped, or gone from the node's storage: nothing to show
        parsed = solana_blocks.parse_block(self.settings.chain, slot, reply, self.labels, time.time(), None,
                                           self.watch)
        return parsed.head.block_time


class BitcoinSource(FamilySource[EsploraApi]):
    """Esplora: height to hash, the header, then every page of the block's transactions."""

    async def tip(self) -> int:
        return await self.client.tip_height()

    async def _header(self, height: int) -> tuple[str, Any]:
        block_hash = await self.client.block_hash(height)
        if block_hash is None:
            raise BlockUnavailable(f"{self.settings.chain}: no block at height {height}")
        return block_hash, await self.client.block(block_hash)

    async def block_time(self, number: int) -> int | None:
        _, block = await self._header(number)
        value = block.get("timestamp") if isinstance(block, dict) else None
        return value if isinstance(value, int) else None

    async def _fetch(self, height: int) -> tuple[Any, Any]:
        block_hash, block = await self._header(height)
        count = block.get("tx_count") if isinstance(block, dict) else None
        if not isinstance(count, int) or count < 1:
            raise MalformedBlock(f"block {block_hash}: no usable tx_count ({count!r})")
        return block, await self.client.block_txs(block_hash, count)

    def _parse(self, height: int, raw: tuple[Any, Any]) -> int | None:
        block, txs = raw
        parsed = bitcoin_blocks.parse_block(self.settings.chain, block, txs, self.labels, time.time(), self.watch)
        return parsed.head.block_time


class TronSource(FamilySource[TronApi]):
    """The block (TRX transfers) and its receipts (TRC-20 ``Transfer`` logs)."""

    async def tip(self) -> int:
        return await self.client.now_block_number()

    async def block_time(self, number: int) -> int | None:
        block = await self.client.block(number)
        return None if block is None else int(block["block_header"]["raw_data"]["timestamp"]) // 1000

    async def _fetch(self, number: int) -> tuple[Any, Any]:
        block = await self.client.block(number)
        if block is None:
            raise BlockUnavailable(f"{self.settings.chain}: node has no block {number}")
        return block, await self.client.transaction_info(number)

    def _parse(self, number: int, raw: tuple[Any, Any]) -> int | None:
        block, infos = raw
        parsed = tron_blocks.parse_block(self.settings.chain, block, infos, self.labels, lambda t: -1, time.time(),
                                         None, self.watch)
        return parsed.head.block_time


@contextlib.asynccontextmanager
async def open_source(family: ChainFamily, settings: SourceSettings, labels: LabelRegistry,
                      watch: TransferWatch) -> AsyncIterator[BlockSource]:
    """A session on ``settings.url`` for ``family``; closing it closes the connection."""
    if family is ChainFamily.EVM:
        async with JsonRpcSocket(settings.url, call_timeout=settings.call_timeout_s) as rpc:
            yield EvmSource(NodeClient(rpc), settings, labels, watch)
        return
    http = JsonHttp(settings.url, on_bad_payload=lambda raw, why: None, timeout_s=settings.call_timeout_s,
                    headers=dict(settings.headers))
    async with http:
        if family is ChainFamily.SOLANA:
            yield SolanaSource(SolanaRpc(http, "finalized"), settings, labels, watch)
        elif family is ChainFamily.BITCOIN:
            yield BitcoinSource(EsploraApi(http), settings, labels, watch)
        else:
            yield TronSource(TronApi(http), settings, labels, watch)
