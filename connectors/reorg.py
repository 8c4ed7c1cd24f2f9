"""Find where a reorg forked off what we published, and what must be retracted.

Pure logic, no I/O: the caller passes a function that returns the node's canonical block hash at a height
(``None`` when the node has no block there). We walk back from our newest published block; the first
height where the node's hash equals ours is the common ancestor, and every block of ours above it is
orphaned. A block of ours above the node's own head counts as orphaned only because a block below it
differed: the walk never starts on a missing height alone (see :func:`conflicts`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from connectors.checkpoint import PublishedBlock
from schemas.records import TransferEvent

CanonicalHash = Callable[[int], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Fork:
    """Result of a walk-back.

    ``ancestor`` is the newest height whose published hash is still canonical; ``None`` means the fork is
    older than every block we remember (deeper than the window), so the oldest ones may be missing from
    ``orphaned``. ``orphaned`` lists our blocks that are no longer canonical, newest first.
    """

    ancestor: PublishedBlock | None
    orphaned: tuple[PublishedBlock, ...]

    @property
    def deeper_than_window(self) -> bool:
        return self.ancestor is None


def conflicts(published: PublishedBlock | None, canonical_hash: str | None) -> bool:
    """True when the node has a *different* block at a height we published (not merely none yet)."""
    return published is not None and canonical_hash is not None and canonical_hash != published.hash


async def find_fork(recent: Sequence[PublishedBlock], canonical_hash: CanonicalHash) -> Fork:
    """Walk back from our newest block to the newest one the node still has at the same height."""
    orphaned: list[PublishedBlock] = []
    for block in reversed(recent):
        if await canonical_hash(block.number) == block.hash:
            return Fork(block, tuple(orphaned))
        orphaned.append(block)
    return Fork(None, tuple(orphaned))


def retractions(orphaned: Sequence[PublishedBlock]) -> list[TransferEvent]:
    """The exact events we published for orphaned blocks, marked removed (newest block first)."""
    return [replace(t, removed=True) for block in orphaned for t in block.transfers]
