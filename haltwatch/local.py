"""Run the pipeline's processes on this machine: infrastructure scripts, worker, connector, watchers.

Used by ``haltwatch demo`` and by the integration tests, so that what the tests exercise is exactly what
a user runs: real subprocesses talking to a real Kafka, node and ClickHouse.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment

from schemas.codec import SchemaError, decode_as
from schemas.records import OutageEvent
from schemas.topics import Topics

_TELLING = re.compile(
    r"Joined group|Setting newly assigned|Revoking|Recovery\]: (?!Starting|Stopping)|Worker ready|ERROR|WARNING"
    r"|Traceback|Signal received"
)
"""Log lines of a worker that say where it is in a rebalance or why it stopped."""

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"


def infra(component: str, action: str, env: dict[str, str] | None = None) -> None:
    """Run ``infra/<component>.sh <action>``; raises with its output when it fails."""
    result = subprocess.run(
        ["bash", str(INFRA / f"{component}.sh"), action],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"infra/{component}.sh {action} failed:\n{result.stdout}\n{result.stderr}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PipelineProcesses:
    """Workers and a connector as subprocesses of this one, with their logs in ``run_dir``.

    The first worker is named ``worker``: its web API is on ``web_port``, its Faust data in ``run_dir/worker``
    and its embedded store in ``run_dir/chdb``. More workers (``start_worker("worker2")``) join the same
    consumer group (same topic prefix, so the same app id) with a web port, a data folder and an embedded
    store of their own: an embedded chdb folder can be held by one process only, while a ClickHouse server
    (``clickhouse_url``) is shared by all of them.
    """

    run_dir: Path
    kafka: str
    ws_url: str
    labels: Path
    prefix: str
    clickhouse_url: str | None = None
    clickhouse_cluster: str | None = None
    web_port: int = field(default_factory=free_port)
    partitions: int = 4
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    worker_ports: dict[str, int] = field(default_factory=dict)
    """Web port of every worker started so far, by name."""

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def app_id(self) -> str:
        """The workers' Faust app id, which is also their Kafka consumer group (see ``haltwatch worker``)."""
        return f"{self.prefix}-worker"

    def _worker_env(self, name: str) -> dict[str, str]:
        if name == "worker":
            return {}
        port = self.worker_ports.setdefault(name, free_port())
        return {
            "HALTWATCH_CHDB_PATH": str(self.run_dir / f"{name}-chdb"),
            "HALTWATCH_DATA_DIR": str(self.run_dir / name),
            "HALTWATCH_WEB_PORT": str(port),
        }

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HALTWATCH_KAFKA_BOOTSTRAP": self.kafka,
            "HALTWATCH_TOPIC_PREFIX": self.prefix,
            "HALTWATCH_PARTITIONS": str(self.partitions),
            "HALTWATCH_CHDB_PATH": str(self.run_dir / "chdb"),
            "HALTWATCH_DATA_DIR": str(self.run_dir / "worker"),
            "HALTWATCH_WEB_PORT": str(self.web_port),
            "PYTHONUNBUFFERED": "1",
        }
        if self.clickhouse_url:
            env["HALTWATCH_CLICKHOUSE_URL"] = self.clickhouse_url
        else:
            env.pop("HALTWATCH_CLICKHOUSE_URL", None)
        if self.clickhouse_cluster:
            env["HALTWATCH_CLICKHOUSE_CLUSTER"] = self.clickhouse_cluster
        else:
            env.pop("HALTWATCH_CLICKHOUSE_CLUSTER", None)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its life
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "haltwatch", *args],
            env={**self._env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
            start_new_session=True,
        )

    def start_worker(self, name: str = "worker", role: str = "all") -> None:
        """Start a worker of this pipeline's consumer group (of the store group with ``role="store"``); its log
        is ``run_dir/<name>.log``."""
        if name == "worker":
            self.worker_ports["worker"] = self.web_port
        self._spawn(name, ["worker", "--role", role], self._worker_env(name))

    def start_connector(self, chain: str = "ethereum", start_block: int | None = None) -> None:
        args = ["connect", "--chain", chain, "--ws-url", self.ws_url, "--labels", str(self.labels),
                "--checkpoint", str(self.run_dir / f"checkpoint-{chain}.json")]
        if start_block is not None:
            args += ["--start-block", str(start_block)]
        self._spawn("connector", args)

    def api(self, path: str, worker: str = "worker") -> Any:
        """GET ``path`` from a worker's JSON API (the first worker unless named)."""
        port = self.web_port if worker == "worker" else self.worker_ports[worker]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return orjson.loads(response.read())

    def wait_worker_ready(self, timeout_s: float = 90.0, name: str = "worker") -> None:
        """Until the worker's web API answers from the store (Kafka joined, migrations applied)."""
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                self.api("/outages", worker=name)
                return
            except Exception as exc:  # not up yet
                last_error = exc
                time.sleep(0.5)
        raise TimeoutError(f"{name} not ready after {timeout_s} s ({last_error}); see {self.run_dir}/{name}.log")

    def group_assignment(self, topic: str) -> list[set[int]]:
        """The partitions of ``topic`` each member of the workers' consumer group holds, as Kafka sees them.

        Read with the admin client from the group coordinator, so it is the assignment every worker got from
        the last completed rebalance (empty while one is in progress)."""
        return consumer_group_assignment(self.kafka, self.app_id, topic)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.run_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def log_digest(self, name: str = "worker", lines: int = 30) -> str:
        """The last of a process's log lines that tell a rebalance's, a recovery's or a failure's story (a
        failed wait shows them, since a CI run keeps no log files)."""
        path = self.run_dir / f"{name}.log"
        if not path.exists():
            return f"({path} does not exist)"
        story = [line for line in path.read_text(errors="replace").splitlines() if _TELLING.search(line)]
        return f"{path}, last {min(lines, len(story))} of {len(story)} telling lines:\n" + "\n".join(story[-lines:])

    def stop(self, name: str | None = None, timeout_s: float = 30.0) -> None:
        for key in [name] if name else list(self.procs):
            proc = self.procs.pop(key, None)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def kill(self, name: str) -> None:
        """SIGKILL a process (no shutdown code runs), as a crash would."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def consumer_group_assignment(kafka: str, group: str, topic: str) -> list[set[int]]:
    """Partitions of ``topic`` held by each member of a *stable* consumer group; [] while it rebalances."""
    admin = KafkaAdminClient(bootstrap_servers=kafka, client_id="haltwatch-group-probe")
    quiet = _DropUndecodable()
    group_log = logging.getLogger("kafka.admin._groups")
    group_log.addFilter(quiet)
    try:
        description = admin.describe_groups([group])[group]
    except KafkaError as exc:
        if exc.retriable:  # e.g. no coordinator yet: the broker creates its offsets topic on the first join
            return []
        raise
    finally:
        group_log.removeFilter(quiet)
        admin.close()
    if description.get("error") or description.get("group_state") != "Stable":
        return []
    return [assigned_partitions(member.get("member_assignment") or b"", topic)
            for member in description.get("members", [])]


class _DropUndecodable(logging.Filter):
    """Faust's members announce themselves with metadata of their own, which the admin client fails to decode
    and warns about at every describe; the assignments, which is what is read here, decode fine."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unable to decode member_metadata")


def assigned_partitions(assignment: bytes | dict[str, Any] | Any, topic: str) -> set[int]:
    """Partitions of ``topic`` in a consumer-protocol assignment, in whichever form the admin client returns
    it: a plain dict (the usual), the protocol object, or raw bytes."""
    if not assignment:  # a member that got nothing, or a group still forming
        return set()
    if isinstance(assignment, bytes | bytearray):
        assignment = ConsumerProtocolAssignment.decode(bytes(assignment))
    if not isinstance(assignment, dict):
        assignment = assignment.to_dict()
    return {p for a in assignment.get("assigned_partitions") or [] if a["topic"] == topic for p in a["partitions"]}


class OutageWatcher:
    """Reads the outage topic from the beginning in a thread, as a downstream consumer would."""

    def __init__(self, kafka: str, topics: Topics, on_event: Callable[[OutageEvent], None] | None = None) -> None:
        self.events: list[OutageEvent] = []
        self.invalid: list[str] = []
        self.on_event = on_event
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            topics.outages,
            bootstrap_servers=kafka,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=200,
        )
        self._thread = threading.Thread(target=self._run, name="outage-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer:
                try:
                    event = decode_as(message.value, OutageEvent)
                except SchemaError as exc:
                    self.invalid.append(str(exc))
                    continue
                self.events.append(event)
                if self.on_event:
                    self.on_event(event)

    def wait_for(self, predicate: Callable[[list[OutageEvent]], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(list(self.events)):
                return True
            time.sleep(0.2)
        return predicate(list(self.events))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()
