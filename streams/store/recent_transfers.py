"""What this process stored lately, per (exchange, chain): the transfers sink's memory, so that a transfer newer
than anything the table held before needs no lookup in ClickHouse.

Why: the read-before-write check (:mod:`streams.store.dedup`) asks ClickHouse for every batch's transfers, and
ClickHouse reads whole index granules of the batch's time span to answer: in a replay of a thousand exchanges,
gigabytes read for a table of a few million rows. Yet almost every transfer a sink writes is new, newer than
anything stored for its exchange and chain. This memory knows, per (exchange, chain), a *floor*: the newest
block time the table held when this process first wrote the pair (one query for all the pairs a batch brings
first), raised as old keys are forgotten. A transfer above the floor is in the table only if this process put
it there, and then its key is remembered here with its version: no lookup needed. A transfer at or below the
floor (a redelivery after a crash, a connector republishing from an old checkpoint, a backfill of old blocks)
is looked up as before.

It holds because one process writes a pair at a time: every transfer of an exchange comes through one Kafka
partition, and a rebalance, which may move the partition, makes the sink forget everything
(:meth:`forget`), so the next batch asks for the floors again. Keys are remembered only after their insert
succeeded, and only while no rebalance came in between (``generation``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping

Pair = tuple[str, str]
"""(exchange, chain)."""
MASK = (1 << 64) - 1
WINDOW_S = 300
"""Block time a key stays remembered after the newest of its pair: what a connector's republish reaches back
in practice (it writes its checkpoint every block, and a restart republishes the blocks since). Older keys are
forgotten and the floor moves up past them, so a row that old is looked up again: correct, only slower."""


class RecentTransfers:
    def __init__(self, window_s: int = WINDOW_S) -> None:
        self.window_s = window_s
        self.generation = 0
        """Moves on at every :meth:`forget`: what an insert started before it learned is not kept."""
        self._lock = threading.Lock()
        self._floor: dict[Pair, int] = {}
        self._keys: dict[int, int] = {}
        """hash of a transfer's key -> ``version << 1 | removed`` of its newest stored row (one int, not a pair:
        the memory holds hundreds of thousands)."""
        self._times: dict[Pair, deque[int]] = {}
        self._hashes: dict[Pair, deque[int]] = {}
        """Per pair, the block times and key hashes in the order remembered (block order: a partition's)."""
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

    def fresh(self, pair: Pair, block_time: int) -> bool:
        """Whether a row is newer than anything the table held that this memory does not know."""
        floor = self._floor.get(pair)
        return floor is not None and block_time > floor

    def state(self, key_hash: int) -> tuple[int, int] | None:
        """(version, removed) of the newest row stored under this key, if remembered."""
        packed = self._keys.get(key_hash)
        return None if packed is None else (packed >> 1, packed & 1)

    def remember(self, rows: Iterable[tuple[Pair, int, int, int, int]], generation: int) -> None:
        """Stored rows: (pair, block time, key hash, version, removed), each above its pair's floor."""
        with self._lock:
            if generation != self.generation:
                return  # a rebalance came in between: the floors are asked again instead
            touched: set[Pair] = set()
            for pair, block_time, key_hash, version, removed in rows:
                if pair not in self._floor or block_time <= self._floor[pair]:
                    continue
                self._keys[key_hash] = version << 1 | removed
                times = self._times.get(pair)
                if times is None:
                    times = self._times[pair] = deque()
                    self._hashes[pair] = deque()
                times.append(block_time)
                self._hashes[pair].append(key_hash)
                if block_time > self._newest.get(pair, 0):
                    self._newest[pair] = block_time
                touched.add(pair)
            for pair in touched:
                self._prune(pair)

    def _prune(self, pair: Pair) -> None:
        times, hashes = self._times[pair], self._hashes[pair]
        oldest_kept = self._newest[pair] - self.window_s
        while times and times[0] < oldest_kept:
            block_time = times.popleft()
            self._keys.pop(hashes.popleft(), None)
            if block_time > self._floor[pair]:
                self._floor[pair] = block_time  # at or below it, a row is looked up again

    def forget(self) -> None:
        """After a rebalance: another process may have written these pairs since."""
        with self._lock:
            self.generation += 1
            self._floor.clear()
            self._keys.clear()
            self._times.clear()
            self._hashes.clear()
            self._newest.clear()

    def __len__(self) -> int:
        return len(self._keys)


def key_hash(key: tuple[str, str, str, str, int]) -> int:
    """A transfer's key (exchange, chain, block hash, tx hash, log index) as one 128-bit number, at the memory
    of one int instead of the key's strings.

    Two independent 64-bit hashes: the tuple's (built from its items' hashes) and that of the block and
    transaction hashes joined into one string (SipHash over the whole text). A hash of a tuple holding the key
    would not do: it is a function of the key's own hash, so it collides whenever that does. Two transfers of
    a window (hundreds of thousands of keys) then share a number with a chance of about 1e-28 rather than
    1e-9 (transfers of one transaction share the second half, and must collide in the first)."""
    return (hash(key) & MASK) << 64 | (hash(key[2] + key[3]) & MASK)
