"""How a block's transfers are laid out on the transfers topic: one record per transfer, or one per partition.

``block`` (the default) writes a :class:`BlockTransfers` record to every partition for each block, holding
the transfers that a record keyed by their exchange would have put on that partition, then the block's
head. The workers' cost is per Kafka record, so this is what lets them keep up with a busy chain
(``docs/benchmarks.md``). ``event`` writes each :class:`TransferEvent` keyed by its exchange and then the
head to every partition: the layout of connectors before ``block_transfers`` existed, for a fleet whose
workers do not read that record yet (upgrade the workers first, then switch the connectors).

Both put a transfer on the partition kafka-python's default partitioner picks for its exchange's key (the
Java client's murmur2), so switching layouts, or retractions and label suggestions (always keyed records),
never move an exchange to another partition: its transfers stay in order on one partition, which the
detector and the store's deduplication rely on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from enum import StrEnum

from kafka.partitioner.default import murmur2

from schemas.records import BlockTransfers, ChainHead, TransferEvent

LAYOUT_ENV = "HALTWATCH_TRANSFER_RECORDS"
"""The environment variable of the connectors' ``--transfer-records``."""
TRANSFERS_PER_RECORD = 128
"""At most this many transfers in one record (a busier partition's block goes in several records), ~58 KB.

Consumers bound their buffers in records, not bytes: a Faust stream holds up to 4,096 records, so the cap is
what bounds a worker's buffered bytes, ~240 MB per stream if every record were full. Smaller records cost
more than Faust's own ~90 µs each: on the replay benchmark (~75 transfers per partition and block) a cap of
32 gave 7,859 events/s where 128 gave 11,349 (``docs/benchmarks.md``)."""


class TransferLayout(StrEnum):
    """A connector's ``--transfer-records`` (``HALTWATCH_TRANSFER_RECORDS``)."""

    BLOCK = "block"
    EVENT = "event"


@functools.lru_cache(maxsize=65_536)
def _index(key: bytes, count: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % count


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition kafka-python's default partitioner sends a record with this key to."""
    return partitions[_index(key, len(partitions))]


def block_records(
    head: ChainHead,
    transfers: Sequence[TransferEvent],
    partitions: Sequence[int],
    per_record: int = TRANSFERS_PER_RECORD,
) -> list[tuple[int, BlockTransfers]]:
    """(partition, record) for every record of one block in the ``block`` layout, in sending order: each
    partition gets its transfers in their block order, and its last record carries the head (a partition
    with no transfers gets the head alone, its watermark)."""
    mine: dict[int, list[TransferEvent]] = {p: [] for p in partitions}
    for transfer in transfers:
        mine[partition_for(transfer.exchange.encode(), partitions)].append(transfer)
    out: list[tuple[int, BlockTransfers]] = []
    for partition, ours in mine.items():
        chunks = [ours[i : i + per_record] for i in range(0, len(ours), per_record)] or [[]]
        for n, chunk in enumerate(chunks, start=1):
            out.append((partition, BlockTransfers(chunk, head if n == len(chunks) else None)))
    return out
