"""Turn one Tron block (``getblockbynum`` + ``gettransactioninfobyblocknum``) into labelled transfers.

- TRX: ``TransferContract`` transactions whose ``ret[0].contractRet`` is ``SUCCESS``: ``owner_address`` →
  ``to_address``, ``amount`` in sun; asset ``native``, 6 decimals, ``log_index`` -1 (no log).
- TRC-20 (USDT and others): ``Transfer(address,address,uint256)`` logs of successful transactions' receipts.
  A log's ``address`` is the token contract (20 bytes of hex, the ``41`` prefix left out), its topics carry
  the two addresses in their last 20 bytes, its ``data`` the amount. ``log_index`` is the log's position in
  its transaction's receipt (the API gives no block-wide index), so re-reading gives the same ids.

Every address is published as base58check ``T…``, the form people and explorers use. The receipts are
checked against the block: a receipt of a transaction the block does not contain means the block changed
between the two calls (a fork), and the block is read again (:class:`~connectors.feed.MalformedBlock`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import orjson

from connectors.addresses import tron_from_hex
from connectors.labels import LabelRegistry
from connectors.linked_writer import LinkedBlock, Malformed, MalformedBlock, TransferWatch
from connectors.tron.api import block_number
from schemas.records import NATIVE_ASSET, NATIVE_LOG_INDEX, ChainHead

TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
"""keccak256("Transfer(address,address,uint256)"), as Tron writes topics: no 0x."""
SUN_DECIMALS = 6


def parse_head(chain: str, block: Any, received_at: float) -> ChainHead:
    number = block_number(block)
    try:
        raw = block["block_header"]["raw_data"]
        block_id, parent, millis = block["blockID"], raw["parentHash"], raw["timestamp"]
        if number is None or not isinstance(block_id, str) or not isinstance(parent, str):
            raise ValueError("number, blockID and parentHash are required")
        if not isinstance(millis, int) or isinstance(millis, bool):
            raise ValueError(f"timestamp must be milliseconds, got {millis!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedBlock(f"block header: {exc}") from None
    return ChainHead(chain, number, block_id.lower(), parent.lower(), millis // 1000, received_at)


def _word_address(topic: Any) -> str:
    if not isinstance(topic, str) or len(topic.removeprefix("0x")) != 64:
        raise ValueError(f"topic is not 32 bytes of hex: {topic!r}")
    return tron_from_hex(topic[-40:])


def parse_block(
    chain: str,
    block: Any,
    infos: Any,
    labels: LabelRegistry,
    decimals_of: Callable[[str], int],
    received_at: float,
    tokens: Collection[str] | None = None,
    rotation: TransferWatch | None = None,
) -> LinkedBlock:
    """Labelled TRX and TRC-20 transfers of one block (``tokens``: TRC-20 contracts of interest, None = all)."""
    head = parse_head(chain, block, received_at)
    parsed = LinkedBlock(head, head.number - 1)

    def emit(tx_hash: str, log_index: int, asset: str, amount: int, decimals: int, src: str, dst: str) -> None:
        parsed.observe(rotation, tx_hash, asset, amount, src, dst)
        parsed.add_labelled(labels, tx_hash, log_index, asset, amount, decimals, src, dst)

    txs = block.get("transactions", [])
    if not isinstance(txs, list):
        raise MalformedBlock(f"block {head.number}: transactions is not a list")
    tx_ids = set()
    for tx in txs:
        try:
            tx_ids.add(str(tx["txID"]).lower())
            _native(tx, emit)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            parsed.malformed.append(Malformed(f"transaction: {exc}", orjson.dumps(tx).decode()))
    if not isinstance(infos, list):
        raise MalformedBlock(f"block {head.number}: transaction infos are not a list")
    for info in infos:
        try:
            if str(info["id"]).lower() not in tx_ids or info.get("blockNumber", head.number) != head.number:
                raise MalformedBlock(f"block {head.number}: receipt of {info['id']} is not in this block "
                                     "(the block changed while read)")
            for problem in _token_transfers(info, tokens, decimals_of, emit):
                parsed.malformed.append(problem)
        except (KeyError, TypeError) as exc:
            parsed.malformed.append(Malformed(f"transaction info: {exc}", orjson.dumps(info).decode()))
    return parsed


Emit = Callable[[str, int, str, int, int, str, str], None]


def _native(tx: Any, emit: Emit) -> None:
    contract = tx["raw_data"]["contract"][0]
    if contract.get("type") != "TransferContract":
        return
    result = (tx.get("ret") or [{}])[0].get("contractRet")
    if result != "SUCCESS":
        return
    value = contract["parameter"]["value"]
    amount = value["amount"]
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"amount must be a positive integer, got {amount!r}")
    emit(str(tx["txID"]).lower(), NATIVE_LOG_INDEX, NATIVE_ASSET, amount, SUN_DECIMALS,
         tron_from_hex(value["owner_address"]), tron_from_hex(value["to_address"]))


def _token_transfers(info: Any, tokens: Collection[str] | None, decimals_of: Callable[[str], int],
                     emit: Emit) -> list[Malformed]:
    """Emit the Transfer logs of one successful receipt; the logs we could not read are returned."""
    receipt = info.get("receipt") or {}
    if receipt.get("result", "SUCCESS") != "SUCCESS" or info.get("result") == "FAILED":
        return []
    problems = []
    tx_hash = str(info["id"]).lower()
    for index, entry in enumerate(info.get("log") or []):
        try:
            topics = entry.get("topics")
            if not isinstance(topics, list) or not topics or str(topics[0]).removeprefix("0x") != TRANSFER_TOPIC:
                continue
            if len(topics) != 3:
                continue  # TRC-721 Transfer has the token id as a 4th topic: not a fungible amount
            token = tron_from_hex(str(entry["address"]))
            if tokens is not None and token not in tokens:
                continue
            data = str(entry.get("data", "")).removeprefix("0x")
            if len(data) != 64:
                raise ValueError(f"TRC-20 Transfer data must be one 32-byte word, got {data!r}")
            emit(tx_hash, index, token, int(data, 16), decimals_of(token), _word_address(topics[1]),
                 _word_address(topics[2]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(Malformed(f"transaction {tx_hash} log {index}: {exc}", orjson.dumps(entry).decode()))
    return problems


def labelled_tokens(infos: Any, watched: Collection[str]) -> set[str]:
    """TRC-20 contracts with a Transfer touching a labelled address in these receipts (to learn decimals first)."""
    found = set()
    for info in infos if isinstance(infos, list) else []:
        for entry in (info.get("log") or []) if isinstance(info, dict) else []:
            topics = entry.get("topics") if isinstance(entry, dict) else None
            if not isinstance(topics, list) or len(topics) != 3 or str(topics[0]).removeprefix("0x") != TRANSFER_TOPIC:
                continue
            try:
                if _word_address(topics[1]) in watched or _word_address(topics[2]) in watched:
                    found.add(tron_from_hex(str(entry.get("address"))))
            except ValueError:
                continue  # reported when the block is parsed
    return found
