"""Readiness: Kafka and ClickHouse fail it (503), a chain without data degrades it; the store probe is
cached and bounded by a timeout, and a hung probe is not started twice."""

from __future__ import annotations

import threading
import time

from schemas.records import ChainState
from streams.web.health import HealthChecks
from tests.unit.operator_support import Feed
from tests.unit.test_web_api import FakeKafka


def checks_of(body: dict[str, object]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in body["checks"]}  # type: ignore[attr-defined]


async def test_ready_when_everything_answers_degraded_when_a_chain_is_blind() -> None:
    feed = Feed()
    feed.blocks(3, 1.0)
    health = HealthChecks(FakeKafka(), feed.monitor, lambda: None)
    code, body = await health.ready()
    assert (code, body["status"]) == (200, "ok"), body
    feed.monitor.chains["ethereum"].state = ChainState.NO_DATA
    code, body = await health.ready()
    assert (code, body["status"]) == (200, "degraded")
    reason = next(c["reason"] for c in body["checks"] if c["name"] == "chains")
    assert "ethereum: no data since block 3" in reason
    assert health.live() == (200, {"status": "ok"})


async def test_kafka_problems_fail_readiness_but_not_liveness() -> None:
    feed = Feed()
    feed.blocks(1, 0.0)
    kafka = FakeKafka(assigned=0)
    health = HealthChecks(kafka, feed.monitor, lambda: None)
    code, body = await health.ready()
    assert code == 503 and checks_of(body)["kafka"] == "failing"
    kafka.assigned, kafka.connected = 2, False
    code, body = await health.ready()
    assert code == 503 and "no connection to any broker" in str(body)
    assert health.live()[0] == 200
    assert HealthChecks(kafka, feed.monitor, lambda: None, crashed=lambda: True).live()[0] == 503


async def test_clickhouse_probe_is_cached_times_out_and_redacts() -> None:
    feed = Feed()
    feed.blocks(1, 0.0)
    calls = []
    release = threading.Event()

    def hanging() -> None:
        calls.append(time.monotonic())
        release.wait(5)

    now = [0.0]
    health = HealthChecks(FakeKafka(), feed.monitor, hanging, timeout_s=0.2, cache_s=5.0, clock=lambda: now[0])
    first = await health.clickhouse()
    assert first.status == "failing" and "no answer within 0.2 s" in first.reason
    assert await health.clickhouse() is first, "cached"
    now[0] = 10.0
    assert (await health.clickhouse()).status == "failing"
    assert len(calls) == 1, "the hung probe is reused, not started again"
    release.set()
    await_until = time.monotonic() + 2
    now[0] = 20.0
    while (await health.clickhouse()).status != "ok" and time.monotonic() < await_until:
        now[0] += 10.0
    assert (await health.clickhouse()).status == "ok"

    def refused() -> None:
        raise OSError("cannot reach clickhouse://haltwatch:hunter2@db:9000/haltwatch")

    failing = await HealthChecks(FakeKafka(), feed.monitor, refused).clickhouse()
    assert failing.status == "failing" and "hunter2" not in failing.reason and "***" in failing.reason
    health.close()
