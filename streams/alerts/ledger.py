"""Which outage versions an alert channel already received, kept in a small file so a restart never resends.

A restarted worker recovers its detector from the changelog and may replay the last decisions (the same
``(outage_id, version)`` records); a desk's chat must not see the same alert twice. One JSON line per
delivery is appended and fsynced before the delivery counts as done; the file is rewritten with only the
newest entries when it grows past twice the bound. An open or degraded version is kept whole, because a
later change must speak of it (Alertmanager ends that alert by its labels) and a firing alert is sent again
after a restart.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import orjson

from schemas.codec import encode, from_dict
from schemas.records import OutageEvent

MAX_ENTRIES = 10_000
ANNOUNCING = frozenset({"open", "degraded"})


class DeliveryLedger:
    def __init__(self, path: Path, max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._events: dict[tuple[str, int], OutageEvent] = {}
        """The delivered open and degraded versions, whole."""
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
                event = from_dict(row["event"]) if "event" in row else None
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):  # SchemaError is a ValueError
                continue  # a torn last line after a crash: that delivery did not count
            self._entries[key] = state
            if isinstance(event, OutageEvent):
                self._events[key] = event
            self._lines += 1
        self._bound()

    def _bound(self) -> None:
        while len(self._entries) > self.max_entries:
            key, _ = self._entries.popitem(last=False)
            self._events.pop(key, None)

    def delivered(self, outage_id: str, version: int) -> bool:
        return (outage_id, version) in self._entries

    def announced(self, outage_id: str) -> bool:
        """Whether an open or degraded version of this outage was delivered (its resolution is news)."""
        return any(oid == outage_id and state in ANNOUNCING for (oid, _v), state in self._entries.items())

    def announced_events(self, outage_id: str) -> list[OutageEvent]:
        """The delivered open and degraded versions of this outage, oldest first."""
        return sorted((e for (oid, _v), e in self._events.items() if oid == outage_id), key=lambda e: e.version)

    def firing(self) -> list[OutageEvent]:
        """The newest delivered version of every outage whose newest delivery is open or degraded."""
        newest: dict[str, tuple[int, str]] = {}
        for (oid, v), state in self._entries.items():
            if oid not in newest or v > newest[oid][0]:
                newest[oid] = (v, state)
        return [self._events[(oid, v)] for oid, (v, state) in newest.items()
                if state in ANNOUNCING and (oid, v) in self._events]

    def record(self, outage_id: str, version: int, state: str, event: OutageEvent | None = None) -> None:
        with self._lock:
            self._entries[(outage_id, version)] = state
            if event is not None and state in ANNOUNCING:
                self._events[(outage_id, version)] = event
            self._bound()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = self._line(outage_id, version, state) + b"\n"
            with self.path.open("ab") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
            self._lines += 1
            if self._lines > 2 * self.max_entries:
                self._compact()

    def _line(self, outage_id: str, version: int, state: str) -> bytes:
        row: dict[str, object] = {"id": outage_id, "v": version, "state": state}
        event = self._events.get((outage_id, version))
        if event is not None:
            row["event"] = orjson.Fragment(encode(event))
        return orjson.dumps(row)

    def _compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(self._line(oid, v, s) + b"\n" for (oid, v), s in self._entries.items()))
        os.replace(tmp, self.path)
        self._lines = len(self._entries)
