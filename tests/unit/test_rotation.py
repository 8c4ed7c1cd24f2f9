"""Hot-wallet rotation: the connector spots it, the detector tempers its verdict."""

from pathlib import Path

import pytest

from connectors.hot_wallets.evidence import HotWalletRule
from connectors.labels import LabelRegistry
from connectors.rotation import RotationWatch
from schemas import OutageEvent, OutageState
from streams.detection import DetectionPolicy, ManualClock, OutageDetector
from tests.unit.test_detector import HOUR, Sim, halted

HOT = "0x" + "a1" * 20
COLD = "0x" + "a2" * 20
NEW = "0x" + "ee" * 20
ETH = 10**18


@pytest.fixture
def watch(tmp_path: Path) -> RotationWatch:
    path = tmp_path / "labels.toml"
    path.write_text(
        f'[[wallet]]\nexchange = "okx"\nchain = "ethereum"\naddress = "{HOT}"\nrole = "hot"\n\n'
        f'[[wallet]]\nexchange = "okx"\nchain = "ethereum"\naddress = "{COLD}"\nrole = "cold"\n'
    )
    registry = LabelRegistry.from_files([path])
    # one window with payouts is enough here: these tests are about what makes a candidate and a suggestion;
    # steadiness over windows is tested on the simulated exchange (test_hot_wallet_evidence.py)
    rule = HotWalletRule(min_recipients=5, min_active_windows=1)
    return RotationWatch("ethereum", lambda: registry, {"native": 50 * ETH}, clock=lambda: 7.0, rule=rule)


def user(i: int) -> str:
    return f"0x{i:040x}"


def test_fresh_wallet_funded_by_the_exchange_that_pays_many_users_is_suggested(watch):
    assert watch.observe(100, "0xfund", "native", 500 * ETH, COLD, NEW) is None
    results = [watch.observe(200 + i, f"0xp{i}", "native", ETH, NEW, user(i)) for i in range(5)]
    assert results[:4] == [None] * 4
    suggestion = results[4]
    assert suggestion is not None
    assert (suggestion.exchange, suggestion.address, suggestion.funded_by) == ("okx", NEW, COLD)
    assert (suggestion.distinct_recipients, suggestion.funding_tx, suggestion.detected_at) == (5, "0xfund", 204)
    assert (suggestion.top_ups, suggestion.payouts) == (1, 5)
    assert suggestion.evidence.startswith(f"funded by {COLD}; 1 top-ups")
    assert "5 distinct outside" in suggestion.evidence
    assert watch.observe(300, "0xp9", "native", ETH, NEW, user(9)) is None, "suggested once"


def test_ordinary_withdrawals_do_not_make_candidates(watch):
    watch.observe(100, "0xw", "native", 2 * ETH, HOT, NEW)  # a user's withdrawal, below the funding size
    assert [watch.observe(200 + i, f"0xp{i}", "native", ETH, NEW, user(i)) for i in range(10)] == [None] * 10


def test_repeat_payouts_to_the_same_users_or_back_to_the_exchange_do_not_count(watch):
    watch.observe(100, "0xfund", "native", 500 * ETH, HOT, NEW)
    for i in range(10):
        assert watch.observe(200 + i, f"0xp{i}", "native", ETH, NEW, user(i % 2)) is None
        assert watch.observe(200 + i, f"0xr{i}", "native", ETH, NEW, COLD) is None


def test_candidates_expire_and_are_bounded(watch):
    watch.observe(100, "0xfund", "native", 500 * ETH, HOT, NEW)
    late = 100 + watch.window_s + 1
    assert [watch.observe(late + i, f"0xp{i}", "native", ETH, NEW, user(i)) for i in range(5)] == [None] * 5
    watch.book.max_candidates = 3
    for i in range(10):
        watch.observe(1000 + i, f"0xf{i}", "native", 500 * ETH, HOT, user(100 + i))
    assert len(watch.book.candidates) == 3


def test_outage_explained_by_a_rotation_has_lower_confidence_and_says_so(watch):
    detector = OutageDetector(DetectionPolicy(), ManualClock(0))
    sim = Sim(detector, {"ethereum": 12}, {("okx", "ethereum"): 360})
    sim.run(6 * HOUR)
    watch.observe(sim.now - 600, "0xfund", "native", 500 * ETH, COLD, NEW)
    suggestion = None
    for i in range(5):
        suggestion = watch.observe(sim.now - 300 + i, f"0xp{i}", "native", ETH, NEW, user(i))
    assert suggestion is not None
    assert detector.on_suggestion(suggestion).outputs == []  # nothing open yet: just remembered
    events = [e for e in sim.run(HOUR, halted({"okx"})) if isinstance(e, OutageEvent)]
    opened = next(e for e in events if e.state is OutageState.OPEN)
    assert "hot-wallet rotation" in opened.reason and NEW in opened.reason
    assert f"may have taken the payouts over ({suggestion.evidence})" in opened.reason
    assert opened.confidence <= 0.5


def test_rotation_seen_during_an_open_outage_updates_it(watch):
    detector = OutageDetector(DetectionPolicy(), ManualClock(0))
    sim = Sim(detector, {"ethereum": 12}, {("okx", "ethereum"): 360})
    sim.run(6 * HOUR)
    opened = [e for e in sim.run(HOUR, halted({"okx"})) if isinstance(e, OutageEvent)][-1]
    assert opened.state is OutageState.OPEN and "rotation" not in opened.reason
    watch.observe(sim.now - 100, "0xfund", "native", 500 * ETH, COLD, NEW)
    suggestion = None
    for i in range(5):
        suggestion = watch.observe(sim.now - 50 + i, f"0xp{i}", "native", ETH, NEW, user(i))
    assert suggestion is not None
    (updated,) = detector.on_suggestion(suggestion).outputs
    assert isinstance(updated, OutageEvent)
    assert (updated.outage_id, updated.version, updated.state) == (opened.outage_id, opened.version + 1, opened.state)
    assert updated.confidence == pytest.approx(opened.confidence * 0.5)
