"""Publish one block's events to Kafka with kafka-python, in an order consumers can rely on.

Per block, in the ``block`` layout (``connectors/block_layout.py``): every partition of the transfers topic
gets one :class:`BlockTransfers` record with its share of the block's transfers and the block's head; in
the ``event`` layout every transfer is sent keyed by exchange and then the head to *every* partition.
Either way the transfers topic's records are acknowledged before the head goes to the heads topic, and in
each transfers partition the head of block N follows all of that partition's transfers of block N, so a
consumer that sees the head knows the block is complete for its exchanges. ``flush()`` alone does not say
whether sends succeeded, so each send's future is checked and a failure is raised, never dropped.

Backpressure: the caller publishes one block at a time and waits for its acknowledgements before it
hands over the next, so the producer never buffers more than one block (kafka-python 3 has no
``buffer_memory`` bound of its own) and a slow or absent broker slows the chain reader down instead of
growing memory; ``send`` waits at most ``max_block_ms`` for metadata. Every
Kafka failure, including one raised by ``send`` itself, surfaces as :class:`PublishError`; the connector
then retries the same, not yet checkpointed, block. A producer that keeps failing is replaced
(:meth:`BlockPublisher.reset`), since kafka-python can leave one wedged after a long broker outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from access.kafka_security import PLAINTEXT, KafkaSecurity
from access.kafka_topics import DEFAULT_REPLICATION_FACTOR, TopicSpec, create_missing
from connectors.block_layout import TransferLayout, block_records
from schemas.codec import encode
from schemas.records import ChainHead, DeadLetter, FeedHeartbeat, LabelSuggestion, Record, TransferEvent
from schemas.topics import Topics

log = logging.getLogger(__name__)
BOOTSTRAP_TIMEOUT_MS = 5_000
"""One attempt to reach Kafka; haltwatch logs a line per attempt and backs off between them."""


class PublishError(RuntimeError):
    """Kafka did not acknowledge a send; the block must be published again."""


def ensure_topics(
    bootstrap: str,
    topics: Topics,
    partitions: int,
    timeout_s: float = 30.0,
    replication_factor: int = DEFAULT_REPLICATION_FACTOR,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Create the topics a connector writes if missing (how: ``access/kafka_topics.py``); a Kafka that cannot
    be reached within ``timeout_s`` is a :class:`PublishError`, since the connector cannot run without it."""
    deadline = time.monotonic() + timeout_s
    wait_s = 1.0
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="haltwatch-admin",
                                     bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS, **security.client_options())
            break
        except KafkaError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PublishError(f"cannot reach Kafka at {bootstrap} within {timeout_s:.0f} s: {exc}") from None
            wait_s = min(wait_s * 2, 8.0, left)
            log.warning("Kafka at %s not reachable (%s); next try in %.0f s", bootstrap, exc, wait_s)
            time.sleep(wait_s)
    wanted = [topics.transfers, topics.heads, topics.outages, topics.dead_letters]
    try:
        create_missing(admin, [TopicSpec(name, partitions) for name in wanted], replication_factor)
    finally:
        admin.close()


class BlockPublisher:
    """A kafka-python producer that publishes whole blocks, synchronously, with delivery checked."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        send_timeout_s: float = 60.0,
        layout: TransferLayout = TransferLayout.BLOCK,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topics = topics
        self.layout = layout
        self.send_timeout_s = send_timeout_s
        self._producer: KafkaProducer | None = None
        self._transfer_partitions: list[int] = []
        self._producer_lock = threading.Lock()
        """Blocks and heartbeats are sent from two threads: one of them makes a new producer, never both."""

    def _make_producer(self) -> KafkaProducer:
        try:
            return KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                max_in_flight_requests_per_connection=5,
                delivery_timeout_ms=int(self.send_timeout_s * 1000),
                request_timeout_ms=min(30_000, int(self.send_timeout_s * 1000) - 1000),
                max_block_ms=int(self.send_timeout_s * 1000),
                client_id="haltwatch-connector",
                **self.security.client_options(),
            )
        except KafkaError as exc:
            raise PublishError(f"cannot create a Kafka producer for {self.bootstrap}: {exc}") from exc

    @property
    def producer(self) -> KafkaProducer:
        with self._producer_lock:
            if self._producer is None:
                self._producer = self._make_producer()
            return self._producer

    def reset(self) -> None:
        """Drop the producer (and whatever it still buffers); the next send makes a new one."""
        with self._producer_lock:
            producer, self._producer = self._producer, None
            self._transfer_partitions = []
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # closing a broken producer must not hide the error that led here
                log.warning("closing the old Kafka producer failed: %s", exc)

    def _partitions(self) -> list[int]:
        if not self._transfer_partitions:
            try:
                parts = self.producer.partitions_for(self.topics.transfers)
            except KafkaError as exc:
                raise PublishError(f"no metadata for {self.topics.transfers}: {exc}") from exc
            if not parts:
                raise PublishError(f"topic {self.topics.transfers} has no partitions (does it exist?)")
            self._transfer_partitions = sorted(parts)
        return self._transfer_partitions

    def _send(self, topic: str, key: bytes, record: Record | bytes, partition: int | None = None) -> Any:
        value = record if isinstance(record, bytes) else encode(record)
        try:
            return self.producer.send(topic, key=key, value=value, partition=partition)
        except KafkaError as exc:  # buffer full for max_block_ms, no metadata, producer closed ...
            raise PublishError(f"{topic}: send refused: {exc}") from exc

    def _wait(self, futures: Sequence[FutureRecordMetadata], what: str) -> None:
        """Wait for every send; on any failure the producer is replaced before the error is raised.

        kafka-python 3.0 wedges an idempotent producer whose batch expired (a broker down longer than the
        send timeout): it drops its producer id and never asks for a new one, so every later send times out
        too, even once the broker is back. A fresh producer is the way out; what the old one still held is
        sent again by the caller, which retries the whole block."""
        try:
            self.producer.flush(timeout=self.send_timeout_s)
        except KafkaError as exc:
            self.reset()
            raise PublishError(f"{what}: Kafka did not take the sends in time: {exc}") from exc
        for future in futures:
            try:
                future.get(timeout=self.send_timeout_s)
            except KafkaError as exc:
                self.reset()
                raise PublishError(f"{what}: Kafka did not acknowledge a send: {exc}") from exc

    def publish_block(
        self, head: ChainHead, transfers: Sequence[TransferEvent], suggestions: Sequence[LabelSuggestion] = ()
    ) -> None:
        """Send a block's label suggestions and transfers with its head on every transfers partition, wait for
        all acks, then its head on the heads topic."""
        what = f"{head.chain} block {head.number}"
        key = head.chain.encode()
        futures = [self._send(self.topics.transfers, s.exchange.encode(), s) for s in suggestions]
        if self.layout is TransferLayout.BLOCK:
            records = block_records(head, transfers, self._partitions())
            futures += [self._send(self.topics.transfers, key, record, partition=p) for p, record in records]
            self._wait(futures, f"{what} transfers")
            self._wait([self._send(self.topics.heads, key, head)], f"{what} head")
            return
        futures += [self._send(self.topics.transfers, t.exchange.encode(), t) for t in transfers]
        self._wait(futures, f"{what} transfers")
        head_bytes = encode(head)
        futures = [self._send(self.topics.heads, key, head_bytes)]
        futures += [self._send(self.topics.transfers, key, head_bytes, partition=p) for p in self._partitions()]
        self._wait(futures, f"{what} head")

    def publish_retractions(self, transfers: Sequence[TransferEvent]) -> None:
        """Send retractions (``removed=True``) keyed like the originals, so each lands after its original."""
        futures = [self._send(self.topics.transfers, t.exchange.encode(), t) for t in transfers]
        self._wait(futures, "retractions")

    def heartbeat(self, beat: FeedHeartbeat) -> None:
        """Tell consumers the connector is alive even when no block comes (keyed by chain, heads topic)."""
        future = self._send(self.topics.heads, beat.chain.encode(), beat)
        self._wait([future], f"{beat.chain} heartbeat")

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        futures = [self._send(self.topics.dead_letters, d.source.encode(), d) for d in letters]
        self._wait(futures, "dead letters")

    def close(self) -> None:
        if self._producer is None:
            return
        try:
            self._producer.flush(timeout=self.send_timeout_s)
        finally:
            self._producer.close(timeout=self.send_timeout_s)
            self._producer = None
