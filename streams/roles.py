"""What a worker process runs; kept free of Faust imports so that the command line can offer the choices."""

from __future__ import annotations

from enum import StrEnum


class WorkerRole(StrEnum):
    """Which agents a worker runs. ``all`` is one process for everything. ``detect`` and ``store`` split the
    work into two consumer groups, so that a slow or unreachable ClickHouse, which holds up the store agents
    (they retry each insert until it succeeds), never holds up detection: within one Faust consumer, a stream
    whose buffer is full pauses delivery to every agent reading the same topic."""

    ALL = "all"
    DETECT = "detect"
    STORE = "store"
