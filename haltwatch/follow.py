"""``haltwatch follow``: print the outage topic live, for people (one line per state change) or scripts
(``--json``: each record exactly as on the topic, one per line).

The outage topic is haltwatch's public API; this is its reference consumer and the one a runbook can paste.
It reads without a consumer group (nothing to commit, nothing left behind on the cluster), assigns itself
every partition, and starts at the end of each (from now) or at its beginning (``--from-beginning``). Only
once it holds its positions does it say so on stderr (``following ... from ...``), so a script that waits
for that line loses no record published after it. SIGTERM or Ctrl-C stop it at once with exit 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from access.kafka_security import PLAINTEXT, KafkaSecurity
from access.secrets import redact
from haltwatch.kafka_options import check_access, with_kafka_security
from haltwatch.setting_types import HostPorts
from schemas.codec import SchemaError, decode
from schemas.records import CorrelatedIncident, OutageEvent
from schemas.topics import Topics

POLL_MS = 500
"""How long one poll waits for records: also how soon a stop request is seen."""
BOOTSTRAP_TIMEOUT_MS = 10_000
"""An unreachable Kafka is one error line after this long, not a silent wait."""


def _utc(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def outage_line(record: Any) -> str:
    """One readable line for an outage state change or a correlated incident."""
    if isinstance(record, OutageEvent):
        resolved = f" resolved {_utc(record.resolved_at)}" if record.resolved_at is not None else ""
        return (f"{_utc(record.detected_at)}  {record.exchange:<12} {record.state.value.upper():<9} "
                f"v{record.version:<3} scope={','.join(record.scope)} started {_utc(record.started_at)}{resolved} "
                f"gap {record.observed_gap_s:,} s confidence {record.confidence:.6f} id={record.outage_id}")
    if isinstance(record, CorrelatedIncident):
        return (f"{_utc(record.detected_at)}  {'CORRELATED':<12} v{record.version:<3} "
                f"exchanges={','.join(record.exchanges)} cause={record.likely_cause} id={record.incident_id}")
    return f"{type(record).__name__}: {record!r}"


class FollowError(RuntimeError):
    """Kafka cannot be followed: unreachable, or the topic does not exist. The message is the one line shown."""


def _consumer(kafka: str, topic: str, from_beginning: bool, security: KafkaSecurity = PLAINTEXT) -> Any:
    """A group-less consumer holding every partition of ``topic`` at its start or end."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False,
                                 client_id="haltwatch-follow", bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                                 **security.client_options())
        partitions = consumer.partitions_for_topic(topic)
    except KafkaError as exc:
        raise FollowError(f"cannot reach Kafka at {kafka}: {exc}") from None
    if not partitions:
        consumer.close()
        raise FollowError(f"topic {topic} does not exist at {kafka} (has a worker run with this --prefix?)")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    if from_beginning:
        consumer.seek_to_beginning(*assigned)
    else:
        consumer.seek_to_end(*assigned)
    for tp in assigned:
        consumer.position(tp)  # resolves the seek now: records published after this call are ours
    return consumer


def follow_topic(consumer: Any, keep: Callable[[Any], bool], as_json: bool, stop: threading.Event,
                 out: Callable[[str], None], err: Callable[[str], None]) -> int:
    """Print records until ``stop`` is set; returns how many were printed."""
    printed = 0
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=POLL_MS)
        for messages in batches.values():
            for message in messages:
                try:
                    record = decode(message.value)
                except SchemaError as exc:
                    err(f"skipped an undecodable record at partition {message.partition} offset "
                        f"{message.offset}: {exc}")
                    continue
                if not keep(record):
                    continue
                out(message.value.decode() if as_json else outage_line(record))
                printed += 1
    return printed


@with_kafka_security
def follow(
    kafka: Annotated[str, typer.Option(envvar="HALTWATCH_KAFKA_BOOTSTRAP", parser=HostPorts(),
                                       help="Kafka bootstrap servers.")] = "127.0.0.1:9092",
    prefix: Annotated[str, typer.Option(envvar="HALTWATCH_TOPIC_PREFIX", help="Prefix of every topic name.")] = (
        "haltwatch"),
    exchange: Annotated[
        str | None, typer.Option(help="Only this exchange's outages (and correlated incidents that include it).")
    ] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest record kept, not at the end.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Each record as on the topic, one JSON per line.")] = False,
    kafka_security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Print the outage topic live: every outage state change and correlated incident, as it is published."""
    topic = Topics(prefix).outages
    check_access(kafka, kafka_security)
    try:
        consumer = _consumer(kafka, topic, from_beginning, kafka_security)
    except FollowError as exc:
        typer.echo(f"error: {redact(str(exc))}", err=True)
        raise typer.Exit(1) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def keep(record: Any) -> bool:
        if exchange is None:
            return True
        if isinstance(record, CorrelatedIncident):
            return exchange in record.exchanges
        return getattr(record, "exchange", None) == exchange

    def out(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def err(line: str) -> None:
        sys.stderr.write(redact(line) + "\n")
        sys.stderr.flush()

    err(f"following {topic} at {kafka} from {'the beginning' if from_beginning else 'now'}"
        f"{f' (exchange {exchange})' if exchange else ''}; Ctrl-C stops")
    try:
        follow_topic(consumer, keep, as_json, stop, out, err)
    finally:
        consumer.close(autocommit=False)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    app.command()(follow)
