"""Run the pipeline's processes on this machine: infrastructure scripts, worker, connector, watchers.

Used by ``haltwatch demo`` and by the integration tests, so that what the tests exercise is exactly what
a user runs: real subprocesses talking to a real Kafka, node and ClickHouse.
"""

from __future__ import annotations

import os
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
from kafka import KafkaConsumer

from schemas.codec import SchemaError, decode_as
from schemas.records import OutageEvent
from schemas.topics import Topics

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
    """A worker and a connector as subprocesses of this one, with their logs in ``run_dir``."""

    run_dir: Path
    kafka: str
    ws_url: str
    labels: Path
    prefix: str
    clickhouse_url: str | None = None
    web_port: int = field(default_factory=free_port)
    partitions: int = 4
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

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
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its life
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "haltwatch", *args],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
            start_new_session=True,
        )

    def start_worker(self) -> None:
        self._spawn("worker", ["worker"])

    def start_connector(self, chain: str = "ethereum", start_block: int | None = None) -> None:
        args = ["connect", "--chain", chain, "--ws-url", self.ws_url, "--labels", str(self.labels),
                "--checkpoint", str(self.run_dir / f"checkpoint-{chain}.json")]
        if start_block is not None:
            args += ["--start-block", str(start_block)]
        self._spawn("connector", args)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=10) as response:
            return orjson.loads(response.read())

    def wait_worker_ready(self, timeout_s: float = 90.0) -> None:
        """Until the worker's web API answers from the store (Kafka joined, migrations applied)."""
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                self.api("/outages")
                return
            except Exception as exc:  # not up yet
                last_error = exc
                time.sleep(0.5)
        raise TimeoutError(f"worker not ready after {timeout_s} s ({last_error}); see {self.run_dir}/worker.log")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.run_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

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
