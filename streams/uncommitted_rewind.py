"""Reads a partition with no committed offset from its beginning, even when records went by during recovery.

While a worker recovers its tables, the Kafka client already fetches the stream partitions it was just
assigned, from where the group starts (the earliest offset, as the worker asks). Faust hands those records to
nobody: its streams are still paused. Once the recovery is done it seeks every stream partition back to its
committed offset, so nothing is lost, but the Kafka client (aiokafka's ``seek_to_committed``) seeks only
where the committed offset is above 0. A partition the group never committed, or committed at 0, stays
where the dropped records left it: a fresh deployment, or a worker that restarts after one that crashed
before its first commit, silently skips its first records, and reads nothing at all when no new ones come.
Seen in ``test_worker_state_parts`` on a loaded machine: the client fetched offsets 0-119 during recovery,
the streams were resumed at 120, and the worker never saw block 301.

This is the same loss :mod:`streams.recovery_guard` undoes for changelog partitions, met by stream
partitions. :func:`rewind_after_seek` wraps the consumer's ``perform_seek`` so that, right after Faust's own
seek, every such stream partition is sought to its beginning: what ``consumer_auto_offset_reset =
"earliest"`` promises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aiokafka import TopicPartition

log = logging.getLogger(__name__)


def unsought(assigned: Collection[Any], read_offsets: Mapping[Any, int | None],
             is_changelog: Callable[[Any], bool]) -> set[Any]:
    """The stream partitions Faust's seek to committed offsets left alone: no committed offset (None), or 0,
    which the client takes for none. Changelog partitions are the recovery's own business."""
    return {tp for tp in assigned if not is_changelog(tp) and not read_offsets.get(tp)}


def rewind_after_seek(consumer: Any) -> None:
    """Make ``consumer.perform_seek`` (a Faust consumer's) also rewind the partitions it left alone."""
    seek_to_committed = consumer.perform_seek

    async def perform_seek() -> None:
        await seek_to_committed()
        # ``_read_offset``: where Faust just sought each partition (None where it did not), Faust's own record
        rewind = unsought(consumer.assignment(), consumer._read_offset, consumer._is_changelog_tp)
        if rewind:
            log.info("reading %d partitions with no committed offset from their beginning: %s", len(rewind),
                     ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in rewind)))
            # Offset 0, not Faust's ``seek_to_beginning`` (a no-op in its threaded consumer): where retention
            # already removed offset 0, the client resets to the earliest offset kept, as for any offset out
            # of range.
            await consumer.seek_wait({TopicPartition(tp.topic, tp.partition): 0 for tp in rewind})

    consumer.perform_seek = perform_seek
