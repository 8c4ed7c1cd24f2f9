"""The detector's state in the worker's changelog-backed table: loaded on first sight, restored per partition,
saved in parts.

An exchange's state is saved in parts, one exchange-wide and one per (exchange, chain): a withdrawal changes one
chain's ~4 KB where the whole state of an exchange on 10 chains is ~40 KB, so a batch writes only the parts its
events changed, each once. The table is any mapping from keys to stored values (Faust's table in the worker, a
dict in the unit tests); writing goes through ``write`` (the worker hands a part to the producer itself, see
:mod:`streams.app`), so this module knows no Kafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from streams.detection.detector import OutageDetector
from streams.detection.state import Part

WritePart = Callable[[str, bytes, int], Awaitable[None]]
"""Store one part: (table key, value, partition)."""


def part_key(exchange: str, chain: str | None) -> str:
    """Table key of a part: the exchange's name for its exchange-wide part, a JSON pair for a chain's part."""
    return exchange if chain is None else orjson.dumps([exchange, chain]).decode()


def is_chain_part_key(key: str) -> bool:
    """Whether a table key is a chain part's (what :func:`part_key` makes of a chain), told from the key alone."""
    if not key.startswith("["):
        return False
    try:
        pair = orjson.loads(key)
    except orjson.JSONDecodeError:
        return False
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
        return False
    return part_key(*pair) == key


def stored_json(value: Any) -> bytes:
    """``value`` as JSON, in a ``bytes`` object that occupies only its own length.

    orjson (3.12 and later) returns ``bytes`` whose allocation keeps the capacity it reserved while writing:
    at least 4 KiB, and about six times the output for the state parts (a 5.6 KB chain part holds ~32 KB,
    measured with ``tracemalloc`` in ``tests/unit/test_state_values.py``; ``sys.getsizeof`` shows only the
    length). Harmless for a message sent and dropped, but the state table keeps one such value per
    (exchange, chain): with 1,000 exchanges on 10 chains that was about 250 MB of the detecting worker's
    memory. Copying into a ``bytes`` of the exact size (one memcpy of a few KB per saved part) releases the
    rest when orjson's buffer is freed.
    """
    return bytes(memoryview(orjson.dumps(value)))


def part_value(detector: OutageDetector, exchange: str, chain: str | None, partition: int) -> bytes | None:
    """The table value of one part of an exchange's state (``chain`` None: the exchange-wide part), or None
    when the detector has nothing for it. Kept in the table until the part is saved again, hence
    :func:`stored_json`."""
    if chain is None:
        value: dict[str, Any] = {"partition": partition, "state": detector.export_exchange(exchange)}
    else:
        part = detector.export_chain(exchange, chain)
        if not part:
            return None
        value = {"partition": partition, "exchange": exchange, "chain": chain, "state": part}
    return stored_json(value)


class DetectorStateTable:
    """Which exchanges this worker decides, per partition, and their state between the detector and the table.

    An exchange is decided on the partition its transfers arrive on (its ``owners``). After a start or a
    rebalance the table is the truth: the first event of a partition restores every exchange stored for it,
    and an exchange seen for the first time is loaded from the table, so that heads decide for it at once.
    """

    def __init__(self, detector: OutageDetector, table: Mapping[str, bytes], write: WritePart) -> None:
        self.detector = detector
        self.table = table
        self.write = write
        self.owners: dict[int, set[str]] = {}
        """partition → exchanges whose transfers arrive there (they are decided on that partition's heads)."""
        self._loaded: set[tuple[str, int]] = set()
        self._restored: set[int] = set()

    def owned(self, partition: int) -> set[str]:
        return self.owners.get(partition, set())

    def load(self, exchange: str, partition: int) -> set[Part]:
        """Make ``exchange`` known to the detector (from the table if stored there) and owned by ``partition``;
        returns the parts to save again at once (a state stored whole is rewritten in parts)."""
        if (exchange, partition) in self._loaded:
            return set()
        rewrite: set[Part] = set()
        stored = self.table.get(exchange)
        if stored is not None and exchange not in self.detector.view:
            state = orjson.loads(stored)["state"]
            if "chains" in state:  # one value with every chain inside: stored in parts from now on
                self.detector.restore_parts(exchange, state, state["chains"])
                rewrite = {(exchange, None), *((exchange, chain) for chain in state["chains"])}
            else:
                chains = {}
                for chain in state.get("chain_names", []):
                    part = self.table.get(part_key(exchange, chain))
                    if part is not None:
                        chains[chain] = orjson.loads(part)["state"]
                self.detector.restore_parts(exchange, state, chains)
        self.owners.setdefault(partition, set()).add(exchange)
        self._loaded.add((exchange, partition))
        return rewrite

    def restore(self, partition: int) -> set[Part]:
        """On the first event of ``partition`` since a start or rebalance: load every exchange stored for it
        (else an exchange without new transfers would not be decided on). Returns the parts to save again."""
        if partition in self._restored:
            return set()
        self._restored.add(partition)
        rewrite: set[Part] = set()
        for key, stored in list(self.table.items()):
            if is_chain_part_key(key):
                continue  # chain parts load with their exchange: no need to parse their ~5 KB values here
            if orjson.loads(stored)["partition"] == partition:
                rewrite |= self.load(key, partition)
        return rewrite

    async def save(self, dirty: Mapping[Part, int]) -> int:
        """Write every part in ``dirty`` (part → partition) that the detector still has; returns how many."""
        saved = 0
        for (exchange, chain), partition in dirty.items():
            if exchange not in self.detector.view:
                continue  # forgotten by a rebalance: its events are read again
            raw = part_value(self.detector, exchange, chain, partition)
            if raw is None:
                continue
            await self.write(part_key(exchange, chain), raw, partition)
            saved += 1
        return saved

    def forget(self) -> None:
        """Ownership may have moved in a rebalance: the detector forgets everything, to be reloaded on demand."""
        for exchange in list(self.detector.view):
            self.detector.forget(exchange)
        self.owners.clear()
        self._loaded.clear()
        self._restored.clear()
