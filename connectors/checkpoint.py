"""The last block a connector fully published, kept on disk so a restart resumes without a gap."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson


class CheckpointError(RuntimeError):
    """The checkpoint file cannot be read or written; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    chain: str
    number: int
    hash: str


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
            return Checkpoint(str(data["chain"]), int(data["number"]), str(data["hash"]))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"checkpoint {self.path} lacks chain/number/hash; fix or delete it") from None

    def save(self, checkpoint: Checkpoint) -> None:
        payload = orjson.dumps({"chain": checkpoint.chain, "number": checkpoint.number, "hash": checkpoint.hash})
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
