"""Replay recorded topic traffic through the detector: the same decisions the worker would have taken.

The input is what the transfers topic carried (transfer events, chain heads, label suggestions), one
record per line as :mod:`schemas.codec` encodes it, plain or gzip-compressed. The file is streamed line by
line because real recordings run to tens of millions of lines; memory stays bounded by the detector's own
state. Wall time is the recording's: a :class:`ManualClock` follows each head's ``received_at``, so
``emitted_at`` in the outputs says when the live worker would have spoken, and reruns are byte-identical.

A bad line is data, not a reason to stop: it is counted and the first few are kept with their line
number and the decoder's reason, exactly like the worker dead-letters them. A replay that could not read
its whole input, or found no valid record in it, has not tested anything: :attr:`BacktestSummary.failure`
says so and the command exits non-zero. An exception raised by the detector itself is a bug and is
re-raised with the line number that triggered it.
"""

from __future__ import annotations

import gzip
import importlib
import io
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from schemas.codec import SchemaError, decode, encode
from schemas.records import (
    ChainHead,
    CorrelatedIncident,
    LabelSuggestion,
    OutageEvent,
    Record,
    TransferEvent,
    events_of,
)
from streams.detection.budget import BudgetEstimate
from streams.detection.clock import ManualClock
from streams.detection.correlation import IncidentCorrelator
from streams.detection.detector import OutageDetector
from streams.detection.policy import DetectionPolicy
from streams.detection.state import Changes

INVALID_SAMPLES = 20
"""How many invalid lines are kept verbatim (with line number and reason); all are counted."""
MAX_LINE_BYTES = 16 << 20
"""Longer lines are not records (the largest real ones are a few hundred bytes): cut, counted invalid."""
PROGRESS_EVERY = 4096
"""Lines between progress-bar updates: updating per line would cost more than decoding."""


class BacktestError(RuntimeError):
    """The detector failed on a valid record; the message names the input line."""


@dataclass(frozen=True, slots=True)
class InvalidLine:
    line: int
    reason: str


@dataclass(slots=True)
class BacktestSummary:
    """What a replay read and what the detector said, with throughput."""

    input_path: Path
    output_path: Path
    lines: int = 0
    transfers: int = 0
    heads: int = 0
    suggestions: int = 0
    invalid: int = 0
    invalid_samples: list[InvalidLine] = field(default_factory=list)
    outputs: Counter[str] = field(default_factory=Counter)
    """Output records by kind: ``outage/<state>`` for outages, the record type otherwise."""
    seconds: float = 0.0
    first_block_time: int | None = None
    last_block_time: int | None = None
    budgets: list[BudgetEstimate] = field(default_factory=list)
    """Per exchange at the end of the replay: the false-alarm rate its thresholds are estimated to give."""
    heads_back: int = 0
    """Heads whose number is below an earlier head of the same chain: a reorg replays heights, anything
    else means the input is out of order (the detector is fed them either way, as the worker would be)."""
    unreadable: str | None = None
    """Why the input stopped being readable before its end (a truncated or corrupt gzip stream)."""

    @property
    def events(self) -> int:
        """Records fed to the detector."""
        return self.transfers + self.heads + self.suggestions

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def failure(self) -> str | None:
        """Why this replay proves nothing, or None: the input was cut short, or held no valid record."""
        if self.unreadable is not None:
            return f"{self.input_path}: {self.unreadable}"
        if self.events == 0:
            what = "empty" if self.lines == 0 else f"{self.lines:,} lines, none of them a valid record"
            return f"{self.input_path}: nothing to replay ({what})"
        return None

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON types, for ``haltwatch backtest --json``."""
        return {
            "input": str(self.input_path),
            "output": str(self.output_path),
            "lines": self.lines,
            "transfers": self.transfers,
            "heads": self.heads,
            "suggestions": self.suggestions,
            "invalid": self.invalid,
            "invalid_samples": [{"line": s.line, "reason": s.reason} for s in self.invalid_samples],
            "heads_back": self.heads_back,
            "unreadable": self.unreadable,
            "outputs": dict(sorted(self.outputs.items())),
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "first_block_time": self.first_block_time,
            "last_block_time": self.last_block_time,
            "budgets": [
                {"exchange": b.exchange, "state": b.state, "estimated": b.estimated, "budget": b.budget,
                 "budget_days": b.budget_days, "passed": b.passed, "expected": b.expected}
                for b in self.budgets
            ],
            "failure": self.failure,
        }

    def invalid_line(self, line: int, reason: str) -> None:
        self.invalid += 1
        if len(self.invalid_samples) < INVALID_SAMPLES:
            self.invalid_samples.append(InvalidLine(line, reason))

    def format(self) -> str:
        """A short human-readable report."""
        span = ""
        if self.first_block_time is not None and self.last_block_time is not None:
            span = f" covering {(self.last_block_time - self.first_block_time) / 86_400:.2f} days of chain time"
        rows = [
            f"backtest {self.input_path} -> {self.output_path}",
            f"  lines        {self.lines:>12,}{span}",
            f"  transfers    {self.transfers:>12,}",
            f"  chain heads  {self.heads:>12,}",
            f"  suggestions  {self.suggestions:>12,}",
            f"  invalid      {self.invalid:>12,}",
        ]
        rows += [f"    line {s.line}: {s.reason}" for s in self.invalid_samples]
        if self.invalid > len(self.invalid_samples):
            rows.append(f"    ... {self.invalid - len(self.invalid_samples):,} more")
        total = sum(self.outputs.values())
        if self.heads_back:
            rows.append(f"  heads back   {self.heads_back:>12,}  (below an earlier head of their chain: reorgs, "
                        "or input out of order)")
        rows.append(f"  outputs      {total:>12,}")
        rows += [f"    {kind:<26}{n:>8,}" for kind, n in sorted(self.outputs.items())]
        rows.append(f"  elapsed      {self.seconds:>12.1f} s  ({self.events_per_s:,.0f} events/s)")
        if self.budgets:
            rows.append("  false-alarm budget, as measured on each exchange's normal gaps:")
            rows += [f"    {b.line}" for b in self.budgets]
        return "\n".join(rows)


def output_kind(record: Any) -> str:
    """``outage/open`` for an outage, the record's type tag for anything else."""
    if isinstance(record, OutageEvent):
        return f"outage/{record.state.value}"
    return str(getattr(record, "TYPE", type(record).__name__))


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    """By the file's first bytes, not its name: a recording renamed ``.jsonl`` is still compressed."""
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_lines(path: Path) -> tuple[IO[bytes], Iterator[bytes]]:
    """The raw file (whose position measures progress) and an iterator over its decompressed lines.

    A line longer than :data:`MAX_LINE_BYTES` is yielded as its first :data:`MAX_LINE_BYTES` bytes (which
    do not decode) and the rest is skipped, so one corrupt stretch without newlines cannot exhaust memory.
    """
    raw = path.open("rb")
    stream: IO[bytes] = raw
    if is_gzip(path):
        stream = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=1 << 20)
    return raw, _bounded_lines(stream)


def _bounded_lines(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        line = stream.readline(MAX_LINE_BYTES)
        if not line:
            return
        if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
            rest = line
            while rest and not rest.endswith(b"\n"):
                rest = stream.readline(MAX_LINE_BYTES)
        yield line


def _progress_bar(path: Path, enabled: bool) -> Any:
    """A tqdm bar over the input's bytes, or None when disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
    return tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, smoothing=0.05)


def run_backtest(input_path: Path, output_path: Path, policy: DetectionPolicy,
                 progress: bool = True) -> BacktestSummary:
    """Feed every record of ``input_path`` to one detector; write every output to ``output_path`` (JSONL)."""
    summary = BacktestSummary(input_path, output_path)
    clock = ManualClock(0.0)
    detector = OutageDetector(policy, clock)
    correlator = IncidentCorrelator(policy.correlation_window_s, clock)
    started = time.perf_counter()
    raw, lines = open_lines(input_path)
    bar = _progress_bar(input_path, progress)
    reported = 0
    try:
        with raw, output_path.open("wb") as out:
            feed = _Feeder(detector, correlator, clock, summary, out.write)
            while True:
                try:
                    line = next(lines)
                except StopIteration:
                    break
                except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt compressed stream
                    summary.unreadable = f"unreadable from line {summary.lines + 1} on: {exc}"
                    summary.invalid_line(summary.lines + 1, f"input unreadable from here on: {exc}")
                    break
                summary.lines += 1
                feed(line)
                if bar is not None and summary.lines % PROGRESS_EVERY == 0:
                    position = raw.tell()
                    bar.update(position - reported)
                    reported = position
    finally:
        if bar is not None:
            bar.update(input_path.stat().st_size - reported)
            bar.close()
    summary.seconds = time.perf_counter() - started
    summary.budgets = [detector.budget(name) for name in sorted(detector.exchanges())]
    return summary


class _Feeder:
    """Decode one line, route it to the detector, pass its outage events on to the correlator as the worker
    does, and write both's outputs in the order they came."""

    def __init__(self, detector: OutageDetector, correlator: IncidentCorrelator, clock: ManualClock,
                 summary: BacktestSummary, write: Callable[[bytes], object]) -> None:
        self.detector = detector
        self.correlator = correlator
        self.clock = clock
        self.summary = summary
        self.write = write
        self.head_numbers: dict[str, int] = {}
        """chain → highest head number seen, to count heads that go back."""

    def __call__(self, line: bytes) -> None:
        summary = self.summary
        if not line.strip():
            summary.invalid_line(summary.lines, "empty line")
            return
        try:
            record = decode(line)
        except SchemaError as exc:
            summary.invalid_line(summary.lines, str(exc))
            return
        except (ValueError, TypeError) as exc:  # anything else the codec did not foresee: still just a bad line
            summary.invalid_line(summary.lines, f"undecodable: {exc!r}")
            return
        for one in events_of(record):
            self._apply(one)

    def _apply(self, record: Record) -> None:
        summary = self.summary
        try:
            changes: Changes
            if isinstance(record, TransferEvent):
                summary.transfers += 1
                changes = self.detector.on_transfer(record)
            elif isinstance(record, ChainHead):
                summary.heads += 1
                highest = self.head_numbers.get(record.chain)
                if highest is not None and record.number < highest:
                    summary.heads_back += 1
                else:
                    self.head_numbers[record.chain] = record.number
                self._saw_time(record.block_time)
                self.clock.set(record.received_at)
                changes = self.detector.on_head(record)
            elif isinstance(record, LabelSuggestion):
                summary.suggestions += 1
                changes = self.detector.on_suggestion(record)
            else:
                summary.invalid_line(summary.lines, f"unexpected {record.TYPE} record (not transfers-topic input)")
                return
        except Exception as exc:
            raise BacktestError(f"{summary.input_path}:{summary.lines}: detector failed on a "
                                f"{record.TYPE} record: {exc!r}") from exc
        for outage in changes.outputs:
            self._write(outage)
        for outage in changes.outputs:  # one event's outages first, then the incidents they formed
            for incident in self.correlator.on_outage(outage):
                self._write(incident)

    def _write(self, output: OutageEvent | CorrelatedIncident) -> None:
        self.summary.outputs[output_kind(output)] += 1
        self.write(encode(output) + b"\n")

    def _saw_time(self, block_time: int) -> None:
        summary = self.summary
        if summary.first_block_time is None:
            summary.first_block_time = block_time
        summary.last_block_time = block_time
