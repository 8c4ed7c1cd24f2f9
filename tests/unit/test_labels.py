from pathlib import Path

import pytest

from connectors.labels import LabelError, LabelRegistry, load_label_file
from schemas import Direction

HOT_A = "0x" + "a1" * 20
COLD_A = "0x" + "a2" * 20
DEP_A = "0x" + "a3" * 20
HOT_B = "0x" + "b1" * 20
USER = "0x" + "cc" * 20


def wallet(exchange, address, role, chain="ethereum"):
    return f'[[wallet]]\nexchange = "{exchange}"\nchain = "{chain}"\naddress = "{address}"\nrole = "{role}"\n\n'


@pytest.fixture
def registry(tmp_path: Path) -> LabelRegistry:
    path = tmp_path / "labels.toml"
    path.write_text(
        wallet("okx", HOT_A.upper().replace("0X", "0x"), "hot") + wallet("okx", COLD_A, "cold")
        + wallet("okx", DEP_A, "deposit") + wallet("binance", HOT_B, "hot")
    )
    return LabelRegistry.from_files([path])


def directions(registry, src, dst):
    return [(c.exchange, c.direction) for c in registry.classify("ethereum", src, dst)]


def test_hot_wallet_to_outside_is_a_withdrawal(registry):
    assert directions(registry, HOT_A, USER) == [("okx", Direction.WITHDRAWAL)]


def test_outside_to_exchange_is_a_deposit(registry):
    assert directions(registry, USER, DEP_A) == [("okx", Direction.DEPOSIT)]


def test_between_two_wallets_of_one_exchange_is_internal(registry):
    assert directions(registry, COLD_A, HOT_A) == [("okx", Direction.INTERNAL)]
    assert directions(registry, HOT_A, COLD_A) == [("okx", Direction.INTERNAL)]


def test_payout_to_another_exchange_is_withdrawal_and_deposit(registry):
    assert directions(registry, HOT_A, HOT_B) == [("okx", Direction.WITHDRAWAL), ("binance", Direction.DEPOSIT)]


def test_cold_wallet_to_outside_is_not_a_withdrawal(registry):
    assert directions(registry, COLD_A, USER) == []


def test_unlabelled_and_other_chains_are_ignored(registry):
    assert directions(registry, USER, USER) == []
    assert registry.classify("bsc", HOT_A, USER) == []


def test_addresses_are_matched_case_insensitively(registry):
    assert directions(registry, HOT_A.upper().replace("0X", "0x"), USER) == [("okx", Direction.WITHDRAWAL)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (wallet("okx", "0x123", "hot"), "not an EVM address"),
        (wallet("okx", HOT_A, "warm"), "role must be one of"),
        ('[[wallet]]\nexchange = "okx"\n', "missing or non-text field"),
        ("wallet = 3", "array of tables"),
        ("[[wallet]\n", "not valid TOML"),
    ],
)
def test_bad_label_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(LabelError, match=message) as info:
        load_label_file(path)
    assert str(path) in str(info.value)


def test_same_address_claimed_by_two_exchanges_is_an_error(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(wallet("okx", HOT_A, "hot"))
    b.write_text(wallet("binance", HOT_A, "hot"))
    with pytest.raises(LabelError, match="already claims it"):
        LabelRegistry.from_files([a, b])


def test_missing_file_is_a_label_error(tmp_path):
    with pytest.raises(LabelError, match="cannot read"):
        load_label_file(tmp_path / "nope.toml")
