"""Per-family addresses in label files: base58 (Solana, Tron), bech32/base58check (Bitcoin), and the EVM default."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from connectors.addresses import (
    AddressError,
    b58check_decode,
    bitcoin_address,
    segwit_decode,
    segwit_encode,
    solana_address,
    tron_address,
    tron_from_hex,
    tron_to_hex,
)
from connectors.family import ChainFamily, family_of
from connectors.labels import LabelError, LabelRegistry, load_label_file
from haltwatch.local import REPO

SHARED_CSV = REPO.parent / "shared" / "data" / "labels" / "defillama-cex" / "defillama_cex_addresses.csv"
SOL = "9aB71bqATWmsKrhhTJUM8UHQWyTL8y61nVfZbXLkoGmY"
TRX = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def entry(chain: str, address: str, extra: str = "", exchange: str = "okx") -> str:
    return (f'[[wallet]]\nexchange = "{exchange}"\nchain = "{chain}"\naddress = "{address}"\nrole = "hot"\n'
            f"{extra}\n")


@pytest.mark.parametrize(("chain", "family"), [
    ("ethereum", ChainFamily.EVM), ("solana", ChainFamily.SOLANA), ("solana-devnet", ChainFamily.SOLANA),
    ("bitcoin", ChainFamily.BITCOIN), ("bitcoin-testnet", ChainFamily.BITCOIN), ("tron", ChainFamily.TRON),
    ("tronish", ChainFamily.EVM), ("arbitrum", ChainFamily.EVM),
])
def test_the_chain_name_implies_the_family(chain: str, family: ChainFamily) -> None:
    assert family_of(chain) is family


def test_bip173_and_bip350_examples() -> None:
    p2wpkh = bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert segwit_encode("bc", 0, p2wpkh) == "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    assert segwit_decode("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4") == ("bc", 0, p2wpkh)
    taproot = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
    assert segwit_decode(taproot)[1] == 1


@pytest.mark.parametrize(("address", "problem"), [
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "checksum"),  # last character changed
    ("bc1qw508d6qejxtdg4y5r3zarvaRY0c5xw7kv8f3t4", "mixes upper and lower"),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "checksum"),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0", "base58 character"),
    ("ltc1qhac8t52gdh8fzeft4ygzxn05nluwwecjrzel99", "base58"),  # Litecoin, not Bitcoin
])
def test_bitcoin_typos_and_other_coins_are_refused(address: str, problem: str) -> None:
    with pytest.raises(AddressError, match=problem):
        bitcoin_address(address)


def test_bitcoin_canonical_forms() -> None:
    assert bitcoin_address("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa") == "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
    assert bitcoin_address("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4") == "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    assert b58check_decode("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa").hex() == "0062e907b15cbf27d5425399ebf6f0fb50ebb88f18"


def test_solana_addresses_are_32_bytes_of_base58() -> None:
    usdc_mint = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    assert solana_address(usdc_mint) == usdc_mint
    assert solana_address("11111111111111111111111111111111") == "11111111111111111111111111111111"
    with pytest.raises(AddressError, match="base58 character"):
        solana_address("0PjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
    with pytest.raises(AddressError, match="32 bytes"):
        solana_address("1" * 33)


def test_tron_hex_and_base58_are_the_same_address() -> None:
    assert tron_to_hex(TRX) == "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"
    assert tron_from_hex("41a614f803b6fd780986a42c78ec9c7f77e6ded13c") == TRX
    assert tron_address("41a614f803b6fd780986a42c78ec9c7f77e6ded13c") == TRX
    with pytest.raises(AddressError, match="checksum"):
        tron_address(TRX[:-1] + ("u" if TRX[-1] != "u" else "v"))
    with pytest.raises(AddressError, match="0x41"):
        tron_address("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa")


def test_label_files_check_addresses_by_family(tmp_path: Path) -> None:
    path = tmp_path / "mixed.toml"
    path.write_text(entry("solana", SOL) + entry("tron", "41a614f803b6fd780986a42c78ec9c7f77e6ded13c")
                    + entry("bitcoin", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4")
                    + entry("ethereum", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"))
    registry = LabelRegistry.from_files([path])
    assert registry.lookup("solana", SOL) is not None and registry.lookup("solana", SOL.lower()) is None
    assert registry.lookup("tron", TRX) is not None
    assert registry.lookup("bitcoin", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4") is not None
    assert registry.lookup("ethereum", "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED") is not None
    assert (registry.family("solana"), registry.family("ethereum")) == (ChainFamily.SOLANA, ChainFamily.EVM)


def test_a_custom_chain_name_takes_its_family_from_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(entry("sol-main", SOL, 'family = "solana"'))
    (wallet,) = load_label_file(path)
    assert (wallet.chain, wallet.family, wallet.address) == ("sol-main", ChainFamily.SOLANA, SOL)


def test_a_base58_address_on_a_chain_taken_as_evm_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(entry("sol-main", SOL))
    with pytest.raises(LabelError, match=r"wallet #1: not an EVM address .*taken as EVM.*family = "):
        load_label_file(path)


def test_a_typo_in_a_solana_label_names_the_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(entry("solana", SOL[:-1] + "0"))
    with pytest.raises(LabelError, match=r"typo.toml: wallet #1: not a solana address"):
        load_label_file(path)


def test_an_unknown_family_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(entry("cardano", "addr1xyz", 'family = "cardano"'))
    with pytest.raises(LabelError, match="unknown chain family 'cardano'"):
        load_label_file(path)


def test_one_chain_cannot_be_two_families(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(entry("mychain", SOL, 'family = "solana"') + entry("mychain", TRX, 'family = "tron"', "htx"))
    with pytest.raises(LabelError, match="is tron, but earlier entries made it solana"):
        LabelRegistry.from_files([path])


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared label data not present")
def test_every_exchange_address_of_the_public_lists_validates() -> None:
    check = {"solana": solana_address, "tron": tron_address, "bitcoin": bitcoin_address}
    refused = []
    with SHARED_CSV.open() as f:
        for row in csv.DictReader(f):
            if row["chain"] in check:
                try:
                    check[row["chain"]](row["address"])
                except AddressError:
                    refused.append(row["address"])
    assert len(refused) == 4 and all(a.startswith(("L", "ltc1")) for a in refused), refused  # Litecoin, mislisted
