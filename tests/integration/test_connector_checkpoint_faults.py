"""The connector process when its checkpoint cannot be written: real file-system errors, real Kafka and anvil.

At start-up a checkpoint location that cannot work ends the process at once with exit code 3 and one log
line naming the file and the OS reason, before anything is published. While running, a disk that fills up
(a small tmpfs, filled for real) makes the connector hold at the block it just published: the process stays
up and reports ``checkpoint_ok 0`` until space is freed, then goes on by itself. Stopped meanwhile, it exits
with 3 and publishes the held block again on the next start. Each test ends with the topics compared to
the node: nothing missing, nothing extra, and at most the held block twice.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from haltwatch.local import free_port
from haltwatch.traffic import Phase
from schemas.records import FeedHeartbeat
from schemas.topics import Topics
from tests.integration.connector_support import ConnectorProcess, heads, read_topic, run, tip
from tests.integration.test_connector_faults import assert_complete, metric, setup
from tests.tmpfs import fill, small_tmpfs

EXIT_CHECKPOINT = 3


@dataclass
class ConnectorWithCheckpointAt(ConnectorProcess):
    """The connector subprocess with its checkpoint somewhere else than its run directory."""

    checkpoint_at: Path = field(default_factory=Path)

    @property
    def checkpoint(self) -> Path:
        return self.checkpoint_at


def checkpoint_errors(connector: ConnectorProcess) -> list[str]:
    """The connector's ERROR lines about its checkpoint, without the time stamp (kafka-python logs its own)."""
    return [line.split(" ERROR ", 1)[1] for line in connector.log_tail(200_000).splitlines()
            if " ERROR " in line and "checkpoint" in line]


def wait_for_log(connector: ConnectorProcess, pattern: str, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, connector.log_tail(200_000))
        if found:
            return found.group(0)
        time.sleep(0.2)
    raise AssertionError(f"no log line matching {pattern!r}:\n{connector.log_tail()}")


@contextmanager
def under_a_regular_file(run_dir: Path) -> Iterator[Path]:
    """A checkpoint whose folder is a regular file: reading it fails with ENOTDIR."""
    (run_dir / "state").write_text("not a directory")
    yield run_dir / "state" / "checkpoint-ethereum.json"


@contextmanager
def on_a_full_disk(run_dir: Path) -> Iterator[Path]:
    """A checkpoint on a file system already full: writing it fails with ENOSPC."""
    with small_tmpfs(run_dir / "fs", 64) as fs:
        fill(fs)
        yield fs / "checkpoint-ethereum.json"


@pytest.mark.parametrize(
    ("place", "prefix", "seed", "error"),
    [
        pytest.param(under_a_regular_file, "cpnotdir", 61, "cannot read checkpoint {}: Not a directory [ENOTDIR]",
                     id="under-a-regular-file-ENOTDIR"),
        pytest.param(on_a_full_disk, "cpfull", 67, "cannot write checkpoint {}: No space left on device [ENOSPC]",
                     id="on-a-full-disk-ENOSPC"),
    ],
)
def test_a_checkpoint_that_cannot_work_exits_at_start_with_one_line_naming_the_os_reason(
    kafka: str, anvil: str, run_dir: Path, place: Callable[[Path], AbstractContextManager[Path]], prefix: str,
    seed: int, error: str,
) -> None:
    _player, labels, topics, prefix = setup(kafka, anvil, run_dir, prefix, seed)
    with place(run_dir) as checkpoint_at:
        connector = ConnectorWithCheckpointAt(run_dir, kafka, prefix, [anvil], labels, checkpoint_at=checkpoint_at)
        connector.start()
        assert connector.proc is not None
        assert connector.proc.wait(60) == EXIT_CHECKPOINT
    assert checkpoint_errors(connector) == [f"connectors.run_feed: {error.format(connector.checkpoint)}"]
    assert "Traceback" not in connector.log_tail(200_000)
    assert heads(kafka, topics) == []


def wait_for_heartbeat(kafka: str, topics: Topics, connected: bool, published: int, timeout_s: float = 30.0) -> None:
    """Until a heartbeat says ``connected`` with ``published`` (heartbeats go out every 5 s)."""
    deadline = time.monotonic() + timeout_s
    seen: list[FeedHeartbeat] = []
    while time.monotonic() < deadline:
        seen = [r.record for r in read_topic(kafka, topics.heads, idle_ms=500) if isinstance(r.record, FeedHeartbeat)]
        if any(b.connected is connected and b.published_number == published for b in seen):
            return
        time.sleep(1)
    raise AssertionError(f"no heartbeat with connected={connected}, published={published}: {seen[-3:]}")


def held_block(connector: ConnectorProcess, filled_after: int) -> int:
    """Wait until the connector reports it holds a published block it could not checkpoint; returns that block."""
    line = wait_for_log(connector, r"No space left on device \[ENOSPC\]; block (\d+) is published but not "
                                   r"checkpointed, holding there")
    held = int(re.search(r"block (\d+) is published", line).group(1))  # type: ignore[union-attr]
    assert held == filled_after + 1
    return held


def test_disk_full_while_running_holds_then_resumes_when_space_is_freed(
    kafka: str, anvil: str, run_dir: Path
) -> None:
    player, labels, topics, prefix = setup(kafka, anvil, run_dir, "cpenospc", 71)
    port = free_port()
    first = run(tip(anvil)) + 1
    with small_tmpfs(run_dir / "fs", 1024) as fs:
        connector = ConnectorWithCheckpointAt(run_dir, kafka, prefix, [anvil], labels, checkpoint_at=fs / "cp.json",
                                              extra=["--metrics-port", str(port)])
        try:
            connector.start(start_block=first)
            before = run(player.play([Phase("before", 10, 2.0)]))[-1].number
            connector.wait_published(before)
            filler = fill(fs)
            last = run(player.play([Phase("full", 10, 2.0)]))[-1].number
            held = held_block(connector, before)
            time.sleep(3)  # while held: alive, unhealthy, file unchanged, nothing after the held block published
            connector.check_alive()
            assert metric(port, "haltwatch_connector_checkpoint_ok") == 0
            assert metric(port, 'haltwatch_connector_checkpoint_errors_total{chain="ethereum",reason="ENOSPC"}') >= 2
            assert connector.published() == before
            assert max(h.number for h in heads(kafka, topics)) == held
            wait_for_heartbeat(kafka, topics, connected=False, published=held)  # the worker: a lost feed
            filler.unlink()
            connector.wait_published(last, timeout_s=90)
            assert metric(port, "haltwatch_connector_checkpoint_ok") == 1
            wait_for_heartbeat(kafka, topics, connected=True, published=last)
            wait_for_log(connector, rf"checkpoint {re.escape(str(connector.checkpoint))} written again \(block "
                                    rf"{held}\) after \d+ failed attempts")
            assert "Traceback" not in connector.log_tail(200_000)
        finally:
            connector.stop()
    assert_complete(kafka, topics, anvil, player.hot, first, last)


def test_stopped_while_disk_full_exits_3_and_republishes_the_held_block(
    kafka: str, anvil: str, run_dir: Path
) -> None:
    player, labels, topics, prefix = setup(kafka, anvil, run_dir, "cpstop", 73)
    first = run(tip(anvil)) + 1
    with small_tmpfs(run_dir / "fs", 1024) as fs:
        connector = ConnectorWithCheckpointAt(run_dir, kafka, prefix, [anvil], labels, checkpoint_at=fs / "cp.json")
        try:
            connector.start(start_block=first)
            before = run(player.play([Phase("before", 10, 2.0)]))[-1].number
            connector.wait_published(before)
            filler = fill(fs)
            last = run(player.play([Phase("full", 10, 2.0)]))[-1].number
            held = held_block(connector, before)
            connector.stop()
            assert connector.proc is not None and connector.proc.returncode == EXIT_CHECKPOINT
            wait_for_log(connector, rf"stopping with checkpoint {re.escape(str(connector.checkpoint))} behind: "
                                    rf"block {held} will be published again on the next start")
            assert connector.published() == before
            filler.unlink()
            connector.start()
            connector.wait_published(last, timeout_s=90)
        finally:
            connector.stop()
    assert [h.number for h in heads(kafka, topics)].count(held) == 2
    assert_complete(kafka, topics, anvil, player.hot, first, last, max_duplicated_blocks=1)
