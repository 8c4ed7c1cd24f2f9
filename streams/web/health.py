"""Liveness and readiness of the worker, for orchestrators and load balancers.

*Live* means the process is worth keeping: its event loop answers and the Faust app has not crashed.
Restarting a worker because Kafka or ClickHouse is down would not help, so live ignores them.

*Ready* means it is doing its job: Kafka (the consumer has partitions assigned, the producer is connected
to a broker) and ClickHouse (a cheap query answers within a short timeout) are ``failing`` checks and make
the answer 503. Chains are a ``degraded`` check: a chain with no data is reported with its reason and the
answer stays 200, because the worker itself is fine and another worker would be just as blind.

The ClickHouse probe runs on its own thread and is cached for a few seconds, so a health check every
second never queues queries; a probe that hangs is reused (not duplicated) until it returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from access.secrets import redact
from schemas.records import ChainState
from streams.detection.chains import ChainMonitor

OK, DEGRADED, FAILING = "ok", "degraded", "failing"
_RANK = {OK: 0, DEGRADED: 1, FAILING: 2}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    reason: str


class KafkaProbe(Protocol):
    def assigned_partitions(self) -> int: ...

    def producer_connected(self) -> bool: ...


class FaustKafkaProbe:
    """Reads the Faust app's consumer and producer (aiokafka underneath) without sending anything."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def assigned_partitions(self) -> int:
        return len(self.app.consumer.assignment())

    def producer_connected(self) -> bool:
        producer = getattr(self.app.producer, "_producer", None)
        if producer is None:
            return False
        conns = getattr(producer.client, "_conns", {})
        return any(conn.connected() for conn in list(conns.values()))


class HealthChecks:
    def __init__(self, kafka: KafkaProbe, monitor: ChainMonitor, probe_store: Callable[[], object],
                 crashed: Callable[[], bool] = lambda: False, cache_s: float = 5.0, timeout_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kafka_probe = kafka
        self.monitor = monitor
        self.probe_store = probe_store
        self.crashed = crashed
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-clickhouse")
        self._running: asyncio.Future[object] | None = None
        self._cached: tuple[float, Check] | None = None

    def live(self) -> tuple[int, dict[str, Any]]:
        if self.crashed():
            return 503, {"status": FAILING, "reason": "the Faust app crashed"}
        return 200, {"status": OK}

    def kafka(self) -> Check:
        try:
            assigned = self.kafka_probe.assigned_partitions()
        except Exception as exc:  # consumer not started yet, or torn down
            return Check("kafka", FAILING, f"consumer not running: {redact(str(exc)) or type(exc).__name__}")
        if assigned == 0:
            return Check("kafka", FAILING, "consumer has no partition assigned (joining the group, or Kafka is "
                                           "unreachable)")
        try:
            connected = self.kafka_probe.producer_connected()
        except Exception as exc:
            return Check("kafka", FAILING, f"producer state unknown: {redact(str(exc))}")
        if not connected:
            return Check("kafka", FAILING, "producer has no connection to any broker")
        return Check("kafka", OK, f"{assigned} partitions assigned, producer connected")

    async def clickhouse(self) -> Check:
        now = self.clock()
        if self._cached is not None and now - self._cached[0] < self.cache_s:
            return self._cached[1]
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().run_in_executor(self._pool, self.probe_store)
        try:
            await asyncio.wait_for(asyncio.shield(self._running), self.timeout_s)
            check = Check("clickhouse", OK, "answered a query")
        except TimeoutError:
            check = Check("clickhouse", FAILING, f"no answer within {self.timeout_s:g} s")
        except Exception as exc:
            check = Check("clickhouse", FAILING, redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__)
        self._cached = (self.clock(), check)
        return check

    def chains(self) -> Check:
        blind = [(name, view) for name, view in sorted(self.monitor.chains.items())
                 if view.state is ChainState.NO_DATA]
        stalled = [name for name, view in sorted(self.monitor.chains.items())
                   if view.state is ChainState.CHAIN_STALLED]
        if blind:
            return Check("chains", DEGRADED, "; ".join(
                f"{name}: no data since block {view.head.number}" for name, view in blind))
        if not self.monitor.chains:
            return Check("chains", DEGRADED, "no chain head received yet")
        note = f" (stalled on the chain's side: {', '.join(stalled)})" if stalled else ""
        return Check("chains", OK, f"{len(self.monitor.chains)} chains receiving data{note}")

    async def ready(self) -> tuple[int, dict[str, Any]]:
        checks = [self.kafka(), await self.clickhouse(), self.chains()]
        status = max((c.status for c in checks), key=_RANK.__getitem__)
        code = 503 if status == FAILING else 200
        return code, {"status": status, "checks": [asdict(c) for c in checks]}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
