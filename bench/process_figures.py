"""CPU and memory of the processes a bench runs, read from /proc.

Why /proc rather than wall time: on 2 cores every figure depends on what else runs, and CPU seconds per
process say which part of the pipeline pays for an event whatever the machine's load was.
"""

from __future__ import annotations

import os
from pathlib import Path

from haltwatch.local import REPO


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds one process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def infra_pid(name: str) -> int | None:
    """PID of a server started by ``infra/<service>.sh`` (``name`` = ``<service>-<port>``), from its run file."""
    cache = Path(os.environ.get("HALTWATCH_CACHE", REPO / ".cache"))
    try:
        return int((cache / "run" / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
