"""In-process doubles for driving a non-EVM connector without Kafka: a publisher that records what it got."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.records import ChainHead, DeadLetter, FeedHeartbeat, LabelSuggestion, TransferEvent


@dataclass
class RecordingPublisher:
    """Stands in for :class:`connectors.publisher.BlockPublisher`: keeps every record, in order."""

    heads: list[ChainHead] = field(default_factory=list)
    transfers: list[TransferEvent] = field(default_factory=list)
    retractions: list[TransferEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    beats: list[FeedHeartbeat] = field(default_factory=list)
    fail_next: int = 0

    def publish_block(self, head: ChainHead, transfers: Any, suggestions: Any = ()) -> None:
        from connectors.publisher import PublishError

        if self.fail_next > 0:
            self.fail_next -= 1
            raise PublishError("broker unreachable (test)")
        self.transfers += list(transfers)
        self.heads.append(head)

    def publish_retractions(self, transfers: Any) -> None:
        self.retractions += list(transfers)

    def heartbeat(self, beat: FeedHeartbeat) -> None:
        self.beats.append(beat)

    def dead_letter(self, letters: Any) -> None:
        self.dead += list(letters)

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass

    def suggestions(self) -> list[LabelSuggestion]:
        return []


async def run_until(feed: Any, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Run a connector until ``done()`` holds (then stop it); fail after ``timeout_s``."""
    task = asyncio.create_task(feed.run())
    deadline = time.monotonic() + timeout_s
    try:
        while not done():
            if task.done():
                task.result()
                raise AssertionError("the connector stopped by itself")
            if time.monotonic() > deadline:
                raise AssertionError("timed out")
            await asyncio.sleep(0.05)
    finally:
        feed.stop()
        await asyncio.wait_for(task, 10)
