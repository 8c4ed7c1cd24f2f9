"""Play an exchange on a local anvil node: steady payouts, then silence while blocks keep coming.

The player mines every block itself (anvil runs with ``--no-mining``) and sets each block's timestamp, so
chain time runs at ``block_time_s`` per block however fast the wall clock goes: hours of chain time play
in a minute, and the detector, which only knows chain time, cannot tell.
"""

from __future__ import annotations

import asyncio
import hashlib
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


def random_address(rng: random.Random) -> str:
    return "0x" + rng.getrandbits(160).to_bytes(20, "big").hex()


def withdrawal_tx(rng: random.Random, hot: str) -> dict[str, str]:
    """A payout from ``hot`` to a fresh user: ETH, a token, or a token that returns nothing (like USDT)."""
    user = random_address(rng)
    kind = rng.random()
    if kind < 0.45:
        return {"from": hot, "to": user, "value": hex(rng.randint(10**15, 10**18))}
    token = TOKEN_ADDRESS if kind < 0.9 else NO_RETURN_TOKEN_ADDRESS
    amount = rng.randint(10 * 10**6, 50_000 * 10**6)
    return {"from": hot, "to": token, "data": transfer_calldata(user, amount)}


def poisson(rng: random.Random, mean: float) -> int:
    """Withdrawals in one block (Knuth's method: means here are a few per block)."""
    if mean <= 0:
        return 0
    threshold, k, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > threshold:
        k += 1
        product *= rng.random()
    return k


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
        for _ in range(poisson(self.rng, phase.withdrawals_per_block)):
            withdrawals.append(await rpc.call("eth_sendTransaction", [withdrawal_tx(self.rng, self.hot)]))
        if self.rng.random() < 0.3:  # a user deposit keeps the exchange's inbound side busy throughout
            depositor = self.accounts[1 + self.rng.randrange(5)]
            await rpc.call("eth_sendTransaction", [{"from": depositor, "to": self.deposit, "value": hex(10**17)}])
        if self.rng.random() < 0.05:  # hot wallet tops up from cold: internal, never a withdrawal
            await rpc.call("eth_sendTransaction", [{"from": self.cold, "to": self.hot, "value": hex(10**18)}])
        await rpc.call("evm_setNextBlockTimestamp", [chain_time])
        await rpc.call("evm_mine", [])
        number = int(await rpc.call("eth_blockNumber"), 16)
        return BlockPlayed(phase.name, number, chain_time, time.time(), [w.lower() for w in withdrawals])


@dataclass(slots=True)
class FleetBlockPlayed:
    """One block of a fleet: each exchange's phase in it and the withdrawals it paid there."""

    number: int
    block_time: int
    phases: dict[str, str]
    withdrawals: dict[str, list[str]]


class FleetPlayer:
    """Several exchanges on one chain at once, each with its own wallets and its own phases.

    Transfers are keyed by exchange, so several exchanges spread over the topic's partitions: this is what a
    test of more than one worker needs. The wallets are fixed addresses derived from the exchange's name that
    anvil lets us send from (``anvil_impersonateAccount``), so any number of exchanges can play.
    """

    ROLES = ("hot", "deposit", "cold")

    def __init__(self, ws_url: str, exchanges: list[str], block_time_s: int = 12, seed: int = 7,
                 wall_per_block_s: float = 0.0) -> None:
        if len(set(exchanges)) != len(exchanges) or not exchanges:
            raise ValueError(f"exchanges must be distinct and not empty: {exchanges}")
        self.ws_url = ws_url
        self.exchanges = list(exchanges)
        self.block_time_s = block_time_s
        self.rng = random.Random(seed)
        self.wall_per_block_s = wall_per_block_s
        self.depositors: list[str] = []

    def wallet(self, exchange: str, role: str) -> str:
        """The same address for an exchange's role in every run, so that label files and results compare."""
        return "0x" + hashlib.sha256(f"haltwatch fleet {exchange} {role}".encode()).hexdigest()[:40]

    def write_labels(self, path: Path) -> None:
        path.write_text("".join(
            f'[[wallet]]\nexchange = "{exchange}"\nchain = "ethereum"\naddress = "{self.wallet(exchange, role)}"\n'
            f'role = "{role}"\nsource = "address played by haltwatch.traffic"\n\n'
            for exchange in self.exchanges for role in self.ROLES
        ))

    async def setup(self) -> None:
        async with JsonRpcSocket(self.ws_url) as rpc:
            self.depositors = [a.lower() for a in await rpc.call("eth_accounts")][1:6]
            await rpc.call("anvil_setCode", [TOKEN_ADDRESS, token_runtime(returns_bool=True)])
            await rpc.call("anvil_setCode", [NO_RETURN_TOKEN_ADDRESS, token_runtime(returns_bool=False)])
            for exchange in self.exchanges:
                for role in ("hot", "cold"):
                    address = self.wallet(exchange, role)
                    await rpc.call("anvil_impersonateAccount", [address])
                    await rpc.call("anvil_setBalance", [address, hex(10**24)])

    async def play(self, plans: dict[str, list[Phase]]) -> list[FleetBlockPlayed]:
        """Play every exchange's phases side by side; all plans must cover the same number of blocks."""
        if set(plans) != set(self.exchanges):
            raise ValueError(f"a plan for each of {self.exchanges} is needed, got {sorted(plans)}")
        if any(p.stall_s > 0 for phases in plans.values() for p in phases):
            raise ValueError("a chain stall stops every exchange at once: play it with ExchangePlayer")
        timelines = {ex: [p for p in phases for _ in range(p.blocks)] for ex, phases in plans.items()}
        lengths = {len(t) for t in timelines.values()}
        if len(lengths) != 1:
            raise ValueError(f"plans cover different numbers of blocks: { {e: len(t) for e, t in timelines.items()} }")
        played: list[FleetBlockPlayed] = []
        async with JsonRpcSocket(self.ws_url) as rpc:
            latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
            chain_time = int(latest["timestamp"], 16)
            for i in range(lengths.pop()):
                chain_time += self.block_time_s
                withdrawals: dict[str, list[str]] = {}
                for exchange in self.exchanges:
                    phase = timelines[exchange][i]
                    hot = self.wallet(exchange, "hot")
                    withdrawals[exchange] = [
                        str(await rpc.call("eth_sendTransaction", [withdrawal_tx(self.rng, hot)])).lower()
                        for _ in range(poisson(self.rng, phase.withdrawals_per_block))
                    ]
                    if self.rng.random() < 0.1:  # user deposits go on during a halt
                        await rpc.call("eth_sendTransaction", [{
                            "from": self.rng.choice(self.depositors), "to": self.wallet(exchange, "deposit"),
                            "value": hex(10**17)}])
                    if self.rng.random() < 0.05:  # cold-to-hot top-up: internal, never a withdrawal
                        await rpc.call("eth_sendTransaction", [{
                            "from": self.wallet(exchange, "cold"), "to": hot, "value": hex(10**18)}])
                await rpc.call("evm_setNextBlockTimestamp", [chain_time])
                await rpc.call("evm_mine", [])
                number = int(await rpc.call("eth_blockNumber"), 16)
                played.append(FleetBlockPlayed(number, chain_time, {e: t[i].name for e, t in timelines.items()},
                                               withdrawals))
                if self.wall_per_block_s:
                    await asyncio.sleep(self.wall_per_block_s)
        return played
