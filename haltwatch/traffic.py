"""Play an exchange on a local anvil node: steady payouts, then silence while blocks keep coming.

The player mines every block itself (anvil runs with ``--no-mining``) and sets each block's timestamp, so
chain time runs at ``block_time_s`` per block however fast the wall clock goes: hours of chain time play
in a minute, and the detector, which only knows chain time, cannot tell.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from connectors.evm.rpc import JsonRpcSocket
from haltwatch.evm_token import token_runtime, transfer_calldata

TOKEN_ADDRESS = "0x5afe00000000000000000000000000000000c0de"
NO_RETURN_TOKEN_ADDRESS = "0x5afe00000000000000000000000000000000dead"


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of blocks with one payout behaviour.

    ``stall_s`` > 0 makes it a chain stall instead: no block at all for that many wall seconds, then the
    next block's timestamp jumps by ``blocks * block_time_s``, as after a real halt of the chain.
    """

    name: str
    blocks: int
    withdrawals_per_block: float
    stall_s: float = 0.0


@dataclass(slots=True)
class BlockPlayed:
    phase: str
    number: int
    block_time: int
    wall_time: float
    withdrawals: list[str] = field(default_factory=list)


SCENARIOS: dict[str, list[Phase]] = {
    # 330 steady blocks = 66 minutes of chain time: past the detector's one-hour warm-up
    "halt": [Phase("steady", 330, 1.5), Phase("halt", 100, 0.0), Phase("resume", 30, 1.5)],
    "stall": [Phase("steady", 330, 1.5), Phase("stall", 100, 0.0, stall_s=8.0), Phase("after", 30, 1.5)],
    "normal": [Phase("steady", 460, 1.5)],
}


class ExchangePlayer:
    """Drives anvil's dev accounts: account 0 is the exchange's hot wallet."""

    def __init__(self, ws_url: str, block_time_s: int = 12, seed: int = 7, wall_per_block_s: float = 0.05) -> None:
        self.ws_url = ws_url
        self.block_time_s = block_time_s
        self.rng = random.Random(seed)
        self.wall_per_block_s = wall_per_block_s
        self.accounts: list[str] = []

    @property
    def hot(self) -> str:
        return self.accounts[0]

    @property
    def deposit(self) -> str:
        return self.accounts[8]

    @property
    def cold(self) -> str:
        return self.accounts[9]

    def write_labels(self, path: Path, exchange: str) -> None:
        """A label file naming this player's wallets, as a user would write one."""
        rows = [(self.hot, "hot"), (self.deposit, "deposit"), (self.cold, "cold")]
        text = "".join(
            f'[[wallet]]\nexchange = "{exchange}"\nchain = "ethereum"\naddress = "{address}"\n'
            f'role = "{role}"\nsource = "anvil dev account played by haltwatch.traffic"\n\n'
            for address, role in rows
        )
        path.write_text(text)

    async def setup(self) -> None:
        async with JsonRpcSocket(self.ws_url) as rpc:
            self.accounts = [a.lower() for a in await rpc.call("eth_accounts")]
            await rpc.call("anvil_setCode", [TOKEN_ADDRESS, token_runtime(returns_bool=True)])
            await rpc.call("anvil_setCode", [NO_RETURN_TOKEN_ADDRESS, token_runtime(returns_bool=False)])

    def _user(self) -> str:
        return "0x" + self.rng.getrandbits(160).to_bytes(20, "big").hex()

    async def play(
        self, phases: list[Phase], on_block: Callable[[BlockPlayed], None] | None = None
    ) -> list[BlockPlayed]:
        played: list[BlockPlayed] = []
        async with JsonRpcSocket(self.ws_url) as rpc:
            latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
            chain_time = int(latest["timestamp"], 16)
            for phase in phases:
                if phase.stall_s > 0:
                    await asyncio.sleep(phase.stall_s)
                    chain_time += phase.blocks * self.block_time_s
                    continue
                for _ in range(phase.blocks):
                    chain_time += self.block_time_s
                    block = await self._block(rpc, phase, chain_time)
                    played.append(block)
                    if on_block:
                        on_block(block)
                    await asyncio.sleep(self.wall_per_block_s)
        return played

    async def _block(self, rpc: JsonRpcSocket, phase: Phase, chain_time: int) -> BlockPlayed:
        withdrawals = []
        for _ in range(self._poisson(phase.withdrawals_per_block)):
            user = self._user()
            kind = self.rng.random()
            if kind < 0.45:
                tx = {"from": self.hot, "to": user, "value": hex(self.rng.randint(10**15, 10**18))}
            else:
                token = TOKEN_ADDRESS if kind < 0.9 else NO_RETURN_TOKEN_ADDRESS
                amount = self.rng.randint(10 * 10**6, 50_000 * 10**6)
                tx = {"from": self.hot, "to": token, "data": transfer_calldata(user, amount)}
            withdrawals.append(await rpc.call("eth_sendTransaction", [tx]))
        if self.rng.random() < 0.3:  # a user deposit keeps the exchange's inbound side busy throughout
            depositor = self.accounts[1 + self.rng.randrange(5)]
            await rpc.call("eth_sendTransaction", [{"from": depositor, "to": self.deposit, "value": hex(10**17)}])
        if self.rng.random() < 0.05:  # hot wallet tops up from cold: internal, never a withdrawal
            await rpc.call("eth_sendTransaction", [{"from": self.cold, "to": self.hot, "value": hex(10**18)}])
        await rpc.call("evm_setNextBlockTimestamp", [chain_time])
        await rpc.call("evm_mine", [])
        number = int(await rpc.call("eth_blockNumber"), 16)
        return BlockPlayed(phase.name, number, chain_time, time.time(), [w.lower() for w in withdrawals])

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        threshold, k, product = pow(2.718281828459045, -mean), 0, self.rng.random()
        while product > threshold:
            k += 1
            product *= self.rng.random()
        return k
