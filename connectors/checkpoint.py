"""What a connector has published, kept on disk so a restart resumes without a gap and can undo a reorg.

The checkpoint holds the last fully published block and, for the last N published blocks, their hashes and
the transfer events we published for them. The hashes let the connector notice that a block it published
is no longer canonical even after a restart; the events let it publish exact retractions of an orphaned
block without asking the node, which often no longer has it (anvil forgets orphaned blocks at once).
The file is JSON, written atomically (write, fsync, rename) after every block. Old checkpoints without
the ``recent`` list still load; they simply cannot retract blocks published before the upgrade.

When the file cannot be written the two moments are treated differently, on purpose:

- **At start-up** (:meth:`CheckpointFile.check_writable`, called before anything is published): a path whose
  parent is a file, a read-only or full file system, a directory we may not write. Nothing is in flight yet, so
  nothing is lost by stopping; the process logs one line naming the file and the OS reason and exits with
  :data:`EXIT_CHECKPOINT` (3), distinct from other configuration errors (2), so a supervisor can stop
  restarting on it (systemd ``RestartPreventExitStatus=3``) instead of looping.
- **While running** (:func:`save_until_written`): typically a disk that filled up. Exiting here would turn a
  full disk into a crash loop, and a restart cannot fix it. The connector instead keeps the process, the node
  connection and the heartbeats, and holds at the block it just published: it retries writing that
  block's checkpoint with a growing, jittered wait (1 s to 30 s), logs one line per failed attempt, and
  reports ``haltwatch_connector_checkpoint_ok 0`` and ``checkpoint_errors_total{reason="ENOSPC"}``.
  It does not publish further blocks meanwhile. Publishing on would let the file fall arbitrarily far behind
  Kafka, and a restart would then lose the retractions of any orphaned block in between. Holding keeps the
  file at most one block behind what Kafka has, the same window a crash leaves. Heartbeats go on, saying the
  feed is not delivering (``connected`` false), so the worker reports the chain as ``no_data``, a lost
  feed, rather than as a stalled chain. Exposure comes only from heads, so no outage can come of it. Once
  the write succeeds the connector goes on by itself. If it is stopped or restarted meanwhile, the block
  whose checkpoint was not written is published again from the file on disk (identical records; consumers
  collapse them), and the process exits with :data:`EXIT_CHECKPOINT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connectors.backoff import Backoff
from connectors.metrics import ConnectorMetrics
from schemas.codec import SchemaError, from_dict
from schemas.records import TransferEvent

log = logging.getLogger(__name__)
EXIT_CHECKPOINT = 3
"""Exit code of a connector whose checkpoint file is unusable (unreadable, unwritable, or not ours)."""


class CheckpointError(RuntimeError):
    """The checkpoint file cannot be read or written; the message says which file and why.

    ``reason`` is the OS error's symbolic name (``ENOSPC``, ``EROFS`` ...) for metrics, or ``format`` when the
    file is readable but not a checkpoint of ours.
    """

    def __init__(self, message: str, reason: str = "format") -> None:
        super().__init__(message)
        self.reason = reason


def _os_reason(exc: OSError) -> tuple[str, str]:
    """(what the OS said, its symbolic errno name): ``No space left on device``, ``ENOSPC``."""
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    return (exc.strerror or str(exc)), name


@dataclass(frozen=True, slots=True)
class PublishedBlock:
    """One block as we published it: enough to detect that it was orphaned and to retract its events."""

    number: int
    hash: str
    parent_hash: str
    transfers: tuple[TransferEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last fully published block, plus the recent ones (oldest first, ending with that block)."""

    chain: str
    number: int
    hash: str
    recent: tuple[PublishedBlock, ...] = field(default=())

    @classmethod
    def after(cls, chain: str, block: PublishedBlock) -> Checkpoint:
        return cls(chain, block.number, block.hash, (block,))

    def advance(self, block: PublishedBlock, window: int) -> Checkpoint:
        """The checkpoint once ``block`` (the next one) is published; keeps the last ``window`` blocks."""
        if block.number != self.number + 1:
            raise ValueError(f"block {block.number} does not follow checkpoint {self.number}")
        recent = (*self.recent, block)[-max(window, 1):]
        return Checkpoint(self.chain, block.number, block.hash, recent)

    def rewind(self, number: int, hash_: str) -> Checkpoint:
        """Back to an earlier block (a reorg's common ancestor): later recent blocks are dropped."""
        return Checkpoint(self.chain, number, hash_, tuple(b for b in self.recent if b.number <= number))

    def block(self, number: int) -> PublishedBlock | None:
        for published in reversed(self.recent):
            if published.number == number:
                return published
        return None


def _transfer(data: Any, where: str) -> TransferEvent:
    record = from_dict(data)
    if not isinstance(record, TransferEvent):
        raise SchemaError(f"{where}: expected a transfer record, got {record.TYPE}")
    return record


def _recent(data: Any) -> tuple[PublishedBlock, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise SchemaError("recent: expected a list")
    blocks = []
    for item in data:
        blocks.append(
            PublishedBlock(
                int(item["number"]),
                str(item["hash"]),
                str(item["parent_hash"]),
                tuple(_transfer(t, f"recent block {item['number']}") for t in item.get("transfers", [])),
            )
        )
    return tuple(blocks)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    """JSON with ``chain``, ``number``, ``hash`` first (people and scripts grep for ``"number":N,``)."""
    return orjson.dumps(
        {"chain": checkpoint.chain, "number": checkpoint.number, "hash": checkpoint.hash,
         "recent": checkpoint.recent}
    )


class CheckpointFile:
    """Atomic (write, fsync, rename) JSON file holding one :class:`Checkpoint`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_error: CheckpointError | None = None
        """The error of the latest save when it failed (None once a save succeeds): the file is behind."""

    def load(self) -> Checkpoint | None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            text, name = _os_reason(exc)
            raise CheckpointError(f"cannot read checkpoint {self.path}: {text} [{name}]", name) from None
        except orjson.JSONDecodeError as exc:
            raise CheckpointError(f"checkpoint {self.path} is not valid JSON ({exc}); fix or delete it") from None
        try:
            return Checkpoint(str(data["chain"]), int(data["number"]), str(data["hash"]), _recent(data.get("recent")))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CheckpointError(f"checkpoint {self.path} lacks chain/number/hash; fix or delete it") from None

    def save(self, checkpoint: Checkpoint) -> None:
        self.save_bytes(encode_checkpoint(checkpoint))

    def save_bytes(self, payload: bytes) -> None:
        try:
            self._write(payload, keep=True)
        except CheckpointError as exc:
            self.last_error = exc
            raise
        self.last_error = None

    def check_writable(self) -> None:
        """Write (and remove) a file of the checkpoint's size next to it, as a save would; CheckpointError if not.

        Run before anything is published, so that a path that can never work is reported at start-up, when
        stopping costs nothing, rather than after the first block went out.
        """
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        self._write(b" " * max(size, 4096), keep=False)

    def _write(self, payload: bytes, keep: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # mkdir's own wording ("File exists") would point the reader the wrong way
            raise CheckpointError(f"cannot write checkpoint {self.path}: {self.path.parent} is not a directory "
                                  "[ENOTDIR]", "ENOTDIR") from None
        except OSError as exc:
            text, name = _os_reason(exc)
            raise CheckpointError(f"cannot write checkpoint {self.path}: {text} [{name}]", name) from None
        try:
            fd, tmp = tempfile.mkstemp(prefix=self.path.name, dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                if keep:
                    os.replace(tmp, self.path)
                else:
                    os.unlink(tmp)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            text, name = _os_reason(exc)
            raise CheckpointError(f"cannot write checkpoint {self.path}: {text} [{name}]", name) from None


async def save_until_written(
    file: CheckpointFile, checkpoint: Checkpoint, stopping: asyncio.Event, metrics: ConnectorMetrics
) -> bool:
    """Write ``checkpoint``, retrying with backoff while the file system refuses; False when stop came first.

    The caller has already published the block, so it must not go on to the next one before this returns
    True (see the module docstring for why it holds rather than exits or publishes on).
    """
    backoff = Backoff(initial=1.0, maximum=30.0)
    failures = 0
    while True:
        try:
            await asyncio.to_thread(file.save, checkpoint)
        except CheckpointError as exc:
            failures += 1
            metrics.checkpoint_failed(exc.reason)
            delay = backoff.next_delay()
            log.error("%s: %s; block %d is published but not checkpointed, holding there (attempt %d, retry in "
                      "%.1f s)", checkpoint.chain, exc, checkpoint.number, failures, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            if stopping.is_set():
                log.error("%s: stopping with checkpoint %s behind: block %d will be published again on the next "
                          "start", checkpoint.chain, file.path, checkpoint.number)
                return False
            continue
        if failures:
            log.warning("%s: checkpoint %s written again (block %d) after %d failed attempts", checkpoint.chain,
                        file.path, checkpoint.number, failures)
        metrics.checkpoint_written()
        return True
