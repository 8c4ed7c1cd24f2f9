"""Builds the JSON lines of the generated events, byte for byte what ``schemas.codec.encode`` writes.

Kept apart from the drawing of counts (:mod:`.generate`): this is the per-record hot path, where formatting
templates and random material drawn in numpy chunks make the difference between 100k and 250k records/s.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import orjson

WITHDRAWAL, DEPOSIT, INTERNAL = 0, 1, 2
DIRECTIONS = ("withdrawal", "deposit", "internal")
FLUSH_LINES = 20_000

ASSETS: dict[str, tuple[tuple[str, int, float, float], ...]] = {
    # (asset, decimals, share of transfers, median amount in whole units)
    "ethereum": (("native", 18, 0.4, 0.3), ("0xdac17f958d2ee523a2206206994597c13d831ec7", 6, 0.6, 800.0)),
    "bsc": (("native", 18, 0.35, 1.0), ("0x55d398326f99059ff775485246999027b3197955", 18, 0.65, 500.0)),
    "tron": (("native", 6, 0.2, 2000.0), ("0xa614f803b6fd780986a42c78ec9c7f77e6ded13c", 6, 0.8, 600.0)),
    "polygon": (("native", 18, 0.3, 50.0), ("0xc2132d05d31c914a87c6611c10748aeb04b58e8f", 6, 0.7, 300.0)),
}


def block_hex(seed: int, *parts: object, size: int = 32) -> str:
    """A deterministic hex id (block hashes, wallets): the same seed and parts give the same id."""
    text = ":".join(str(p) for p in (seed, *parts))
    return "0x" + hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


@dataclass(slots=True)
class Stats:
    heads: int = 0
    transfers: Counter[str] = field(default_factory=Counter)
    withdrawals: Counter[str] = field(default_factory=Counter)

    @property
    def records(self) -> int:
        return self.heads + sum(self.transfers.values())


def pick_asset(chain: str, u: float) -> tuple[str, int, float]:
    """(asset, decimals, median amount) of a transfer, from a uniform draw ``u``."""
    options = ASSETS[chain]
    for asset, decimals, share, median in options:
        u -= share
        if u <= 0:
            return asset, decimals, median
    asset, decimals, _, median = options[-1]
    return asset, decimals, median


class Draws:
    """Random material drawn from numpy in chunks: per-call Python RNG would dominate the generator's time."""

    def __init__(self, rng: np.random.Generator, chunk: int = 1 << 16) -> None:
        self.rng = rng
        self.chunk = chunk
        self._hex = ""
        self._hex_at = 0
        self._uniform: list[float] = []
        self._normal: list[float] = []

    def hex(self, nbytes: int) -> str:
        width = 2 * nbytes
        if self._hex_at + width > len(self._hex):
            self._hex, self._hex_at = self.rng.bytes(self.chunk * 16).hex(), 0
        at = self._hex_at
        self._hex_at = at + width
        return self._hex[at:at + width]

    def uniform(self) -> float:
        if not self._uniform:
            self._uniform = self.rng.random(self.chunk).tolist()
        return self._uniform.pop()

    def normal(self) -> float:
        if not self._normal:
            self._normal = self.rng.standard_normal(self.chunk).tolist()
        return self._normal.pop()


HEAD = ('{"chain":"%s","number":%d,"hash":"%s","parent_hash":"%s","block_time":%d,"received_at":%s,'
        '"schema_version":1,"type":"chain_head"}')
BLOCK = '{"chain":"%s","block_number":%d,"block_hash":"%s","block_time":%d,'
TRANSFER = ('"tx_hash":"0x%s","log_index":%d,"asset":"%s","amount":"%d","decimals":%d,"from_address":"%s",'
            '"to_address":"%s","exchange":"%s","direction":"%s","removed":false,"schema_version":1,"type":"transfer"}')
"""Line templates, field for field what ``schemas.codec.encode`` writes (a test holds them to it): formatting
strings is several times faster than building and serialising a dict per record."""


class Writer:
    """Builds the JSON lines and hands them, in chunks, to a thread that compresses and writes them.

    zlib releases the GIL, so compression runs on the second core while Python builds the next chunk.
    """

    def __init__(self, out: BinaryIO, truth: dict[str, Any], seed: int) -> None:
        self.out = out
        self.seed = seed
        self.draws = Draws(np.random.default_rng([seed, 2]))
        self.buffer: list[str] = []
        self.pending: list[Future[int]] = []
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.stats = Stats()
        low, high = (float(x) for x in next(iter(truth["chains"].values()))["latency_s"])
        self.latency = (low, high - low)
        self.wallets = {
            (ex, chain): (block_hex(seed, ex, chain, "hot", size=20), block_hex(seed, ex, chain, "hot2", size=20),
                          block_hex(seed, ex, chain, "cold", size=20))
            for ex, spec in truth["exchanges"].items() for chain in spec["chains"]
        }

    def line(self, text: str) -> None:
        self.buffer.append(text)
        if len(self.buffer) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            chunk = ("\n".join(self.buffer) + "\n").encode()
            self.buffer = []
            self.pending.append(self.pool.submit(self.out.write, chunk))
        while len(self.pending) > 2:  # bounded memory: wait for the compressor
            self.pending.pop(0).result()

    def close(self) -> None:
        self.flush()
        for done in self.pending:
            done.result()
        self.pending = []
        self.pool.shutdown()

    def head(self, chain: str, number: int, block_hash: str, parent: str, t: int) -> None:
        received = round(t + self.latency[0] + self.latency[1] * self.draws.uniform(), 3)
        self.stats.heads += 1
        self.line(HEAD % (chain, number, block_hash, parent, t, orjson.dumps(received).decode()))

    def transfer(self, prefix: str, chain: str, exchange: str, direction: int, log_index: int) -> int:
        """Write one transfer of the block whose common fields are ``prefix``; returns the next log index."""
        draws = self.draws
        asset, decimals, median = pick_asset(chain, draws.uniform())
        if asset == "native":
            index = -1
        else:
            index, log_index = log_index, log_index + 1
        amount = int(median * math.exp(1.3 * draws.normal()) * 10**decimals)
        hot, hot2, cold = self.wallets[(exchange, chain)]
        hot = hot if draws.uniform() < 0.7 else hot2
        other = "0x" + draws.hex(20)
        if direction == WITHDRAWAL:
            src, dst = hot, other
            self.stats.withdrawals[exchange] += 1
        elif direction == DEPOSIT:
            src, dst = other, hot
        else:
            src, dst = (hot, cold) if draws.uniform() < 0.5 else (cold, hot)
        name = DIRECTIONS[direction]
        self.stats.transfers[name] += 1
        self.line(prefix + TRANSFER % (draws.hex(32), index, asset, amount, decimals, src, dst, exchange, name))
        return log_index
