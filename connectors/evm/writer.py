"""Publish a chain's blocks in order, checkpoint each one, retract orphaned ones: the connector's only writer.

Order of work per block: dead letters of the block's odd parts, the block's transfers and head (acknowledged
by Kafka), then the checkpoint. A crash between Kafka's acknowledgement and the checkpoint makes the
block go out again after the restart, with the same records (same keys, same event ids; only the head's
wall-clock ``received_at`` differs), which consumers collapse; a block is never skipped.

A Kafka failure (:class:`PublishError`) does not end the process: the same block, not yet checkpointed, is
published again after a growing, jittered wait, and the producer is replaced after repeated failures.

On a reorg the writer walks back to the common ancestor (:mod:`connectors.evm.reorg`), publishes the
retractions of every event of the orphaned blocks (the same records with ``removed=True``, keyed by
exchange like the originals so each lands after its original), then moves the checkpoint back to the
ancestor; the caller then publishes the canonical blocks from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from connectors.backoff import Backoff
from connectors.checkpoint import Checkpoint, CheckpointError, CheckpointFile, PublishedBlock, save_until_written
from connectors.evm.blocks import ParsedBlock
from connectors.evm.config import EvmChainConfig
from connectors.evm.reorg import CanonicalHash, find_fork, retractions
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher, PublishError
from schemas.records import ChainHead, DeadLetter

log = logging.getLogger(__name__)
MAX_HELD_DEAD_LETTERS = 10_000


class Stopped(Exception):
    """Stop was requested while waiting to retry; the block stays unpublished and not checkpointed."""


class BlockWriter:
    """Publishes one chain's blocks and keeps its checkpoint."""

    def __init__(
        self,
        config: EvmChainConfig,
        publisher: BlockPublisher,
        checkpoint_file: CheckpointFile,
        metrics: ConnectorMetrics,
        stopping: asyncio.Event,
        clock: Callable[[], float] = time.time,
        reset_producer_after: int = 3,
    ) -> None:
        self.config = config
        self.publisher = publisher
        self.checkpoint_file = checkpoint_file
        self.metrics = metrics
        self.stopping = stopping
        self.clock = clock
        self.reset_producer_after = reset_producer_after
        self.checkpoint = checkpoint_file.load()
        checkpoint_file.check_writable()  # a path that can never be written fails now, not after publishing
        if self.checkpoint is not None and self.checkpoint.chain != config.chain:
            raise CheckpointError(
                f"checkpoint {checkpoint_file.path} belongs to chain {self.checkpoint.chain!r}, "
                f"not {config.chain!r}; use one checkpoint file per chain"
            )
        self.first_block: int | None = None
        """Where to start when there is no checkpoint (set by the caller once it knows the node's head)."""
        self.node_head = -1
        self.blocks_published = 0
        self.events_published = 0
        self._dead: list[DeadLetter] = []
        self._dropped_dead = 0

    # -- where we are --------------------------------------------------------------------------------
    @property
    def next_block(self) -> int:
        if self.checkpoint is not None:
            return self.checkpoint.number + 1
        if self.first_block is None:
            raise RuntimeError("no checkpoint and no first block")
        return self.first_block

    @property
    def published_number(self) -> int:
        return self.checkpoint.number if self.checkpoint is not None else -1

    def extends(self, head: ChainHead) -> bool:
        """True when ``head`` is the child of the last published block (or nothing was published yet)."""
        cp = self.checkpoint
        return cp is None or (head.number == cp.number + 1 and head.parent_hash == cp.hash)

    @property
    def can_walk_back(self) -> bool:
        """False only for a checkpoint written before recent blocks were kept: nothing to compare with."""
        return self.checkpoint is not None and bool(self.checkpoint.recent)

    # -- dead letters ------------------------------------------------------------------------------
    def dead_letter(self, raw: str, reason: str, kind: str) -> None:
        """Queue unusable input for the dead-letter topic (sent before the next block, never blocking it)."""
        log.warning("%s: dead letter (%s): %s", self.config.chain, kind, reason)
        self.metrics.dead_letter(kind)
        self._dead.append(DeadLetter(self.config.source, reason, raw[:1_000_000], self.clock(), {"kind": kind}))
        if len(self._dead) > MAX_HELD_DEAD_LETTERS:
            self._dropped_dead += len(self._dead) - MAX_HELD_DEAD_LETTERS
            del self._dead[: len(self._dead) - MAX_HELD_DEAD_LETTERS]
            log.error("%s: Kafka unreachable; %d dead letters dropped so far", self.config.chain, self._dropped_dead)

    async def flush_dead_letters(self) -> None:
        """Best effort: on a Kafka error they stay queued for the next try."""
        if not self._dead:
            return
        letters, self._dead = self._dead, []
        try:
            await asyncio.to_thread(self.publisher.dead_letter, letters)
        except PublishError as exc:
            log.warning("%s: %d dead letters not delivered yet: %s", self.config.chain, len(letters), exc)
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
                log.warning("%s: %s not delivered (%s); retry %d in %.1f s", self.config.chain, what, exc,
                            failures, delay)
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

    async def publish(self, parsed: ParsedBlock) -> None:
        """Publish the next block (it must follow the checkpoint) and checkpoint it."""
        head = parsed.head
        if self.checkpoint is not None and head.number != self.checkpoint.number + 1:
            raise ValueError(f"block {head.number} is not the next one after {self.checkpoint.number}")
        for item in parsed.malformed:
            self.dead_letter(item.raw, f"block {head.number}: {item.reason}", "node_data")
        await self.flush_dead_letters()
        await self._until_delivered(
            lambda: self.publisher.publish_block(head, parsed.transfers, parsed.suggestions), f"block {head.number}"
        )
        block = PublishedBlock(head.number, head.hash, head.parent_hash, tuple(parsed.transfers))
        cp = self.checkpoint
        self.checkpoint = (
            Checkpoint.after(self.config.chain, block) if cp is None else cp.advance(block, self.config.window)
        )
        await self._save_checkpoint(f"block {head.number}")
        self.blocks_published += 1
        self.events_published += len(parsed.transfers)
        self.metrics.published(head.number, head.block_time, max(self.node_head, head.number))
        for t in parsed.transfers:
            self.metrics.events(t.direction.value, False)

    def accept_unverified(self, head: ChainHead) -> None:
        """A block that does not extend a legacy checkpoint (no recent hashes): publish it, but say so."""
        cp = self.checkpoint
        reason = (
            f"block {head.number} (parent {head.parent_hash}) does not extend published {cp.hash if cp else '?'}, "
            "and the checkpoint holds no recent blocks to walk back: orphaned events cannot be retracted"
        )
        self.dead_letter(head.hash, reason, "reorg")
        if cp is not None:  # let this block be the new base
            self.checkpoint = Checkpoint(cp.chain, head.number - 1, head.parent_hash, ())

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
            base_hash = await canonical_hash(oldest.number - 1) or oldest.parent_hash
            self.checkpoint = Checkpoint(cp.chain, oldest.number - 1, base_hash, ())
            self.dead_letter(
                oldest.hash,
                f"reorg deeper than the {len(cp.recent)} blocks remembered: events published before block "
                f"{oldest.number} may remain unretracted",
                "reorg",
            )
        await self._save_checkpoint(f"rewind to block {self.checkpoint.number}")
        self.metrics.reorg()
        for t in events:
            self.metrics.events(t.direction.value, True)
        log.warning(
            "%s: reorg: blocks %d..%d orphaned, %d events retracted; republishing from %d",
            self.config.chain, fork.orphaned[-1].number, fork.orphaned[0].number, len(events),
            self.checkpoint.number + 1,
        )
        return len(fork.orphaned)
