"""Publish one block's events to Kafka with kafka-python, in an order consumers can rely on.

Per block: every transfer (keyed by exchange) is sent and acknowledged first; only then is the block's
head sent to the heads topic and to *every* partition of the transfers topic. So in each transfers
partition the head of block N follows all of that partition's transfers of block N, and a consumer that
sees the head knows the block is complete for its exchanges. ``flush()`` alone does not say whether sends
succeeded, so each send's future is checked and a failure is raised, never dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata

from schemas.codec import encode
from schemas.records import ChainHead, DeadLetter, FeedHeartbeat, TransferEvent
from schemas.topics import Topics

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """Kafka did not acknowledge a send; the block must be published again."""


def ensure_topics(bootstrap: str, topics: Topics, partitions: int, timeout_s: float = 30.0) -> None:
    """Create haltwatch's topics if missing (explicit partition counts beat broker defaults)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="haltwatch-admin")
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise PublishError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
            time.sleep(1)
    try:
        existing = set(admin.list_topics())
        wanted = [topics.transfers, topics.heads, topics.outages, topics.dead_letters]
        new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


class BlockPublisher:
    """A kafka-python producer that publishes whole blocks, synchronously, with delivery checked."""

    def __init__(self, bootstrap: str, topics: Topics, send_timeout_s: float = 60.0) -> None:
        self.topics = topics
        self.send_timeout_s = send_timeout_s
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_in_flight_requests_per_connection=5,
            delivery_timeout_ms=int(send_timeout_s * 1000),
            client_id="haltwatch-connector",
        )
        self._transfer_partitions: list[int] = []

    def _partitions(self) -> list[int]:
        if not self._transfer_partitions:
            parts = self._producer.partitions_for(self.topics.transfers)
            if not parts:
                raise PublishError(f"topic {self.topics.transfers} has no partitions (does it exist?)")
            self._transfer_partitions = sorted(parts)
        return self._transfer_partitions

    def _wait(self, futures: Sequence[FutureRecordMetadata], what: str) -> None:
        self._producer.flush(timeout=self.send_timeout_s)
        for future in futures:
            try:
                future.get(timeout=self.send_timeout_s)
            except KafkaError as exc:
                raise PublishError(f"{what}: Kafka did not acknowledge a send: {exc}") from exc

    def publish_block(self, head: ChainHead, transfers: Sequence[TransferEvent]) -> None:
        """Send a block's transfers, wait for all acks, then its head (heads topic + every partition)."""
        futures = [
            self._producer.send(self.topics.transfers, key=t.exchange.encode(), value=encode(t)) for t in transfers
        ]
        self._wait(futures, f"{head.chain} block {head.number} transfers")
        head_bytes = encode(head)
        key = head.chain.encode()
        futures = [self._producer.send(self.topics.heads, key=key, value=head_bytes)]
        futures += [
            self._producer.send(self.topics.transfers, key=key, value=head_bytes, partition=p)
            for p in self._partitions()
        ]
        self._wait(futures, f"{head.chain} block {head.number} head")

    def heartbeat(self, beat: FeedHeartbeat) -> None:
        """Tell consumers the connector is alive even when no block comes (keyed by chain, heads topic)."""
        future = self._producer.send(self.topics.heads, key=beat.chain.encode(), value=encode(beat))
        self._wait([future], f"{beat.chain} heartbeat")

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        futures = [
            self._producer.send(self.topics.dead_letters, key=d.source.encode(), value=encode(d)) for d in letters
        ]
        self._wait(futures, "dead letters")

    def close(self) -> None:
        try:
            self._producer.flush(timeout=self.send_timeout_s)
        finally:
            self._producer.close(timeout=self.send_timeout_s)
