"""Which partitions are read again from their beginning after Faust's seek to committed offsets."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from streams.uncommitted_rewind import rewind_after_seek, unsought


class TP(NamedTuple):
    topic: str
    partition: int


CHANGELOG = "app-detector-state-changelog"


def test_uncommitted_and_zero_stream_partitions_are_rewound_changelogs_and_committed_ones_not() -> None:
    assigned = {TP("transfers", 0), TP("transfers", 1), TP("transfers", 2), TP(CHANGELOG, 0)}
    read = {TP("transfers", 0): 120, TP("transfers", 1): None, TP("transfers", 2): 0, TP(CHANGELOG, 0): None}
    got = unsought(assigned, read, lambda tp: tp.topic == CHANGELOG)
    assert got == {TP("transfers", 1), TP("transfers", 2)}
    # a partition Faust did not even note is uncommitted too
    assert unsought({TP("heads", 3)}, {}, lambda tp: False) == {TP("heads", 3)}


class FakeConsumer:
    """What the wrapper uses of Faust's consumer; ``perform_seek`` notes, as Faust's does, where it sought."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self._read_offset: dict[Any, int | None] = {}
        self.sought: list[dict[Any, int]] = []

    async def perform_seek(self) -> None:
        self._read_offset.update({tp: o if o is not None and o >= 0 else None for tp, o in self.committed.items()})

    def assignment(self) -> set[TP]:
        return set(self.committed)

    def _is_changelog_tp(self, tp: TP) -> bool:
        return tp.topic == CHANGELOG

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        self.sought.append(partitions)


def test_the_wrapped_seek_rewinds_after_faust_seeks() -> None:
    consumer = FakeConsumer({TP("transfers", 0): 7, TP("transfers", 1): None, TP(CHANGELOG, 0): None})
    rewind_after_seek(consumer)
    asyncio.run(consumer.perform_seek())
    (sought,) = consumer.sought
    assert {(tp.topic, tp.partition): offset for tp, offset in sought.items()} == {("transfers", 1): 0}
    assert all(type(tp).__module__.startswith("aiokafka") for tp in sought), "the client takes its own type"

    committed = FakeConsumer({TP("transfers", 0): 7})
    rewind_after_seek(committed)
    asyncio.run(committed.perform_seek())
    assert committed.sought == [], "nothing to rewind: no seek"
