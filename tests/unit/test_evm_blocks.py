"""Block parsing replayed from recorded anvil traffic (tests/fixtures/evm/record.py made the fixture)."""

from pathlib import Path

import orjson
import pytest

from connectors.evm.blocks import MalformedBlock, parse_block
from connectors.labels import LabelRegistry
from haltwatch.traffic import NO_RETURN_TOKEN_ADDRESS, TOKEN_ADDRESS
from schemas import NATIVE_ASSET, NATIVE_LOG_INDEX, Direction

FIXTURES = Path(__file__).parents[1] / "fixtures" / "evm"
USER = "0x1111111111111111111111111111111111111111"


@pytest.fixture
def recorded():
    return orjson.loads((FIXTURES / "block.json").read_bytes())


@pytest.fixture
def labels():
    return LabelRegistry.from_files([FIXTURES / "labels.toml"])


def parse(recorded, labels, block=None, logs=None):
    failed = {r["transactionHash"] for r in recorded["receipts"] if r["status"] == "0x0"}
    return parse_block(
        "ethereum", block or recorded["block"], recorded["logs"] if logs is None else logs, failed, labels,
        lambda token: 6, 123.0,
    )


def test_recorded_block_yields_exactly_the_labelled_transfers(recorded, labels):
    parsed = parse(recorded, labels)
    block = recorded["block"]
    assert parsed.head.number == int(block["number"], 16)
    assert parsed.head.hash == block["hash"] and parsed.head.parent_hash == block["parentHash"]
    assert parsed.head.block_time == int(block["timestamp"], 16)
    assert parsed.head.received_at == 123.0
    got = sorted((t.direction, t.asset, t.amount, t.to_address) for t in parsed.transfers)
    hot = labels.wallets("ethereum")[0].address
    assert got == sorted([
        (Direction.WITHDRAWAL, NATIVE_ASSET, str(10**18), USER),
        (Direction.WITHDRAWAL, TOKEN_ADDRESS, str(5 * 10**6), USER),
        (Direction.WITHDRAWAL, NO_RETURN_TOKEN_ADDRESS, str(7 * 10**6), USER),  # USDT-style, no return value
        (Direction.DEPOSIT, NATIVE_ASSET, str(2 * 10**17), labels.wallets("ethereum")[1].address),
        (Direction.INTERNAL, NATIVE_ASSET, str(3 * 10**18), hot),
    ])  # the reverted payout to the reverting contract is absent
    assert parsed.malformed == []
    for t in parsed.transfers:
        assert t.block_hash == block["hash"] and t.exchange == "demo-exchange"
        assert (t.log_index == NATIVE_LOG_INDEX) == (t.asset == NATIVE_ASSET)
        assert t.decimals == (18 if t.asset == NATIVE_ASSET else 6)


def test_unlabelled_block_yields_nothing(recorded):
    assert parse(recorded, LabelRegistry()).transfers == []


def test_malformed_logs_are_reported_not_raised(recorded, labels):
    bad_data = dict(recorded["logs"][0], data="0x1234")
    not_object = "garbage"
    erc721 = dict(recorded["logs"][0], topics=[*recorded["logs"][0]["topics"], "0x" + "00" * 32])
    huge = dict(recorded["logs"][1], data="0x" + "ff" * 32)
    parsed = parse(recorded, labels, logs=[bad_data, not_object, erc721, huge])
    assert [m.reason.split(":")[0] for m in parsed.malformed] == ["Transfer log", "Transfer log"]
    assert "32-byte word" in parsed.malformed[0].reason
    assert '"0x1234"' in parsed.malformed[0].raw
    tokens = [t for t in parsed.transfers if t.asset != NATIVE_ASSET]
    assert [t.amount for t in tokens] == [str(2**256 - 1)]  # huge amounts survive as exact strings


def test_block_without_full_transactions_is_malformed(recorded, labels):
    block = dict(recorded["block"], transactions=None)
    with pytest.raises(MalformedBlock, match="transaction list"):
        parse(recorded, labels, block=block)


@pytest.mark.parametrize("field", ["number", "timestamp", "hash"])
def test_block_missing_header_fields_is_malformed(recorded, labels, field):
    block = {k: v for k, v in recorded["block"].items() if k != field}
    with pytest.raises(MalformedBlock, match="block header"):
        parse(recorded, labels, block=block)


def test_rotation_watch_sees_unlabelled_transfers_and_its_suggestion_rides_with_the_block(recorded, labels):
    from connectors.hot_wallets.evidence import HotWalletRule
    from connectors.rotation import RotationWatch

    cold = labels.wallets("ethereum")[2].address
    fresh = "0x" + "ee" * 20
    watch = RotationWatch("ethereum", lambda: labels, {NATIVE_ASSET: 10**18}, clock=lambda: 5.0,
                          rule=HotWalletRule(min_recipients=3, min_active_windows=1))

    def block(number: int, txs: list[tuple[str, str, int]]) -> dict:
        base = dict(recorded["block"], number=hex(number), hash=f"0x{number:064x}")
        base["transactions"] = [
            {"hash": f"0x{number:060x}{i:04x}", "from": src, "to": dst, "value": hex(value)}
            for i, (src, dst, value) in enumerate(txs)
        ]
        return base

    funding = parse_block("ethereum", block(1, [(cold, fresh, 5 * 10**18)]), [], set(), labels, lambda t: 6, 1.0,
                          rotation=watch)
    assert funding.transfers == [] and funding.suggestions == []  # cold to outside: not a withdrawal
    payouts = [(fresh, "0x" + f"{i:02x}" * 20, 10**17) for i in range(1, 4)]
    parsed = parse_block("ethereum", block(2, payouts), [], set(), labels, lambda t: 6, 2.0, rotation=watch)
    assert parsed.transfers == []  # the fresh wallet is not labelled: nothing counts as a withdrawal yet
    (suggestion,) = parsed.suggestions
    assert (suggestion.exchange, suggestion.address, suggestion.funded_by) == ("demo-exchange", fresh, cold)
