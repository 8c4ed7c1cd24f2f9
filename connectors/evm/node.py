"""Typed calls to one EVM node, retried when the node asks us to slow down or does not answer in time.

Rate limiting (HTTP 429 / -32005 "limit exceeded" / "too many requests") and call timeouts are transient:
the same call is made again after an exponential, jittered wait, a bounded number of times
(:func:`connectors.backoff.retried`, with :func:`connectors.evm.rpc.retry_reason` saying which errors).
Anything else, and a call that keeps failing, propagates: the connector then reconnects (possibly to
another endpoint) and reads again from its checkpoint, so giving up here never loses a block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.backoff import RetryPolicy, retried
from connectors.evm.blocks import hex_int
from connectors.evm.rpc import JsonRpcSocket, RpcError, retry_reason
from connectors.feed_loop import WrongNetwork

DECIMALS_SELECTOR = "0x313ce567"
"""``decimals()``."""


class ChainIdMismatch(WrongNetwork):
    """The node serves another chain than configured: nothing is published from it."""


async def check_chain_id(node: NodeClient, chain: str, expected: int | None) -> int:
    """The node's chain id; a :class:`ChainIdMismatch` when it is not the configured one."""
    chain_id = await node.chain_id()
    if expected is not None and chain_id != expected:
        raise ChainIdMismatch(
            f"{chain}: node {node.url} serves chain id {chain_id}, configured {expected}; nothing was published from it"
        )
    return chain_id


class NodeClient:
    """One node connection with retried calls; ``on_retry(reason)`` is told about every retry (metrics)."""

    def __init__(
        self,
        rpc: JsonRpcSocket,
        on_retry: Callable[[str], None] = lambda reason: None,
        attempts: int = 6,
        max_wait_s: float = 20.0,
    ) -> None:
        self.rpc = rpc
        self.url = rpc.url
        self.on_retry = on_retry
        self.attempts = attempts
        self.max_wait_s = max_wait_s

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        return await retried(lambda: self.rpc.call(method, params), f"{method} on {self.url}", retry_reason,
                             RetryPolicy(self.attempts, max_wait_s=self.max_wait_s), self.on_retry)

    async def block_number(self) -> int:
        return hex_int(await self.call("eth_blockNumber"), "eth_blockNumber")

    async def chain_id(self) -> int:
        return hex_int(await self.call("eth_chainId"), "eth_chainId")

    async def block_by_number(self, number: int, full: bool = True) -> Any:
        return await self.call("eth_getBlockByNumber", [hex(number), full])

    async def block_hash(self, number: int) -> str | None:
        """The node's canonical hash at a height, None when it has no block there."""
        block = await self.block_by_number(number, full=False)
        if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
            return None
        return str(block["hash"]).lower()

    async def logs(self, flt: dict[str, Any]) -> Any:
        return await self.call("eth_getLogs", [flt])

    async def receipt(self, tx_hash: str) -> Any:
        return await self.call("eth_getTransactionReceipt", [tx_hash])

    async def block_receipts(self, block_hash: str) -> Any:
        """Every receipt of a block in one call (``eth_getBlockReceipts``; null when the node lost the block)."""
        return await self.call("eth_getBlockReceipts", [block_hash])

    async def decimals(self, token: str) -> int:
        """A token's ``decimals()``, or -1 when it has none we can read (non-standard tokens exist)."""
        try:
            result = await self.call("eth_call", [{"to": token, "data": DECIMALS_SELECTOR}, "latest"])
        except RpcError:
            return -1
        value = int(result, 16) if isinstance(result, str) and len(result) == 66 else -1
        return value if 0 <= value <= 255 else -1
