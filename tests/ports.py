"""The fixed ports of the servers one test process starts, moved apart for every pytest-xdist worker.

``HALTWATCH_TEST_PORT_BASE`` (default 29000) places the first process's servers: Kafka on base + 92 (its
controller on + 93), ClickHouse on base (HTTP on base - 877), anvil on base - 455, Alertmanager on base + 293,
and the fault tests' own Kafka and ClickHouse on base + 192 and base + 100. Each xdist worker (``gw0``, ``gw1``,
...) runs its tests one after another against servers of its own, ``WORKER_STRIDE`` ports lower per worker, so
that workers never share a broker that another one's test kills, and two test sessions on one machine do not
stop each other's servers. Every port stays below Linux's ephemeral range (32768 up), where ``free_port()``
picks the workers' web ports.
"""

from __future__ import annotations

import os

WORKER_STRIDE = 2_000


def worker_index(environ: dict[str, str] | None = None) -> int:
    """0 without xdist, else the worker's number (``PYTEST_XDIST_WORKER=gw3`` -> 3)."""
    name = (environ if environ is not None else os.environ).get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw") or 0)


def port_base(environ: dict[str, str] | None = None) -> int:
    env = environ if environ is not None else os.environ
    return int(env.get("HALTWATCH_TEST_PORT_BASE", "29000")) - WORKER_STRIDE * worker_index(env)


BASE = port_base()
KAFKA_PORT = BASE + 92
ANVIL_PORT = BASE - 455
CLICKHOUSE_TCP_PORT = BASE
CLICKHOUSE_HTTP_PORT = BASE - 877
FAULT_KAFKA_PORT = BASE + 192
FAULT_CLICKHOUSE_PORT = BASE + 100
ALERTMANAGER_PORT = BASE + 293
SECURE_KAFKA_PORT = BASE + 392
SECURE_CLICKHOUSE_PORT = BASE + 600
CLUSTER_ZOOKEEPER_PORT = BASE + 700
"""ZooKeeper of the replicated pair; its two ClickHouse replicas on + 710 and + 711 (HTTP + 720/+ 721,
interserver + 730/+ 731)."""
CLUSTER_CLICKHOUSE_PORTS = (BASE + 710, BASE + 711)
"""A ClickHouse of its own for the TLS tests (HTTP on + 601, the native protocol over TLS on + 602)."""
"""A Kafka of its own for the SASL_SSL tests (its controller on + 393, its SASL_SSL listener on + 394)."""
