"""How the reader gets receipts, replayed from the recorded anvil block (tests/fixtures/evm/block.json).

A block with several labelled native transfers is read with one ``eth_getBlockReceipts`` call; a node
without that method is asked per transaction from then on; a receipt of another block means the block
changed under us, whichever way it was read.
"""

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.evm import reader as reader_module
from connectors.evm.config import EvmChainConfig
from connectors.evm.reader import BlockChanged, BlockReader
from connectors.evm.rpc import RpcError
from connectors.labels import LabelRegistry

FIXTURES = Path(__file__).parents[1] / "fixtures" / "evm"


class RecordedNode:
    """Answers receipt calls from the recorded block; counts what it was asked."""

    def __init__(self, recorded: dict[str, Any], block_receipts: bool = True) -> None:
        self.receipts = {r["transactionHash"].lower(): r for r in recorded["receipts"]}
        self.block_receipts_supported = block_receipts
        self.calls: list[str] = []

    async def receipt(self, tx_hash: str) -> Any:
        self.calls.append("eth_getTransactionReceipt")
        return self.receipts.get(tx_hash.lower())

    async def block_receipts(self, block_hash: str) -> Any:
        self.calls.append("eth_getBlockReceipts")
        if not self.block_receipts_supported:
            raise RpcError("eth_getBlockReceipts", -32601, "Method not found")
        return [r for r in self.receipts.values() if r["blockHash"].lower() == block_hash.lower()]


@pytest.fixture
def recorded() -> dict[str, Any]:
    return orjson.loads((FIXTURES / "block.json").read_bytes())


@pytest.fixture
def labels() -> LabelRegistry:
    return LabelRegistry.from_files([FIXTURES / "labels.toml"])


def reader_for(node: RecordedNode, labels: LabelRegistry) -> BlockReader:
    config = EvmChainConfig(chain="ethereum", ws_urls=("ws://unused",))
    return BlockReader(node, config, lambda: labels, {}, lambda: 0.0)  # type: ignore[arg-type]


def failed(reader: BlockReader, block: dict[str, Any], labels: LabelRegistry) -> set[str]:
    return asyncio.run(reader._failed_transactions(block, labels))


def candidates(recorded: dict[str, Any], labels: LabelRegistry) -> int:
    watched = labels.addresses("ethereum")
    return sum(1 for tx in recorded["block"]["transactions"] if tx.get("value") not in (None, "0x0")
               and (tx["from"].lower() in watched or str(tx.get("to", "")).lower() in watched))


def reverted(recorded: dict[str, Any]) -> set[str]:
    return {r["transactionHash"].lower() for r in recorded["receipts"] if r["status"] == "0x0"}


def test_many_candidates_are_read_in_one_call(recorded, labels, monkeypatch):
    monkeypatch.setattr(reader_module, "BLOCK_RECEIPTS_FROM", 2)
    assert candidates(recorded, labels) >= 2
    node = RecordedNode(recorded)
    reader = reader_for(node, labels)
    assert failed(reader, recorded["block"], labels) == reverted(recorded) & _candidate_hashes(recorded, labels)
    assert node.calls == ["eth_getBlockReceipts"]


def test_a_node_without_block_receipts_is_asked_per_transaction_from_then_on(recorded, labels, monkeypatch):
    monkeypatch.setattr(reader_module, "BLOCK_RECEIPTS_FROM", 2)
    node = RecordedNode(recorded, block_receipts=False)
    reader = reader_for(node, labels)
    n = candidates(recorded, labels)
    expected = reverted(recorded) & _candidate_hashes(recorded, labels)
    assert failed(reader, recorded["block"], labels) == expected
    assert node.calls == ["eth_getBlockReceipts"] + ["eth_getTransactionReceipt"] * n
    node.calls.clear()
    assert failed(reader, recorded["block"], labels) == expected
    assert node.calls == ["eth_getTransactionReceipt"] * n, "the unsupported method is not asked again"


def test_few_candidates_are_asked_one_by_one(recorded, labels, monkeypatch):
    monkeypatch.setattr(reader_module, "BLOCK_RECEIPTS_FROM", 10**6)
    node = RecordedNode(recorded)
    failed(reader_for(node, labels), recorded["block"], labels)
    assert node.calls == ["eth_getTransactionReceipt"] * candidates(recorded, labels)


@pytest.mark.parametrize("threshold", [2, 10**6])
def test_a_receipt_of_another_block_means_the_block_changed(recorded, labels, monkeypatch, threshold):
    monkeypatch.setattr(reader_module, "BLOCK_RECEIPTS_FROM", threshold)
    block = {**recorded["block"], "hash": "0x" + "ab" * 32}  # the same transactions, now in another block
    with pytest.raises(BlockChanged):
        failed(reader_for(RecordedNode(recorded), labels), block, labels)


def _candidate_hashes(recorded: dict[str, Any], labels: LabelRegistry) -> set[str]:
    watched = labels.addresses("ethereum")
    return {tx["hash"].lower() for tx in recorded["block"]["transactions"] if tx.get("value") not in (None, "0x0")
            and (tx["from"].lower() in watched or str(tx.get("to", "")).lower() in watched)}
