"""What a connector has published, kept on disk so a restart resumes without a gap and can undo a reorg.

The checkpoint holds the last fully published block and, for the last N published blocks, their hashes and
the transfer events we published for them. The hashes let the connector notice that a block it published
is no longer canonical even after a restart; the events let it publish exact retractions of an orphaned
block without asking the node, which often no longer has it (anvil forgets orphaned blocks at once).
The file is JSON, written atomically (write, fsync, rename) after every block. Old checkpoints without
the ``recent`` list still load; they simply cannot retract blocks published before the upgrade.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from schemas.codec import SchemaError, from_dict
from schemas.records import TransferEvent


class CheckpointError(RuntimeError):
    """The checkpoint file cannot be read or written; the message says which file and why."""


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

    def load(self) -> Checkpoint | None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc.strerror}") from None
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name, dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {self.path}: {exc.strerror}") from None

