"""The Faust worker: detection, correlation, chain monitoring, ClickHouse sinks and a small JSON API.

Agents and the state they own:
- ``detect`` reads the transfers topic (per block and partition a ``block_transfers`` record: the transfers
  of the partition's exchanges, then the block's head; or, from a connector in the ``event`` layout,
  transfers keyed by exchange and every block's head written to every partition) in batches
  (``take_events``), feeds :class:`OutageDetector` event by event, keeps the
  detector state in a changelog-backed table, and sends outage state changes to the outage topic. The table
  holds each exchange's state in parts, one exchange-wide and one per (exchange, chain), and a batch saves
  only the parts its events changed, each once: a withdrawal changes one chain's ~4 KB, where the whole
  state of an exchange on 10 chains is ~40 KB. Faust acks a batch's events only when the agent asks for
  the next batch, that is after the batch's parts were saved and its outputs sent. Concurrency 1: with
  more, Faust can commit past an event still in flight.
- ``correlate`` sees every outage (they are copied to a one-partition internal topic) and groups those
  of several exchanges that start together into correlated incidents on the outage topic.
- ``monitor_chains`` reads heads and connector heartbeats per chain and, on a timer, reports chains that
  stalled or that we lost (wall-clock judgement; outages never depend on it).
- the ``sink_*`` agents batch their topics into ClickHouse. A batch is acknowledged only after its insert
  succeeded, so a crash re-reads it: transfers are checked against the table before they are written
  (``streams/store/dedup.py``) so the per-minute view never counts one twice, and the other tables'
  replacing keys collapse the duplicates. Each agent awaits its insert before it takes the next batch:
  that is the backpressure (Kafka keeps the backlog while ClickHouse is slow or down, the insert is
  retried until it succeeds, nothing is dropped).
- ``--role detect`` runs only the first three (and the snapshots below), ``--role store`` only the sinks, each
  as its own consumer group: then a ClickHouse outage long enough to fill a sink's stream buffer cannot
  pause detection, as it does with ``--role all`` (one consumer delivers each topic to all its agents).
- ``detect`` also snapshots its per-(exchange, chain) state to an internal topic, every few seconds per
  partition and at once on every outage state change; ``sink_status`` writes it to ``detector_status``,
  behind the ``current_status`` view that answers "what is down right now?".
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.serializers import codecs
from faust.types import EventT
from faust.web import Request, Response, View

from access.kafka_security import PLAINTEXT, KafkaSecurity, quiet_client_libraries
from access.kafka_topics import DEFAULT_REPLICATION_FACTOR, TopicSpec, declare_topics
from schemas.codec import SchemaError, decode, encode
from schemas.records import (
    BlockTransfers,
    ChainHead,
    ChainStatus,
    CorrelatedIncident,
    DeadLetter,
    Direction,
    FeedHeartbeat,
    LabelSuggestion,
    OutageEvent,
    Record,
    TransferEvent,
    events_of,
)
from schemas.topics import Topics
from streams.detection import ChainMonitor, DetectionPolicy, IncidentCorrelator, OutageDetector, WallClock
from streams.group_membership import DEFAULT_SESSION_TIMEOUT_S, heartbeat_interval
from streams.recovery_guard import RecoveryGuard
from streams.roles import WorkerRole
from streams.store.backend import ClickHouseBackend, StoreError
from streams.store.dedup import TransferDedup
from streams.store.migrate import open_migrated
from streams.store.queries import current_status, recent_outages, withdrawal_count
from streams.store.rows import (
    chain_status_row,
    correlated_row,
    head_row,
    outage_row,
    suggestion_row,
    transfer_rows,
)
from streams.store.sink import TableSink
from streams.store.status import snapshot
from streams.uncommitted_rewind import rewind_after_seek
from streams.web import OperatorSettings, register_web

log = logging.getLogger(__name__)
HEAD_SAVE_EVERY_S = 5.0
"""The parts a withdrawal or a state change touches are saved in its batch; the progress that heads alone
make (chain time credited) is saved at most this often per partition, in wall-clock seconds. Heads lost
between saves only under-count exposure after a restart (a later head that does not follow the saved one
is not credited), which delays a decision but never causes one. A time budget rather than a head count:
a replay reads thousands of heads a second and would save every state many times over."""
STATUS_EVERY_S = 5.0
"""Wall-clock seconds between two status snapshots of one partition's exchanges (state changes are
snapshotted at once). Only reporting depends on it, never a decision."""
STATUS_ROWS_PER_MESSAGE = 500
LIVE_LAG_S = 2.0
"""A ``detect`` batch whose last record was published less than this many seconds ago means the worker has
caught up with the chains: the snapshots its heads left stale are sent at once instead of by the next timer
tick (a catch-up, reading old records, leaves them to the timer)."""
STREAM_BUFFER_RECORDS = 2_048
"""Records each agent's stream may hold read but not yet processed (Faust's default is 4,096). While a worker
catches up, the buffers stay full, and with ``block_transfers`` records of a busy replay (~35 KB) the default
took the ``--role all`` worker to a 522 MB peak, over the 500 MB target. It is also the backlog at which a
``--role all`` worker's ClickHouse sink, stalled by a ClickHouse outage, stops delivery to ``detect`` (README,
known limits)."""
PRODUCER_BATCH_BYTES = 131_072
"""Bytes of one partition's messages the producer sends in one request at most (aiokafka's default is 16 KiB).
A ``detect`` batch saves thousands of ~6 KB state parts: with the default, two or three went per request,
and a replay spent ~400 µs per part waiting for the broker; at 128 KiB it spends ~140 µs and replays ~20 %
faster (``docs/benchmarks.md``). A request still goes out as soon as the last one returned (no linger), so
a lone outage event is not held back."""
RECOVERY_CHECK_S = 2.0
"""How often a running table recovery is checked for lost changelog records (``streams/recovery_guard.py``)."""
Part = tuple[str, str | None]
"""A saved part of the detector state: (exchange, chain), or (exchange, None) for the exchange-wide part."""


def part_key(exchange: str, chain: str | None) -> str:
    """Table key of a part: the exchange's name for its exchange-wide part (the key a whole state had
    before states were saved in parts), a JSON pair for a chain's part."""
    return exchange if chain is None else orjson.dumps([exchange, chain]).decode()


def is_chain_part_key(key: str) -> bool:
    """Whether a table key is a chain part's (what :func:`part_key` makes of a chain), told from the key alone."""
    if not key.startswith("["):
        return False
    try:
        pair = orjson.loads(key)
    except orjson.JSONDecodeError:
        return False
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
        return False
    return part_key(*pair) == key


def stored_json(value: Any) -> bytes:
    """``value`` as JSON, in a ``bytes`` object that occupies only its own length.

    orjson (3.12 and later) returns ``bytes`` whose allocation keeps the capacity it reserved while writing:
    at least 4 KiB, and about six times the output for the state parts (a 5.6 KB chain part holds ~32 KB,
    measured with ``tracemalloc`` in ``tests/unit/test_state_values.py``; ``sys.getsizeof`` shows only the
    length). Harmless for a message sent and dropped, but the state table keeps one such value per
    (exchange, chain): with 1,000 exchanges on 10 chains that was about 250 MB of the detecting worker's
    memory. Copying into a ``bytes`` of the exact size (one memcpy of a few KB per saved part) releases the
    rest when orjson's buffer is freed.
    """
    return bytes(memoryview(orjson.dumps(value)))


def part_value(detector: OutageDetector, exchange: str, chain: str | None, partition: int) -> bytes | None:
    """The table value of one part of an exchange's state (``chain`` None: the exchange-wide part), or None
    when the detector has nothing for it. Kept in the state table until the part is saved again, hence
    :func:`stored_json`."""
    if chain is None:
        value: dict[str, Any] = {"partition": partition, "state": detector.export_exchange(exchange)}
    else:
        part = detector.export_chain(exchange, chain)
        if not part:
            return None
        value = {"partition": partition, "exchange": exchange, "chain": chain, "state": part}
    return stored_json(value)


@dataclass(slots=True)
class DetectBatch:
    """The state parts one batch of ``detect`` changed: saved before the batch is acknowledged."""

    dirty: dict[Part, int] = field(default_factory=dict)
    """part → partition."""
    headed: dict[int, set[str]] = field(default_factory=dict)
    """partition → chains whose heads the batch read (their parts' progress is noted once, at its end)."""

    def exchange(self, exchange: str, chains: Iterable[str], partition: int) -> None:
        """Every part of an exchange: a state change may touch all its chains (an exchange-wide incident
        taints them, its end resets their rate tests)."""
        self.dirty[(exchange, None)] = partition
        for chain in chains:
            self.dirty[(exchange, chain)] = partition


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


def create_app(settings: WorkerSettings) -> faust.App:
    """Build the Faust app; nothing connects until a worker starts it."""
    app = WorkerApp(
        settings.app_id,
        **consuming_options(settings.kafka_bootstrap, settings.partitions, settings.kafka_security),
        topic_replication_factor=settings.replication_factor,
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=str(settings.data_dir),
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=heartbeat_interval(settings.kafka_session_timeout_s),
    )
    topics = settings.topics

    def topic(name: str, partitions: int = settings.partitions, internal: bool = False) -> Any:
        # internal: created by Faust at start-up. A consumer subscribed to a topic that does not exist yet
        # only sees it after its next metadata refresh (minutes), so topics only this worker writes are.
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=partitions, internal=internal)

    transfers_topic = topic(topics.transfers)
    heads_topic = topic(topics.heads)
    outages_topic = topic(topics.outages)
    status_topic = topic(topics.chain_status, internal=True)
    dead_topic = topic(topics.dead_letters)
    correlation_topic = topic(f"{topics.prefix}.internal.correlation.v1", partitions=1, internal=True)
    snapshot_topic = topic(f"{topics.prefix}.internal.status.v1", partitions=1, internal=True)
    # value_type=bytes selects Faust's raw codec; without it values go through JSON and come back from
    # changelog recovery as something else than what was written
    detects = settings.role in (WorkerRole.ALL, WorkerRole.DETECT)
    stores = settings.role in (WorkerRole.ALL, WorkerRole.STORE)
    state_table: Any = (
        app.Table("detector-state", default=None, partitions=settings.partitions, key_type=str, value_type=bytes)
        if detects
        else None
    )  # a table's changelog is read back at every start: only a detecting worker has it

    def agent(channel: Any, runs: bool, **options: Any) -> Callable[[Any], Any]:
        """``app.agent``, in a worker whose role runs this agent (elsewhere the function is never started)."""
        return app.agent(channel, **options) if runs else (lambda fn: fn)

    def timer(interval: float, runs: bool) -> Callable[[Any], Any]:
        return app.timer(interval=interval) if runs else (lambda fn: fn)

    app.bootstrap = settings.kafka_bootstrap
    app.security = settings.kafka_security
    app.quiet_clients = settings.quiet_clients
    app.replication_factor = settings.replication_factor
    app.topic_specs = [
        *(
            TopicSpec(name, settings.partitions)
            for name in (topics.transfers, topics.heads, topics.outages, topics.chain_status, topics.dead_letters)
        ),
        TopicSpec(correlation_topic.get_topic_name(), 1),
        TopicSpec(snapshot_topic.get_topic_name(), 1),
    ]
    changelog = state_table.changelog_topic.get_topic_name() if detects else ""
    app.recovery_guard = RecoveryGuard(app) if detects else None
    if detects:
        app.topic_specs.append(TopicSpec(changelog, settings.partitions, compacted=True))

    clock = WallClock()
    detector = OutageDetector(settings.policy, clock, correlate=False)
    correlator = IncidentCorrelator(settings.policy.correlation_window_s, clock, settings.exchange_metadata)
    monitor = ChainMonitor(clock)
    owners: dict[int, set[str]] = {}
    """partition → exchanges whose transfers arrive there (they are decided on that partition's heads)."""
    loaded: set[tuple[str, int]] = set()
    restored_partitions: set[int] = set()
    head_saved_at: dict[int, float] = {}
    """partition → monotonic time its heads' progress was last saved."""
    head_unsaved: dict[int, set[Part]] = {}
    """partition → chain parts that heads moved on and no save has written since (a withdrawal's save writes
    its chain's part whole, heads included: a replay, where most parts are saved that way anyway, then writes
    only the rest)."""
    last_status: dict[int, float] = {}
    stale_status: set[int] = set()
    """Partitions whose heads moved on since their last status snapshot (a timer snapshots them)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
    """Inserts and migrations, one at a time."""
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-read")
    """The web API's queries, so that an insert being retried never holds them up."""
    store: dict[str, ClickHouseBackend] = {}
    sinks: dict[str, TableSink] = {}
    store_lock = threading.Lock()
    stopping = threading.Event()
    """Set on shutdown: an insert still being retried gives up (its batch is unacked, so re-read later)."""
    hooks = register_web(
        app,
        detector=detector,
        monitor=monitor,
        sinks=sinks,
        data_dir=settings.data_dir,
        probe_store=lambda: backend(wait_s=1.0).query("SELECT 1 AS ok"),
        settings=settings.operator,
    )

    @app.on_partitions_revoked.connect
    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _forget_after_rebalance(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Ownership may have moved; the recovered table is the truth, reloaded on demand. Forgotten as soon as
        # partitions are revoked (Faust sends that signal once the in-flight events are done and the producer
        # flushed), not only when the rebalance completes: a worker that kept its exchanges through the
        # recovery would show, on /detector, exchanges that another worker already decides. Again when it
        # completes, in case events were read in between.
        for exchange in list(detector.exchanges()):
            detector.forget(exchange)
        owners.clear()
        loaded.clear()
        restored_partitions.clear()
        head_unsaved.clear()

    def load(exchange: str, partition: int, batch: DetectBatch) -> None:
        if (exchange, partition) in loaded:
            return
        stored = state_table.get(exchange)
        if stored is not None and exchange not in detector.exchanges_:
            state = orjson.loads(stored)["state"]
            if "chains" in state:  # saved whole, before states were saved in parts: rewrite it in parts
                detector.restore(exchange, state)
                batch.exchange(exchange, state["chains"], partition)
            else:
                chains = {}
                for chain in state.get("chain_names", []):
                    part = state_table.get(part_key(exchange, chain))
                    if part is not None:
                        chains[chain] = orjson.loads(part)["state"]
                detector.restore_parts(exchange, state, chains)
        owners.setdefault(partition, set()).add(exchange)
        loaded.add((exchange, partition))

    async def save(exchange: str, chain: str | None, partition: int) -> None:
        if exchange not in detector.exchanges_:
            return  # forgotten by a rebalance: its events are read again
        raw = part_value(detector, exchange, chain, partition)
        if raw is None:
            return
        key = part_key(exchange, chain)
        # what ``state_table[key] = raw`` does, with the partition given: parts are saved at the end of a
        # batch, where Faust has no current event to take the partition from
        state_table.data[key] = raw
        # Handed to the producer itself rather than through the table (``send_changelog``) or the topic
        # (``Topic.send``): a batch saves thousands of parts, and Faust's own paths wrap each in futures and
        # callbacks that its in-memory store does nothing with (~5 % of the detecting worker's time), and
        # its send buffer, once over 100 messages, drains one message per ``wait_for`` before it delivers
        # the next record. Faust flushes this producer before it commits the batch's offsets, so a part is
        # in Kafka before the events that made it are committed.
        encoded_key = codecs.dumps(state_table.key_serializer, key)  # as the table writes it: JSON
        sent = asyncio.ensure_future(await app.producer.send(changelog, encoded_key, raw, partition, None, None))
        sent.add_done_callback(changelog_sent)

    def changelog_sent(sent: asyncio.Future[Any]) -> None:
        """Log a part the producer gave up on (retries exhausted): its events are committed regardless."""
        if not sent.cancelled() and sent.exception() is not None:
            log.error("a detector state part was not saved: %r", sent.exception())

    def restore_partition(partition: int, batch: DetectBatch) -> None:
        """After a restart or rebalance, exchanges of this partition are known only to the table."""
        restored_partitions.add(partition)
        for key, stored in state_table.items():
            if is_chain_part_key(key):
                continue  # chain parts load with their exchange: no need to parse their ~5 KB values here
            if orjson.loads(stored)["partition"] == partition:
                load(key, partition, batch)

    async def dead_letter(raw: bytes, reason: str, source: str) -> None:
        letter = DeadLetter(source, reason, raw.decode("utf-8", "replace"), time.time())
        await dead_topic.send(key=source.encode(), value=orjson.dumps(letter))
        hooks.dead_letter(source)

    async def emit(outputs: list[Any]) -> None:
        for out in outputs:
            if isinstance(out, OutageEvent):
                log.warning("outage %s %s on %s (%s)", out.state, out.exchange, out.scope, out.reason)
                payload = orjson.dumps(out)
                await outages_topic.send(key=out.exchange.encode(), value=payload)
                await correlation_topic.send(key=b"all", value=payload)
        hooks.emitted(outputs)

    @agent(transfers_topic, detects, concurrency=1)
    async def detect(stream: Any) -> AsyncIterator[None]:
        # take_events acks a batch's events only when this loop asks for the next batch (faust/streams.py),
        # so the saves and sends below precede the acks, and Faust flushes the producer (changelog and
        # outage topic) before it commits those offsets
        async for events in stream.take_events(settings.detect_batch, within=settings.detect_within_s):
            batch = DetectBatch()
            for event in events:
                try:
                    await detect_one(event, batch)
                except Exception as exc:  # one bad event must never crash-loop the agent
                    await detector_failed(event, exc, event.value)
            note_heads(batch)
            for (exchange, chain), partition in batch.dirty.items():
                await save(exchange, chain, partition)
                if chain is not None:
                    head_unsaved.get(partition, set()).discard((exchange, chain))
            if events and time.time() - events[-1].message.timestamp < LIVE_LAG_S:
                await publish_stale_status()  # caught up: the batch's last heads reach the status table now
            yield None

    def note_heads(batch: DetectBatch) -> None:
        """Mark the chain parts the batch's heads moved on as unsaved, once per (partition, chain) rather
        than per head, and every ``HEAD_SAVE_EVERY_S`` have a partition's unsaved parts saved with the batch."""
        now = time.monotonic()
        for partition, chains in batch.headed.items():
            unsaved = head_unsaved.setdefault(partition, set())
            mine = owners.get(partition, set())
            unsaved.update((exchange, chain) for chain in chains for exchange in mine)
            if now - head_saved_at.setdefault(partition, now) >= HEAD_SAVE_EVERY_S:
                head_saved_at[partition] = now
                for part in unsaved:  # (a pair the detector does not track saves nothing)
                    batch.dirty[part] = partition
                    batch.dirty[(part[0], None)] = partition
                unsaved.clear()

    async def publish_status(exchanges: set[str]) -> None:
        rows = snapshot(detector, exchanges)
        for start in range(0, len(rows), STATUS_ROWS_PER_MESSAGE):
            chunk = rows[start : start + STATUS_ROWS_PER_MESSAGE]
            await snapshot_topic.send(key=b"status", value=orjson.dumps({"rows": chunk}))

    def changed_exchanges(outputs: list[Any]) -> set[str]:
        return {o.exchange for o in outputs if isinstance(o, OutageEvent)}

    def changed_parts(outputs: list[Any], partition: int, batch: DetectBatch) -> set[str]:
        """The exchanges whose outage state changed, every part of them marked to be saved."""
        changed = changed_exchanges(outputs)
        for exchange in changed:
            track = detector.exchanges_.get(exchange)
            batch.exchange(exchange, track.chains if track is not None else (), partition)
        return changed

    async def detect_one(event: EventT[bytes], batch: DetectBatch) -> None:
        partition = event.message.partition
        if partition not in restored_partitions:
            restore_partition(partition, batch)
        try:
            record = decode(event.value)
        except SchemaError as exc:
            await dead_letter(event.value, str(exc), f"topic:{topics.transfers}")
            return
        for one in events_of(record):  # a block record: its transfers for this partition, then its head
            try:
                await detect_record(one, partition, batch, event.value)
            except Exception as exc:  # the rest of a block (its head above all) still counts
                await detector_failed(event, exc, event.value if one is record else encode(one))

    async def detector_failed(event: EventT[bytes], exc: Exception, raw: bytes) -> None:
        log.exception(
            "detector failed on %s[%d]@%d", event.message.topic, event.message.partition, event.message.offset
        )
        await dead_letter(raw, f"detector error: {exc!r}", f"topic:{topics.transfers}")

    async def detect_record(record: Record, partition: int, batch: DetectBatch, raw: bytes) -> None:
        if isinstance(record, TransferEvent):
            load(record.exchange, partition, batch)
            if record.direction is Direction.WITHDRAWAL:  # deposits and internal moves leave the state as it was
                shape = detector.exchange_shape(record.exchange)
                outputs = detector.on_transfer(record)
                batch.dirty[(record.exchange, record.chain)] = partition  # carries the exchange's last payout
                if shape[1] or detector.exchange_shape(record.exchange) != shape:
                    batch.dirty[(record.exchange, None)] = partition
            else:
                outputs = detector.on_transfer(record)
            if outputs:
                await emit(outputs)
                await publish_status(changed_parts(outputs, partition, batch))
        elif isinstance(record, ChainHead):
            mine = owners.get(partition, set())
            outputs = detector.on_head(record, mine)
            changed = changed_parts(outputs, partition, batch) & mine
            batch.headed.setdefault(partition, set()).add(record.chain)
            now = time.monotonic()
            if outputs:
                await emit(outputs)
            if now - last_status.get(partition, float("-inf")) >= STATUS_EVERY_S:
                last_status[partition] = now
                stale_status.discard(partition)
                await publish_status(mine)
            else:
                stale_status.add(partition)
                await publish_status(changed)
        elif isinstance(record, LabelSuggestion):
            load(record.exchange, partition, batch)
            outputs = detector.on_suggestion(record)
            batch.dirty[(record.exchange, None)] = partition
            changed = changed_parts(outputs, partition, batch)
            await emit(outputs)
            await publish_status(changed)
        else:
            await dead_letter(raw, f"unexpected {record.TYPE} record", f"topic:{topics.transfers}")
        hooks.observe(record)

    async def publish_stale_status() -> None:
        for partition in sorted(stale_status):
            stale_status.discard(partition)
            last_status[partition] = time.monotonic()
            await publish_status(owners.get(partition, set()))

    @timer(STATUS_EVERY_S, detects)
    async def snapshot_stale_status() -> None:
        """The last heads of a burst (catch-up, or a chain that then stops) still reach the status table."""
        await publish_stale_status()

    @agent(correlation_topic, detects, concurrency=1)
    async def correlate(stream: Any) -> AsyncIterator[None]:
        async for value in stream:
            try:
                record = decode(value)
            except SchemaError:
                continue  # only our own detector writes here
            if isinstance(record, OutageEvent):
                for incident in correlator.on_outage(record):
                    log.warning("correlated incident %s: %s", incident.incident_id, incident.exchanges)
                    await outages_topic.send(key=b"correlated", value=orjson.dumps(incident))
                    hooks.emitted([incident])
            yield None

    @agent(heads_topic, detects, concurrency=1)
    async def monitor_chains(stream: Any) -> AsyncIterator[None]:
        async for value in stream:
            try:
                record = decode(value)
            except SchemaError as exc:
                await dead_letter(value, str(exc), f"topic:{topics.heads}")
                continue
            statuses: list[ChainStatus] = []
            if isinstance(record, ChainHead):
                statuses = monitor.on_head(record)
            elif isinstance(record, FeedHeartbeat):
                statuses = monitor.on_heartbeat(record)
            for status in statuses:
                await status_topic.send(key=status.chain.encode(), value=orjson.dumps(status))
            yield None

    @timer(settings.chain_check_s, detects)
    async def check_chains() -> None:
        for status in monitor.on_tick():
            log.warning("chain %s is %s: %s", status.chain, status.state, status.reason)
            await status_topic.send(key=status.chain.encode(), value=orjson.dumps(status))

    def backend(wait_s: float | None = None) -> ClickHouseBackend:
        """The store, opened and migrated on first use (retried while a server is down); a reader passes
        ``wait_s`` so that it fails fast instead of queueing behind a first open that is still retrying."""
        if not store_lock.acquire(timeout=-1 if wait_s is None else wait_s):
            raise StoreError(
                "ClickHouse is not reachable yet (the first connection is still being retried)", retryable=True
            )
        try:
            if "b" not in store:
                store["b"] = open_migrated(settings.clickhouse_url, settings.chdb_path, stopping)
            return store["b"]
        finally:
            store_lock.release()

    def sink_for(table: str) -> TableSink:
        if table not in sinks:
            sinks[table] = TableSink(
                backend(),
                table,
                max_rows=max(settings.sink_batch, STATUS_ROWS_PER_MESSAGE) * 2,
                retry_for_s=None,
                retry_refused=True,
                max_backoff_s=30.0,
                dedup=TransferDedup() if table == "transfers" else None,
            )
        return sinks[table]

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _stop_inserts(sender: Any, *args: Any, **kwargs: Any) -> None:
        stopping.set()

    async def insert(table: str, rows: list[dict[str, Any]]) -> None:
        """Write one batch and return only once it is stored (retried until then: backpressure)."""
        if not rows:
            return

        def run() -> None:
            sink = sink_for(table)
            try:
                for start in range(0, len(rows), sink.max_rows):  # a bounded buffer: flush before refilling
                    sink.extend(rows[start : start + sink.max_rows])
                    sink.flush(stopping)
            except BaseException:
                sink.discard()  # only shutdown gets here; the batch is unacked and will be re-read
                raise

        try:
            await asyncio.get_running_loop().run_in_executor(executor, run)
        except asyncio.CancelledError:
            stopping.set()  # only shutdown cancels the agents: let the thread give up too
            raise

    async def decoded(event: EventT[bytes], source: str) -> Record | None:
        try:
            return decode(event.value)
        except SchemaError as exc:
            if source != topics.transfers:  # ``detect`` dead-letters the transfers topic's bad input
                await dead_letter(event.value, str(exc), f"topic:{source}")
            return None

    RowsOf = Callable[[Any, int], list[dict[str, Any]]]
    """A record and its offset → its rows in one table."""

    def one_row(to_row: Callable[[Any], dict[str, Any]]) -> RowsOf:
        return lambda record, _offset: [to_row(record)]

    def sink_agent(source: Any, name: str, tables: dict[type[Any], tuple[str, RowsOf]]) -> None:
        async def sink(stream: Any) -> AsyncIterator[None]:
            async for events in stream.take_events(settings.sink_batch, within=settings.sink_within_s):
                # A table's rows are written as soon as they make a full batch, not when the whole batch of
                # records is read: a ``block_transfers`` record holds up to 128 rows, and a batch of them
                # built at once took the store worker to a 513 MB peak. The records are acked only after
                # the last insert.
                rows: dict[str, list[dict[str, Any]]] = {}
                for event in events:
                    record = await decoded(event, source.get_topic_name())
                    target = tables.get(type(record))
                    if target is None:
                        continue
                    table, rows_of = target
                    waiting = rows.setdefault(table, [])
                    waiting.extend(rows_of(record, event.message.offset))
                    if len(waiting) >= settings.sink_batch:
                        await insert(table, rows.pop(table))
                for table, batch in rows.items():
                    await insert(table, batch)
                yield None

        sink.__name__ = name
        agent(source, stores, name=name, concurrency=1)(sink)

    sink_agent(
        transfers_topic,
        "sink_transfers",
        {
            TransferEvent: ("transfers", transfer_rows),
            BlockTransfers: ("transfers", transfer_rows),
            LabelSuggestion: ("label_suggestions", one_row(suggestion_row)),
        },
    )
    sink_agent(heads_topic, "sink_heads", {ChainHead: ("chain_heads", one_row(head_row))})
    sink_agent(
        outages_topic,
        "sink_outages",
        {
            OutageEvent: ("outage_events", one_row(outage_row)),
            CorrelatedIncident: ("correlated_incidents", one_row(correlated_row)),
        },
    )
    sink_agent(status_topic, "sink_chain_status", {ChainStatus: ("chain_status", one_row(chain_status_row))})

    @agent(snapshot_topic, stores, name="sink_status", concurrency=1)
    async def sink_status(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(settings.sink_batch, within=settings.sink_within_s):
            rows: list[dict[str, Any]] = []
            for event in events:
                try:
                    rows.extend(orjson.loads(event.value)["rows"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    log.exception("bad status snapshot at offset %d", event.message.offset)
            await insert("detector_status", rows)
            yield None

    async def answer(view: View, query: Callable[[ClickHouseBackend], Any]) -> Response:
        """Run a store query on the reader thread; 503 with the reason when ClickHouse cannot answer."""
        try:
            result = await asyncio.get_running_loop().run_in_executor(reader, lambda: query(backend(wait_s=5.0)))
        except StoreError as exc:
            return view.json({"error": str(exc)}, status=503)
        return view.json(result)

    def since_param(request: Request) -> int | None:
        raw = request.query.get("since")
        return int(raw) if raw else None

    @app.page("/outages")
    class Outages(View):
        """Outage state changes as stored in ClickHouse (what a query sees now)."""

        async def get(self, request: Request) -> Response:
            """?exchange=X&since=SECONDS&latest=1&limit=N: all versions unless latest=1 (one per outage)."""
            exchange = request.query.get("exchange")
            latest = request.query.get("latest", "") in ("1", "true", "yes")
            try:
                since = since_param(request)
                limit = int(request.query.get("limit", "100"))
            except ValueError:
                return self.json({"error": "since and limit must be integers"}, status=400)
            return await answer(self, lambda b: recent_outages(b, exchange, limit, since, latest))

    @app.page("/status")
    class Status(View):
        """What is down right now: one row per (exchange, chain) from the current_status view."""

        async def get(self, request: Request) -> Response:
            exchange = request.query.get("exchange")
            return await answer(self, lambda b: current_status(b, exchange))

    @app.page("/withdrawals/count")
    class WithdrawalCount(View):
        """How many distinct withdrawals of an exchange the store holds (reorg retractions excluded)."""

        async def get(self, request: Request) -> Response:
            exchange = request.query.get("exchange", "")
            return await answer(self, lambda b: {"exchange": exchange, "count": withdrawal_count(b, exchange)})

    @app.page("/detector")
    class DetectorView(View):
        """What this worker's detector knows right now, per (exchange, chain) it owns."""

        async def get(self, request: Request) -> Response:
            rows = []
            for ex in detector.exchanges_.values():
                for c in ex.chains.values():
                    rows.append(
                        {
                            "exchange": ex.exchange,
                            "chain": c.chain,
                            "head_number": c.head_number,
                            "head_time": c.head_time,
                            "last_withdrawal_time": c.last.time if c.last else None,
                            "withdrawals_seen": c.withdrawals,
                            "expected_in_gap": c.gap_u(),
                            "outage_id": c.incident.last.outage_id if c.incident else None,
                            "exchange_outage_id": ex.incident.last.outage_id if ex.incident else None,
                        }
                    )
            return self.json(rows)

    return app
