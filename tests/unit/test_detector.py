"""The skeleton detector: decisions driven by chain heads, never by the passage of wall time."""

from dataclasses import replace

import orjson
import pytest

from schemas import ChainHead, Direction, OutageState, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector

T0 = 1_700_000_000
BLOCK = 12


def head(n: int, t: int | None = None, chain: str = "ethereum") -> ChainHead:
    return ChainHead(chain, n, f"0xh{n}", f"0xh{n - 1}", T0 + n * BLOCK if t is None else t, 0.0)


def withdrawal(n: int, i: int = 0, exchange: str = "okx", chain: str = "ethereum", t: int | None = None):
    return TransferEvent(
        chain=chain, block_number=n, block_hash=f"0xh{n}", block_time=T0 + n * BLOCK if t is None else t,
        tx_hash=f"0xt{n}_{i}", log_index=i, asset="native", amount="1", decimals=18, from_address="0xhot",
        to_address="0xuser", exchange=exchange, direction=Direction.WITHDRAWAL,
    )


def play(detector, blocks, paying, start=1):
    """Feed blocks start..start+blocks-1; ``paying(n)`` says how many withdrawals block n has."""
    out = []
    for n in range(start, start + blocks):
        for i in range(paying(n)):
            out += detector.on_transfer(withdrawal(n, i))
        out += detector.on_head(head(n))
    return out


@pytest.fixture
def detector():
    return OutageDetector(DetectionPolicy(false_alarm_p=1e-6), ManualClock(42.0))


def test_halt_opens_one_outage_started_at_last_withdrawal_and_resolves(detector):
    assert play(detector, 300, lambda n: 1) == []  # one per 12 s block: 300/hour
    events = play(detector, 60, lambda n: 0, start=301)
    assert [e.state for e in events] == [OutageState.OPEN]
    opened = events[0]
    assert opened.started_at == T0 + 300 * BLOCK
    assert opened.last_withdrawal_tx == "0xt300_0"
    # opens when exp(-rate * gap) < 1e-6, i.e. gap * 300 / (3588 + gap) > 13.8155 (299 credited intervals of
    # 12 s before the halt; the silence itself also counts as exposure): first at gap = 180 s, block 315
    assert opened.detected_at == T0 + 315 * BLOCK
    assert opened.observed_gap_s == 180
    assert opened.p_value < 1e-6 and opened.confidence > 0.999999
    assert opened.expected_rate_per_hour == pytest.approx(300 / (3588 + 180) * 3600)
    assert opened.emitted_at == 42.0  # wall clock, injected
    resolved = play(detector, 1, lambda n: 1, start=361)
    assert [(e.state, e.outage_id, e.version) for e in resolved] == [(OutageState.RESOLVED, opened.outage_id, 2)]
    assert resolved[0].resolved_at == T0 + 361 * BLOCK
    assert resolved[0].duration_s == 61 * BLOCK


def test_steady_payouts_never_alarm(detector):
    assert play(detector, 2000, lambda n: 1 if n % 3 else 2) == []


def test_stalled_chain_is_not_an_outage(detector):
    play(detector, 300, lambda n: 1)
    # the chain produces no block for two hours, then continues; the first blocks after carry no payout
    out = detector.on_head(head(301, t=T0 + 300 * BLOCK + 7200))
    out += play(detector, 5, lambda n: 0, start=302)
    assert out == []


def test_missing_heads_mean_no_decision(detector):
    play(detector, 300, lambda n: 1)
    # transfers stop and heads stop (feed lost): however long, nothing is decided without heads
    assert detector.on_head(head(300)) == []
    assert not any(st.outage for st in detector.states.values())


def test_no_alert_while_warming_up(detector):
    out = play(detector, 10, lambda n: 1)
    out += play(detector, 200, lambda n: 0, start=11)
    assert out == []


def test_redelivered_events_are_counted_once(detector):
    play(detector, 100, lambda n: 1)
    before = detector.state("okx", "ethereum").rate.withdrawals
    for n in range(90, 101):  # a consumer restarted from an older offset sees these again
        detector.on_transfer(withdrawal(n))
        detector.on_head(head(n))
    st = detector.state("okx", "ethereum")
    assert st.rate.withdrawals == before
    detector.on_transfer(withdrawal(101))
    detector.on_transfer(withdrawal(101))  # duplicate inside an unfinished block
    assert st.rate.withdrawals == before + 1


def test_deposits_and_retractions_do_not_count_as_payouts(detector):
    deposit = replace(withdrawal(5), direction=Direction.DEPOSIT)
    retracted = replace(withdrawal(5, 1), removed=True)
    assert detector.on_transfer(deposit) == detector.on_transfer(retracted) == []
    assert detector.states == {}


def test_state_survives_export_and_restore_mid_outage(detector):
    play(detector, 300, lambda n: 1)
    opened = play(detector, 20, lambda n: 0, start=301)
    assert len(opened) == 1
    saved = orjson.loads(orjson.dumps(detector.export("okx")))
    fresh = OutageDetector(detector.policy, ManualClock(0))
    fresh.restore("okx", saved)
    assert play(fresh, 20, lambda n: 0, start=321) == []  # no re-emission of the open outage
    resolved = play(fresh, 1, lambda n: 1, start=341)
    assert [(e.state, e.outage_id) for e in resolved] == [(OutageState.RESOLVED, opened[0].outage_id)]


def test_heads_of_other_chains_or_unowned_exchanges_do_nothing(detector):
    play(detector, 300, lambda n: 1)
    assert detector.on_head(head(400, chain="bsc")) == []
    assert detector.on_head(head(400), exchanges={"binance"}) == []


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="false_alarm_p"):
        DetectionPolicy(false_alarm_p=0)
