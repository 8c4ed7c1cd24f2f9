"""The node oracle: the canonical labelled transfers of a block range, read straight from an EVM node.

Fault tests compare what the pipeline stored and published with this, so it must not share code with the
pipeline it judges: it reads the label file with ``tomllib`` (not ``connectors.labels``), fetches blocks,
receipts and logs with plain JSON-RPC calls, and classifies with the rules the README states:

- a transfer from a *hot* wallet of exchange X to an address that is not X's is X's withdrawal;
- a transfer into any wallet of X from an address that is not X's is X's deposit;
- a transfer between two wallets of X is internal to X; anything else is ignored;
- value moves in top-level transactions with a non-zero value that did not revert (receipt status 1),
  and in ERC-20 ``Transfer`` logs with three topics (a fourth topic is an ERC-721 token id).

Only the canonical chain is read (blocks by number, logs by range), so after a reorg the orphaned
transfers are simply absent. Each log's block hash is checked against the block read for its number: if the
chain changed while the oracle was reading, it fails loudly instead of mixing two forks.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.evm.rpc import JsonRpcSocket

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
"""keccak256("Transfer(address,address,uint256)")."""
NATIVE_LOG_INDEX = -1
"""What the contract uses as ``log_index`` of a native-coin transfer (it has no log)."""
LOGS_PER_CALL = 2_000
"""Blocks per ``eth_getLogs`` call: small enough for nodes that cap ranges, large enough to be few calls."""


@dataclass(frozen=True, slots=True, order=True)
class Transfer:
    """One canonical labelled transfer, identified the way the contract identifies it."""

    exchange: str
    direction: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int

    @property
    def key(self) -> tuple[str, str, int]:
        """(block_hash, tx_hash, log_index): the identity of a transfer within one exchange."""
        return (self.block_hash, self.tx_hash, self.log_index)


@dataclass(frozen=True, slots=True)
class Wallets:
    """The wallets of each exchange on one chain, as a label file names them."""

    hot: dict[str, frozenset[str]]
    """exchange → its hot wallets (the only ones that pay out)."""
    all: dict[str, frozenset[str]]
    """exchange → every wallet it owns (hot, cold, deposit)."""

    @classmethod
    def from_files(cls, paths: Iterable[Path], chain: str) -> Wallets:
        hot: dict[str, set[str]] = {}
        owned: dict[str, set[str]] = {}
        for path in paths:
            for wallet in tomllib.loads(path.read_text()).get("wallet", []):
                if wallet["chain"] != chain:
                    continue
                address = str(wallet["address"]).lower()
                owned.setdefault(wallet["exchange"], set()).add(address)
                if wallet["role"] == "hot":
                    hot.setdefault(wallet["exchange"], set()).add(address)
        return cls({k: frozenset(v) for k, v in hot.items()}, {k: frozenset(v) for k, v in owned.items()})

    def classify(self, src: str, dst: str) -> list[tuple[str, str]]:
        """(exchange, direction) of every exchange this movement concerns."""
        out: list[tuple[str, str]] = []
        for exchange, owned in self.all.items():
            if src in owned and dst in owned:
                out.append((exchange, "internal"))
            elif src in self.hot.get(exchange, frozenset()) and dst not in owned:
                out.append((exchange, "withdrawal"))
            elif dst in owned and src not in owned:
                out.append((exchange, "deposit"))
        return out


async def canonical_transfers(ws_url: str, labels: Path | Iterable[Path], first_block: int, last_block: int,
                              chain: str = "ethereum") -> set[Transfer]:
    """Every labelled transfer (any direction) in blocks ``first_block..last_block`` of the canonical chain."""
    if first_block > last_block:
        raise ValueError(f"empty block range {first_block}..{last_block}")
    wallets = Wallets.from_files([labels] if isinstance(labels, Path) else labels, chain)
    found: set[Transfer] = set()
    hashes: dict[int, str] = {}
    async with JsonRpcSocket(ws_url) as rpc:
        for number in range(first_block, last_block + 1):
            block = await rpc.call("eth_getBlockByNumber", [hex(number), True])
            if block is None:
                raise LookupError(f"the node has no block {number} (range {first_block}..{last_block})")
            block_hash = str(block["hash"]).lower()
            hashes[number] = block_hash
            candidates: list[tuple[str, list[tuple[str, str]]]] = []
            for tx in block["transactions"]:
                if int(tx["value"], 16) == 0 or tx.get("to") is None:
                    continue
                concerned = wallets.classify(str(tx["from"]).lower(), str(tx["to"]).lower())
                if concerned:
                    candidates.append((str(tx["hash"]).lower(), concerned))
            if candidates:
                succeeded = await _succeeded(rpc, number)
                for tx_hash, concerned in candidates:
                    if tx_hash in succeeded:
                        found.update(Transfer(exchange, direction, number, block_hash, tx_hash, NATIVE_LOG_INDEX)
                                     for exchange, direction in concerned)
        for start in range(first_block, last_block + 1, LOGS_PER_CALL):
            end = min(start + LOGS_PER_CALL - 1, last_block)
            logs = await rpc.call("eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(end),
                                                   "topics": [TRANSFER_TOPIC]}])
            for entry in logs:
                found.update(_from_log(entry, wallets, hashes))
    return found


async def canonical_withdrawals(ws_url: str, labels: Path | Iterable[Path], first_block: int, last_block: int,
                                exchange: str, chain: str = "ethereum") -> set[tuple[str, str, int]]:
    """(block_hash, tx_hash, log_index) of every withdrawal of ``exchange`` in the range."""
    return {t.key for t in await canonical_transfers(ws_url, labels, first_block, last_block, chain)
            if t.exchange == exchange and t.direction == "withdrawal"}


async def _succeeded(rpc: JsonRpcSocket, number: int) -> set[str]:
    """Hashes of the block's transactions that did not revert (one call for the whole block)."""
    receipts = await rpc.call("eth_getBlockReceipts", [hex(number)])
    return {str(r["transactionHash"]).lower() for r in receipts if int(r["status"], 16) == 1}


def _from_log(entry: dict[str, Any], wallets: Wallets, hashes: dict[int, str]) -> list[Transfer]:
    topics = entry["topics"]
    if len(topics) != 3 or entry.get("removed") is True:
        return []
    number = int(entry["blockNumber"], 16)
    block_hash = str(entry["blockHash"]).lower()
    if hashes.get(number) != block_hash:
        raise RuntimeError(f"log of block {number} is in {block_hash}, the block read was {hashes.get(number)}: "
                           "the chain changed while the oracle read it")
    src, dst = "0x" + topics[1][-40:].lower(), "0x" + topics[2][-40:].lower()
    return [Transfer(exchange, direction, number, block_hash, str(entry["transactionHash"]).lower(),
                     int(entry["logIndex"], 16))
            for exchange, direction in wallets.classify(src, dst)]
