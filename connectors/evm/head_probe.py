"""The heads of an EVM chain's other endpoints, each over a short-lived websocket (``eth_blockNumber``), for
:func:`connectors.endpoints.lagging_behind` to compare with the node in use."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from connectors.evm.blocks import hex_int
from connectors.evm.rpc import JsonRpcSocket, RpcConnectionLost, RpcError


async def probe_head(url: str, timeout_s: float) -> int | None:
    """``eth_blockNumber`` of one endpoint over a short-lived connection; None when it does not answer."""
    try:
        async with (
            asyncio.timeout(timeout_s),
            JsonRpcSocket(url, call_timeout=timeout_s, open_timeout=timeout_s) as rpc,
        ):
            return hex_int(await rpc.call("eth_blockNumber"), "eth_blockNumber")
    except (RpcConnectionLost, RpcError, OSError, TimeoutError, ValueError):
        return None


async def probe_heads(urls: Sequence[str], timeout_s: float) -> dict[str, int | None]:
    heads = await asyncio.gather(*(probe_head(u, timeout_s) for u in urls))
    return dict(zip(urls, heads, strict=True))
