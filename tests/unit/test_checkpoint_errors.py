"""The checkpoint file under real file-system errors: a clear one-line error, and a hold-and-retry at run time.

Every error here comes from the kernel, not from a mock: a parent that is a regular file (ENOTDIR), sysfs,
which refuses new files even to root (EACCES), a full tmpfs (ENOSPC), a tmpfs remounted read-only (EROFS),
and a file-size limit set with ``setrlimit`` in a child process (EFBIG). The writer test stands in for Kafka
with the unit tests' recording publisher; the connector process against a real Kafka is in
``tests/integration/test_connector_checkpoint_faults.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.checkpoint import Checkpoint, CheckpointError, CheckpointFile, PublishedBlock, save_until_written
from connectors.linked_writer import LinkedBlock, LinkedWriter, Stopped
from connectors.metrics import ConnectorMetrics
from haltwatch.local import REPO
from schemas.records import ChainHead, Direction, TransferEvent
from tests.tmpfs import fill, remount_read_only, small_tmpfs
from tests.unit.feed_fakes import RecordingPublisher


def checkpoint(number: int, blocks: int = 3) -> Checkpoint:
    recent = tuple(PublishedBlock(n, f"0x{n:064x}", f"0x{n - 1:064x}") for n in range(number - blocks + 1, number + 1))
    return Checkpoint("ethereum", number, f"0x{number:064x}", recent)


def test_parent_that_is_a_file_is_reported_with_path_and_reason(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where a directory should be")
    file = CheckpointFile(tmp_path / "state" / "checkpoint-ethereum.json")
    with pytest.raises(CheckpointError) as caught:
        file.check_writable()
    assert str(caught.value) == (f"cannot write checkpoint {file.path}: {tmp_path / 'state'} is not a directory "
                                 "[ENOTDIR]")
    assert caught.value.reason == "ENOTDIR"
    deeper = CheckpointFile(tmp_path / "state" / "ethereum" / "checkpoint.json")
    with pytest.raises(CheckpointError, match=r"^cannot write checkpoint .*: Not a directory \[ENOTDIR\]$"):
        deeper.save(checkpoint(1))
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*: Not a directory \[ENOTDIR\]"):
        file.load()


def test_a_directory_root_may_not_write_is_reported() -> None:
    file = CheckpointFile(Path("/sys/haltwatch-checkpoint-ethereum.json"))
    with pytest.raises(CheckpointError) as caught:
        file.check_writable()
    assert caught.value.reason in {"EACCES", "EPERM"}
    assert str(caught.value).startswith("cannot write checkpoint /sys/haltwatch-checkpoint-ethereum.json: ")
    assert not Path("/sys/haltwatch-checkpoint-ethereum.json").exists()


def test_missing_directory_is_created(tmp_path: Path) -> None:
    file = CheckpointFile(tmp_path / "not" / "yet" / "checkpoint.json")
    file.check_writable()
    file.save(checkpoint(7))
    assert file.load() == checkpoint(7)
    assert [p.name for p in file.path.parent.iterdir()] == ["checkpoint.json"]


def test_full_disk_keeps_the_previous_checkpoint_and_leaves_no_temp_file(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "fs", 64) as fs:
        file = CheckpointFile(fs / "checkpoint.json")
        file.save(checkpoint(10))
        filler = fill(fs)
        with pytest.raises(CheckpointError) as caught:
            file.save(checkpoint(11))
        assert str(caught.value) == f"cannot write checkpoint {file.path}: No space left on device [ENOSPC]"
        assert file.last_error is caught.value
        with pytest.raises(CheckpointError, match=r"\[ENOSPC\]"):
            file.check_writable()
        assert file.load() == checkpoint(10)
        assert sorted(p.name for p in fs.iterdir()) == ["checkpoint.json", "filler"]
        filler.unlink()
        file.save(checkpoint(11))
        assert file.load() == checkpoint(11) and file.last_error is None


def test_read_only_file_system_is_reported(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "fs", 64) as fs:
        file = CheckpointFile(fs / "checkpoint.json")
        file.save(checkpoint(3))
        remount_read_only(fs)
        with pytest.raises(CheckpointError) as caught:
            file.save(checkpoint(4))
        assert str(caught.value) == f"cannot write checkpoint {file.path}: Read-only file system [EROFS]"
        assert file.load() == checkpoint(3)


def test_file_size_limit_is_reported_not_a_signal(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel refuse the write (EFBIG); Python ignores SIGXFSZ, so no crash either."""
    path = tmp_path / "checkpoint.json"
    script = textwrap.dedent(f"""
        import resource
        from pathlib import Path
        from connectors.checkpoint import CheckpointError, CheckpointFile
        from tests.unit.test_checkpoint_errors import checkpoint
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        try:
            CheckpointFile(Path({str(path)!r})).save(checkpoint(1000, blocks=500))
        except CheckpointError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cannot write checkpoint {path}: File too large [EFBIG]"
    assert not path.exists() and list(tmp_path.iterdir()) == []


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Polls ``condition``: retries come after jittered backoff, and a busy machine may delay them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.05)


def test_run_time_full_disk_holds_then_writes_once_space_is_freed(tmp_path: Path) -> None:
    metrics = ConnectorMetrics("ethereum")

    async def scenario(fs: Path) -> None:
        file = CheckpointFile(fs / "checkpoint.json")
        file.save(checkpoint(20))
        filler = fill(fs)
        stopping = asyncio.Event()
        saving = asyncio.create_task(save_until_written(file, checkpoint(21), stopping, metrics))
        await until(lambda: metrics.value("checkpoint_errors_total", reason="ENOSPC") >= 2, "a failed retry")
        assert not saving.done()
        assert metrics.value("checkpoint_ok") == 0
        assert file.load() == checkpoint(20)
        filler.unlink()
        assert await asyncio.wait_for(saving, timeout=40) is True
        assert file.load() == checkpoint(21)
        assert metrics.value("checkpoint_ok") == 1 and file.last_error is None

    with small_tmpfs(tmp_path / "fs", 64) as fs:
        asyncio.run(scenario(fs))


def test_stop_while_the_disk_is_full_reports_the_checkpoint_behind(tmp_path: Path) -> None:
    metrics = ConnectorMetrics("ethereum")

    async def scenario(fs: Path) -> None:
        file = CheckpointFile(fs / "checkpoint.json")
        file.save(checkpoint(5))
        fill(fs)
        stopping = asyncio.Event()
        saving = asyncio.create_task(save_until_written(file, checkpoint(6), stopping, metrics))
        await asyncio.sleep(0.3)
        stopping.set()
        assert await asyncio.wait_for(saving, timeout=10) is False
        assert file.last_error is not None and file.last_error.reason == "ENOSPC"
        assert file.load() == checkpoint(5)

    with small_tmpfs(tmp_path / "fs", 64) as fs:
        asyncio.run(scenario(fs))


def test_linked_writer_holds_the_published_block_until_its_checkpoint_is_written(tmp_path: Path) -> None:
    """The Solana/Bitcoin/Tron writer: a full disk stops it after the block Kafka has, not before, not later."""
    publisher = RecordingPublisher()

    async def scenario(fs: Path) -> None:
        file = CheckpointFile(fs / "cp.json")
        metrics = ConnectorMetrics("solana")
        writer = LinkedWriter("solana", "solana:solana", 64, publisher, file,  # type: ignore[arg-type]
                              metrics, asyncio.Event())
        await writer.publish(linked_block(1, 0))
        filler = fill(fs)
        publishing = asyncio.create_task(writer.publish(linked_block(2, 1)))
        await until(lambda: metrics.value("checkpoint_errors_total", reason="ENOSPC") >= 2, "a failed retry")
        assert not publishing.done()
        assert [h.number for h in publisher.heads] == [1, 2]  # published, so the next block must wait
        assert file.load() is not None and file.load().number == 1  # type: ignore[union-attr]
        filler.unlink()
        await asyncio.wait_for(publishing, timeout=40)
        assert file.load().number == 2  # type: ignore[union-attr]
        fill(fs)
        writer.stopping.set()
        with pytest.raises(Stopped, match="block 3: stop requested before its checkpoint was written"):
            await writer.publish(linked_block(3, 2))
        assert file.load().number == 2 and file.last_error is not None  # type: ignore[union-attr]

    with small_tmpfs(tmp_path / "fs", 64) as fs:
        asyncio.run(scenario(fs))


def linked_block(number: int, parent: int) -> LinkedBlock:
    head = ChainHead("solana", number, f"h{number}", f"h{parent}", 1_700_000_000 + number, 0.0)
    event = TransferEvent("solana", number, head.hash, head.block_time, f"tx{number}", 0, "native", "5", 9,
                          "hot", "user", "okx", Direction.WITHDRAWAL)
    return LinkedBlock(head, parent, [event])
