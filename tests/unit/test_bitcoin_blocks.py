"""Bitcoin block parsing replayed from Esplora replies (block and transaction pages) in their documented shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.bitcoin.blocks import parse_block
from connectors.labels import LabelRegistry
from connectors.linked_writer import MalformedBlock

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bitcoin"
BLOCK: dict[str, Any] = json.loads((FIXTURES / "block.json").read_text())
TXS: list[Any] = json.loads((FIXTURES / "txs.json").read_text())
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())


@pytest.fixture
def labels() -> LabelRegistry:
    return LabelRegistry.from_files([FIXTURES / "labels.toml"])


def rows(parsed: Any) -> list[list[Any]]:
    return [[t.tx_hash, t.log_index, t.asset, t.amount, t.decimals, t.from_address, t.to_address, t.exchange,
             t.direction.value] for t in parsed.transfers]


def test_one_event_per_outside_output_and_none_for_change(labels: LabelRegistry) -> None:
    parsed = parse_block("bitcoin", BLOCK, TXS, labels, 1.0)
    assert rows(parsed) == EXPECTED["transfers"]
    assert len(parsed.malformed) == EXPECTED["malformed"] and "value" in parsed.malformed[0].reason


def test_the_head_is_the_height_with_its_hash_and_parent(labels: LabelRegistry) -> None:
    parsed = parse_block("bitcoin", BLOCK, TXS, labels, 1.0)
    assert (parsed.head.number, parsed.head.hash, parsed.head.parent_hash, parsed.head.block_time) == (
        BLOCK["height"], BLOCK["id"], BLOCK["previousblockhash"], BLOCK["timestamp"])
    assert parsed.parent_number == BLOCK["height"] - 1


def test_cold_wallets_and_internal_moves_pay_no_withdrawal(labels: LabelRegistry) -> None:
    parsed = parse_block("bitcoin", BLOCK, TXS, labels, 1.0)
    paid_by_cold = TXS[4]["txid"]
    internal = TXS[3]["txid"]
    assert {paid_by_cold, internal}.isdisjoint(t.tx_hash for t in parsed.transfers)


def test_bech32_labels_match_whatever_their_case(labels: LabelRegistry) -> None:
    deposit = next(w for w in labels.wallets("bitcoin") if w.role.value == "deposit")
    assert deposit.address == deposit.address.lower()
    assert labels.lookup("bitcoin", deposit.address.upper()) is deposit


def test_base58_labels_are_case_sensitive(labels: LabelRegistry) -> None:
    legacy = next(w for w in labels.wallets("bitcoin") if w.address.startswith("1"))
    assert labels.lookup("bitcoin", legacy.address.swapcase()) is None


def test_a_page_missing_from_the_read_is_a_malformed_block(labels: LabelRegistry) -> None:
    with pytest.raises(MalformedBlock, match="tx_count"):
        parse_block("bitcoin", BLOCK, TXS[:-1], labels, 1.0)


def test_a_block_without_id_is_malformed(labels: LabelRegistry) -> None:
    with pytest.raises(MalformedBlock, match="id"):
        parse_block("bitcoin", {k: v for k, v in BLOCK.items() if k != "id"}, TXS, labels, 1.0)


def test_a_coinbase_paying_an_exchange_is_a_deposit_from_coinbase(labels: LabelRegistry) -> None:
    txs = copy.deepcopy(TXS)
    deposit_address = next(w.address for w in labels.wallets("bitcoin") if w.role.value == "deposit")
    txs[0]["vout"][0]["scriptpubkey_address"] = deposit_address
    parsed = parse_block("bitcoin", BLOCK, txs, labels, 1.0)
    first = parsed.transfers[0]
    assert (first.tx_hash, first.from_address, first.direction.value) == (txs[0]["txid"], "coinbase", "deposit")
