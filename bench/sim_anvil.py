"""Play a simulated exchange (:mod:`bench.exchange_sim`) on a local anvil: every move a real transaction.

Every address of the script is impersonated (``anvil_impersonateAccount``) and given a balance, so it can
send without a key; each block's moves are sent with explicit nonces (so they go out concurrently) and the
block is mined with its chain time set, ``block_time_s`` after the one before.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from bench.exchange_sim import ExchangeSim, address_for
from connectors.evm.rpc import JsonRpcSocket

RICH = hex(10**30)


async def play_on_anvil(ws_url: str, sim: ExchangeSim) -> tuple[int, int]:
    """Mine the script's blocks; returns (first, last) block numbers."""
    senders = sorted({m.sender for moves in sim.blocks for m in moves})
    nonces: dict[str, int] = defaultdict(int)
    async with JsonRpcSocket(ws_url, call_timeout=120) as rpc:
        for name in senders:
            address = address_for("evm", name)
            await rpc.call("anvil_impersonateAccount", [address])
            await rpc.call("anvil_setBalance", [address, RICH])
            nonces[name] = int(await rpc.call("eth_getTransactionCount", [address, "pending"]), 16)
        latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
        chain_time = int(latest["timestamp"], 16)
        first = int(latest["number"], 16) + 1
        for moves in sim.blocks:
            sends = []
            for m in moves:
                tx = {"from": address_for("evm", m.sender), "to": address_for("evm", m.recipient),
                      "value": hex(m.amount), "gas": hex(21_000), "nonce": hex(nonces[m.sender])}
                nonces[m.sender] += 1
                sends.append(rpc.call("eth_sendTransaction", [tx]))
            await asyncio.gather(*sends)
            chain_time += sim.block_time_s
            await rpc.call("evm_setNextBlockTimestamp", [chain_time])
            await rpc.call("evm_mine", [])
        last = int(await rpc.call("eth_blockNumber"), 16)
    return first, last
