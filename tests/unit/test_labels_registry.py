"""Label registry: EIP-55 checksums, user overrides, conflicts, folders, hot reload, the shipped defaults."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from connectors.eip55 import checksum_error, keccak256, to_checksum_address
from connectors.label_import import main as import_labels
from connectors.label_watch import LabelSource
from connectors.labels import LabelError, LabelRegistry, Role, load_label_file
from haltwatch.local import REPO
from schemas import Direction

# The test vectors of EIP-55 itself.
EIP55_VECTORS = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
HOT = "0x" + "a1" * 20
USER = "0x" + "cc" * 20
SHARED_LABELS = REPO.parent / "shared" / "data" / "labels"


def wallet(exchange: str, address: str, role: str, source: str = "test") -> str:
    return (f'[[wallet]]\nexchange = "{exchange}"\nchain = "ethereum"\naddress = "{address}"\nrole = "{role}"\n'
            f'source = "{source}"\n\n')


def test_keccak_is_ethereum_keccak_not_nist_sha3() -> None:
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_eip55_vectors(address: str) -> None:
    assert to_checksum_address(address.lower()) == address
    assert checksum_error(address) is None


def test_one_flipped_letter_case_is_a_checksum_error(tmp_path: Path) -> None:
    good = EIP55_VECTORS[0]
    bad = good[:3] + good[3].swapcase() + good[4:]
    path = tmp_path / "typo.toml"
    path.write_text(wallet("okx", bad, "hot"))
    expected = r"EIP-55 checksum mismatch .*\(expected 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\)"
    with pytest.raises(LabelError, match=expected):
        load_label_file(path)


def test_all_lower_or_all_upper_addresses_carry_no_checksum(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    upper = "0x" + EIP55_VECTORS[1][2:].upper()
    path.write_text(wallet("okx", EIP55_VECTORS[0].lower(), "hot") + wallet("kraken", upper, "hot"))
    assert {w.address for w in load_label_file(path)} == {EIP55_VECTORS[0].lower(), EIP55_VECTORS[1].lower()}


def test_a_later_file_overrides_the_role_of_the_same_exchange_wallet(tmp_path: Path, caplog: pytest.LogCaptureFixture)\
        -> None:
    defaults, mine = tmp_path / "a.toml", tmp_path / "b.toml"
    defaults.write_text(wallet("okx", HOT, "hot", "shipped"))
    mine.write_text(wallet("okx", HOT, "cold", "our desk: this one is cold since March"))
    with caplog.at_level(logging.INFO):
        registry = LabelRegistry.from_files([defaults, mine])
    w = registry.lookup("ethereum", HOT)
    assert w is not None and (w.role, w.source, w.origin) == (Role.COLD, "our desk: this one is cold since March",
                                                              str(mine))
    assert registry.classify("ethereum", HOT, USER) == []  # a cold wallet pays no withdrawals
    assert "is now cold (was hot" in caplog.text


def test_another_exchange_claiming_an_address_names_both_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(wallet("okx", HOT, "hot", "etherscan"))
    b.write_text(wallet("binance", HOT, "hot"))
    with pytest.raises(LabelError) as info:
        LabelRegistry.from_files([a, b])
    assert str(b) in str(info.value) and str(a) in str(info.value) and "'okx' already claims it" in str(info.value)


def test_the_same_address_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.toml"
    path.write_text(wallet("okx", HOT, "hot") + wallet("okx", HOT.upper().replace("0X", "0x"), "cold"))
    with pytest.raises(LabelError, match="listed twice in the same file"):
        LabelRegistry.from_files([path])


def test_a_folder_contributes_its_toml_files_in_name_order_and_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "10-defaults.toml").write_text(wallet("okx", HOT, "hot"))
    (tmp_path / "20-mine.toml").write_text(wallet("okx", HOT, "deposit"))
    (tmp_path / "notes.txt").write_text("not a label file")
    registry = LabelRegistry.from_files([tmp_path, tmp_path / "10-defaults.toml"])
    assert [p.name for p in registry.files] == ["10-defaults.toml", "20-mine.toml"]
    w = registry.lookup("ethereum", HOT)
    assert w is not None and w.role is Role.DEPOSIT


def touch_later(path: Path, text: str) -> None:
    """Rewrite a file so its mtime surely changes, even on coarse-timestamp filesystems."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(time.time_ns(), max(time.time_ns(), before + 1_000_000)))


def test_hot_reload_picks_up_changes_and_keeps_the_old_registry_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.toml"
    path.write_text(wallet("okx", HOT, "hot"))
    source = LabelSource([tmp_path])
    assert source.poll().registry is None, "nothing changed"
    touch_later(path, wallet("okx", HOT, "hot") + wallet("okx", USER, "deposit"))
    result = source.poll()
    assert result.registry is not None and source.registry.lookup("ethereum", USER) is not None

    touch_later(path, "[[wallet]\n")  # a half-saved file
    result = source.poll()
    assert result.registry is None and result.error is not None and "not valid TOML" in result.error
    assert source.registry.lookup("ethereum", USER) is not None, "the previous labels stay in force"

    touch_later(path, wallet("okx", HOT, "hot"))
    (tmp_path / "more.toml").write_text(wallet("kraken", "0x" + "b2" * 20, "hot"))  # a new file in the folder
    result = source.poll()
    assert result.registry is not None and source.last_error is None
    assert source.registry.exchanges("ethereum") == {"okx", "kraken"}
    assert source.poll(force=True).registry is not None, "SIGHUP reloads even when nothing changed"


def test_hot_reload_survives_a_deleted_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.toml"
    path.write_text(wallet("okx", HOT, "hot"))
    source = LabelSource([path])
    path.unlink()
    result = source.poll()
    assert result.error is not None and "cannot read" in result.error
    assert source.registry.lookup("ethereum", HOT) is not None


SHIPPED = REPO / "labels" / "ethereum.toml"


def test_the_shipped_ethereum_labels_load_and_cover_the_largest_exchanges() -> None:
    registry = LabelRegistry.from_files([SHIPPED])
    wallets = registry.wallets("ethereum")
    assert 20 <= len(wallets) <= 120, "curated: tens of wallets"
    hot_by_exchange = {w.exchange for w in wallets if w.role is Role.HOT}
    largest = {"binance", "okx", "coinbase", "kraken", "kucoin", "bitfinex", "gate", "htx", "crypto-com"}
    assert largest <= hot_by_exchange
    assert all("etherscan-labels" in w.source and "name tag" in w.source for w in wallets)
    okx = registry.lookup("ethereum", "0x6cc5f688a315f3dc28a7781717a9a798a59fda7b")  # the README's example
    assert okx is not None and (okx.exchange, okx.role) == ("okx", Role.HOT)
    assert [c.direction for c in registry.classify("ethereum", okx.address, USER)] == [Direction.WITHDRAWAL]


@pytest.mark.skipif(not SHARED_LABELS.is_dir(), reason="public label data not beside the repo (shared/data/labels)")
@pytest.mark.parametrize("explorer", ["etherscan", "bscscan", "polygonscan", "arbiscan", "optimism", "avalanche",
                                      "ftmscan"])
def test_each_shipped_evm_file_is_what_the_importer_makes_of_the_public_data(tmp_path: Path, explorer: str) -> None:
    from connectors.label_import import EXPLORERS

    chain = EXPLORERS[explorer][0]
    out = tmp_path / f"{chain}.toml"
    assert import_labels(["--etherscan", str(SHARED_LABELS / "etherscan-labels"), "--defillama",
                          str(SHARED_LABELS / "defillama-cex" / "defillama_cex_addresses.csv"), "--explorer", explorer,
                          "--out", str(out)]) == 0
    shipped = REPO / "labels" / f"{chain}.toml"
    assert out.read_text() == shipped.read_text()
    wallets = LabelRegistry.from_files([shipped]).wallets(chain)
    assert wallets and any(w.role is Role.HOT for w in wallets)
