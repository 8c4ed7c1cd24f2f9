"""The worker's store path end to end: status snapshots through Kafka into ``current_status``, read by
``haltwatch status --api``, and a worker killed after storing a batch that is then redelivered."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from connectors.publisher import ensure_topics
from haltwatch.local import PipelineProcesses
from schemas import ChainHead, Direction, TransferEvent, encode
from streams.store.backend import open_backend
from streams.store.queries import withdrawal_count, withdrawal_summary

EXCHANGE = "o'kx \"store\" \\ test"
CHAIN = "ethereum"


class Chain:
    """Publishes blocks as a connector does: the block's transfers, then its head to every partition."""

    def __init__(self, kafka: str, pipeline: PipelineProcesses) -> None:
        self.topics = pipeline.topics
        self.producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
        self.partitions = sorted(self.producer.partitions_for(self.topics.transfers) or [])
        assert self.partitions, "transfers topic has no partitions"
        self.number = 0
        self.start = int(time.time()) - 6 * 3600

    def block_time(self, number: int) -> int:
        return self.start + 12 * number

    def blocks(self, count: int) -> None:
        for _ in range(count):
            self.number += 1
            n, t = self.number, self.block_time(self.number)
            transfer = TransferEvent(CHAIN, n, f"0xb{n}", t, f"0xt{n}", -1, "native", "2000000000000000000", 18,
                                     "0xhot", f"0xu{n}", EXCHANGE, Direction.WITHDRAWAL)
            self.producer.send(self.topics.transfers, key=EXCHANGE.encode(), value=encode(transfer)).get(30)
            head = encode(ChainHead(CHAIN, n, f"0xb{n}", f"0xb{n - 1}", t, time.time()))
            futures = [self.producer.send(self.topics.heads, key=CHAIN.encode(), value=head)]
            futures += [self.producer.send(self.topics.transfers, key=CHAIN.encode(), value=head, partition=p)
                        for p in self.partitions]
            for future in futures:
                future.get(30)

    def close(self) -> None:
        self.producer.close()


def wait_for(what: str, check: Any, pipeline: PipelineProcesses, timeout_s: float = 60, poll_s: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        pipeline.check_alive()
        try:
            last = check()
        except Exception as exc:  # the worker may still be starting
            last = exc
        else:
            if last:
                return last
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def uncommitted(kafka: str, group: str, topic: str) -> tuple[int, str]:
    """Records of ``topic`` past the group's committed offsets (all of them where it committed none), and the
    offsets themselves for a failure message."""
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        offsets = admin.list_group_offsets(group)[group]
        committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
        ends = {tp.partition: end for tp, end in consumer.end_offsets(
            [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]).items()}
        behind = sum(end - max(committed.get(p, 0), 0) for p, end in ends.items())
        return behind, f"committed {committed}, end offsets {ends}"
    finally:
        admin.close()
        consumer.close()


def status_when(pipeline: PipelineProcesses, chain: Chain) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pipeline.api(f"/status?exchange={quote(EXCHANGE)}")
    want = chain.block_time(chain.number)
    ok = len(rows) == 1 and rows[0]["last_withdrawal_time"] == want and rows[0]["head_time"] == want
    if not ok:
        raise AssertionError(f"status {rows}, want last withdrawal and head at {want}")
    return rows


def test_worker_status_api_and_redelivery_after_a_kill(kafka, run_dir, monkeypatch):
    # Faust commits offsets every BROKER_COMMIT_INTERVAL seconds (2.8 by default). A long interval makes sure
    # the kill below comes before the commit of the last blocks however slow the machine is, so that they
    # are really delivered again (otherwise this test would depend on the machine's speed)
    monkeypatch.setenv("BROKER_COMMIT_INTERVAL", "60")
    prefix = f"tstore{int(time.time() * 1000)}"
    pipeline = PipelineProcesses(run_dir, kafka, "ws://127.0.0.1:1", run_dir / "labels.toml", prefix)
    ensure_topics(kafka, pipeline.topics, pipeline.partitions)
    chain = Chain(kafka, pipeline)
    try:
        chain.blocks(60)
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        count = f"/withdrawals/count?exchange={quote(EXCHANGE)}"
        wait_for("60 withdrawals stored", lambda: pipeline.api(count)["count"] == 60, pipeline)
        rows = wait_for("a status snapshot of the last block", lambda: status_when(pipeline, chain), pipeline)
        (row,) = rows
        assert (row["exchange"], row["chain"], row["state"]) == (EXCHANGE, CHAIN, "warming_up")
        assert row["gap_s"] == 0 and row["withdrawals_seen"] == 60 and row["outage_id"] is None

        api = f"http://127.0.0.1:{pipeline.web_port}"
        done = subprocess.run([sys.executable, "-m", "haltwatch", "status", "--api", api, "--exchange", EXCHANGE,
                               "--json"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert [orjson.loads(line) for line in done.stdout.splitlines()] == rows
        done = subprocess.run([sys.executable, "-m", "haltwatch", "outages", "--api", api, "--since", "1d"],
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout.strip()) == (0, "no outages stored"), done.stderr

        # more blocks, then a kill as soon as they are stored, before the worker commits their offsets:
        # the restarted worker reads the same messages again
        chain.blocks(20)
        wait_for("80 withdrawals stored", lambda: pipeline.api(count)["count"] == 80, pipeline, poll_s=0.02)
        pipeline.kill("worker")
        # the premise: the killed worker had not committed the blocks it stored, so they are delivered again
        behind, offsets = uncommitted(kafka, pipeline.app_id, pipeline.topics.transfers)
        assert behind > 0, f"the killed worker had committed every offset: {offsets}"
        before_restart = len((run_dir / "worker.log").read_bytes())
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        # the new worker joins the group only once the killed one's session expired; the blocks it reads again
        # were stored already, which its sink says (the status snapshot may be the killed worker's, so it is
        # not the sign that the new one has caught up)
        wait_for("the restarted worker reading the stored blocks again",
                 lambda: b"already stored" in (run_dir / "worker.log").read_bytes()[before_restart:], pipeline,
                 timeout_s=120)
        wait_for("a status snapshot after the restart", lambda: status_when(pipeline, chain), pipeline)
        time.sleep(3)  # a late duplicate insert would land here
    finally:
        chain.close()
        pipeline.stop()

    backend = open_backend(None, run_dir / "chdb")
    try:
        raw = backend.query(f"SELECT count() AS n FROM {backend.database}.transfers WHERE exchange = {{e:String}}",
                            {"e": EXCHANGE})
        assert raw[0]["n"] == 80, "no transfer row stored twice"
        assert withdrawal_count(backend, EXCHANGE) == 80
        assert withdrawal_summary(backend, EXCHANGE) == {"withdrawals": 80, "amount": 160.0}
    finally:
        backend.close()
