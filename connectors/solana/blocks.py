"""Turn one Solana block (``getBlock``, jsonParsed, full transactions) into labelled transfers.

What counts as a transfer:

- SOL: system-program ``transfer`` / ``transferWithSeed`` instructions (``info.source`` →
  ``info.destination``, ``info.lamports``), asset ``native``, 9 decimals.
- SPL tokens (``spl-token`` and ``spl-token-2022``): ``transfer`` and ``transferChecked`` instructions. They
  move tokens between *token accounts*; the wallets are those accounts' owners, read from the transaction's
  ``pre``/``postTokenBalances`` (``accountIndex`` → ``owner``, ``mint``, ``decimals``). The asset is the mint.

Top-level and inner (CPI) instructions are read in execution order, and ``log_index`` is an instruction's
position in that order (top-level instruction, then its inner ones), so each transfer of a batched payout
transaction is its own event and re-reading a block gives the same ids. Failed transactions (``meta.err``)
moved nothing and are skipped. A transaction or instruction we cannot read is reported as
:class:`~connectors.linked_writer.Malformed` (dead letter) without stopping the block; a block without
the fields a head needs is a :class:`~connectors.feed.MalformedBlock` (read again, never skipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from connectors.labels import LabelRegistry
from connectors.linked_writer import LinkedBlock, Malformed, MalformedBlock, TransferWatch
from schemas.records import NATIVE_ASSET, ChainHead

LAMPORTS_DECIMALS = 9
SYSTEM_TRANSFERS = frozenset({"transfer", "transferWithSeed"})
TOKEN_PROGRAMS = frozenset({"spl-token", "spl-token-2022"})
TOKEN_TRANSFERS = frozenset({"transfer", "transferChecked"})


@dataclass(frozen=True, slots=True)
class TokenAccount:
    owner: str | None
    mint: str
    decimals: int


@dataclass(frozen=True, slots=True)
class Movement:
    """One value transfer found in a transaction."""

    log_index: int
    asset: str
    amount: int
    decimals: int
    sender: str
    recipient: str


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return int(value)


def parse_head(
    chain: str, slot: int, block: Any, received_at: float, fallback_time: int | None
) -> tuple[ChainHead, int]:
    """The block's head (number = slot, hash = blockhash) and its ``parentSlot``."""
    if not isinstance(block, dict):
        raise MalformedBlock(f"slot {slot}: block reply is {type(block).__name__}, not an object")
    try:
        block_hash, parent_hash = block["blockhash"], block["previousBlockhash"]
        parent_slot = _int(block["parentSlot"], "parentSlot")
        if not isinstance(block_hash, str) or not isinstance(parent_hash, str) or not block_hash:
            raise ValueError("blockhash and previousBlockhash must be text")
        raw_time = block.get("blockTime")
        block_time = _int(raw_time, "blockTime") if raw_time is not None else fallback_time
    except (KeyError, ValueError) as exc:
        raise MalformedBlock(f"slot {slot}: block header: {exc}") from None
    if parent_slot >= slot:
        raise MalformedBlock(f"slot {slot}: parentSlot {parent_slot} is not before it")
    if block_time is None:
        block_time = int(received_at)
    return ChainHead(chain, slot, block_hash, parent_hash, block_time, received_at), parent_slot


def parse_block(
    chain: str,
    slot: int,
    block: Any,
    labels: LabelRegistry,
    received_at: float,
    fallback_time: int | None = None,
    rotation: TransferWatch | None = None,
) -> LinkedBlock:
    """Labelled transfers of one block; ``fallback_time`` stands in for a missing ``blockTime``."""
    head, parent_slot = parse_head(chain, slot, block, received_at, fallback_time)
    parsed = LinkedBlock(head, parent_slot)
    if block.get("blockTime") is None:
        parsed.malformed.append(Malformed(f"blockTime is null; used {head.block_time}", head.hash))
    txs = block.get("transactions")
    if not isinstance(txs, list):
        raise MalformedBlock(f"slot {slot}: no transaction list (was it read with transactionDetails full?)")
    watched = labels.addresses(chain)
    for tx in txs:
        try:
            signature, movements, problems = _movements(tx)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            parsed.malformed.append(Malformed(f"transaction: {exc}", orjson.dumps(tx).decode()))
            continue
        parsed.malformed.extend(problems)
        for m in movements:
            parsed.observe(rotation, signature, m.asset, m.amount, m.sender, m.recipient)
            if m.sender in watched or m.recipient in watched:
                parsed.add_labelled(labels, signature, m.log_index, m.asset, m.amount, m.decimals, m.sender,
                                    m.recipient)
    return parsed


def _movements(tx: Any) -> tuple[str, list[Movement], list[Malformed]]:
    """(signature, transfers, unreadable instructions) of one transaction; failed ones move nothing."""
    if not isinstance(tx, dict):
        raise TypeError("transaction is not an object")
    meta = tx.get("meta")
    if not isinstance(meta, dict):
        raise ValueError("transaction has no meta (status unknown)")
    signature = tx["transaction"]["signatures"][0]
    if not isinstance(signature, str):
        raise ValueError(f"signature is not text: {signature!r}")
    if meta.get("err") is not None:
        return signature, [], []
    message = tx["transaction"]["message"]
    keys = [k["pubkey"] if isinstance(k, dict) else k for k in message["accountKeys"]]
    accounts = _token_accounts(meta, keys)
    movements: list[Movement] = []
    problems: list[Malformed] = []
    for index, instruction in _in_execution_order(message["instructions"], meta.get("innerInstructions")):
        try:
            found = _movement(index, instruction, accounts)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            problems.append(Malformed(f"transaction {signature} instruction {index}: {exc}",
                                      orjson.dumps(instruction).decode()))
            continue
        if found is not None and found.amount > 0:
            movements.append(found)
    return signature, movements, problems


def _token_accounts(meta: dict[str, Any], keys: list[Any]) -> dict[str, TokenAccount]:
    """Token account → (owner, mint, decimals), from the balances before and after the transaction."""
    accounts: dict[str, TokenAccount] = {}
    for balance in [*(meta.get("preTokenBalances") or []), *(meta.get("postTokenBalances") or [])]:
        account = keys[_int(balance["accountIndex"], "accountIndex")]
        owner = balance.get("owner")
        accounts[str(account)] = TokenAccount(
            owner if isinstance(owner, str) else None, str(balance["mint"]),
            _int(balance["uiTokenAmount"]["decimals"], "decimals"),
        )
    return accounts


def _in_execution_order(top: list[Any], inner: Any) -> Iterator[tuple[int, Any]]:
    """Top-level instructions, each followed by its inner (CPI) instructions, numbered from 0."""
    by_parent: dict[int, list[Any]] = {}
    for group in inner or []:
        by_parent[_int(group["index"], "innerInstructions.index")] = list(group["instructions"])
    position = 0
    for i, instruction in enumerate(top):
        yield position, instruction
        position += 1
        for nested in by_parent.get(i, []):
            yield position, nested
            position += 1


def _movement(index: int, instruction: Any, accounts: dict[str, TokenAccount]) -> Movement | None:
    parsed = instruction.get("parsed") if isinstance(instruction, dict) else None
    if not isinstance(parsed, dict):
        return None  # a program jsonParsed does not decode: not a system or token transfer
    program, kind, info = instruction.get("program"), parsed.get("type"), parsed.get("info")
    system = program == "system" and kind in SYSTEM_TRANSFERS
    if not system and (program not in TOKEN_PROGRAMS or kind not in TOKEN_TRANSFERS):
        return None
    if not isinstance(info, dict):
        raise ValueError(f"{program} {kind} instruction without info")
    if system:
        return Movement(index, NATIVE_ASSET, _int(info["lamports"], "lamports"), LAMPORTS_DECIMALS,
                        str(info["source"]), str(info["destination"]))
    source, destination = str(info["source"]), str(info["destination"])
    src, dst = accounts.get(source), accounts.get(destination)
    known = src or dst
    if kind == "transferChecked":
        amount = _int(info["tokenAmount"]["amount"], "tokenAmount.amount")
        decimals = _int(info["tokenAmount"]["decimals"], "tokenAmount.decimals")
        mint = str(info["mint"])
    else:
        if known is None:
            raise ValueError(f"token accounts {source} and {destination} are not in the token balances")
        amount, decimals, mint = _int(info["amount"], "amount"), known.decimals, known.mint
    authority = info.get("authority") or info.get("multisigAuthority")
    sender = src.owner if src is not None and src.owner else authority
    if not isinstance(sender, str):
        raise ValueError(f"owner of token account {source} unknown")
    recipient = dst.owner if dst is not None and dst.owner else destination
    return Movement(index, mint, amount, decimals, sender, recipient)
