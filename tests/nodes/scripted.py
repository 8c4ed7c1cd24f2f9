"""Fake nodes that serve a simulated exchange (:mod:`bench.exchange_sim`) in each family's documented shapes.

Each block holds the script's moves for it, written the way that family's node writes a plain transfer:
a Tron ``TransferContract``; a Solana system-program ``transfer`` (jsonParsed); a Bitcoin transaction per
payer per block, spending the payer's address and, for wallets that keep a balance, returning the change to
it (deposit addresses are swept whole). Blocks are produced by the test (``produce``) as on the other nodes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bench.exchange_sim import ExchangeSim, Move, address_for
from connectors.addresses import b58encode, tron_to_hex
from tests.nodes.esplora_node import EsploraNode
from tests.nodes.solana_node import SolanaNode
from tests.nodes.tron_node import TronNode

START_TIME = 1_750_000_000
SYSTEM_PROGRAM = "11111111111111111111111111111111"


def _time(sim: ExchangeSim, index: int) -> int:
    return START_TIME + index * sim.block_time_s


def _moves(sim: ExchangeSim, index: int) -> list[Move]:
    return sim.blocks[index] if 0 <= index < len(sim.blocks) else []


class ScriptedTron(TronNode):
    def __init__(self, sim: ExchangeSim, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sim = sim

    def make_block(self, number: int) -> dict[str, Any]:
        index = number - self.first
        parent = self.chain[-1]["block"]["blockID"] if self.chain else f"{number - 1:016x}" + "00" * 24
        block_id = f"{number:016x}" + hashlib.sha256(f"sim {number}:{self.salt}".encode()).hexdigest()[:48]
        millis = _time(self.sim, index) * 1000
        txs = [{
            "txID": hashlib.sha256(f"{block_id}:{n}".encode()).hexdigest(),
            "ret": [{"contractRet": "SUCCESS"}],
            "raw_data": {"contract": [{"type": "TransferContract", "parameter": {"type_url": "type.googleapis.com/"
                         "protocol.TransferContract", "value": {
                             "owner_address": tron_to_hex(address_for("tron", m.sender)),
                             "to_address": tron_to_hex(address_for("tron", m.recipient)), "amount": m.amount}}}],
                         "timestamp": millis},
        } for n, m in enumerate(_moves(self.sim, index))]
        block: dict[str, Any] = {"blockID": block_id, "block_header": {"raw_data": {
            "number": number, "txTrieRoot": "00" * 32, "witness_address": "41" + "ab" * 20, "parentHash": parent,
            "version": 31, "timestamp": millis}, "witness_signature": "12" * 65}}
        if txs:
            block["transactions"] = txs
        return {"block": block, "infos": []}


class ScriptedEsplora(EsploraNode):
    def __init__(self, sim: ExchangeSim, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sim = sim

    def make_block(self, height: int) -> dict[str, Any]:
        index = height - self.first
        parent = self.chain[-1]["block"]["id"] if self.chain else "00" * 32
        block_hash = "0000000000000000000" + hashlib.sha256(f"sim {height}:{self.salt}".encode()).hexdigest()[19:]
        when = _time(self.sim, index)
        by_payer: dict[str, list[Move]] = {}
        for m in _moves(self.sim, index):
            by_payer.setdefault(m.sender, []).append(m)
        txs = [self._coinbase(block_hash, height, when)]
        for n, (payer, moves) in enumerate(by_payer.items()):
            spent = address_for("bitcoin", payer)
            paid = sum(m.amount for m in moves)
            vout = [{"scriptpubkey_address": address_for("bitcoin", m.recipient), "value": m.amount,
                     "scriptpubkey_type": "v0_p2wpkh"} for m in moves]
            keeps_balance = not payer.startswith(("deposit-", "trader-"))
            if keeps_balance:
                vout.append({"scriptpubkey_address": spent, "value": paid, "scriptpubkey_type": "v0_p2wpkh"})
            txs.append({
                "txid": hashlib.sha256(f"{block_hash}:{n}".encode()).hexdigest(),
                "vin": [{"txid": "11" * 32, "vout": 0, "is_coinbase": False,
                         "prevout": {"scriptpubkey_address": spent, "value": paid * 2 + 1000}}],
                "vout": vout,
                "status": {"confirmed": True, "block_height": height, "block_hash": block_hash, "block_time": when},
            })
        block = {"id": block_hash, "height": height, "version": 536870912, "timestamp": when, "tx_count": len(txs),
                 "size": 1000 * len(txs), "weight": 4000 * len(txs), "merkle_root": "00" * 32,
                 "previousblockhash": parent, "mediantime": when - 600, "nonce": 1, "bits": 386089497,
                 "difficulty": 1.0e14}
        return {"block": block, "txs": txs}

    @staticmethod
    def _coinbase(block_hash: str, height: int, when: int) -> dict[str, Any]:
        return {"txid": hashlib.sha256(f"{block_hash}:coinbase".encode()).hexdigest(),
                "vin": [{"is_coinbase": True, "prevout": None}],
                "vout": [{"scriptpubkey_address": address_for("bitcoin", "miner"), "value": 312_500_000}],
                "status": {"confirmed": True, "block_height": height, "block_hash": block_hash, "block_time": when}}


class ScriptedSolana(SolanaNode):
    def __init__(self, sim: ExchangeSim, **kwargs: Any) -> None:
        super().__init__(skipped=lambda slot: slot % 7 == 3, **kwargs)
        self.sim = sim
        self.made = 0
        """Blocks made so far: the script's blocks go to produced slots in turn (skipped slots hold none)."""

    def _block(self, slot: int) -> dict[str, Any]:
        index, self.made = self.made, self.made + 1
        block_hash = b58encode(hashlib.sha256(f"sim block {slot}".encode()).digest())
        txs = []
        for n, m in enumerate(_moves(self.sim, index)):
            source, destination = address_for("solana", m.sender), address_for("solana", m.recipient)
            txs.append({
                "meta": {"err": None, "fee": 5000, "preBalances": [], "postBalances": [], "preTokenBalances": [],
                         "postTokenBalances": [], "innerInstructions": []},
                "transaction": {"signatures": [b58encode(hashlib.sha512(f"{slot}:{n}".encode()).digest())],
                                "message": {"accountKeys": [source, destination, SYSTEM_PROGRAM], "instructions": [{
                                    "program": "system", "programId": SYSTEM_PROGRAM, "parsed": {
                                        "type": "transfer", "info": {"source": source, "destination": destination,
                                                                     "lamports": m.amount}}}]}},
            })
        block = {"blockHeight": slot - 100, "blockTime": _time(self.sim, index), "blockhash": block_hash,
                 "parentSlot": self.parent_slot, "previousBlockhash": self.parent_hash, "transactions": txs}
        self.parent_slot, self.parent_hash = slot, block_hash
        return block
