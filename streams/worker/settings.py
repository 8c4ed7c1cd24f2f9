"""What a worker is told: its settings, and how its Faust app consumes (shared with ``bench/faust_ceiling.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from access.kafka_security import PLAINTEXT, KafkaSecurity
from access.kafka_topics import DEFAULT_REPLICATION_FACTOR
from schemas.topics import Topics
from streams.detection import DetectionPolicy
from streams.group_membership import DEFAULT_SESSION_TIMEOUT_S
from streams.roles import WorkerRole
from streams.web import OperatorSettings

STREAM_BUFFER_RECORDS = 2_048
"""Records each agent's stream may hold read but not yet processed (Faust's default is 4,096). While a worker
catches up, the buffers stay full, and with ``block_transfers`` records of a busy replay (~35 KB) the default
took the ``--role all`` worker to a 522 MB peak (with 2,048 it stays ~60 MB lower). It is also the backlog at which a
``--role all`` worker's ClickHouse sink, stalled by a ClickHouse outage, stops delivery to ``detect``
(``docs/operations.md``, known limits)."""
PRODUCER_BATCH_BYTES = 131_072
"""Bytes of one partition's messages the producer sends in one request at most (aiokafka's default is 16 KiB).
A ``detect`` batch saves thousands of ~6 KB state parts: with the default, two or three went per request,
and a replay spent ~400 µs per part waiting for the broker; at 128 KiB it spends ~140 µs and replays ~20 %
faster (``docs/benchmarks.md``). A request still goes out as soon as the last one returned (no linger), so
a lone outage event is not held back."""

@dataclass(frozen=True, slots=True)
class WorkerSettings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security: KafkaSecurity = PLAINTEXT
    """TLS and SASL of every Kafka connection the worker makes (Faust's and the topic declaration's)."""
    quiet_clients: bool = True
    """Keep the Kafka and ClickHouse client libraries' chatter out of the log (the CLI's ``--verbose`` lets it in)."""
    topics: Topics = field(default_factory=Topics)
    partitions: int = 8
    replication_factor: int = DEFAULT_REPLICATION_FACTOR
    """Copies of every topic the worker creates, its own and Faust's (more than 1 needs as many brokers)."""
    app_id: str = "haltwatch"
    role: WorkerRole = WorkerRole.ALL
    clickhouse_url: str | None = None
    clickhouse_cluster: str | None = None
    """Replicated tables ON CLUSTER this cluster (:mod:`schemas.cluster_ddl`); None: plain tables on one server."""
    chdb_path: Path = Path(".haltwatch/chdb")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Path(".haltwatch/worker")
    kafka_session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S
    """How long a crashed worker keeps its partitions (``streams/group_membership.py``)."""
    sink_batch: int = 5_000
    sink_within_s: float = 0.25
    detect_batch: int = 2_000
    """Records per ``detect`` batch at most: bounds the unacked records held in memory (a ``block_transfers``
    record holds up to 128 transfers, ~58 KB). While catching up, the batch fills with whatever arrived in
    ``detect_within_s``; live, a batch is a few records."""
    detect_within_s: float = 0.2
    """Longest wait to fill a ``detect`` batch: what batching may add to a decision's latency (the product
    asks for decisions queryable within a second). Every batch saves each part it touched once, so a shorter
    window also means more saves: replay throughput and memory depend on it (``docs/benchmarks.md``)."""
    chain_check_s: float = 2.0
    policy: DetectionPolicy = field(default_factory=DetectionPolicy)
    exchange_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    operator: OperatorSettings = field(default_factory=OperatorSettings)
    """Status page, health, metrics and webhook alerts (``streams/web``)."""


def consuming_options(kafka_bootstrap: str, partitions: int,
                      security: KafkaSecurity = PLAINTEXT) -> dict[str, Any]:
    """The Faust app settings that decide how the worker consumes its topics: broker, store, partitions,
    raw key and value serializers, where a new consumer group starts.

    :func:`create_app` builds the worker's app with them, and ``bench/faust_ceiling.py`` (what Faust alone
    can move on a machine) builds its app with them too, so that the ceiling measures the worker's way of
    consuming. The batch sizes are :class:`WorkerSettings`' ``detect_batch`` and ``detect_within_s``."""
    return {
        "broker": f"kafka://{kafka_bootstrap}",
        "broker_credentials": security.faust_credentials(),
        "store": "memory://",
        "topic_partitions": partitions,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_auto_offset_reset": "earliest",
        "stream_buffer_maxsize": STREAM_BUFFER_RECORDS,
    }
