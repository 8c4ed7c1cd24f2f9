"""The benches' CPU and memory readings: wrong /proc fields would print plausible figures, not fail."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.process_figures import cpu_seconds, infra_pid, machine_busy, memory


def test_cpu_seconds_count_a_busy_child_and_not_a_sleeping_one() -> None:
    # the child spins until it has used a second of CPU by its own count, however long a busy machine makes
    # that take, then says how much it used
    spin = ("import sys, time\nwhile time.process_time() < 1.0: pass\n"
            "print(time.process_time(), flush=True)\nsys.stdin.read()")
    busy = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert busy.stdout is not None
        used = float(busy.stdout.readline())
        tick = 1 / os.sysconf("SC_CLK_TCK")
        assert used - 2 * tick <= cpu_seconds(busy.pid) <= used + 0.5  # + the interpreter's start-up
        assert cpu_seconds(idle.pid) < 0.5
    finally:
        for proc in (busy, idle):
            proc.communicate(b"")


def test_memory_sees_an_allocation_in_the_peak() -> None:
    code = ("import sys\nblock = bytearray(200 * 1024 * 1024)\nblock[::4096] = b'x' * len(block[::4096])\n"
            "del block\nprint('freed', flush=True)\nsys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"freed\n"
        rss, peak = memory(proc.pid)
        assert peak >= 200  # the 200 MB block was touched page by page
        assert rss < peak - 150  # and freed again
    finally:
        proc.communicate(b"")


def test_machine_busy_grows_with_work_and_never_exceeds_the_total() -> None:
    busy0, total0 = machine_busy()
    end = time.process_time() + 0.3  # this process's own CPU time: on a busy machine the spin just lasts longer
    while time.process_time() < end:
        pass
    busy1, total1 = machine_busy()
    assert busy1 - busy0 >= 0.2 * os.sysconf("SC_CLK_TCK")
    assert 0 < busy1 - busy0 <= total1 - total0


def test_infra_pid_reads_the_run_file_and_tolerates_a_missing_or_bad_one(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALTWATCH_CACHE", str(tmp_path))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kafka-9092.pid").write_text("4321\n")
    (tmp_path / "run" / "clickhouse-9000.pid").write_text("not a pid")
    assert infra_pid("kafka-9092") == 4321
    assert infra_pid("clickhouse-9000") is None
    assert infra_pid("kafka-1") is None
