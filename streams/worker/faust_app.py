"""The worker's Faust app class, and the one place the detector's state parts meet Faust's table and producer."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import faust
from faust.serializers import codecs

from access.kafka_security import PLAINTEXT, KafkaSecurity, quiet_client_libraries
from access.kafka_topics import TopicSpec, declare_topics
from streams.recovery_guard import RecoveryGuard
from streams.uncommitted_rewind import rewind_after_seek
from streams.worker.state import WritePart

log = logging.getLogger(__name__)
RECOVERY_CHECK_S = 2.0
"""How often a running table recovery is checked for lost changelog records (``streams/recovery_guard.py``)."""


class WorkerApp(faust.App):
    """The Faust app, which creates its topics before it starts (why: ``access/kafka_topics.py``), guards
    its table recoveries (why: ``streams/recovery_guard.py``) and reads partitions nobody committed from their
    beginning (why: ``streams/uncommitted_rewind.py``)."""

    topic_specs: list[TopicSpec]
    bootstrap: str
    security: KafkaSecurity = PLAINTEXT
    quiet_clients: bool = True
    replication_factor: int
    recovery_guard: RecoveryGuard | None = None

    async def on_first_start(self) -> None:
        if self.quiet_clients:
            quiet_client_libraries()  # after Faust's own logging set-up, which would undo it
        declare = functools.partial(declare_topics, replication_factor=self.replication_factor,
                                    security=self.security, should_stop=lambda: self.should_stop)
        await asyncio.get_running_loop().run_in_executor(None, declare, self.bootstrap, self.topic_specs)
        if self.recovery_guard is not None:
            # started here, not as an ``app.timer``: Faust starts timers only once the first recovery is done
            self.add_future(self.recovery_guard.run(RECOVERY_CHECK_S))
        rewind_after_seek(self.consumer)
        await super().on_first_start()


def changelog_writer(app: faust.App, table: Any) -> WritePart:
    """How a state part is saved: into ``table`` and its changelog topic, on the partition given."""
    changelog = table.changelog_topic.get_topic_name() if table is not None else ""

    async def write_part(key: str, raw: bytes, partition: int) -> None:
        # What ``table[key] = raw`` does, with the partition given (parts are saved at the end of a batch,
        # where Faust has no current event to take it from), handed to the producer itself: Faust's own
        # paths wrap each of a batch's thousands of parts in futures its in-memory store does nothing with,
        # and its send buffer drains one message per ``wait_for`` once over 100. Faust flushes this producer
        # before it commits the batch's offsets, so a part is in Kafka before the events that made it.
        table.data[key] = raw
        encoded_key = codecs.dumps(table.key_serializer, key)  # as the table writes it: JSON
        sent = asyncio.ensure_future(await app.producer.send(changelog, encoded_key, raw, partition, None, None))
        sent.add_done_callback(part_sent)

    def part_sent(sent: asyncio.Future[Any]) -> None:
        """Log a part the producer gave up on (retries exhausted): its events are committed regardless."""
        if not sent.cancelled() and sent.exception() is not None:
            log.error("a detector state part was not saved: %r", sent.exception())

    return write_part
