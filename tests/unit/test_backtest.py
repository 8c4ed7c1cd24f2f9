"""Backtest replay: streams recorded topic lines through the detector and writes what it says."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import orjson
import pytest

from bench.detection.generate import generate
from bench.detection.scenario import Config
from schemas import BlockTransfers, ChainHead, OutageEvent, OutageState, TransferEvent, decode, encode
from streams.detection import OutageDetector, backtest
from streams.detection.backtest import INVALID_SAMPLES, BacktestError, run_backtest
from streams.detection.policy import DetectionPolicy

HALT_AFTER_S = 14 * 3600
"""okx stops paying here (chain time from the start): the detector has warmed up by then."""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], dict[str, int]]:
    """One day of three exchanges on ethereum, with okx's withdrawals cut after 14 h: a halt to find."""
    out = tmp_path_factory.mktemp("recorded")
    truth = generate(out, Config(days=1, seed=11, exchanges=3, quiet=True, chains=("ethereum",)))
    cut = truth["start"] + HALT_AFTER_S
    with gzip.open(out / "events.jsonl.gz", "rb") as f:
        lines = f.read().splitlines()
    kept = []
    for line in lines:
        if b'"exchange":"okx"' in line and b'"withdrawal"' in line and orjson.loads(line)["block_time"] >= cut:
            continue
        kept.append(line)
    heads = sum(1 for line in kept if b'"chain_head"' in line)
    return kept, {"cut": cut, "heads": heads, "transfers": len(kept) - heads}


def write(path: Path, lines: list[bytes]) -> Path:
    data = b"\n".join(lines) + b"\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def test_replays_a_recording_and_counts_bad_lines(tmp_path: Path, recorded: tuple[list[bytes], dict[str, int]]) -> None:
    lines, facts = recorded
    bad_outage = encode(OutageEvent("x", 1, "okx", ["ethereum"], OutageState.OPEN, 1, 2, None, 1.0, 1, 1.0, 0, 0.9,
                                    0.01, None, None, 0.0))
    injected = [*lines[:9], b"{not json", *lines[9:18], bad_outage, *lines[18:]]
    source = write(tmp_path / "events.jsonl.gz", injected)
    summary = run_backtest(source, tmp_path / "out.jsonl", DetectionPolicy(), progress=True)
    assert (summary.lines, summary.heads, summary.transfers) == (len(injected), facts["heads"], facts["transfers"])
    assert summary.invalid == 2
    assert [s.line for s in summary.invalid_samples] == [10, 20]
    assert "not valid JSON" in summary.invalid_samples[0].reason
    assert "unexpected outage record" in summary.invalid_samples[1].reason
    written = [decode(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(written) == sum(summary.outputs.values()) > 0
    opened = [r for r in written if isinstance(r, OutageEvent) and r.state is OutageState.OPEN and r.exchange == "okx"]
    assert opened and opened[0].detected_at >= facts["cut"]
    assert opened[0].emitted_at - opened[0].detected_at == pytest.approx(1.75, abs=1.3)  # received_at of its head
    assert summary.outputs["outage/open"] >= 1
    assert summary.events_per_s > 0 and summary.seconds > 0
    text = summary.format()
    assert "line 10: not valid JSON" in text and "outage/open" in text and "events/s" in text
    # the budget as measured on each exchange's normal gaps: one line per exchange, state and estimate
    assert [b.exchange for b in summary.budgets] == sorted({b.exchange for b in summary.budgets})
    assert len(summary.budgets) == 3 and "false-alarm budget, as measured" in text
    assert all(b.state in ("kept", "over", "erratic", "learning") for b in summary.budgets)
    assert all(f"    {b.line}" in text for b in summary.budgets)
    # the same lines uncompressed give the same outputs, byte for byte
    plain = run_backtest(write(tmp_path / "events.jsonl", injected), tmp_path / "plain.jsonl", DetectionPolicy(),
                         progress=False)
    assert (tmp_path / "plain.jsonl").read_bytes() == (tmp_path / "out.jsonl").read_bytes()
    assert plain.outputs == summary.outputs


def test_keeps_twenty_samples_but_counts_every_bad_line(tmp_path: Path) -> None:
    garbage = [b"\xff\xfe", b"", b"[1, 2]", b'{"type": "nope"}'] * 10
    summary = run_backtest(write(tmp_path / "bad.jsonl", garbage), tmp_path / "out.jsonl", DetectionPolicy(),
                           progress=False)
    assert summary.invalid == summary.lines == 40
    assert len(summary.invalid_samples) == INVALID_SAMPLES
    assert summary.invalid_samples[1].reason == "empty line"
    assert "... 20 more" in summary.format()
    assert (tmp_path / "out.jsonl").read_bytes() == b""


def test_an_endless_line_is_cut_and_counted(tmp_path: Path, recorded: tuple[list[bytes], dict[str, int]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lines, _ = recorded
    monkeypatch.setattr(backtest, "MAX_LINE_BYTES", 4096)
    source = write(tmp_path / "e.jsonl", [*lines[:3], b"x" * 100_000, *lines[3:10]])
    summary = run_backtest(source, tmp_path / "out.jsonl", DetectionPolicy(), progress=False)
    assert (summary.lines, summary.invalid, summary.invalid_samples[0].line) == (11, 1, 4)


def test_truncated_gzip_is_reported_not_fatal(tmp_path: Path, recorded: tuple[list[bytes], dict[str, int]]) -> None:
    lines, _ = recorded
    full = write(tmp_path / "events.jsonl.gz", lines[:5000]).read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(full[: len(full) // 2])
    summary = run_backtest(cut, tmp_path / "out.jsonl", DetectionPolicy(), progress=False)
    assert 0 < summary.lines < 5000
    assert summary.invalid_samples[-1].reason.startswith("input unreadable from here on")
    assert summary.failure is not None and f"unreadable from line {summary.lines + 1} on" in summary.failure


def _cli(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from haltwatch.cli import app

    result = CliRunner().invoke(app, ["backtest", "--no-progress", *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_command_prints_json_and_exits_zero_on_a_good_recording(
    tmp_path: Path, recorded: tuple[list[bytes], dict[str, int]]
) -> None:
    lines, facts = recorded
    code, out, err = _cli("--input", str(write(tmp_path / "e.jsonl.gz", lines)), "--output", str(tmp_path / "o"),
                          "--json")
    assert (code, err) == (0, "")
    summary = orjson.loads(out)
    assert (summary["heads"], summary["transfers"], summary["failure"]) == (facts["heads"], facts["transfers"], None)
    assert summary["outputs"]["outage/open"] >= 1
    assert len(summary["budgets"]) == 3 and "okx" in {b["exchange"] for b in summary["budgets"]}


@pytest.mark.parametrize("content", ["empty", "random bytes", "truncated gzip"])
def test_a_recording_that_proves_nothing_fails_the_command_in_one_line(
    tmp_path: Path, recorded: tuple[list[bytes], dict[str, int]], content: str
) -> None:
    source = tmp_path / "e.jsonl.gz"
    if content == "empty":
        source.write_bytes(b"")
    elif content == "random bytes":
        source.write_bytes(bytes(random.Random(3).getrandbits(8) for _ in range(50_000)))
    else:
        full = write(tmp_path / "full.jsonl.gz", recorded[0][:5000]).read_bytes()
        source.write_bytes(full[: len(full) // 2])
    for extra in ([], ["--json"]):
        code, out, err = _cli("--input", str(source), "--output", str(tmp_path / "o"), *extra)
        assert code == 1, (content, out)
        assert err.count("\n") == 1 and err.startswith(f"backtest failed: {source}: "), err
    if content != "truncated gzip":
        assert "nothing to replay" in err


def test_gzip_is_known_by_its_bytes_not_its_name(tmp_path: Path, recorded: tuple[list[bytes], dict[str, int]]) -> None:
    lines, _ = recorded
    named_plain = tmp_path / "events.jsonl"
    named_plain.write_bytes(write(tmp_path / "events.jsonl.gz", lines[:3000]).read_bytes())
    summary = run_backtest(named_plain, tmp_path / "out.jsonl", DetectionPolicy(), progress=False)
    assert summary.invalid == 0 and summary.lines == 3000


def test_heads_that_go_back_are_counted_and_reported(tmp_path: Path,
                                                     recorded: tuple[list[bytes], dict[str, int]]) -> None:
    lines, _ = recorded
    heads = [i for i, line in enumerate(lines[:2000]) if b'"chain_head"' in line]
    early, late = heads[5], heads[40]
    shuffled = [*lines[:late + 1], lines[early], lines[heads[6]], *lines[late + 1:2000]]
    summary = run_backtest(write(tmp_path / "e.jsonl", shuffled), tmp_path / "out.jsonl", DetectionPolicy(),
                           progress=False)
    assert summary.heads_back == 2
    assert "heads back              2" in summary.format()
    assert run_backtest(write(tmp_path / "f.jsonl", lines[:2000]), tmp_path / "out2.jsonl", DetectionPolicy(),
                        progress=False).heads_back == 0


def test_a_detector_bug_names_the_line(tmp_path: Path, recorded: tuple[list[bytes], dict[str, int]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lines, _ = recorded

    def broken(self: object, head: object, exchanges: object = None) -> list[object]:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(OutageDetector, "on_head", broken)  # the class the backtest instantiates
    first_head = next(i for i, line in enumerate(lines) if b'"chain_head"' in line) + 1
    with pytest.raises(BacktestError, match=f":{first_head}: detector failed on a chain_head record"):
        run_backtest(write(tmp_path / "e.jsonl", lines[:100]), tmp_path / "out.jsonl", DetectionPolicy(),
                     progress=False)


def test_block_records_replay_like_the_records_they_hold(tmp_path: Path,
                                                        recorded: tuple[list[bytes], dict[str, int]]) -> None:
    """A dump of the transfers topic in the ``block`` layout: each head with the transfers before it."""
    lines, facts = recorded
    blocked, pending = [], []
    for line in lines:
        record = decode(line)
        if isinstance(record, ChainHead):
            blocked.append(encode(BlockTransfers(pending, record)))
            pending = []
        elif isinstance(record, TransferEvent):
            pending.append(record)
        else:
            blocked.append(line)
    assert not pending and len(blocked) < len(lines) / 2, "the recording's transfers go into few block records"
    per_event = run_backtest(write(tmp_path / "events.jsonl", lines), tmp_path / "events.out", DetectionPolicy(),
                             progress=False)
    per_block = run_backtest(write(tmp_path / "blocks.jsonl", blocked), tmp_path / "blocks.out", DetectionPolicy(),
                             progress=False)
    assert (per_block.heads, per_block.transfers, per_block.invalid) == (facts["heads"], facts["transfers"], 0)
    assert per_block.outputs == per_event.outputs and per_event.outputs["outage/open"] >= 1
    assert (tmp_path / "blocks.out").read_bytes() == (tmp_path / "events.out").read_bytes()
