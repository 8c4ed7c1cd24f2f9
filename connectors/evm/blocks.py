"""Turn one EVM block (header, transactions, Transfer logs) into labelled transfer events.

Parsing is separate from fetching so recorded node replies can be replayed in tests. Anything the node
sends that does not have the documented shape is reported as a :class:`~connectors.linked_writer.Malformed`
item with its raw JSON rather than raised, so one odd log does not stop a chain; a malformed *block* is an
error, because skipping it would open a gap that looks like silence. A block's parent is the number just below
it, which makes the EVM case the simplest of the parent-linked blocks the writer publishes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from connectors.labels import LabelRegistry
from connectors.linked_writer import LinkedBlock, Malformed, MalformedBlock, TransferWatch
from schemas.records import NATIVE_ASSET, NATIVE_LOG_INDEX, ChainHead

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
"""keccak256("Transfer(address,address,uint256)")."""


def hex_int(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{name}: expected a 0x-prefixed hex quantity, got {value!r}")
    return int(value, 16)


def hex_field(obj: Any, name: str) -> int | None:
    """The 0x quantity ``obj[name]`` of a JSON object; None when ``obj`` is no object or the field no quantity."""
    if not isinstance(obj, dict):
        return None
    try:
        return hex_int(obj.get(name), name)
    except ValueError:
        return None


def _topic_address(topic: str) -> str:
    if not isinstance(topic, str) or len(topic) != 66:
        raise ValueError(f"topic is not 32 bytes of hex: {topic!r}")
    return "0x" + topic[-40:].lower()


def parse_header(chain: str, block: Any, received_at: float) -> ChainHead:
    if not isinstance(block, dict):
        raise MalformedBlock(f"block reply is {type(block).__name__}, not an object")
    try:
        return ChainHead(
            chain=chain,
            number=hex_int(block.get("number"), "number"),
            hash=str(block["hash"]).lower(),
            parent_hash=str(block["parentHash"]).lower(),
            block_time=hex_int(block.get("timestamp"), "timestamp"),
            received_at=received_at,
        )
    except (KeyError, ValueError) as exc:
        raise MalformedBlock(f"block header: {exc}") from None


def parse_block(
    chain: str,
    block: Any,
    logs: Any,
    failed_txs: set[str],
    labels: LabelRegistry,
    decimals_of: Callable[[str], int],
    received_at: float,
    native_decimals: int = 18,
    rotation: TransferWatch | None = None,
) -> LinkedBlock:
    """Labelled transfers of one block: native-coin transfers from its transactions, then token logs.

    ``failed_txs`` are the hashes of transactions that reverted; their value never moved. Every transfer,
    labelled or not, is shown to ``rotation`` (hot-wallet rotation watch), whose suggestions ride along.
    Reverts are only known for transactions touching labelled wallets, so a reverted payout from a
    rotation candidate still counts toward its suggestion: a suggestion is a hint, never a label.
    """
    head = parse_header(chain, block, received_at)
    parsed = LinkedBlock(head, head.number - 1)

    def emit(tx_hash: str, log_index: int, asset: str, amount: int, decimals: int, src: str, dst: str) -> None:
        parsed.observe(rotation, tx_hash, asset, amount, src, dst)
        parsed.add_labelled(labels, tx_hash, log_index, asset, amount, decimals, src, dst)

    txs = block.get("transactions")
    if not isinstance(txs, list):
        raise MalformedBlock("block has no transaction list (was it fetched with full transactions?)")
    for tx in txs:
        try:
            if not isinstance(tx, dict):
                raise ValueError("transaction is not an object (fetch blocks with full transactions)")
            value = hex_int(tx.get("value", "0x0"), "value")
            recipient = tx.get("to")
            if value == 0 or recipient is None:
                continue
            tx_hash = str(tx["hash"]).lower()
            if tx_hash in failed_txs:
                continue
            src, dst = str(tx["from"]).lower(), str(recipient).lower()
            emit(tx_hash, NATIVE_LOG_INDEX, NATIVE_ASSET, value, native_decimals, src, dst)
        except (KeyError, ValueError) as exc:
            parsed.malformed.append(Malformed(f"transaction: {exc}", orjson.dumps(tx).decode()))

    if not isinstance(logs, list):
        raise MalformedBlock(f"logs reply is {type(logs).__name__}, not a list")
    for log in logs:
        try:
            if not isinstance(log, dict):
                raise ValueError("log is not an object")
            topics = log.get("topics")
            if not isinstance(topics, list) or not topics or topics[0] != TRANSFER_TOPIC:
                continue
            if len(topics) != 3:
                continue  # ERC-721 Transfer has the token id as a 4th topic: not a fungible amount
            if str(log.get("blockHash", head.hash)).lower() != head.hash:
                raise ValueError("log belongs to another block")
            data = log.get("data")
            if not isinstance(data, str) or not data.startswith("0x") or len(data) != 66:
                raise ValueError(f"ERC-20 Transfer data must be one 32-byte word, got {data!r}")
            if log.get("removed") is True:
                continue
            token = str(log["address"]).lower()
            emit(
                str(log["transactionHash"]).lower(),
                hex_int(log.get("logIndex"), "logIndex"),
                token,
                int(data, 16),
                decimals_of(token),
                _topic_address(topics[1]),
                _topic_address(topics[2]),
            )
        except (KeyError, ValueError) as exc:
            parsed.malformed.append(Malformed(f"Transfer log: {exc}", orjson.dumps(log).decode()))
    return parsed
