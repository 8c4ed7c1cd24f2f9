"""Which outage versions a webhook already received, kept in a small file so a restart never resends.

A restarted worker recovers its detector from the changelog and may replay the last decisions (the same
``(outage_id, version)`` records); a desk's chat must not see the same alert twice. One JSON line per
delivery is appended and fsynced before the delivery counts as done; the file is rewritten with only the
newest entries when it grows past twice the bound.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import orjson

MAX_ENTRIES = 10_000
ANNOUNCING = frozenset({"open", "degraded"})


class DeliveryLedger:
    def __init__(self, path: Path, max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._lines = 0
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        for line in self.path.read_bytes().splitlines():
            try:
                row = orjson.loads(line)
                key = (str(row["id"]), int(row["v"]))
                state = str(row["state"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a torn last line after a crash: that delivery did not count
            self._entries[key] = state
            self._lines += 1
        self._bound()

    def _bound(self) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def delivered(self, outage_id: str, version: int) -> bool:
        return (outage_id, version) in self._entries

    def announced(self, outage_id: str) -> bool:
        """Whether an open or degraded version of this outage was delivered (its resolution is news)."""
        return any(oid == outage_id and state in ANNOUNCING for (oid, _v), state in self._entries.items())

    def record(self, outage_id: str, version: int, state: str) -> None:
        with self._lock:
            self._entries[(outage_id, version)] = state
            self._bound()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = orjson.dumps({"id": outage_id, "v": version, "state": state}) + b"\n"
            with self.path.open("ab") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
            self._lines += 1
            if self._lines > 2 * self.max_entries:
                self._compact()

    def _compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(
            orjson.dumps({"id": oid, "v": v, "state": s}) + b"\n" for (oid, v), s in self._entries.items()))
        os.replace(tmp, self.path)
        self._lines = len(self._entries)
