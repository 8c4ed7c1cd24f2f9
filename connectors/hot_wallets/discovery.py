"""``haltwatch labels discover``: read a block range once and propose the exchanges' hot wallets in it.

The run reads ``first..last`` through a :mod:`~connectors.hot_wallets.sources` session (several endpoints
are used in turn when one fails), shows every transfer to an :class:`EvidenceBook` seeded with the label
files' wallets of any role, and at the end judges every candidate with the :class:`HotWalletRule`. Progress
is saved to a resume file every few seconds and when stopped, so a rerun with the same arguments goes on
where the last one stopped; a finished run deletes it.

Only wallets tied to a *known* wallet are found: one funded by a wallet that is itself still unknown (a hot
wallet topping up another) is found by a second run once the first is in the label files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]  # stubs: types-tqdm

from connectors.backoff import Backoff
from connectors.family import ChainFamily
from connectors.hot_wallets.book_state import ResumeFile
from connectors.hot_wallets.evidence import EvidenceBook, HotWalletRule, Verdict
from connectors.hot_wallets.sources import SESSION_ERRORS, BlockSource, SourceSettings, open_source
from connectors.labels import LabelRegistry
from schemas.records import LabelSuggestion

log = logging.getLogger(__name__)
SAVE_EVERY_S = 10.0


class BookWatch:
    """The evidence book as a parser's transfer watch: it only gathers; judging comes at the end."""

    def __init__(self, book: EvidenceBook) -> None:
        self.book = book

    def observe(self, block_time: int, tx_hash: str, asset: str, amount: int, sender: str,
                recipient: str) -> LabelSuggestion | None:
        self.book.observe(block_time, tx_hash, asset, amount, sender, recipient)
        return None


@dataclass(slots=True)
class DiscoveryResult:
    first: int
    last: int
    blocks: int
    """Blocks read in this run (a resumed run counts only its own)."""
    seconds: float
    verdicts: list[Verdict] = field(default_factory=list)
    until: int = -1
    """The last block of the range asked for."""
    resume_file: Path | None = None

    @property
    def complete(self) -> bool:
        """False when the run was stopped before the end of its range (its progress is in ``resume_file``)."""
        return self.last >= self.until

    @property
    def blocks_per_s(self) -> float:
        return self.blocks / self.seconds if self.seconds > 0 else 0.0

    @property
    def hot(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.hot]


class Discovery:
    """One run over one range of one chain."""

    def __init__(self, family: ChainFamily, settings: Sequence[SourceSettings], registry: LabelRegistry,
                 min_funding: dict[str, int], rule: HotWalletRule, resume: Path | Callable[[int, int], Path] | None,
                 progress: bool = False, max_attempts: int = 8) -> None:
        """``resume``: the resume file, or a function of the range giving it (when the range is only known at
        run time, from ``--hours``), or None for none."""
        if not settings:
            raise ValueError("at least one endpoint URL is needed")
        self.family = family
        self.settings = list(settings)
        self.chain = settings[0].chain
        self.registry = registry
        self.book = EvidenceBook(self.chain, lambda: registry, min_funding, rule)
        self.watch = BookWatch(self.book)
        self.resume_path = resume
        self.progress = progress
        self.max_attempts = max_attempts
        self.stopping = asyncio.Event()
        self.next = 0
        """The next block to read."""
        self.read_now = 0
        """Blocks read by this run."""

    def stop(self) -> None:
        self.stopping.set()

    async def range_of_hours(self, hours: float) -> tuple[int, int]:
        """The blocks of the last ``hours`` of chain time, from the pace of the newest 1,000 blocks."""
        async with open_source(self.family, self.settings[0], self.registry, self.watch) as source:
            tip = await source.tip()
            back = min(1_000, tip)
            newest, older = await _time_near(source, tip, -1), await _time_near(source, tip - back, 1)
            seconds_per_block = max((newest - older) / back, 0.001) if back else 1.0
            return max(0, tip - int(hours * 3600 / seconds_per_block)), tip

    async def run(self, first: int, last: int) -> DiscoveryResult:
        """Read ``first..last`` (resuming from the resume file when it has this run), then judge."""
        if last < first:
            raise ValueError(f"bad block range {first}..{last}")
        resume = self._resume_file(first, last)
        self.next = (resume.read(self.book) if resume else None) or first
        started, self.read_now = time.monotonic(), 0
        backoff, failures, endpoint = Backoff(initial=0.5, maximum=30.0), 0, 0
        bar = tqdm(total=last - first + 1, initial=self.next - first, unit="block", disable=not self.progress,
                   desc=f"discover {self.chain}", dynamic_ncols=True)
        try:
            while self.next <= last and not self.stopping.is_set():
                before = self.next
                try:
                    await self._session(self.settings[endpoint], last, bar, resume)
                except SESSION_ERRORS as exc:
                    failures = 0 if self.next > before else failures + 1
                    if failures >= self.max_attempts:
                        raise RuntimeError(f"{self.chain}: gave up at block {self.next} after {failures} sessions "
                                           f"without progress; the last error: {exc}") from None
                    endpoint = (endpoint + 1) % len(self.settings)
                    log.warning("%s: reading stopped at block %d (%s); going on from there", self.chain, self.next,
                                exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=backoff.next_delay())
        finally:
            bar.close()
            if resume and self.next <= last:
                resume.write(self.book, self.next)
        if resume and self.next > last:
            resume.path.unlink(missing_ok=True)
        return DiscoveryResult(first, self.next - 1, self.read_now, time.monotonic() - started,
                               self.book.verdicts(), last, resume.path if resume else None)

    async def _session(self, settings: SourceSettings, last: int, bar: tqdm[Any], resume: ResumeFile | None) -> None:
        """Read from :attr:`next` to ``last`` through one endpoint, saving progress every few seconds."""
        saved = time.monotonic()
        async with (open_source(self.family, settings, self.registry, self.watch) as source,
                    contextlib.aclosing(source.read(self.next, last)) as blocks):
            async for number, _ in blocks:
                self.next, self.read_now = number + 1, self.read_now + 1
                bar.update(1)
                if resume and time.monotonic() - saved > SAVE_EVERY_S:
                    resume.write(self.book, self.next)
                    saved = time.monotonic()
                if self.stopping.is_set():
                    return

    def _resume_file(self, first: int, last: int) -> ResumeFile | None:
        if self.resume_path is None:
            return None
        path = self.resume_path if isinstance(self.resume_path, Path) else self.resume_path(first, last)
        rule = self.book.rule
        key: dict[str, Any] = {"chain": self.chain, "first": first, "last": last,
                               "min_funding": {k: str(v) for k, v in self.book.min_funding.items()},
                               "rule": [rule.min_recipients, rule.window_s, rule.min_active_windows]}
        return ResumeFile(path, key)


async def _time_near(source: BlockSource, number: int, step: int) -> int:
    """The time of ``number``, or of the nearest block in direction ``step`` (skipped Solana slots)."""
    for candidate in range(number, number + 100 * step, step):
        found = await source.block_time(max(candidate, 0))
        if found is not None:
            return found
    raise ValueError(f"no block with a time near {number}")


def run_discovery(discovery: Discovery, first: int | None, last: int | None, hours: float | None,
                  on_signals: Callable[[Callable[[], None]], None]) -> DiscoveryResult:
    """Resolve the range (``hours`` back from the tip, or ``first..last``) and run, stopping on a signal."""

    async def main() -> DiscoveryResult:
        on_signals(discovery.stop)
        if hours is not None:
            lo, hi = await discovery.range_of_hours(hours)
        else:
            assert first is not None and last is not None
            lo, hi = first, last
        return await discovery.run(lo, hi)

    return asyncio.run(main())
