"""The worker keeps detector state in parts, and takes over a state saved whole by an earlier version.

The state table holds one exchange-wide part per exchange (under the exchange's name, the key a whole
state had before) and one part per (exchange, chain). A deployment that upgrades finds whole states in
the changelog: the worker must read them, carry on from them, and write them back in parts, so that a
restart after the upgrade still finds every chain.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from access.kafka_topics import COMPACTED, TopicSpec, declare_topics
from connectors.publisher import ensure_topics
from haltwatch.local import PipelineProcesses
from schemas.codec import encode
from schemas.records import ChainHead, Direction, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector
from streams.worker.detect import HEAD_SAVE_EVERY_S
from streams.worker.state import part_key

PARTITIONS = 2
EXCHANGE_PARTITION = 1
CHAINS = ("alpha", "beta")
T0 = 1_767_225_600
BLOCK_S = 12


@dataclass
class Trace:
    """Synthetic blocks of two chains: the exchange pays out in every other block of each."""

    def head(self, chain: str, n: int) -> ChainHead:
        t = T0 + n * BLOCK_S
        return ChainHead(chain, n, self.hash(chain, n), self.hash(chain, n - 1), t, float(t))

    @staticmethod
    def hash(chain: str, n: int) -> str:
        return f"0x{chain}{n:08d}"

    def withdrawal(self, chain: str, n: int) -> TransferEvent:
        return TransferEvent(
            chain=chain, block_number=n, block_hash=self.hash(chain, n), block_time=T0 + n * BLOCK_S,
            tx_hash=f"0x{chain}tx{n:08d}", log_index=0, asset="native", amount="1", decimals=18,
            from_address="0xhot", to_address="0xuser", exchange="okx", direction=Direction.WITHDRAWAL,
        )

    def blocks(self, first: int, last: int) -> list[TransferEvent | ChainHead]:
        out: list[TransferEvent | ChainHead] = []
        for n in range(first, last + 1):
            for chain in CHAINS:
                if n % 2 == 0:
                    out.append(self.withdrawal(chain, n))
                out.append(self.head(chain, n))
        return out


def whole_state_as_saved_before(trace: Trace, last_block: int) -> dict:
    """What an earlier worker saved for okx after ``last_block``: the whole state, hour arrays as numbers."""
    detector = OutageDetector(DetectionPolicy(), ManualClock(0))
    for record in trace.blocks(1, last_block):
        if isinstance(record, TransferEvent):
            detector.on_transfer(record)
        else:
            detector.on_head(record)
    state = detector.export("okx")
    del state["chain_names"]
    for name, chain in state["chains"].items():
        rate = detector.view["okx"].chains[name].rate
        chain["rate"]["ew"], chain["rate"]["xw"] = list(rate.events_w), list(rate.exposure_w)
    return {"partition": EXCHANGE_PARTITION, "state": state}


def publish(kafka: str, topic: str, records: list[TransferEvent | ChainHead]) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    try:
        for record in records:
            if isinstance(record, ChainHead):  # every partition, as the connectors write heads
                for p in range(PARTITIONS):
                    producer.send(topic, key=record.chain.encode(), value=encode(record), partition=p)
            else:
                producer.send(topic, key=b"okx", value=encode(record), partition=EXCHANGE_PARTITION)
        producer.flush()
    finally:
        producer.close()


def topic_config(kafka: str, topic: str) -> dict[str, str]:
    """The settings a topic was created with (those differing from the broker's defaults)."""
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    return {name: entry["value"] for name, entry in described["topic"][topic].items()}


def changelog_messages(kafka: str, topic: str) -> list[tuple[str, dict]]:
    """Every (key, value) in the state table's changelog, in order within each partition."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        messages: list[tuple[str, dict]] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                messages.extend((orjson.loads(r.key), orjson.loads(r.value)) for r in records)
        return messages
    finally:
        consumer.close()


def changelog(kafka: str, topic: str) -> dict[str, dict]:
    """The latest value of every key in the state table's changelog (each key lives on one partition)."""
    return dict(changelog_messages(kafka, topic))


def okx_rows(pipeline: PipelineProcesses, head: int, timeout_s: float = 60.0) -> dict[str, dict]:
    """/detector's rows for okx once both chains' heads reached ``head``."""
    deadline = time.monotonic() + timeout_s
    rows: dict[str, dict] = {}
    while time.monotonic() < deadline:
        rows = {r["chain"]: r for r in pipeline.api("/detector") if r["exchange"] == "okx"}
        if set(rows) == set(CHAINS) and all(r["head_number"] >= head for r in rows.values()):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"okx did not reach block {head}: {rows}\n{pipeline.log_digest()}")


def new_pipeline(kafka: str, tmp_path, name: str) -> tuple[PipelineProcesses, str]:
    """A worker set up on its own topics (not started yet), and its state table's changelog topic."""
    pipeline = PipelineProcesses(tmp_path / "run", kafka, "ws://127.0.0.1:1", tmp_path / "labels.toml",
                                 f"{name}{int(time.time() * 1000)}", partitions=PARTITIONS)
    ensure_topics(kafka, pipeline.topics, PARTITIONS)
    return pipeline, f"{pipeline.app_id}-detector-state-changelog"


def test_a_whole_state_is_carried_on_and_rewritten_in_parts(kafka, tmp_path):
    trace = Trace()
    pipeline, table_topic = new_pipeline(kafka, tmp_path, "parts")
    assert declare_topics(kafka, [TopicSpec(table_topic, PARTITIONS, compacted=True)])
    assert topic_config(kafka, table_topic) == COMPACTED, "compacted in small segments, so compaction keeps up"
    old = whole_state_as_saved_before(trace, 300)
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    # Faust writes a table's keys as JSON
    producer.send(table_topic, key=orjson.dumps("okx"), value=orjson.dumps(old), partition=EXCHANGE_PARTITION)
    producer.flush()
    producer.close()
    saved_withdrawals = {name: c["n"][0] for name, c in old["state"]["chains"].items()}
    assert saved_withdrawals == {"alpha": 150, "beta": 150}

    try:
        publish(kafka, pipeline.topics.transfers, trace.blocks(301, 340))
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        rows = okx_rows(pipeline, 340)
        for chain in CHAINS:  # carried on from the whole state: 20 more payouts each, not 20 from scratch
            assert rows[chain]["withdrawals_seen"] == saved_withdrawals[chain] + 20, rows

        deadline = time.monotonic() + 30  # the batch's parts are sent after /detector already shows it
        while True:
            stored = changelog(kafka, table_topic)
            done = [stored.get(part_key("okx", c), {}).get("state", {}).get("n", [0])[0] for c in CHAINS]
            if done == [saved_withdrawals[c] + 20 for c in CHAINS] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "chains" not in stored["okx"]["state"], "the exchange's key now holds its exchange-wide part"
        assert stored["okx"]["state"]["chain_names"] == list(CHAINS)
        for chain in CHAINS:
            part = stored[part_key("okx", chain)]
            assert (part["exchange"], part["chain"], part["partition"]) == ("okx", chain, EXCHANGE_PARTITION)
            assert part["state"]["n"][0] == saved_withdrawals[chain] + 20
            assert isinstance(part["state"]["rate"]["ew"], str), "hour arrays are packed"

        pipeline.kill("worker")  # no clean shutdown: only what the changelog holds survives
        publish(kafka, pipeline.topics.transfers, trace.blocks(341, 350))
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        # the new worker joins the group once the killed one's session is over (--kafka-session-timeout, 10 s)
        rows = okx_rows(pipeline, 350, timeout_s=150)
        for chain in CHAINS:
            assert rows[chain]["withdrawals_seen"] == saved_withdrawals[chain] + 25, rows
    finally:
        pipeline.stop()


def test_heads_without_payouts_are_saved_on_their_own_budget(kafka, tmp_path):
    """A chain's head progress reaches the changelog even when no withdrawal saves its part: otherwise a
    restart would resume the gap from the last payout's block and count the silence in between twice."""
    trace = Trace()
    pipeline, table_topic = new_pipeline(kafka, tmp_path, "heads")
    try:
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        publish(kafka, pipeline.topics.transfers, trace.blocks(1, 40))
        okx_rows(pipeline, 40)
        heads_only = [r for r in trace.blocks(41, 50) if isinstance(r, ChainHead)]
        publish(kafka, pipeline.topics.transfers, heads_only)
        okx_rows(pipeline, 50)
        time.sleep(HEAD_SAVE_EVERY_S + 1)  # the budget has passed: the next heads save every part they moved
        publish(kafka, pipeline.topics.transfers, [trace.head(chain, 51) for chain in CHAINS])
        okx_rows(pipeline, 51)

        deadline = time.monotonic() + 30  # the batch's parts are sent after /detector already shows it
        while True:
            stored = changelog(kafka, table_topic)
            heads = {c: stored.get(part_key("okx", c), {}).get("state", {}).get("head", [0])[0] for c in CHAINS}
            if heads == dict.fromkeys(CHAINS, 51) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert heads == dict.fromkeys(CHAINS, 51), "the last payouts were at block 40; heads moved the parts on"
        for chain in CHAINS:
            assert stored[part_key("okx", chain)]["state"]["n"][0] == 20, "heads alone add no withdrawal"
    finally:
        pipeline.stop()


def test_a_withdrawal_rewrites_its_chain_part_and_the_exchange_part_only_when_it_changes(kafka, tmp_path):
    """Each chain part carries the exchange's last payout, so a batch of withdrawals rewrites the chain parts
    and leaves the exchange-wide part alone unless a chain is added or an exchange-wide incident is open.
    Before, every batch that saved a chain part saved the exchange-wide part too: at least as many of its
    messages as of any chain's. What the changelog holds, loaded the way a restarting worker loads it
    (``restore_parts``), has the last payout, which only the chain parts hold."""
    trace = Trace()
    pipeline, table_topic = new_pipeline(kafka, tmp_path, "lastpay")
    try:
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        for first in range(1, 41, 4):  # ten batches, each with a withdrawal on both chains
            publish(kafka, pipeline.topics.transfers, trace.blocks(first, first + 3))
            okx_rows(pipeline, first + 3)
        # payouts without heads: no head save (which writes the exchange-wide part too) can follow them
        publish(kafka, pipeline.topics.transfers, [trace.withdrawal(chain, 44) for chain in CHAINS])

        deadline = time.monotonic() + 30  # the batch's parts are sent after /detector already shows it
        while True:
            messages = changelog_messages(kafka, table_topic)
            latest = dict(messages)
            done = [latest.get(part_key("okx", c), {}).get("state", {}).get("n", [0])[0] for c in CHAINS]
            if done == [21, 21] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert done == [21, 21], done
        counts = Counter(key for key, _ in messages)
        chain_counts = [counts[part_key("okx", c)] for c in CHAINS]
        assert min(chain_counts) >= 11, counts
        assert counts["okx"] < min(chain_counts), counts
        exchange_part = latest["okx"]["state"]
        assert exchange_part["last"][1] != "0xbetatx00000044", "the payouts alone left the exchange-wide part"

        restored = OutageDetector(DetectionPolicy(), ManualClock(0))
        chains = {c: latest[part_key("okx", c)]["state"] for c in exchange_part["chain_names"]}
        restored.restore_parts("okx", exchange_part, chains)
        last = restored.view["okx"]
        # block 44 pays on both chains at the same time; beta's payout is read after alpha's
        assert (last.last_time, last.last_tx, last.last_chain) == (T0 + 44 * BLOCK_S, "0xbetatx00000044", "beta")
    finally:
        pipeline.stop()
