"""Turn one Bitcoin block (Esplora block + its transactions) into labelled transfers.

Bitcoin has no "from" and "to": a transaction spends inputs (``vin[].prevout``) and creates outputs
(``vout[]``). For each exchange, a transaction spending one of its labelled addresses is a payment by that
exchange, and each *output to an address outside that exchange* is one transfer (``log_index`` = the
output's index, asset ``native``, 8 decimals, amount in sats): a withdrawal when the spent wallet is hot.
Outputs back to the same exchange (change, consolidation, hot↔cold moves) are not transfers: the
exchange paid nobody. An output to a labelled address of another exchange is that exchange's deposit
(and the payer's withdrawal, if the payer is an exchange too). ``from_address`` is the exchange's spent
address (a hot one when several of its addresses are spent), or the transaction's first input address for
a deposit from outside. Coinbase transactions have no spent address; outputs without an address
(``OP_RETURN``) or of value 0 carry nothing anyone withdraws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from connectors.labels import LabelRegistry, Role, Wallet
from connectors.linked_writer import LinkedBlock, Malformed, MalformedBlock, TransferWatch
from schemas.records import NATIVE_ASSET, ChainHead, Direction, TransferEvent

SATS_DECIMALS = 8
COINBASE = "coinbase"
"""``from_address`` of a deposit paid straight from a coinbase output (a miner paying an exchange)."""
NO_PARENT = "0" * 64


@dataclass(frozen=True, slots=True)
class Output:
    index: int
    address: str
    value: int


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return value


def parse_head(chain: str, block: Any, received_at: float) -> ChainHead:
    if not isinstance(block, dict):
        raise MalformedBlock(f"block reply is {type(block).__name__}, not an object")
    try:
        block_hash = block["id"]
        parent = block.get("previousblockhash") or NO_PARENT
        if not isinstance(block_hash, str) or not isinstance(parent, str):
            raise ValueError("id and previousblockhash must be text")
        return ChainHead(chain, _int(block["height"], "height"), block_hash.lower(), parent.lower(),
                         _int(block["timestamp"], "timestamp"), received_at)
    except (KeyError, ValueError) as exc:
        raise MalformedBlock(f"block header: {exc}") from None


def parse_block(
    chain: str, block: Any, txs: Any, labels: LabelRegistry, received_at: float,
    rotation: TransferWatch | None = None,
) -> LinkedBlock:
    """Labelled transfers of one block; ``txs`` must be all of its transactions (``tx_count``)."""
    head = parse_head(chain, block, received_at)
    parsed = LinkedBlock(head, head.number - 1)
    if not isinstance(txs, list) or len(txs) != block.get("tx_count"):
        got = len(txs) if isinstance(txs, list) else type(txs).__name__
        raise MalformedBlock(f"block {head.number}: {got} transactions read, tx_count says {block.get('tx_count')}")
    for tx in txs:
        try:
            txid, inputs, outputs = _read_tx(tx)
        except (KeyError, TypeError, ValueError) as exc:
            parsed.malformed.append(Malformed(f"transaction: {exc}", orjson.dumps(tx).decode()))
            continue
        if inputs:
            spent = set(inputs)
            for out in outputs:  # change back to a spent address is shown as a self-transfer: the payer revealed
                sender = out.address if out.address in spent else inputs[0]
                parsed.observe(rotation, txid, NATIVE_ASSET, out.value, sender, out.address)
        parsed.transfers += _transfers(chain, head, txid, inputs, outputs, labels)
    return parsed


def _read_tx(tx: Any) -> tuple[str, list[str], list[Output]]:
    """(txid, spent addresses in input order, outputs with an address and value)."""
    if not isinstance(tx, dict):
        raise TypeError("transaction is not an object")
    txid = tx["txid"]
    if not isinstance(txid, str):
        raise ValueError(f"txid is not text: {txid!r}")
    inputs = []
    for vin in tx["vin"]:
        prevout = vin.get("prevout")
        if vin.get("is_coinbase") or prevout is None:
            continue
        address = prevout.get("scriptpubkey_address")
        if isinstance(address, str):
            inputs.append(address)
    outputs = []
    for index, vout in enumerate(tx["vout"]):
        value = _int(vout["value"], f"vout {index} value")
        address = vout.get("scriptpubkey_address")
        if isinstance(address, str) and value > 0:
            outputs.append(Output(index, address, value))
    return txid.lower(), inputs, outputs


def _payers(chain: str, inputs: list[str], labels: LabelRegistry) -> dict[str, tuple[str, Wallet]]:
    """Exchange → (its spent address, wallet), preferring a hot wallet when several of its addresses are spent."""
    payers: dict[str, tuple[str, Wallet]] = {}
    for address in inputs:
        wallet = labels.lookup(chain, address)
        if wallet is None:
            continue
        known = payers.get(wallet.exchange)
        if known is None or (known[1].role is not Role.HOT and wallet.role is Role.HOT):
            payers[wallet.exchange] = (address, wallet)
    return payers


def _transfers(chain: str, head: ChainHead, txid: str, inputs: list[str], outputs: list[Output],
               labels: LabelRegistry) -> list[TransferEvent]:
    payers = _payers(chain, inputs, labels)
    found: list[TransferEvent] = []

    def event(out: Output, sender: str, exchange: str, direction: Direction) -> TransferEvent:
        return TransferEvent(
            chain=chain, block_number=head.number, block_hash=head.hash, block_time=head.block_time, tx_hash=txid,
            log_index=out.index, asset=NATIVE_ASSET, amount=str(out.value), decimals=SATS_DECIMALS,
            from_address=sender, to_address=out.address, exchange=exchange, direction=direction,
        )

    for out in outputs:
        recipient = labels.lookup(chain, out.address)
        for exchange, (address, wallet) in payers.items():
            if recipient is not None and recipient.exchange == exchange:
                continue  # change or an internal move: the exchange paid nobody
            if wallet.role is Role.HOT:
                found.append(event(out, address, exchange, Direction.WITHDRAWAL))
        if recipient is not None and recipient.exchange not in payers:
            sender = next(iter(payers.values()))[0] if payers else (inputs[0] if inputs else COINBASE)
            found.append(event(out, sender, recipient.exchange, Direction.DEPOSIT))
    return found
