"""Publish blocks that are linked by their parent, checkpoint each one, retract orphaned ones.

The one writer of every connector (EVM, Solana, Bitcoin, Tron). A block follows the checkpoint when its
*parent* is the last published block (number and hash). On EVM chains, Bitcoin and Tron the parent is always
the number just below; on Solana, slots without a block (skipped slots) are normal, so a block at slot 105
whose ``parentSlot`` is 101 follows a checkpoint at 101. The checkpoint file (``connectors.checkpoint``) is
numbered by block, slot or height.

Order of work per block: dead letters of its odd parts, its transfers and head (acknowledged by Kafka), then
the checkpoint. A crash between Kafka's acknowledgement and the checkpoint publishes that block again after
the restart with identical records (same keys, same event ids; only the head's wall-clock ``received_at``
differs), which consumers collapse; a block is never skipped. A Kafka failure does not end the process: the
same block is published again after a growing, jittered wait, and the producer is replaced now and then.

On a fork (a block whose parent is not what we published), :meth:`LinkedWriter.undo_reorg` walks back to the
common ancestor with the node's canonical hashes, publishes exact retractions (``removed=True``, keyed by
exchange like the originals so each lands after its original) of every event of the orphaned blocks, and
moves the checkpoint back; the caller then reads forward again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from connectors.backoff import Backoff
from connectors.checkpoint import Checkpoint, CheckpointError, CheckpointFile, PublishedBlock, save_until_written
from connectors.labels import LabelRegistry
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher, PublishError
from connectors.reorg import CanonicalHash, find_fork, retractions
from schemas.records import ChainHead, DeadLetter, LabelSuggestion, TransferEvent

log = logging.getLogger(__name__)
MAX_HELD_DEAD_LETTERS = 10_000


class Stopped(Exception):
    """Stop was requested while waiting to retry; the block stays unpublished and not checkpointed."""


class MalformedBlock(ValueError):
    """A block reply lacks a field we must have: the block is read again, never skipped (a gap looks like silence)."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """A piece of node data we could not use, kept with its raw JSON for the dead-letter topic."""

    reason: str
    raw: str


class TransferWatch(Protocol):
    """Sees every movement of a block, labelled or not (the rotation watch, a discovery's evidence book)."""

    def observe(self, block_time: int, tx_hash: str, asset: str, amount: int, sender: str,
                recipient: str) -> LabelSuggestion | None: ...


@dataclass(slots=True)
class LinkedBlock:
    """One block as parsed: its head, the number of its parent (slot or height), and its labelled events."""

    head: ChainHead
    parent_number: int
    transfers: list[TransferEvent] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    suggestions: list[LabelSuggestion] = field(default_factory=list)

    def observe(self, rotation: TransferWatch | None, tx_hash: str, asset: str, amount: int, src: str,
                dst: str) -> None:
        """Show one movement, labelled or not, to the hot-wallet rotation watch; its suggestions ride along."""
        if rotation is not None:
            suggestion = rotation.observe(self.head.block_time, tx_hash, asset, amount, src, dst)
            if suggestion is not None:
                self.suggestions.append(suggestion)

    def add_labelled(self, labels: LabelRegistry, tx_hash: str, log_index: int, asset: str, amount: int,
                     decimals: int, src: str, dst: str) -> None:
        """One transfer event per labelled side of a movement (none when neither side is labelled)."""
        head = self.head
        for c in labels.classify(head.chain, src, dst):
            self.transfers.append(TransferEvent(
                chain=head.chain, block_number=head.number, block_hash=head.hash, block_time=head.block_time,
                tx_hash=tx_hash, log_index=log_index, asset=asset, amount=str(amount), decimals=decimals,
                from_address=src, to_address=dst, exchange=c.exchange, direction=c.direction,
            ))


class LinkedWriter:
    """Publishes one chain's blocks in parent order and keeps its checkpoint."""

    def __init__(
        self,
        chain: str,
        source: str,
        window: int,
        publisher: BlockPublisher,
        checkpoint_file: CheckpointFile,
        metrics: ConnectorMetrics,
        stopping: asyncio.Event,
        clock: Callable[[], float] = time.time,
        reset_producer_after: int = 3,
        rebase_on_node: bool = False,
    ) -> None:
        self.chain = chain
        self.source = source
        self.window = max(window, 1)
        self.publisher = publisher
        self.checkpoint_file = checkpoint_file
        self.metrics = metrics
        self.stopping = stopping
        self.clock = clock
        self.reset_producer_after = reset_producer_after
        self.rebase_on_node = rebase_on_node
        """After a fork deeper than the blocks remembered, take the node's block just below the orphaned ones as
        the new base (EVM: every number has a block); otherwise the oldest orphaned block's parent hash."""
        self.checkpoint = checkpoint_file.load()
        checkpoint_file.check_writable()  # a path that can never be written fails now, not after publishing
        if self.checkpoint is not None and self.checkpoint.chain != chain:
            raise CheckpointError(
                f"checkpoint {checkpoint_file.path} belongs to chain {self.checkpoint.chain!r}, not {chain!r}; "
                "use one checkpoint file per chain"
            )
        self.first_number: int | None = None
        """Where to start without a checkpoint (set by the caller once it knows the node's head)."""
        self.node_head = -1
        self.blocks_published = 0
        self.events_published = 0
        self._dead: list[DeadLetter] = []
        self._dropped_dead = 0

    # -- where we are --------------------------------------------------------------------------------
    @property
    def next_number(self) -> int:
        """The first slot/height not yet published."""
        if self.checkpoint is not None:
            return self.checkpoint.number + 1
        if self.first_number is None:
            raise RuntimeError("no checkpoint and no first block")
        return self.first_number

    @property
    def published_number(self) -> int:
        return self.checkpoint.number if self.checkpoint is not None else -1

    def extends(self, block: LinkedBlock) -> bool:
        """True when the block's parent is the last published block (or nothing was published yet)."""
        cp = self.checkpoint
        return cp is None or (
            block.parent_number == cp.number and block.head.parent_hash == cp.hash and block.head.number > cp.number
        )

    def misses_parent(self, block: LinkedBlock) -> bool:
        """True when the block's parent lies after the last published block: a block in between was not read."""
        cp = self.checkpoint
        return cp is not None and block.parent_number > cp.number

    @property
    def can_walk_back(self) -> bool:
        """False only for a checkpoint written before recent blocks were kept: nothing to compare with."""
        return self.checkpoint is not None and bool(self.checkpoint.recent)

    # -- dead letters ------------------------------------------------------------------------------
    def dead_letter(self, raw: str, reason: str, kind: str) -> None:
        """Queue unusable input for the dead-letter topic (sent before the next block, never blocking it)."""
        log.warning("%s: dead letter (%s): %s", self.chain, kind, reason)
        self.metrics.dead_letter(kind)
        self._dead.append(DeadLetter(self.source, reason, raw[:1_000_000], self.clock(), {"kind": kind}))
        if len(self._dead) > MAX_HELD_DEAD_LETTERS:
            self._dropped_dead += len(self._dead) - MAX_HELD_DEAD_LETTERS
            del self._dead[: len(self._dead) - MAX_HELD_DEAD_LETTERS]
            log.error("%s: Kafka unreachable; %d dead letters dropped so far", self.chain, self._dropped_dead)

    async def flush_dead_letters(self) -> None:
        """Best effort: on a Kafka error they stay queued for the next try."""
        if not self._dead:
            return
        letters, self._dead = self._dead, []
        try:
            await asyncio.to_thread(self.publisher.dead_letter, letters)
        except PublishError as exc:
            log.warning("%s: %d dead letters not delivered yet: %s", self.chain, len(letters), exc)
            self._dead = letters + self._dead

    # -- publishing --------------------------------------------------------------------------------
    async def _until_delivered(self, send: Callable[[], None], what: str) -> None:
        """Run a blocking publish until Kafka acknowledges it; waits grow, the producer is replaced now and then."""
        backoff = Backoff(initial=0.5, maximum=30.0)
        failures = 0
        while True:
            try:
                await asyncio.to_thread(send)
                return
            except PublishError as exc:
                failures += 1
                self.metrics.publish_retry()
                delay = backoff.next_delay()
                log.warning("%s: %s not delivered (%s); retry %d in %.1f s", self.chain, what, exc, failures, delay)
                if failures % self.reset_producer_after == 0:
                    await asyncio.to_thread(self.publisher.reset)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            if self.stopping.is_set():
                raise Stopped(f"{what}: stop requested before Kafka acknowledged it")

    async def _save_checkpoint(self, what: str) -> None:
        """Write the checkpoint, holding here while the file system refuses (connectors.checkpoint)."""
        assert self.checkpoint is not None
        if not await save_until_written(self.checkpoint_file, self.checkpoint, self.stopping, self.metrics):
            raise Stopped(f"{what}: stop requested before its checkpoint was written")

    async def publish(self, block: LinkedBlock) -> None:
        """Publish the next block (it must extend the checkpoint) and checkpoint it."""
        head = block.head
        if not self.extends(block):
            raise ValueError(f"{self.chain} block {head.number} (parent {block.parent_number}) does not extend "
                             f"checkpoint {self.published_number}")
        for item in block.malformed:
            self.dead_letter(item.raw, f"block {head.number}: {item.reason}", "node_data")
        await self.flush_dead_letters()
        await self._until_delivered(
            lambda: self.publisher.publish_block(head, block.transfers, block.suggestions), f"block {head.number}"
        )
        published = PublishedBlock(head.number, head.hash, head.parent_hash, tuple(block.transfers))
        cp = self.checkpoint
        recent = (published,) if cp is None else (*cp.recent, published)[-self.window:]
        self.checkpoint = Checkpoint(self.chain, head.number, head.hash, recent)
        await self._save_checkpoint(f"block {head.number}")
        self.blocks_published += 1
        self.events_published += len(block.transfers)
        self.metrics.published(head.number, head.block_time, max(self.node_head, head.number))
        for t in block.transfers:
            self.metrics.events(t.direction.value, False)

    def accept_unverified(self, block: LinkedBlock) -> None:
        """A block that does not extend a checkpoint without recent blocks: make it the base, and say so."""
        cp = self.checkpoint
        reason = (
            f"block {block.head.number} (parent {block.parent_number} {block.head.parent_hash}) does not extend "
            f"published {cp.number if cp else '?'} {cp.hash if cp else '?'}, and the checkpoint holds no recent "
            "blocks to walk back: orphaned events cannot be retracted"
        )
        self.dead_letter(block.head.hash, reason, "reorg")
        if cp is not None:
            self.checkpoint = Checkpoint(cp.chain, block.parent_number, block.head.parent_hash, ())

    async def undo_reorg(self, canonical_hash: CanonicalHash) -> int:
        """Retract every published block the node no longer has; returns how many blocks were orphaned."""
        cp = self.checkpoint
        if cp is None or not cp.recent:
            return 0
        fork = await find_fork(cp.recent, canonical_hash)
        if not fork.orphaned:
            return 0
        events = retractions(fork.orphaned)
        await self._until_delivered(lambda: self.publisher.publish_retractions(events),
                                    f"retractions of {len(fork.orphaned)} orphaned blocks")
        if fork.ancestor is not None:
            self.checkpoint = cp.rewind(fork.ancestor.number, fork.ancestor.hash)
        else:
            oldest = fork.orphaned[-1]
            base_hash = oldest.parent_hash
            if self.rebase_on_node:
                base_hash = await canonical_hash(oldest.number - 1) or base_hash
            self.checkpoint = Checkpoint(cp.chain, oldest.number - 1, base_hash, ())
            self.dead_letter(
                oldest.hash,
                f"fork deeper than the {len(cp.recent)} blocks remembered: events published before block "
                f"{oldest.number} may remain unretracted",
                "reorg",
            )
        await self._save_checkpoint(f"rewind to block {self.checkpoint.number}")
        self.metrics.reorg()
        for t in events:
            self.metrics.events(t.direction.value, True)
        log.warning("%s: fork: blocks %d..%d orphaned, %d events retracted; reading again after %d", self.chain,
                    fork.orphaned[-1].number, fork.orphaned[0].number, len(events), self.checkpoint.number)
        return len(fork.orphaned)
