"""A detector fed with synthetic blocks of one chain: steady payouts, then a halt, then payouts again."""

from __future__ import annotations

import random

from haltwatch.traffic import poisson
from schemas.records import ChainHead, Direction, TransferEvent
from streams.detection import ChainMonitor, DetectionPolicy, ManualClock, OutageDetector

T0 = 1_700_006_400
BLOCK_S = 12


class Feed:
    """Drives a detector and a chain monitor like the worker's detect and monitor agents do."""

    def __init__(self, exchange: str = "okx", chain: str = "ethereum", seed: int = 3) -> None:
        self.clock = ManualClock(1_000.0)
        self.detector = OutageDetector(DetectionPolicy(), self.clock)
        self.monitor = ChainMonitor(self.clock)
        self.exchange, self.chain = exchange, chain
        self.rng = random.Random(seed)
        self.number = 0
        self.time = T0
        self.tx = 0
        self.outputs: list[object] = []
        self.transfers: list[TransferEvent] = []
        self.on_transfer = lambda event: None
        self.on_head = lambda head: None

    def transfer(self, block_hash: str) -> TransferEvent:
        self.tx += 1
        return TransferEvent(self.chain, self.number, block_hash, self.time, f"0x{self.tx:064x}", -1, "native",
                             "1", 18, "0xhot", f"0xuser{self.tx}", self.exchange, Direction.WITHDRAWAL)

    def blocks(self, n: int, per_block: float) -> None:
        for _ in range(n):
            self.number += 1
            self.time += BLOCK_S
            self.clock.advance(0.05)
            block_hash = f"0x{self.number:064x}"
            for _ in range(poisson(self.rng, per_block)):
                event = self.transfer(block_hash)
                self.transfers.append(event)
                self.outputs += self.detector.on_transfer(event).outputs
                self.on_transfer(event)
            head = ChainHead(self.chain, self.number, block_hash, f"0x{self.number - 1:064x}", self.time,
                             self.clock.now())
            self.outputs += self.detector.on_head(head).outputs
            self.monitor.on_head(head)
            self.on_head(head)
