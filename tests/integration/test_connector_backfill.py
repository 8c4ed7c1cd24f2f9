"""``haltwatch backfill``: adaptive eth_getLogs ranges, the live connector's records, resume after a stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from haltwatch.local import REPO
from haltwatch.traffic import TOKEN_ADDRESS, Phase
from tests.fake_node import FakeNode, Faults
from tests.integration.connector_support import run, tip, transfers
from tests.integration.test_connector_faults import assert_complete, setup


def backfill(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALTWATCH_")}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "haltwatch", "backfill", *args], stdout=out,
                                stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=REPO,
                                start_new_session=True)


def checkpoint_number(path: Path) -> int:
    try:
        return int(orjson.loads(path.read_bytes())["number"])
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError):
        return -1


def test_backfill_halves_ranges_publishes_like_live_and_resumes(kafka: str, anvil: str, run_dir: Path) -> None:
    player, labels, topics, prefix = setup(kafka, anvil, run_dir, "backfill", 61)
    first = run(tip(anvil)) + 1
    played = run(player.play([Phase("history", 120, 2.0)]))
    last = played[-1].number
    checkpoint = run_dir / "backfill.json"
    log = run_dir / "backfill.log"
    with FakeNode(anvil, Faults(max_log_range=7)) as node:
        args = ["--chain", "ethereum", "--ws-url", node.url, "--labels", str(labels), "--from-block", str(first),
                "--to-block", str(last), "--checkpoint", str(checkpoint), "--kafka", kafka, "--prefix", prefix,
                "--partitions", "4", "--no-progress"]
        proc = backfill(args, log)
        deadline = time.monotonic() + 60
        while checkpoint_number(checkpoint) < first + 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)  # interrupted part-way ...
        assert proc.wait(30) == 0, log.read_text()
        stopped_at = checkpoint_number(checkpoint)
        assert first + 30 <= stopped_at < last, "stopped part-way"

        proc = backfill(args, log)  # ... and resumed from its checkpoint
        assert proc.wait(120) == 0, log.read_text()
        assert node.refused_ranges > 0, "the node refused wide ranges, so the span was halved"
    output = log.read_text()
    assert f"backfill ethereum {first}..{last}: {last - stopped_at} blocks" in output, output[-2000:]
    assert checkpoint_number(checkpoint) == last
    assert_complete(kafka, topics, anvil, player.hot, first, last)  # every block's head exactly once
    assert all(r.record.block_number <= last for r in transfers(kafka, topics))

    again = backfill(args, log)  # a finished backfill run again publishes nothing more
    assert again.wait(60) == 0
    assert_complete(kafka, topics, anvil, player.hot, first, last)


def test_tokens_of_interest_limit_the_erc20_transfers(kafka: str, anvil: str, run_dir: Path) -> None:
    player, labels, topics, prefix = setup(kafka, anvil, run_dir, "tokens", 67)
    first = run(tip(anvil)) + 1
    played = run(player.play([Phase("history", 40, 3.0)]))
    last = played[-1].number
    log = run_dir / "backfill.log"
    proc = backfill(["--chain", "ethereum", "--ws-url", anvil, "--labels", str(labels), "--from-block", str(first),
                     "--to-block", str(last), "--checkpoint", str(run_dir / "cp.json"), "--kafka", kafka, "--prefix",
                     prefix, "--partitions", "4", "--no-progress", "--token", "0x" + TOKEN_ADDRESS[2:].upper()], log)
    assert proc.wait(120) == 0, log.read_text()[-3000:]
    assets = {r.record.asset for r in transfers(kafka, topics)}
    assert assets == {"native", TOKEN_ADDRESS}, "the USDT-style token played too is left out"
