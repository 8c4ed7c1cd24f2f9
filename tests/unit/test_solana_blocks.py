"""Solana block parsing replayed from a getBlock reply in its documented jsonParsed shape."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.labels import LabelRegistry
from connectors.linked_writer import MalformedBlock
from connectors.rotation import RotationWatch
from connectors.solana.blocks import parse_block
from schemas.records import NATIVE_ASSET

FIXTURES = Path(__file__).parents[1] / "fixtures" / "solana"
BLOCK: dict[str, Any] = json.loads((FIXTURES / "block.json").read_text())
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())
SLOT = EXPECTED["slot"]


@pytest.fixture
def labels() -> LabelRegistry:
    return LabelRegistry.from_files([FIXTURES / "labels.toml"])


def rows(parsed: Any) -> list[list[Any]]:
    return [[t.tx_hash, t.log_index, t.asset, t.amount, t.decimals, t.from_address, t.to_address, t.exchange,
             t.direction.value] for t in parsed.transfers]


def test_the_block_gives_exactly_the_documented_transfers(labels: LabelRegistry) -> None:
    parsed = parse_block("solana", SLOT, BLOCK, labels, 1.0)
    assert rows(parsed) == EXPECTED["transfers"]
    assert len(parsed.malformed) == EXPECTED["malformed"] and "signatures" in parsed.malformed[0].reason


def test_the_head_is_the_slot_with_its_blockhash_and_parent(labels: LabelRegistry) -> None:
    parsed = parse_block("solana", SLOT, BLOCK, labels, 1.0)
    head = parsed.head
    assert (head.number, head.hash, head.parent_hash, head.block_time) == (
        SLOT, BLOCK["blockhash"], BLOCK["previousBlockhash"], BLOCK["blockTime"])
    assert parsed.parent_number == BLOCK["parentSlot"]
    assert all(t.block_number == SLOT and t.block_hash == BLOCK["blockhash"] for t in parsed.transfers)


def test_failed_transactions_and_votes_move_nothing(labels: LabelRegistry) -> None:
    parsed = parse_block("solana", SLOT, BLOCK, labels, 1.0)
    failed = BLOCK["transactions"][4]["transaction"]["signatures"][0]
    assert failed not in {t.tx_hash for t in parsed.transfers}


def test_addresses_are_case_sensitive(labels: LabelRegistry) -> None:
    hot = labels.wallets("solana")[0].address
    assert labels.lookup("solana", hot) is not None
    assert labels.lookup("solana", hot.swapcase()) is None


def test_a_missing_block_time_falls_back_and_is_reported(labels: LabelRegistry) -> None:
    block = {**BLOCK, "blockTime": None}
    parsed = parse_block("solana", SLOT, block, labels, 5.0, fallback_time=1_731_999_999)
    assert parsed.head.block_time == 1_731_999_999
    assert any("blockTime is null" in m.reason for m in parsed.malformed)


@pytest.mark.parametrize("field", ["blockhash", "previousBlockhash", "parentSlot"])
def test_a_block_without_its_links_is_malformed_not_skipped(labels: LabelRegistry, field: str) -> None:
    block = {k: v for k, v in BLOCK.items() if k != field}
    with pytest.raises(MalformedBlock, match=field):
        parse_block("solana", SLOT, block, labels, 1.0)


def test_a_block_whose_parent_is_not_before_it_is_malformed(labels: LabelRegistry) -> None:
    with pytest.raises(MalformedBlock, match="not before"):
        parse_block("solana", SLOT, {**BLOCK, "parentSlot": SLOT}, labels, 1.0)


def test_an_unreadable_instruction_is_dead_lettered_and_the_others_kept(labels: LabelRegistry) -> None:
    block = copy.deepcopy(BLOCK)
    batch = block["transactions"][1]["transaction"]["message"]["instructions"]
    del batch[0]["parsed"]["info"]["lamports"]
    parsed = parse_block("solana", SLOT, block, labels, 1.0)
    assert len(rows(parsed)) == len(EXPECTED["transfers"]) - 1
    assert any("instruction 0" in m.reason and "lamports" in m.reason for m in parsed.malformed)


def test_rotation_watch_sees_a_large_funding_of_a_fresh_address(labels: LabelRegistry) -> None:
    watch = RotationWatch("solana", lambda: labels, {NATIVE_ASSET: 100 * 10**9}, min_recipients=1)
    parse_block("solana", SLOT, BLOCK, labels, 1.0, rotation=watch)
    # the only large transfer goes to the exchange's own cold wallet: no fresh address is watched, only
    # known wallets not labelled hot (which may turn out to pay users)
    assert [e.link for e in watch.book.candidates.values() if not e.link.startswith("labelled ")] == []
