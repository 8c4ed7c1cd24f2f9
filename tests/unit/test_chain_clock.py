"""Chain clocks, due positions and visits: a head visits only who is due, and decides what visiting everyone
at every head would decide."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest

from schemas import ChainHead, OutageEvent, OutageState
from streams.detection import Changes, DetectionPolicy, ManualClock, OutageDetector
from streams.detection.baseline import GapTail
from streams.detection.chain_clock import ChainClock, collapse_restart, collapse_room, gap_room
from streams.detection.dispersion import Dispersion, collapse_llr
from streams.detection.visits import HeadVisits
from tests.unit.test_detector import HOUR, T0, Sim, halted

POLICY = DetectionPolicy()


def head(number: int, t: int, parent: str | None = None) -> ChainHead:
    return ChainHead("ethereum", number, f"0x{number}", parent if parent is not None else f"0x{number - 1}", t, 0.0)


def test_a_clock_credits_following_heads_caps_stalls_and_skips_lost_heights() -> None:
    clock = ChainClock("ethereum")
    assert clock.advance(head(1, T0), 120, 3.0) == 0.0, "the first head has no interval to credit"
    for n in range(2, 40):
        assert clock.advance(head(n, T0 + 12 * (n - 1)), 120, 3.0) == 12.0
    assert clock.advance(head(40, T0 + 12 * 39 + 600), 120, 3.0) == pytest.approx(36.0, rel=0.01), \
        "a stall credits three typical intervals"
    assert clock.advance(head(45, T0 + 12 * 45 + 600), 120, 3.0) == 0.0, "heights 41-44 were lost"
    assert clock.advance(head(45, T0 + 12 * 45 + 600), 120, 3.0) is None, "a redelivered head is not new"
    skipped = ChainHead("ethereum", 48, "0x48", "0x45", T0 + 12 * 48 + 600, 0.0)
    assert clock.advance(skipped, 120, 3.0) == pytest.approx(36.0), "a head whose parent is the last one follows it"
    lost = ChainHead("ethereum", 60, "0x60", "0xnever-seen", T0 + 12 * 60 + 600, 0.0)
    assert clock.advance(lost, 120, 3.0) == 0.0, "a parent never seen means missing data"


def tails() -> Iterator[GapTail]:
    rng = random.Random(3)
    for swing in (0.0, 0.1, 0.6, 3.0):
        for batch in (1.0, 4.0):
            tail = GapTail(swings=Dispersion(variance=swing) if swing else Dispersion())
            for _ in range(200):
                tail.add_gap(rng.expovariate(1.0 / batch))
            if swing == 0.0:
                tail.swings.variance = 0.0
            yield tail


@pytest.mark.parametrize("level", [0.3, 2.0, 9.0, 16.0])
def test_gap_room_never_overshoots_the_level(level: float) -> None:
    for tail in tails():
        for u in (0.0, 0.2, 0.9, 1.0, 1.5, 4.0, 12.0):
            room = gap_room(tail, u, level)
            assert room >= 0.0
            if room > 0.0:
                assert tail.survival_log(u) < level
                assert tail.survival_log(u + room) <= level + 1e-9, (tail.swing_var, u, level)
            else:
                assert tail.survival_log(u) >= level, "no room only once the level is reached"
            # and it is not uselessly small: the room reaches at least a fifth of the way
            if room > 0.0 and tail.swing_var <= 0.6:
                assert tail.survival_log(u + room) >= tail.survival_log(u) + 0.2 * (level - tail.survival_log(u))


@pytest.mark.parametrize("swing", [0.0, 0.1, 1.0])
def test_collapse_room_never_overshoots_the_level(swing: float) -> None:
    log_var = math.log1p(swing)
    rho = POLICY.degraded_ratio
    for n in (0.0, 1.0, 2.5, 8.0):
        for m in (0.5, 3.0, 10.0, 40.0):
            drop = collapse_llr(m, n, log_var, rho) if log_var else m * (1 - rho) - n * math.log(1 / rho)
            if drop <= 0.0:
                continue
            for level in (drop + 0.5, drop + 5.0, drop + 20.0):
                room = collapse_room(drop, n, log_var, rho, level)
                if math.isinf(room):
                    continue
                after = collapse_llr(m + room, n, log_var, rho) if log_var else drop + room * (1 - rho)
                assert after <= level + 1e-9


def test_a_catch_up_restarts_the_swinging_rate_test_where_head_by_head_it_would() -> None:
    log_var, rho = math.log1p(0.3), POLICY.degraded_ratio
    m0, n, step = 10.0, 1.0, 0.5
    assert collapse_llr(m0, n, log_var, rho) > 0.0
    m, count, heads, restarts = m0, n, 0, 0
    # head by head, a running test that restarts at zero with no payouts counted: past its root (about 330
    # payouts owed) and the next restart's (about 310 more)
    while heads < 1_500:
        m += step
        heads += 1
        if collapse_llr(m, count, log_var, rho) <= 0.0:
            m, count, restarts = 0.0, 0.0, restarts + 1
    assert restarts >= 2
    owed, made, value = collapse_restart(m0, m0 + heads * step, n, log_var, rho)
    assert made == 0.0, "it restarted inside the catch-up"
    assert owed == pytest.approx(m, abs=2 * step), "within a head of where head by head it stands"
    assert value == pytest.approx(collapse_llr(m, 0.0, log_var, rho), abs=0.01)


def everyone_every_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every head visit every exchange on its chain (what the due positions stand in for)."""
    pop_due = ChainClock.pop_due

    def all_of_them(self: ChainClock) -> list[str]:
        pop_due(self)
        return list(self.tracks)

    monkeypatch.setattr(ChainClock, "pop_due", all_of_them)
    monkeypatch.setattr(HeadVisits, "_due_now", lambda self, clock, name: True)


def scenario(detector: OutageDetector) -> list[bytes]:
    """A day of normal traffic on three chains, then a full halt, a one-chain halt and a rate collapse."""
    sim = Sim(detector, {"ethereum": 12, "tron": 3, "bitcoin": 600},
              {("okx", "ethereum"): 300, ("okx", "tron"): 900, ("okx", "bitcoin"): 20, ("htx", "tron"): 600,
               ("bybit", "ethereum"): 40, ("bybit", "tron"): 120}, batch={("bybit", "ethereum"): 3})
    sim.run(26 * HOUR)
    sim.run(HOUR, halted({"okx"}))
    sim.run(2 * HOUR)
    sim.run(HOUR, halted({"htx"}, {"tron"}))
    sim.run(HOUR)
    sim.run(2 * HOUR, lambda ex, ch, t: 0.1 if ex == "bybit" else 1.0)
    sim.run(2 * HOUR)
    return [orjson.dumps(replace(e, emitted_at=0.0)) for e in sim.outputs if isinstance(e, OutageEvent)]


def test_due_positions_decide_what_visiting_everyone_at_every_head_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    lazy = scenario(OutageDetector(POLICY, ManualClock(0.0)))
    with monkeypatch.context() as patched:
        everyone_every_head(patched)
        eager = scenario(OutageDetector(POLICY, ManualClock(0.0)))
    decisions = [(e["outage_id"], e["version"], e["state"], e["detected_at"])
                 for e in map(orjson.loads, lazy)]
    assert {OutageState.OPEN.value, OutageState.RESOLVED.value} <= {d[2] for d in decisions}
    assert decisions == [(e["outage_id"], e["version"], e["state"], e["detected_at"])
                         for e in map(orjson.loads, eager)]


def test_a_head_visits_only_who_is_due() -> None:
    detector = OutageDetector(POLICY, ManualClock(0.0))
    rates = {(f"exchange{i:03d}", "ethereum"): 30.0 for i in range(200)}
    sim = Sim(detector, {"ethereum": 12}, rates)
    sim.run(6 * HOUR)
    visited: list[int] = []
    on_head = detector.on_head

    def counted(record: ChainHead) -> Changes:
        changes = on_head(record)
        visited.append(len(changes.credited))
        return changes

    detector.on_head = counted  # type: ignore[method-assign]
    sim.run(HOUR)
    assert len(visited) == 300
    assert sorted(visited)[150] <= 5, "a typical head visits a handful of 200 exchanges paying as usual"
    detector.settle()
    tracks = [ex.chains["ethereum"] for ex in detector.view.values()]
    assert {c.head_number for c in tracks} == {sim.numbers["ethereum"]}, "settled: all at the latest head"


def test_each_lane_keeps_its_own_chain_time() -> None:
    """A worker's partitions get their own copies of a chain's heads, in their own order: a payout of one
    partition's exchange in a block whose head another partition has already seen still counts."""
    detector = OutageDetector(POLICY, ManualClock(0.0))
    sim = Sim(detector, {"ethereum": 12}, {})
    for n in range(1, 50):
        t = T0 + 12 * n
        for lane, name in ((0, "okx"), (1, "htx")):
            detector.on_transfer(replace(sim.withdrawal(name, "ethereum", t, 0), block_number=n,
                                         block_hash=f"0x{n}"))
            detector.on_head(head(n, t), {name}, lane=lane)
    detector.on_head(head(50, T0 + 600), {"okx"}, lane=0)
    late = replace(sim.withdrawal("htx", "ethereum", T0 + 600, 0), block_number=50, block_hash="0x50")
    detector.on_transfer(late)
    detector.settle()
    htx = detector.view["htx"].chains["ethereum"]
    assert htx.withdrawals == 50 and htx.head_number == 49, "lane 1 has not seen head 50 yet"
    detector.on_head(head(50, T0 + 600), {"htx"}, lane=1)
    detector.settle()
    assert htx.head_number == 50 and htx.last is not None and htx.last.u_at == htx.u_now()


def test_a_restored_exchange_ignores_the_heads_a_restarted_worker_reads_again() -> None:
    """A worker restarts from its last committed offset, behind the state it saved: the blocks it reads again
    are neither credited nor counted twice, and the gaps carry on from the saved state."""
    def traffic(detector: OutageDetector, first: int, last: int) -> None:
        sim = Sim(detector, {"ethereum": 12}, {})
        for n in range(first, last + 1):
            t = T0 + 12 * n
            if n % 3 == 0:
                detector.on_transfer(replace(sim.withdrawal("okx", "ethereum", t, 0), block_number=n,
                                             block_hash=f"0x{n}", tx_hash=f"0xtx{n}"))
            detector.on_head(head(n, t))

    straight = OutageDetector(POLICY, ManualClock(0.0))
    traffic(straight, 1, 900)
    saved = OutageDetector(POLICY, ManualClock(0.0))
    traffic(saved, 1, 600)
    restarted = OutageDetector(POLICY, ManualClock(0.0))
    restarted.restore("okx", orjson.loads(orjson.dumps(saved.export("okx"))))
    traffic(restarted, 451, 900)  # 150 blocks read again
    for detector in (straight, restarted):
        detector.settle()
    mine, theirs = restarted.view["okx"].chains["ethereum"], straight.view["okx"].chains["ethereum"]
    assert mine.withdrawals == theirs.withdrawals == 300
    assert mine.u_now() == pytest.approx(theirs.u_now(), rel=1e-9)
    assert mine.head_number == theirs.head_number == 900
