"""The detection benchmark itself: generator invariants, exact scoring rules, the ideal detector's closed form."""

from __future__ import annotations

import gzip
import math
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from bench.detection.generate import generate, incident_factor
from bench.detection.ideal import Budget, IdealDelay, IdealDetector
from bench.detection.matching import Outputs, match
from bench.detection.model import DAY, HOUR, Model
from bench.detection.report import build_report, format_report
from bench.detection.scenario import Config, build_truth
from schemas import ChainHead, Direction, TransferEvent, decode, encode

SMALL = Config(days=2, seed=7, exchanges=4, chains=("ethereum", "tron"))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[bytes], Path]:
    out = tmp_path_factory.mktemp("scenario")
    truth = generate(out, SMALL)
    with gzip.open(out / "events.jsonl.gz", "rb") as f:
        lines = f.read().splitlines()
    return truth, lines, out


def test_same_seed_same_bytes(tmp_path: Path, scenario: tuple[dict[str, Any], list[bytes], Path]) -> None:
    truth, _, out = scenario
    again = generate(tmp_path, SMALL)
    assert (tmp_path / "events.jsonl.gz").read_bytes() == (out / "events.jsonl.gz").read_bytes()
    assert again == truth
    assert build_truth(Config(days=2, seed=8, exchanges=4, chains=SMALL.chains))["incidents"] != truth["incidents"]


def test_lines_are_the_codec_bytes_and_in_pipeline_order(scenario: tuple[dict[str, Any], list[bytes], Path]) -> None:
    truth, lines, _ = scenario
    last_time = 0
    heads: dict[str, ChainHead] = {}
    open_block: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for line in lines:
        record = decode(line)
        assert encode(record) == line  # byte for byte what the connectors' codec writes
        if isinstance(record, TransferEvent):
            assert record.block_time >= last_time
            last_time = record.block_time
            prev = heads.get(record.chain)
            assert prev is None or record.block_number > prev.number, "a transfer after its block's head"
            open_block[record.chain] = record.block_number
            counts[record.direction.value] += 1
            int(record.amount)
            assert len(record.tx_hash) == 66 and len(record.to_address) == 42
        else:
            assert isinstance(record, ChainHead)
            assert record.block_time >= last_time
            last_time = record.block_time
            interval = truth["chains"][record.chain]["interval_s"]
            assert record.block_time % interval == 0
            assert 0.5 <= record.received_at - record.block_time <= 3.0
            assert open_block.get(record.chain, record.number) == record.number
            open_block.pop(record.chain, None)
            prev = heads.get(record.chain)
            if prev is not None and record.number == prev.number + 1:
                assert record.parent_hash == prev.hash
            heads[record.chain] = record
    assert counts["withdrawal"] > 0 and counts["deposit"] > 0 and counts["internal"] > 0
    assert {c for c in counts} == {d.value for d in Direction}


def test_heads_are_consecutive_except_in_lost_feeds_and_stalls_jump_in_time(
        scenario: tuple[dict[str, Any], list[bytes], Path]) -> None:
    truth, lines, _ = scenario
    prev: dict[str, dict[str, Any]] = {}
    jumps: list[tuple[str, int, int]] = []
    long_blocks: list[tuple[str, int, int]] = []
    for line in lines:
        if b'"chain_head"' not in line:
            continue
        head = orjson.loads(line)
        before = prev.get(head["chain"])
        if before is not None:
            interval = truth["chains"][head["chain"]]["interval_s"]
            if head["number"] != before["number"] + 1:
                jumps.append((head["chain"], before["block_time"], head["block_time"]))
            elif head["block_time"] - before["block_time"] != interval:
                long_blocks.append((head["chain"], before["block_time"], head["block_time"]))
        prev[head["chain"]] = head
    lost = sorted((e["chain"], e["start"], e["end"]) for e in truth["chain_events"] if e["kind"] == "lost_feed")
    stalls = sorted((e["chain"], e["start"], e["end"]) for e in truth["chain_events"] if e["kind"] == "stall")
    assert len(jumps) == len(lost) == 2 and len(long_blocks) == len(stalls) == 2
    for (chain, last, first), (lchain, start, end) in zip(sorted(jumps), lost, strict=True):
        interval = truth["chains"][chain]["interval_s"]
        assert chain == lchain and start - interval <= last < start and end <= first < end + interval
    for (chain, last, first), (schain, start, end) in zip(sorted(long_blocks), stalls, strict=True):
        interval = truth["chains"][chain]["interval_s"]
        assert chain == schain and start - interval <= last < start and end <= first < end + interval


def test_incidents_after_warmup_apart_and_really_silent(scenario: tuple[dict[str, Any], list[bytes], Path]) -> None:
    truth, lines, _ = scenario
    assert {i["kind"] for i in truth["incidents"]} == {"full_halt", "chain_halt", "degradation", "correlated"}
    spans = sorted([(i["start"], i["end"]) for i in truth["incidents"]]
                   + [(e["start"], e["end"]) for e in truth["chain_events"]])
    assert spans[0][0] >= truth["start"] + truth["warmup_s"] >= truth["start"] + DAY
    assert all(a[1] < b[0] for a, b in pairwise(spans)), "nothing overlaps"
    correlated = next(i for i in truth["incidents"] if i["kind"] == "correlated")
    assert len({m["exchange"] for m in correlated["members"]}) == 3
    assert max(m["start"] for m in correlated["members"]) - correlated["start"] <= 120
    assert all(HOUR <= m["end"] - m["start"] <= 2 * HOUR for m in correlated["members"])
    halted = [(m["exchange"], set(m["chains"]), m["start"], m["end"]) for i in truth["incidents"]
              if i["factor"] == 0.0 for m in i["members"]]
    for line in lines:
        if b'"withdrawal"' in line:
            t = orjson.loads(line)
            assert not any(t["exchange"] == ex and t["chain"] in chains and s <= t["block_time"] < e
                           for ex, chains, s, e in halted)


def test_withdrawal_counts_follow_the_true_rate(scenario: tuple[dict[str, Any], list[bytes], Path]) -> None:
    truth, _, _ = scenario
    model = Model(truth)
    for exchange, count in truth["stats"]["withdrawals_by_exchange"].items():
        expected = variance = 0.0
        for chain in model.exchange_chains(exchange):
            blocks = model.blocks(chain)
            times = blocks.times[blocks.published]
            factor = incident_factor(truth, exchange, chain, times)
            mean = float((model.rate(exchange, chain, times) * factor).sum()) * model.interval(chain)
            k = model.batch_mean(exchange, chain)  # batch size 1 + Poisson(k - 1): E[K^2] / E[K]
            expected, variance = expected + mean, variance + mean * (k - 1 + k * k) / k
        assert abs(count - expected) < 5 * math.sqrt(variance), (exchange, count, expected)


def test_quiet_and_too_short_runs() -> None:
    quiet = build_truth(Config(days=1, seed=1, quiet=True))
    assert quiet["incidents"] == [] and quiet["chain_events"] == []
    assert len(quiet["exchanges"]) == 12
    rates = {ex: sum(c["rate_per_hour"] for c in spec["chains"].values()) for ex, spec in quiet["exchanges"].items()}
    okx = next(ex for ex, spec in quiet["exchanges"].items() if spec["role"] == "okx_sized")
    assert rates[okx] > 1000 and min(rates.values()) <= 20
    assert any(c["batch_mean"] > 1 for spec in quiet["exchanges"].values() for c in spec["chains"].values())
    with pytest.raises(ValueError, match="too short"):
        build_truth(Config(days=1, seed=1))


# -- ideal detector ------------------------------------------------------------------------------------

def constant_truth(rate_per_hour: float, days: float = 2.0, **extra: Any) -> dict[str, Any]:
    start = 1_709_251_200
    return {
        "start": start, "end": start + int(days * DAY), "warmup_s": DAY,
        "chains": {"ethereum": {"interval_s": 12, "first_number": 100, "latency_s": [0.5, 3.0]}},
        "seasonality": {"daily_amplitude": 0.0, "weekend_factor": 1.0},
        "exchanges": {"x": {"role": "okx_sized", "peak_hour": 0.0,
                            "drift": {"t0": start, "step_s": HOUR, "log": [0.0, 0.0]},
                            "chains": {"ethereum": {"rate_per_hour": rate_per_hour, "batch_mean": 1.0}}}},
        "incidents": [], "chain_events": [], **extra,
    }


def test_ideal_threshold_and_delay_match_the_closed_form_for_constant_poisson() -> None:
    rate = 360 / HOUR
    ideal = IdealDetector(constant_truth(360), Budget(1.0, 90.0))
    h = ideal.threshold("x", ["ethereum"])
    assert h == pytest.approx(math.log(rate * 90 * DAY), rel=1e-9)  # expected gaps per 90 days / 1 alarm
    last = 1_709_251_200 + 10 * HOUR + 5 * 12
    alarm = ideal.first_alarm("x", ["ethereum"], [last], last + HOUR, h)
    assert alarm is not None
    assert alarm - last == pytest.approx(h / rate, abs=12)  # h / lambda, to one block


def test_ideal_delays_from_an_events_file(tmp_path: Path) -> None:
    start = 1_709_251_200 + DAY + 2 * HOUR
    truth = constant_truth(120, incidents=[{"id": "full_halt-1", "kind": "full_halt", "factor": 0.0,
                                            "start": start, "end": start + HOUR,
                                            "members": [{"exchange": "x", "chains": ["ethereum"], "start": start,
                                                         "end": start + HOUR}]}])
    lines = [encode(TransferEvent("ethereum", 1, "0xb", t, f"0x{t}", -1, "native", "1", 18, "0xh", "0xu", "x",
                                  Direction.WITHDRAWAL)) for t in (start - 600, start - 36)]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (delay,) = IdealDetector(truth).delays(tmp_path / "events.jsonl")
    h = math.log(120 / HOUR * 90 * DAY)
    assert delay.scope == "ethereum" and delay.threshold_nats == pytest.approx(h)
    assert delay.alarm_at is not None and delay.alarm_at % 12 == 0
    assert delay.alarm_at - (start - 36) == pytest.approx(h / (120 / HOUR), abs=12)
    assert delay.delay_s == delay.alarm_at - start


# -- scoring ---------------------------------------------------------------------------------------------

T = 1_709_251_200 + 2 * DAY


def tiny_truth() -> dict[str, Any]:
    def member(ex: str, chains: list[str], start: int, end: int) -> dict[str, Any]:
        return {"exchange": ex, "chains": chains, "start": start, "end": end}

    return {
        "quiet": False, "start": T - 2 * DAY, "end": T + DAY, "warmup_s": DAY,
        "exchanges": {"a": {"role": "okx_sized"}, "b": {"role": "mid"}, "c": {"role": "mid"}},
        "incidents": [
            {"id": "full_halt-1", "kind": "full_halt", "factor": 0.0, "start": T, "end": T + 3600,
             "members": [member("a", ["ethereum", "tron"], T, T + 3600)]},
            {"id": "chain_halt-2", "kind": "chain_halt", "factor": 0.0, "start": T + 10_000, "end": T + 12_000,
             "members": [member("b", ["ethereum"], T + 10_000, T + 12_000)]},
            {"id": "correlated-3", "kind": "correlated", "factor": 0.0, "start": T + 20_000, "end": T + 24_000,
             "members": [member("a", ["ethereum", "tron"], T + 20_000, T + 24_000),
                         member("b", ["ethereum"], T + 20_030, T + 23_000),
                         member("c", ["tron"], T + 20_090, T + 22_000)]},
        ],
        "chain_events": [{"kind": "stall", "chain": "tron", "start": T + 30_000, "end": T + 31_800}],
    }


def outage(oid: str, ex: str, scope: list[str], state: str, detected: int, started: int | None = None,
           version: int = 1) -> dict[str, Any]:
    return {"type": "outage", "outage_id": oid, "version": version, "exchange": ex, "scope": scope, "state": state,
            "started_at": detected - 100 if started is None else started, "detected_at": detected, "reason": ""}


def tiny_outputs() -> Outputs:
    return Outputs(outages=[
        outage("o1", "a", ["ethereum", "tron"], "suspected", T + 60),
        outage("o1", "a", ["ethereum", "tron"], "open", T + 120, version=2),
        outage("o1", "a", ["ethereum", "tron"], "resolved", T + 3700, version=3),
        outage("early", "b", ["ethereum"], "open", T + 9_900),          # before the chain halt: false alarm
        outage("o2", "b", ["ethereum"], "open", T + 10_600),
        outage("wrongchain", "a", ["polygon"], "open", T + 500),         # right exchange, other chain
        outage("late", "b", ["ethereum"], "open", T + 12_601),           # one second past the grace
        outage("edge", "b", ["ethereum"], "suspected", T + 12_600),      # exactly at the grace: matched
        outage("ca", "a", ["ethereum", "tron"], "open", T + 20_200),
        outage("cb", "b", ["ethereum"], "degraded", T + 20_400),
        outage("stall", "c", ["tron"], "suspected", T + 31_000),
        outage("stall", "c", ["tron"], "open", T + 31_500, version=2),
        outage("afterstall", "c", ["tron"], "open", T + 31_800 + 601),  # past the stall's grace: false alarm
        outage("hunch", "c", ["tron"], "suspected", T + 50_000),
        outage("warm", "c", ["tron"], "open", T - 2 * DAY + 3600),       # during warm-up
    ], correlated=[
        {"type": "correlated_incident", "incident_id": "g1", "exchanges": ["a", "b"], "detected_at": T + 20_400},
        {"type": "correlated_incident", "incident_id": "g0", "exchanges": ["b", "c"], "detected_at": T + 40_000},
    ])


def test_scorer_matches_exactly() -> None:
    m = match(tiny_truth(), tiny_outputs())
    delays = {(x.incident_id, x.exchange): (x.delay_s, x.open_delay_s) for x in m.members}
    assert delays == {
        ("full_halt-1", "a"): (60, 120),
        ("chain_halt-2", "b"): (600, 600),
        ("correlated-3", "a"): (200, 200),
        ("correlated-3", "b"): (370, 370),
        ("correlated-3", "c"): (None, None),
    }
    assert sorted(fa["outage_id"] for fa in m.false_alarms) == ["afterstall", "early", "late", "warm", "wrongchain"]
    assert [v["outage_id"] for v in m.stall_violations] == ["stall"]
    assert [s["outage_id"] for s in m.suspicions] == ["hunch"]
    assert m.correlated == [{"incident_id": "correlated-3", "exchanges": ["a", "b", "c"], "grouped": ["a", "b"],
                             "extra": [], "complete": False, "record": "g1"}]
    assert m.spurious_groups == ["g0"]


def test_report_targets_and_ratio_to_ideal() -> None:
    truth = tiny_truth()
    ideal = [IdealDelay("full_halt-1", "full_halt", "a", ("ethereum", "tron"), T, T + 100, "*", 10.0),
             IdealDelay("chain_halt-2", "chain_halt", "b", ("ethereum",), T + 10_000, T + 10_300, "ethereum", 9.0)]
    report = build_report(truth, tiny_outputs(), ideal, budget_days=90.0)
    assert report["classes"]["full_halt"]["ratio_to_ideal"] == pytest.approx(1.2)
    assert report["classes"]["chain_halt"]["ratio_to_ideal"] == pytest.approx(2.0)
    assert report["classes"]["correlated"]["detection_rate"] == pytest.approx(2 / 3)
    assert report["exchange_days"] == pytest.approx(6.0)
    assert len(report["false_alarms"]) == 4 and len(report["false_alarms_in_warmup"]) == 1
    assert report["false_alarms_per_exchange_per_budget"] == pytest.approx(4 / 6 * 90)
    status = {t["target"].split(" (")[0].split(" <=")[0]: t["status"] for t in report["targets"]}
    assert status == {
        "every full_halt and chain_halt detected": "PASS",
        "0 outages during chain stalls / lost feeds": "FAIL",
        "false alarms": "INFO",
        "median open delay": "FAIL",
        "OKX-sized full halt opened within 240 s of chain time": "PASS",
    }
    text = format_report(report, truth["start"])
    assert "[FAIL] 0 outages during chain stalls" in text and "grouped 2/3" in text


def test_model_rate_has_the_promised_shape() -> None:
    truth = build_truth(Config(days=8, seed=3, quiet=True, exchanges=1))
    truth["exchanges"]["okx"]["drift"]["log"] = [0.0] * len(truth["exchanges"]["okx"]["drift"]["log"])
    model = Model(truth)
    times = np.arange(truth["start"], truth["end"], 60, dtype=np.int64)
    rate = model.rate("okx", "tron", times) * HOUR
    weekday = rate[: 1440]  # Friday
    assert weekday.max() / weekday.min() == pytest.approx(3.0, rel=0.01)
    assert weekday.mean() == pytest.approx(600, rel=0.01)
    saturday = rate[1440: 2880]
    assert saturday.mean() / weekday.mean() == pytest.approx(0.7, rel=0.01)


def test_batched_payouts_break_a_plain_poisson_gap_test(scenario: tuple[dict[str, Any], list[bytes], Path]) -> None:
    """The point of batching: gaps a Poisson model of the withdrawal rate calls impossible happen every day."""
    truth, lines, _ = scenario
    model = Model(truth)
    assert model.batch_mean("bybit", "ethereum") > 1
    times = sorted({orjson.loads(line)["block_time"] for line in lines
                    if b'"exchange":"bybit"' in line and b'"withdrawal"' in line and b'"ethereum"' in line})
    peak = float(model.rate("bybit", "ethereum", np.asarray(times, dtype=np.int64)).max())
    h = math.log(peak * 90 * DAY)  # one false alarm per 90 days if withdrawals were independent
    impossible = sum(1 for a, b in pairwise(times) if (b - a) * peak > h)  # even at the peak rate
    assert impossible > 20, impossible
    batches = IdealDetector(truth)
    h_batch = batches.threshold("bybit", ["ethereum"])
    assert h_batch < h and not any(
        float(batches.exposure("bybit", ["ethereum"], a, b)[1][-1:].sum()) > h_batch + 2 for a, b in pairwise(times)
        if not any(e["start"] - 3600 < a < e["end"] + 3600 for e in truth["incidents"] + truth["chain_events"]))
