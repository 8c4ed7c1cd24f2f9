"""haltwatch on a Kafka that takes only SASL_SSL (SCRAM over TLS, a CA of its own): the halt found end to end,
and wrong credentials or an untrusted certificate refused in one line with exit 2, not retried for ever."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haltwatch.traffic import Phase
from schemas.records import OutageState
from tests.integration.test_end_to_end import EXCHANGE, exchange_pipeline, start_pipeline

REPO = Path(__file__).resolve().parents[2]


def sasl_env(secure_kafka: dict[str, str], password: str | None = None, ca: bool = True) -> dict[str, str]:
    env = {"HALTWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HALTWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
           "HALTWATCH_KAFKA_SASL_USERNAME": secure_kafka["user"],
           "HALTWATCH_KAFKA_SASL_PASSWORD": password or secure_kafka["password"]}
    if ca:
        env["HALTWATCH_KAFKA_SSL_CAFILE"] = secure_kafka["ca"]
    return env


def test_the_halt_is_found_end_to_end_over_sasl_ssl(secure_kafka: dict[str, str], anvil: str, run_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker and connector are given only the SASL_SSL listener; the test reads the outage topic through the
    broker's PLAINTEXT listener, as another team would through theirs."""
    for key, value in sasl_env(secure_kafka).items():
        monkeypatch.setenv(key, value)
    player, pipeline, watcher = exchange_pipeline(secure_kafka["sasl_ssl"], anvil, run_dir, "sasl", seed=29,
                                                  observe_kafka=secure_kafka["plain"])
    try:
        start_pipeline(pipeline, anvil)
        played = asyncio.run(player.play([Phase("steady", 330, 1.5), Phase("halt", 40, 0.0)]))
        assert watcher.wait_for(lambda evs: any(e.state is OutageState.OPEN for e in evs), 90), (
            watcher.events, pipeline.log_digest("worker"))
        opened = next(e for e in watcher.events if e.state is OutageState.OPEN)
        assert opened.exchange == EXCHANGE and opened.started_at <= played[-41].block_time
    finally:
        watcher.close()
        pipeline.stop()
    log = (run_dir / "worker.log").read_text() + (run_dir / "connector.log").read_text()
    assert secure_kafka["password"] not in log, "the SASL password never reaches a log"


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong password", "refused SASL_SSL SCRAM-SHA-256 as haltwatch: it closed the connection during SASL "
                       "authentication"),
    ("untrusted certificate", "its TLS certificate is not trusted"),
])
@pytest.mark.parametrize("command", ["worker", "connect"])
def test_refused_credentials_stop_the_command_in_one_line(secure_kafka: dict[str, str], tmp_path: Path,
                                                          case: str, expected: str, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALTWATCH_")}
    env.update(sasl_env(secure_kafka, password="wrong-password" if case == "wrong password" else None,
                        ca=case != "untrusted certificate"))
    args = {"worker": ["worker", "--data-dir", str(tmp_path / "w"), "--chdb-path", str(tmp_path / "chdb")],
            "connect": ["connect", "--chain", "ethereum", "--ws-url", "ws://127.0.0.1:1", "--labels", str(tmp_path),
                        "--checkpoint", str(tmp_path / "cp.json")]}[command]
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "haltwatch", *args, "--kafka", secure_kafka["sasl_ssl"]],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Kafka at ") and expected in lines[0], result.stderr
    assert "wrong-password" not in result.stderr + result.stdout
    assert took < 60, f"refused after {took:.0f} s: a refusal is not retried"
