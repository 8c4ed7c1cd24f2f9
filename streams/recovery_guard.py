"""Puts a table recovery back on track when the changelog records it waits for were lost on the way.

Faust starts a table's recovery by seeking each changelog partition to the first offset it still needs.
A partition just assigned has no committed offset, so the Kafka client resets it to the earliest offset on
its own and fetches from there at once. When the recovery's seek goes to that same offset while the
client's fetch is in flight, the fetched records are kept, handed to Faust's fetcher while its flow is
still stopped, and dropped. The client's position is then past them, Faust never seeks a changelog
partition back, and the recovery waits for them for ever: the worker reads no event again. Seen here in
``test_worker_scaleout`` (the worker left alone after the second one stopped) and in
``test_worker_state_parts`` (a worker restarted after a crash); the worker's log repeated "No event received
for active tp ... since recovery start", and debug logs showed the records fetched at that offset just
after the seek, then the next fetch asked from past them.

:func:`lost_from` decides, from what the recovery applied and where the client is, whether records were
lost; :class:`RecoveryGuard` looks every few seconds while a recovery runs and seeks back to the first lost
record. A seek back that was not needed costs a re-read: the recovery skips offsets it already applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

STALL_S = 10.0
"""Seconds without a record reaching the recovery, with the client past the records it needs, before the
guard seeks back. Records on their way take milliseconds; Faust itself warns after 30 s."""


@dataclass(frozen=True, slots=True)
class PartitionRecovery:
    """Where one changelog partition's recovery stands."""

    applied: int | None
    """The last offset the recovery applied (None or -1: none yet)."""
    last_offset: int | None
    """The partition's last offset when the recovery started (Faust's "highwater"; -1 when empty)."""
    position: int | None
    """The next offset the Kafka client will fetch."""
    quiet_s: float
    """Seconds since a record of this partition last reached the recovery, or since it started."""


def lost_from(partition: PartitionRecovery, stall_s: float = STALL_S) -> int | None:
    """The offset to seek back to when the client moved past records the recovery never got, else None."""
    applied = -1 if partition.applied is None else partition.applied
    if partition.last_offset is None or applied >= partition.last_offset:
        return None  # nothing left to read
    if partition.position is None or partition.position <= applied + 1:
        return None  # the client has not fetched past what was applied: the records are still to come
    if partition.quiet_s < stall_s:
        return None  # records may be on their way through Faust's queues
    return applied + 1


class RecoveryGuard:
    """Checks a Faust app's running table recovery (Faust's private recovery bookkeeping, read only) and
    seeks a changelog partition back when :func:`lost_from` says its records were lost."""

    def __init__(self, app: Any, stall_s: float = STALL_S) -> None:
        self.app = app
        self.stall_s = stall_s
        self.seeks = 0
        """Seek-backs done since start (a metric: each one is a recovery that would have hung)."""

    async def run(self, every_s: float) -> None:
        """Check every ``every_s`` for the app's life; a failed check is logged, never fatal."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.check()
            except Exception:
                log.exception("checking the table recovery failed")

    async def check(self) -> None:
        recovery = self.app.tables.recovery
        if not recovery.in_recovery or recovery._recovery_started_at is None:
            return
        now = time.monotonic()
        lost: dict[Any, int] = {}
        for tp in list(recovery.active_tps):
            received = recovery._active_events_received_at.get(tp, recovery._recovery_started_at)
            state = PartitionRecovery(
                applied=recovery.active_offsets.get(tp),
                last_offset=recovery.active_highwaters.get(tp),
                position=await self.app.consumer.position(tp),
                quiet_s=now - received,
            )
            offset = lost_from(state, self.stall_s)
            if offset is not None:
                log.warning(
                    "table recovery of %s[%d] is stuck: it applied offset %s of %s, but the client is at %s "
                    "and nothing arrived for %.0f s; seeking back to %d",
                    tp.topic, tp.partition, state.applied, state.last_offset, state.position, state.quiet_s, offset,
                )
                lost[tp] = offset
        if lost:
            await self.app.consumer.seek_wait(lost)
            self.seeks += len(lost)
