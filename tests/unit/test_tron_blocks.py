"""Tron block parsing replayed from full-node HTTP replies (getblockbynum, gettransactioninfobyblocknum)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.addresses import tron_from_hex, tron_to_hex
from connectors.labels import LabelRegistry
from connectors.linked_writer import MalformedBlock
from connectors.tron.blocks import labelled_tokens, parse_block
from connectors.tron.config import KNOWN_DECIMALS, USDT

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tron"
BLOCK: dict[str, Any] = json.loads((FIXTURES / "block.json").read_text())
INFOS: list[Any] = json.loads((FIXTURES / "infos.json").read_text())
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())
DECIMALS = {**KNOWN_DECIMALS, EXPECTED["odd_token"]: 2}


@pytest.fixture
def labels() -> LabelRegistry:
    return LabelRegistry.from_files([FIXTURES / "labels.toml"])


def parse(labels: LabelRegistry, block: Any = BLOCK, infos: Any = INFOS, tokens: Any = None) -> Any:
    return parse_block("tron", block, infos, labels, lambda t: DECIMALS.get(t, -1), 1.0, tokens)


def rows(parsed: Any) -> list[list[Any]]:
    return [[t.tx_hash, t.log_index, t.asset, t.amount, t.decimals, t.from_address, t.to_address, t.exchange,
             t.direction.value] for t in parsed.transfers]


def test_trx_and_trc20_transfers_as_base58_addresses(labels: LabelRegistry) -> None:
    parsed = parse(labels)
    assert rows(parsed) == EXPECTED["transfers"]
    assert len(parsed.malformed) == EXPECTED["malformed"] and "amount" in parsed.malformed[0].reason


def test_the_head_comes_from_the_block_header(labels: LabelRegistry) -> None:
    head = parse(labels).head
    raw = BLOCK["block_header"]["raw_data"]
    assert (head.number, head.hash, head.parent_hash, head.block_time) == (
        raw["number"], BLOCK["blockID"], raw["parentHash"], raw["timestamp"] // 1000)


def test_usdt_is_the_contract_the_logs_name() -> None:
    assert tron_to_hex(USDT) == "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"
    assert tron_from_hex("a614f803b6fd780986a42c78ec9c7f77e6ded13c") == USDT


def test_a_token_filter_keeps_only_those_contracts(labels: LabelRegistry) -> None:
    parsed = parse(labels, tokens={USDT})
    assert {t.asset for t in parsed.transfers} == {"native", USDT}


def test_a_receipt_of_another_block_means_the_block_changed(labels: LabelRegistry) -> None:
    infos = copy.deepcopy(INFOS)
    infos[1]["id"] = "ff" * 32
    with pytest.raises(MalformedBlock, match="changed while read"):
        parse(labels, infos=infos)


def test_a_block_without_transactions_is_a_head_only(labels: LabelRegistry) -> None:
    block = {k: v for k, v in BLOCK.items() if k != "transactions"}
    parsed = parse(labels, block=block, infos=[])
    assert parsed.transfers == [] and parsed.head.number == BLOCK["block_header"]["raw_data"]["number"]


def test_a_header_without_parent_is_malformed(labels: LabelRegistry) -> None:
    block = copy.deepcopy(BLOCK)
    del block["block_header"]["raw_data"]["parentHash"]
    with pytest.raises(MalformedBlock, match="parentHash"):
        parse(labels, block=block)


def test_decimals_are_learned_only_for_tokens_touching_labelled_wallets(labels: LabelRegistry) -> None:
    assert labelled_tokens(INFOS, labels.addresses("tron")) == {USDT, EXPECTED["odd_token"]}
    assert labelled_tokens(INFOS, frozenset()) == set()


def test_hex_labels_are_stored_as_base58(labels: LabelRegistry) -> None:
    assert all(w.address.startswith("T") for w in labels.wallets("tron"))
