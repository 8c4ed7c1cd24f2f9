"""With Kafka unreachable, the connector and the worker say so in one haltwatch line per retry (the client
library's chatter stays out) and stop within 10 s of a SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RETRY_LINE = "Kafka at 127.0.0.1:1 not reachable"


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALTWATCH_")}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "haltwatch", *args, "--kafka", "127.0.0.1:1"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=REPO)


@pytest.mark.parametrize(("command", "log_format"), [("connect", "text"), ("worker", "json")])
def test_one_line_per_retry_and_a_prompt_stop(command: str, log_format: str, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    args = {"connect": ["connect", "--chain", "ethereum", "--ws-url", "ws://127.0.0.1:1", "--labels",
                        str(REPO / "labels" / "ethereum.toml"), "--checkpoint", str(tmp_path / "cp.json")],
            "worker": ["worker", "--data-dir", str(tmp_path / "w"), "--chdb-path", str(tmp_path / "chdb")]}[command]
    proc = _start([*args, "--log-format", log_format], log)
    try:
        deadline = time.monotonic() + 90
        while log.read_text(errors="replace").count(RETRY_LINE) < 2:  # two attempts: the retry is running
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        proc.wait(30)
        assert time.monotonic() - stopping < 10, "stops within 10 s of SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text
    assert "Connection failed" not in text and "Attempting bootstrap" not in text, "the client's chatter stays out"
    retries = [line for line in text.splitlines() if RETRY_LINE in line]
    assert all("next try in" in line for line in retries), retries
    if log_format == "json":  # one object per line, for a log pipeline
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records), records[:3]
        assert any(r["level"] == "WARNING" and RETRY_LINE in r["message"] for r in records)
