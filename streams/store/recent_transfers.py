"""What this process stored lately, per (exchange, chain): the transfers sink's memory, so that a transfer newer
than anything the table held before needs no lookup in ClickHouse.

Why: the read-before-write check (:mod:`streams.store.dedup`) asks ClickHouse about every batch's transfers,
and ClickHouse reads whole index granules of the batch's time span to answer: in a replay of a thousand
exchanges, gigabytes read for a table of a few million rows. Yet almost every transfer a sink writes is new.

This memory knows, per (exchange, chain), a *floor*: the newest block time the table held when this process
first wrote the pair (one query for all the pairs a batch brings first), raised as old entries are forgotten;
and the blocks whose transfers of the pair this process stored since. A transfer is surely new, and needs no
lookup, when it is an addition (not a retraction), newer than its pair's floor, and of a block this process
has not stored transfers of for that pair: the table can hold it only if this process put it there, and it
would then have been stored with its block. Everything else is looked up as before: a redelivery, a
connector republishing blocks after a restart, a reorg's retraction, a backfill of old blocks, and every row
of a retried insert. A mistake in the memory (two blocks sharing a 64-bit hash) costs a lookup, never a row.

It holds because one process writes a pair at a time: every transfer of an exchange comes through one Kafka
partition, and a rebalance, which may move the partition, makes the sink forget everything
(:meth:`forget`), so the next batch asks for the floors again. Blocks are remembered only after their insert
succeeded, and only while no rebalance came in between (``generation``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

Pair = tuple[str, str]
"""(exchange, chain)."""
WINDOW_S = 300
"""Block time a block stays remembered after the newest of its pair: what a connector republishes after a
restart reaches back in practice (it writes its checkpoint every block; a worker's own redeliveries come after
a restart, to a memory that starts empty). Older blocks are forgotten and the floor moves up past them, so a
row that old is looked up again: correct, only slower. 10,000 pairs with a block every 30 s hold ~100,000."""


_NO_FLOOR = 2**63
"""The floor of a pair not asked yet: no row is above it."""


def block_key(exchange: str, chain: str, block_hash: str) -> int:
    """A block of one pair as one int: the memory holds hundreds of thousands."""
    return hash((exchange, chain, block_hash))


class RecentTransfers:
    def __init__(self, window_s: int = WINDOW_S) -> None:
        self.window_s = window_s
        self.generation = 0
        """Moves on at every :meth:`forget`: what an insert started before it learned is not kept."""
        self._lock = threading.Lock()
        self._floor: dict[Pair, int] = {}
        self._blocks: set[int] = set()
        self._times: dict[Pair, deque[int]] = {}
        self._keys: dict[Pair, deque[int]] = {}
        """Per pair, the block times and :func:`block_key` of the blocks remembered, in the order stored."""
        self._newest: dict[Pair, int] = {}

    def unknown(self, pairs: Iterable[Pair]) -> list[Pair]:
        """The pairs whose floor is not known yet (their first batch since a start or rebalance)."""
        with self._lock:
            return sorted({p for p in pairs if p not in self._floor})

    def set_floors(self, floors: Mapping[Pair, int], generation: int) -> None:
        """The newest block time the table holds per pair (0: none), as asked at ``generation``."""
        with self._lock:
            if generation == self.generation:
                for pair, floor in floors.items():
                    self._floor.setdefault(pair, floor)

    def unsure_rows(self, exchanges: Sequence[str], chains: Sequence[str], block_hashes: Sequence[str],
                    times: Sequence[int], removed: Sequence[int]) -> tuple[list[int], list[int]]:
        """(the rows of a batch's columns that may be in the table, every row's :func:`block_key`).

        A row is surely new when it is an addition, newer than its pair's floor, of a block not stored yet;
        every other row is unsure. One pass over the columns, as the sink checks every row it writes."""
        floors, blocks = self._floor, self._blocks
        keys = [hash(k) for k in zip(exchanges, chains, block_hashes, strict=True)]  # block_key, inlined
        unsure = [
            i for i, (exchange, chain, t, key, gone) in enumerate(zip(exchanges, chains, times, keys, removed,
                                                                      strict=True))
            if gone or key in blocks or t <= floors.get((exchange, chain), _NO_FLOOR)
        ]
        return unsure, keys

    def remember(self, blocks: Iterable[tuple[Pair, int, int]], generation: int) -> None:
        """Blocks whose transfers of a pair were stored: (pair, block time, :func:`block_key`)."""
        with self._lock:
            if generation != self.generation:
                return  # a rebalance came in between: the floors are asked again instead
            touched: set[Pair] = set()
            for pair, block_time, key in blocks:
                floor = self._floor.get(pair)
                if floor is None or block_time <= floor or key in self._blocks:
                    continue
                self._blocks.add(key)
                times = self._times.get(pair)
                if times is None:
                    times = self._times[pair] = deque()
                    self._keys[pair] = deque()
                times.append(block_time)
                self._keys[pair].append(key)
                if block_time > self._newest.get(pair, 0):
                    self._newest[pair] = block_time
                touched.add(pair)
            for pair in touched:
                self._prune(pair)

    def _prune(self, pair: Pair) -> None:
        times, keys = self._times[pair], self._keys[pair]
        oldest_kept = self._newest[pair] - self.window_s
        while times and times[0] < oldest_kept:
            block_time = times.popleft()
            self._blocks.discard(keys.popleft())
            if block_time > self._floor[pair]:
                self._floor[pair] = block_time  # at or below it, a row is looked up again

    def forget(self) -> None:
        """After a rebalance: another process may have written these pairs since."""
        with self._lock:
            self.generation += 1
            self._floor.clear()
            self._blocks.clear()
            self._times.clear()
            self._keys.clear()
            self._newest.clear()

    def __len__(self) -> int:
        return len(self._blocks)
