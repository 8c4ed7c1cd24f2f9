"""Snapshots of the detector's view of each (exchange, chain), for the ``detector_status`` table.

"What is down right now?" has to be answered in milliseconds, without replaying history, so the worker
writes what its detector knows (state, last withdrawal, gap, expected rate) as small rows, and the
``current_status`` view keeps the newest per (exchange, chain). Snapshots travel on an internal topic to
a sink agent rather than being inserted by the detector itself: detection must never wait on ClickHouse.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from schemas.records import OutageState
from streams.detection.detector import OutageDetector
from streams.detection.state import ChainView, ExchangeView, IncidentView

SEVERITY = {OutageState.OPEN: 3, OutageState.DEGRADED: 2, OutageState.SUSPECTED: 1}
"""When a chain's own incident and an exchange-wide one both cover it, the more severe one is shown
(the exchange-wide one when they are equally severe)."""
WARMING_UP = "warming_up"
OK = "ok"

_clock_lock = threading.Lock()
_last_version = 0


def next_version() -> int:
    """Wall clock in nanoseconds, strictly increasing within this process (the snapshot's version)."""
    global _last_version
    with _clock_lock:
        _last_version = max(time.time_ns(), _last_version + 1)
        return _last_version


def covering_incident(ex: ExchangeView, c: ChainView) -> IncidentView | None:
    """The unresolved incident that covers chain ``c`` of ``ex``, if any (the more severe of two)."""
    candidates = []  # exchange-wide first: on a tie it is the one that explains the chain's silence
    if ex.incident is not None and ex.incident.state in SEVERITY and c.chain in ex.incident.last.scope:
        candidates.append(ex.incident)
    if c.incident is not None and c.incident.state in SEVERITY:
        candidates.append(c.incident)
    return max(candidates, key=lambda inc: SEVERITY[inc.state], default=None)


def status_row(ex: ExchangeView, c: ChainView, now: float, version: int) -> dict[str, Any]:
    """One ``detector_status`` row for chain ``c`` of exchange ``ex``."""
    incident = covering_incident(ex, c)
    if incident is not None:
        state = incident.state.value
    elif not c.warm:
        state = WARMING_UP
    else:
        state = OK
    last = c.last
    gap = c.head_time - last.time if last is not None and c.head_time is not None else None
    rate = c.rate.at(c.head_time) * 3600.0 if c.head_time is not None else 0.0
    return {
        "exchange": ex.exchange,
        "chain": c.chain,
        "state": state,
        "outage_id": incident.last.outage_id if incident is not None else "",
        "last_withdrawal_time": last.time if last is not None else None,
        "head_number": c.head_number,
        "head_time": c.head_time,
        "gap_s": gap,
        "expected_rate_per_hour": rate,
        "withdrawals_seen": c.withdrawals,
        "updated_at": int(now),
        "version": version,
    }


def snapshot(
    detector: OutageDetector, exchanges: set[str] | list[str], now: float | None = None
) -> list[dict[str, Any]]:
    """Rows for every chain of the given exchanges that the detector tracks (unknown ones are skipped)."""
    now = time.time() if now is None else now
    rows = []
    detector.settle(exchanges)  # every chain's latest head, not the last one each exchange was visited at
    for name in sorted(exchanges):
        ex = detector.view.get(name)
        if ex is None:
            continue
        for c in ex.chains.values():
            rows.append(status_row(ex, c, now, next_version()))
    return rows
