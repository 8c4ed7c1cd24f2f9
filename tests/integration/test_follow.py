"""``haltwatch follow`` on a real Kafka: what a downstream team sees of the outage topic, live and from the start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

import orjson
from kafka import KafkaProducer

from connectors.publisher import ensure_topics
from schemas import CorrelatedIncident, OutageEvent, OutageState, Topics, decode, encode

REPO = Path(__file__).resolve().parents[2]
OPEN = OutageEvent(
    outage_id="okx-7f3a", version=1, exchange="okx", scope=["ethereum", "tron"], state=OutageState.OPEN,
    started_at=1_709_251_200, detected_at=1_709_251_390, resolved_at=None, expected_rate_per_hour=1250.0,
    observed_gap_s=190, expected_count=66.0, observed_count=0, confidence=0.99999, p_value=1e-5,
    last_withdrawal_tx="0xab", last_withdrawal_chain="ethereum", emitted_at=1_709_251_391.5,
)
RESOLVED = replace(OPEN, version=2, state=OutageState.RESOLVED, resolved_at=1_709_269_200, emitted_at=1_709_269_201.0)
OTHER = replace(OPEN, outage_id="gate-11", exchange="gate", scope=["bsc"])
CORRELATED = CorrelatedIncident("c-1", 1, ["gate", "okx"], ["gate-11", "okx-7f3a"], 1_709_251_200, 1_709_251_400,
                                {"provider": "alibaba-cloud"}, "shared hosting: alibaba-cloud", 1_709_251_401.0)


class Follower:
    """``haltwatch follow`` as a child process; its stdout lines collected by a thread."""

    def __init__(self, kafka: str, prefix: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HALTWATCH_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "haltwatch", "follow", "--kafka", kafka, "--prefix", prefix, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True)]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: IO[bytes], into: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            into.append(raw.decode().rstrip("\n"))

    def wait(self, what: str, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"follow: no {what} (exit {self.proc.poll()}): {self.lines} {self.errors}")
            time.sleep(0.05)

    def stop(self) -> float:
        """SIGTERM; returns how long it took to exit (it must be 0)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(15) == 0, self.errors
        for thread in self._threads:
            thread.join(5)
        return time.monotonic() - started


def publish(kafka: str, topic: str, records: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    try:
        for raw in records:
            key = b"correlated" if b'"correlated_incident"' in raw else b"okx"
            producer.send(topic, key=key, value=raw).get(30)
    finally:
        producer.close()


def test_follow_prints_each_state_change_live_and_from_the_beginning(kafka: str) -> None:
    prefix = f"follow{int(time.time() * 1000)}"
    topics = Topics(prefix)
    ensure_topics(kafka, topics, 3)
    publish(kafka, topics.outages, [encode(OTHER)])  # before anyone follows: only --from-beginning shows it

    live = Follower(kafka, prefix, "--json")
    live.wait("'following' line", lambda: any(e.startswith("following ") for e in live.errors))
    published = [encode(OPEN), b'{"not": "an outage"', encode(CORRELATED), encode(RESOLVED)]
    publish(kafka, topics.outages, published)
    live.wait("three records", lambda: len(live.lines) >= 3)
    assert live.stop() < 10
    assert [decode(line) for line in live.lines] == [OPEN, CORRELATED, RESOLVED], "as on the topic, in order"
    assert orjson.loads(live.lines[0]) == orjson.loads(encode(OPEN)), "the record itself, not a rendering"
    assert any("skipped an undecodable record" in e for e in live.errors), live.errors

    history = Follower(kafka, prefix, "--from-beginning", "--exchange", "okx")
    history.wait("okx's records", lambda: len(history.lines) >= 3)
    assert history.stop() < 10
    assert len(history.lines) == 3, history.lines  # gate's own outage is left out; the incident names okx
    opened, correlated, resolved = history.lines
    assert "okx" in opened and "OPEN" in opened and "scope=ethereum,tron" in opened and "id=okx-7f3a" in opened
    assert "CORRELATED" in correlated and "exchanges=gate,okx" in correlated
    assert "RESOLVED" in resolved and "v2" in resolved and "resolved 2024-03-01 05:00:00Z" in resolved


def test_follow_says_in_one_line_that_the_topic_is_missing(kafka: str) -> None:
    result = subprocess.run([sys.executable, "-m", "haltwatch", "follow", "--kafka", kafka, "--prefix", "nosuch"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: topic nosuch.outages.v1 does not exist at {kafka} (has a worker run with this --prefix?)"]
