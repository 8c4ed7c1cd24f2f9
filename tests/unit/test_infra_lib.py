"""``infra/lib.sh`` ends the servers it started: a stop that SIGTERM does not end falls back to SIGKILL, and a
kill (a crash on purpose) is SIGKILL at once; both return only once the process is gone. Checked on a real
process that ignores SIGTERM, the way a server stuck in its shutdown does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MARKER = f"haltwatch-lib-test-{os.getpid()}"
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """The cache the script uses, with whatever it left running killed afterwards (a failed test too)."""
    yield tmp_path
    for pid_file in (tmp_path / "run").glob("*.pid"):
        pid = int(pid_file.read_text() or 0)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if pid and cmdline.exists() and MARKER in cmdline.read_text(errors="replace"):
            os.kill(pid, signal.SIGKILL)


def run_lib(cache: Path, then: str) -> str:
    """Start the SIGTERM-ignoring process with ``hw_launch``, run ``then``, and check it is gone; the log."""
    script = f"""
set -euo pipefail
source "{REPO}/infra/lib.sh"
log="$HW_LOGS/stubborn.log"
: >"$log"
hw_launch stubborn "$log" "{MARKER}" "{sys.executable}" -c "$STUBBORN" "{MARKER}"
pid="$HW_LAUNCHED_PID"
for _ in $(seq 100); do grep -q ready "$log" && break; sleep 0.1; done
grep -q ready "$log"
{then}
if hw_alive "$pid" "{MARKER}"; then echo "still alive" >&2; exit 1; fi
[ ! -e "$HW_RUN/stubborn.pid" ]
"""
    done = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "HALTWATCH_CACHE": str(cache), "STUBBORN": STUBBORN},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_stop_that_sigterm_does_not_end_falls_back_to_sigkill(cache: Path) -> None:
    log = run_lib(cache, f'hw_stop stubborn "{MARKER}" 1')
    assert "still alive after 1s, sending SIGKILL" in log
    assert "stubborn: stopped" in log


def test_a_kill_is_sigkill_at_once_and_waits_until_the_process_is_gone(cache: Path) -> None:
    log = run_lib(cache, f'hw_kill stubborn "{MARKER}"')
    assert "killing pid" in log and "stubborn: killed" in log
    assert "SIGTERM" not in log


def test_a_launched_process_counts_as_alive_as_soon_as_the_launch_returns(cache: Path) -> None:
    """Between fork and exec a child's command line is the shell's, without its marker: the first readiness
    check of a starting server took it for dead. Here the window is made wide with a wrapper that waits
    before it execs, so a launch that returns before the exec fails this test."""
    wrapper = cache / "slow-exec.sh"
    wrapper.write_text(f'sleep 0.5\nexec "{sys.executable}" -c "import time; time.sleep(60)" "{MARKER}"\n')
    script = f"""
set -euo pipefail
source "{REPO}/infra/lib.sh"
hw_launch slow "$HW_LOGS/slow.log" "{MARKER}" bash "{wrapper}"
hw_alive "$HW_LAUNCHED_PID" "{MARKER}" || {{ echo "not alive right after the launch" >&2; exit 1; }}
hw_kill slow "{MARKER}"
"""
    done = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "HALTWATCH_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
