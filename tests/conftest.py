"""Session fixtures that start the real servers with the project's own infra scripts.

Ports differ from the demo's defaults so the suite can run beside a demo. Every server started here is
stopped at the end of the session by the same scripts (by PID).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from haltwatch.local import infra
from tests import ports

# Each test process (each pytest-xdist worker) has servers of its own: tests/ports.py.
KAFKA_ENV = {"KAFKA_PORT": str(ports.KAFKA_PORT), "KAFKA_CONTROLLER_PORT": str(ports.KAFKA_PORT + 1),
             "KAFKA_PARTITIONS": "4"}
ANVIL_ENV = {"ANVIL_PORT": str(ports.ANVIL_PORT), "ANVIL_ARGS": "--no-mining"}
CLICKHOUSE_ENV = {"CLICKHOUSE_TCP_PORT": str(ports.CLICKHOUSE_TCP_PORT),
                  "CLICKHOUSE_HTTP_PORT": str(ports.CLICKHOUSE_HTTP_PORT)}


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="haltwatch-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka(state_dir: Path) -> Iterator[str]:
    env = {**KAFKA_ENV, "KAFKA_DATA_DIR": str(state_dir / "kafka")}
    infra("kafka", "start", env)
    try:
        yield f"127.0.0.1:{KAFKA_ENV['KAFKA_PORT']}"
    finally:
        infra("kafka", "stop", env)


@pytest.fixture(scope="session")
def anvil() -> Iterator[str]:
    infra("anvil", "start", ANVIL_ENV)
    try:
        yield f"ws://127.0.0.1:{ANVIL_ENV['ANVIL_PORT']}"
    finally:
        infra("anvil", "stop", ANVIL_ENV)


@pytest.fixture(scope="session")
def clickhouse_server(state_dir: Path) -> Iterator[str]:
    env = {**CLICKHOUSE_ENV, "CLICKHOUSE_STATE_DIR": str(state_dir / "clickhouse")}
    infra("clickhouse", "start", env)
    try:
        yield f"clickhouse://default@127.0.0.1:{CLICKHOUSE_ENV['CLICKHOUSE_TCP_PORT']}/haltwatch"
    finally:
        infra("clickhouse", "stop", env)


class ReplicaPair:
    """Two Debian clickhouse-server processes as the two replicas of one shard of cluster ``haltwatch``,
    coordinated by an Apache ZooKeeper, all started by ``infra/``; a test may kill and restart a replica."""

    CLUSTER = "haltwatch"

    def __init__(self, state_dir: Path) -> None:
        self.ports = ports.CLUSTER_CLICKHOUSE_PORTS
        self.zookeeper_env = {"ZOOKEEPER_PORT": str(ports.CLUSTER_ZOOKEEPER_PORT),
                              "ZOOKEEPER_STATE_DIR": str(state_dir / "zookeeper")}
        self.envs = [{"CLICKHOUSE_TCP_PORT": str(port), "CLICKHOUSE_HTTP_PORT": str(port + 10),
                      "CLICKHOUSE_INTERSERVER_PORT": str(port + 20), "CLICKHOUSE_ZOOKEEPER_PORT":
                      str(ports.CLUSTER_ZOOKEEPER_PORT), "CLICKHOUSE_REPLICAS": " ".join(map(str, self.ports)),
                      "CLICKHOUSE_REPLICA": f"replica{i + 1}",
                      "CLICKHOUSE_STATE_DIR": str(state_dir / f"replica{i + 1}")}
                     for i, port in enumerate(self.ports)]

    def url(self, database: str, first: int = 0) -> str:
        """A URL that reaches replica ``first`` and fails over to the other."""
        other = self.ports[1 - first]
        return f"clickhouse://default@127.0.0.1:{self.ports[first]}/{database}?alt_hosts=127.0.0.1:{other}"

    def replica_url(self, i: int, database: str) -> str:
        """A URL of replica ``i`` alone."""
        return f"clickhouse://default@127.0.0.1:{self.ports[i]}/{database}"

    def start(self) -> None:
        infra("zookeeper", "start", self.zookeeper_env)
        for env in self.envs:
            infra("clickhouse", "start", env)

    def kill(self, i: int) -> None:
        infra("clickhouse", "kill", self.envs[i])

    def start_replica(self, i: int) -> None:
        infra("clickhouse", "start", self.envs[i])

    def stop(self) -> None:
        for env in self.envs:
            infra("clickhouse", "stop", env)
        infra("zookeeper", "stop", self.zookeeper_env)


@pytest.fixture(scope="session")
def clickhouse_cluster(state_dir: Path) -> Iterator[ReplicaPair]:
    pair = ReplicaPair(state_dir / "cluster")
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()


def _ca_file(component: str, env: dict[str, str]) -> str:
    """The CA certificate an infra script made for the instance ``env`` names (what its clients trust)."""
    return subprocess.run(["bash", f"infra/{component}.sh", "ca-file"], env={**os.environ, **env},
                          capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1]).stdout.strip()


@pytest.fixture(scope="session")
def secure_kafka(state_dir: Path) -> Iterator[dict[str, str]]:
    """A Kafka with a SASL_SSL listener (SCRAM users made at format time, a CA of its own) beside PLAINTEXT."""
    env = {"KAFKA_PORT": str(ports.SECURE_KAFKA_PORT), "KAFKA_CONTROLLER_PORT": str(ports.SECURE_KAFKA_PORT + 1),
           "KAFKA_SASL_SSL_PORT": str(ports.SECURE_KAFKA_PORT + 2), "KAFKA_PARTITIONS": "4",
           "KAFKA_DATA_DIR": str(state_dir / "secure-kafka"), "KAFKA_SCRAM_USER": "haltwatch",
           "KAFKA_SCRAM_PASSWORD": "s3cret-scram"}
    infra("kafka", "start", env)
    ca = _ca_file("kafka", env)
    try:
        yield {"plain": f"127.0.0.1:{ports.SECURE_KAFKA_PORT}", "sasl_ssl": f"127.0.0.1:{ports.SECURE_KAFKA_PORT + 2}",
               "ca": ca, "user": "haltwatch", "password": "s3cret-scram"}
    finally:
        infra("kafka", "stop", env)


@pytest.fixture(scope="session")
def secure_clickhouse(state_dir: Path) -> Iterator[dict[str, str]]:
    """A ClickHouse server with its native protocol also over TLS (a CA of its own) and a password user."""
    env = {"CLICKHOUSE_TCP_PORT": str(ports.SECURE_CLICKHOUSE_PORT),
           "CLICKHOUSE_HTTP_PORT": str(ports.SECURE_CLICKHOUSE_PORT + 1),
           "CLICKHOUSE_TCP_SECURE_PORT": str(ports.SECURE_CLICKHOUSE_PORT + 2),
           "CLICKHOUSE_STATE_DIR": str(state_dir / "secure-clickhouse"), "CLICKHOUSE_USER": "haltwatch",
           "CLICKHOUSE_PASSWORD": "ch-s3cret"}
    infra("clickhouse", "start", env)
    ca = _ca_file("clickhouse", env)
    try:
        yield {"secure": f"127.0.0.1:{ports.SECURE_CLICKHOUSE_PORT + 2}", "ca": ca, "user": "haltwatch",
               "password": "ch-s3cret"}
    finally:
        infra("clickhouse", "stop", env)


@pytest.fixture(scope="session")
def alertmanager(state_dir: Path) -> Iterator[str]:
    """A real Prometheus Alertmanager, built from its Go module by the project's script (cached)."""
    env = {"ALERTMANAGER_PORT": str(ports.ALERTMANAGER_PORT), "ALERTMANAGER_DATA_DIR": str(state_dir / "alertmanager")}
    infra("alertmanager", "start", env)
    try:
        yield f"http://127.0.0.1:{ports.ALERTMANAGER_PORT}"
    finally:
        infra("alertmanager", "stop", env)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid:
            item.add_marker(pytest.mark.integration)


os.environ.setdefault("PYTHONHASHSEED", "0")
