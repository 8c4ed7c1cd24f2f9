"""Reload label files while the connector runs, without ever trading a good registry for a broken one.

Operators add and fix wallets during an incident; restarting the connector for that would cost a
reconnect and a backfill. :class:`LabelSource` remembers the modification time and size of every label
file (folders are listed again each time, so a new file dropped into a folder is picked up) and reloads
when anything changed or when asked to (SIGHUP). A file that fails to load leaves the previous registry
in place; the error is returned so the caller can log and dead-letter it. Nothing here raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from connectors.labels import LabelError, LabelRegistry, expand_label_paths

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one poll found: a new registry, an error (old registry kept), or neither (nothing changed)."""

    registry: LabelRegistry | None = None
    error: str | None = None


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    """(path, mtime_ns, size) of every label file; a missing file counts as (-1, -1) so its return is seen."""
    entries = []
    for path in expand_label_paths(paths):
        try:
            stat = path.stat()
            entries.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            entries.append((str(path), -1, -1))
    return tuple(entries)


class LabelSource:
    """The current label registry of a set of paths, reloaded on change."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self._seen = fingerprint(self.paths)
        self.registry = LabelRegistry.from_files(self.paths)  # a bad file at start is the caller's error
        self.reloads = 0
        self.last_error: str | None = None

    def poll(self, force: bool = False) -> ReloadResult:
        """Reload when a file changed (or ``force``); keep the old registry when the new files are bad."""
        current = fingerprint(self.paths)
        if current == self._seen and not force:
            return ReloadResult()
        self._seen = current
        try:
            registry = LabelRegistry.from_files(self.paths)
        except LabelError as exc:
            self.last_error = str(exc)
            log.error("label files not reloaded, keeping the previous %d wallets: %s", len(self.registry), exc)
            return ReloadResult(error=str(exc))
        self.registry = registry
        self.reloads += 1
        self.last_error = None
        log.info("label files reloaded: %d wallets from %d file(s)", len(registry), len(registry.files))
        return ReloadResult(registry=registry)
