"""Status snapshots of the detector, and the CLI's time parsing and formatting (no store involved)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from schemas import ChainHead, Direction, OutageState, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector
from streams.detection.state import Incident
from streams.store.report import duration, outage_lines, parse_since, status_lines
from streams.store.status import next_version, snapshot

T0 = 1_700_006_400  # midnight UTC
CHAINS = {"ethereum": 12, "tron": 3}


class Traffic:
    """Blocks on two chains; an exchange paying out ~600/h on each unless halted there."""

    def __init__(self) -> None:
        self.detector = OutageDetector(DetectionPolicy(), ManualClock())
        self.rng = random.Random(7)
        self.numbers = dict.fromkeys(CHAINS, 0)
        self.now = T0
        self.tx = 0
        self.outputs: list[object] = []

    def run(self, seconds: int, halted: frozenset[str] = frozenset(), exchanges: tuple[str, ...] = ("okx",)) -> None:
        end = self.now + seconds
        nxt = {c: self.now + iv for c, iv in CHAINS.items()}
        while min(nxt.values()) <= end:
            chain = min(nxt, key=lambda c: (nxt[c], c))
            t = nxt[chain]
            self.numbers[chain] += 1
            n = self.numbers[chain]
            for exchange in exchanges:
                if chain in halted or self.rng.random() > 600 * CHAINS[chain] / 3600:
                    continue
                self.tx += 1
                self.outputs += self.detector.on_transfer(TransferEvent(
                    chain, n, f"0x{chain}{n}", t, f"0xtx{self.tx}", 0, "native", "1", 18, "0xhot", "0xu",
                    exchange, Direction.WITHDRAWAL,
                )).outputs
            head = ChainHead(chain, n, f"0x{chain}{n}", f"0x{chain}{n - 1}", t, t)
            self.outputs += self.detector.on_head(head).outputs
            nxt[chain] = t + CHAINS[chain]
        self.now = end


def by_chain(rows: list[dict]) -> dict[str, dict]:
    return {r["chain"]: r for r in rows}


def test_warm_exchange_reports_ok_with_last_withdrawal_gap_and_rate():
    traffic = Traffic()
    traffic.run(3 * 3600)
    rows = by_chain(snapshot(traffic.detector, {"okx"}, now=T0 + 10_800.5))
    assert set(rows) == set(CHAINS)
    eth = rows["ethereum"]
    track = traffic.detector.view["okx"].chains["ethereum"]
    assert eth["state"] == "ok" and eth["outage_id"] == ""
    assert eth["last_withdrawal_time"] == track.last.time
    assert eth["head_time"] == track.head_time
    assert eth["gap_s"] == track.head_time - track.last.time >= 0
    assert 300 < eth["expected_rate_per_hour"] < 1200, "learned about 600/h"
    assert eth["withdrawals_seen"] == track.withdrawals
    assert eth["updated_at"] == T0 + 10_800


def test_new_exchange_is_warming_up_and_unknown_exchanges_are_skipped():
    traffic = Traffic()
    traffic.run(600)
    rows = snapshot(traffic.detector, {"okx", "nobody"})
    assert {r["exchange"] for r in rows} == {"okx"}
    assert {r["state"] for r in rows} == {"warming_up"}


def test_halted_chain_shows_its_incident_and_the_other_chain_stays_ok():
    traffic = Traffic()
    traffic.run(3 * 3600)
    traffic.run(1800, halted=frozenset({"ethereum"}))
    rows = by_chain(snapshot(traffic.detector, {"okx"}))
    eth = rows["ethereum"]
    assert eth["state"] == "open", traffic.outputs
    opened = [o for o in traffic.outputs if getattr(o, "state", None) is not None][-1]
    assert eth["outage_id"] == opened.outage_id
    assert eth["gap_s"] >= 1700
    assert rows["tron"]["state"] == "ok"


def test_every_halted_chain_shows_the_incident_covering_it():
    traffic = Traffic()
    traffic.run(3 * 3600)
    traffic.run(1800, halted=frozenset(CHAINS))
    ex = traffic.detector.view["okx"]
    rows = by_chain(snapshot(traffic.detector, {"okx"}))
    assert {r["state"] for r in rows.values()} == {"open"}
    for chain, row in rows.items():
        covering = ex.incident if ex.incident is not None else ex.chains[chain].incident
        assert covering is not None and row["outage_id"] == covering.last.outage_id


def test_exchange_wide_incident_wins_a_tie_and_covers_only_its_scope():
    traffic = Traffic()
    traffic.run(3 * 3600)
    traffic.run(1800, halted=frozenset({"ethereum"}))
    ex = traffic.detector.view["okx"]
    chain_incident = ex.chains["ethereum"].incident
    assert chain_incident is not None
    ex.incident = Incident(replace(chain_incident.last, outage_id="wide", scope=["ethereum"]))
    rows = by_chain(snapshot(traffic.detector, {"okx"}))
    assert rows["ethereum"]["outage_id"] == "wide"
    assert rows["tron"]["state"] == "ok", "tron is outside the exchange-wide incident's scope"
    ex.incident = Incident(replace(chain_incident.last, outage_id="wide", scope=["ethereum"],
                                   state=OutageState.SUSPECTED))
    assert by_chain(snapshot(traffic.detector, {"okx"}))["ethereum"]["outage_id"] == chain_incident.last.outage_id


def test_versions_strictly_increase_even_within_one_clock_tick():
    versions = [next_version() for _ in range(1000)]
    assert versions == sorted(set(versions))


@pytest.mark.parametrize(("text", "expected"), [
    ("1700000000", 1_700_000_000),
    ("2023-11-14T22:13:20Z", 1_700_000_000),
    ("2023-11-14T22:13:20", 1_700_000_000),
    ("2023-11-14 23:13:20+01:00", 1_700_000_000),
    ("2023-11-14", 1_699_920_000),
    ("90m", 1_700_000_000 - 5400),
    ("6h", 1_700_000_000 - 21_600),
    ("7d", 1_700_000_000 - 604_800),
])
def test_since_accepts_seconds_iso_times_and_ages(text, expected):
    assert parse_since(text, now=1_700_000_000.7) == expected


def test_since_rejects_anything_else():
    with pytest.raises(ValueError, match="not a time"):
        parse_since("yesterday", now=0)


def test_durations_are_compact():
    assert [duration(s) for s in (None, 5, 725, 10_920, 183_600)] == ["-", "5s", "12m05s", "3h02m", "2d03h"]


def test_status_table_lines_up_and_marks_a_chain_problem_over_an_incident():
    t = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())
    rows = [
        {"exchange": "okx", "chain": "ethereum", "state": "open", "detector_state": "open", "chain_state": None,
         "outage_id": "abc", "last_withdrawal_time": t, "gap_s": 3725, "expected_rate_per_hour": 450.0},
        {"exchange": "okx", "chain": "tron", "state": "no_data", "detector_state": "suspected",
         "chain_state": "no_data", "outage_id": None, "last_withdrawal_time": None, "gap_s": None,
         "expected_rate_per_hour": 0},
    ]
    lines = status_lines(rows)
    assert lines[0].split() == ["EXCHANGE", "CHAIN", "STATE", "LAST", "WITHDRAWAL", "(UTC)", "GAP", "EXPECTED/H",
                                "OUTAGE"]
    assert lines[1].split() == ["okx", "ethereum", "open", "2026-01-02", "03:04:05", "1h02m", "450.0", "abc"]
    assert lines[2].split() == ["okx", "tron", "no_data", "(suspected)", "-", "-", "0.0", "-"]
    assert len({line.index("CHAIN") if i == 0 else None for i, line in enumerate(lines)}) <= 2


def test_outage_lines_and_empty_answers():
    assert status_lines([]) == ["no status stored yet (the worker writes it once it has seen a chain head)"]
    assert outage_lines([]) == ["no outages stored"]
    row = {"exchange": "okx", "state": "resolved", "version": 3, "scope": ["ethereum", "tron"],
           "started_at": 0, "detected_at": 60, "resolved_at": None, "confidence": 0.5, "outage_id": "x1"}
    assert outage_lines([row])[1].split() == [
        "okx", "resolved", "v3", "ethereum,tron", "1970-01-01", "00:00:00", "1970-01-01", "00:01:00", "-",
        "0.500000", "x1",
    ]
