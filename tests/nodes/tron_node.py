"""A Tron full node's HTTP API on loopback, as java-tron documents it (developers.tron.network):

- ``POST /wallet/getnowblock`` → the newest block; ``POST /wallet/getblockbynum {"num": n}`` → the block at
  ``n``, ``{}`` when there is none; ``POST /wallet/gettransactioninfobyblocknum {"num": n}`` → the receipts
  with their event logs; ``POST /wallet/triggerconstantcontract`` → ``decimals()`` of a token.

Blocks are made by the test: :meth:`TronNode.produce` adds blocks (one per 3 s of chain time) whose
transactions and receipts are copies of the documented-shape fixture (``tests/fixtures/tron/``) under fresh
txIDs; :meth:`reorg` replaces the newest ones. The oracle is the fixture's hand-written ``expected.json``,
carried along with each copied transaction.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from connectors.addresses import tron_to_hex
from tests.nodes.base import FixtureChainNode, NodeFaults

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tron"


@dataclass
class TronFaults(NodeFaults):
    """``garbage_body_every`` hits gettransactioninfobyblocknum; ``malformed_tx_every`` adds a TransferContract
    without an amount; ``rate_limit_every`` answers as TronGrid does without an API key."""

    error_every: int = 0
    """Every n-th getblockbynum is answered ``{"Error": "…"}`` (status 200), as java-tron reports failures."""


class TronNode(FixtureChainNode):
    HASH_KEY = "blockID"
    faults: TronFaults

    def __init__(self, first_number: int = 66_000_000, faults: TronFaults | None = None) -> None:
        expected = json.loads((FIXTURES / "expected.json").read_text())
        super().__init__(first_number, expected["transfers"], faults or TronFaults())
        self.block_reads = 0
        self.info_reads = 0
        self.decimals_asked: list[str] = []
        block = json.loads((FIXTURES / "block.json").read_text())
        infos = json.loads((FIXTURES / "infos.json").read_text())
        self.odd_token_hex = tron_to_hex(expected["odd_token"])
        self._txs: list[dict[str, Any]] = block["transactions"]
        self._infos = {i["id"]: i for i in infos}

    # -- the ledger ------------------------------------------------------------------------------------
    def make_block(self, number: int) -> dict[str, Any]:
        parent = self.chain[-1]["block"]["blockID"] if self.chain else f"{number - 1:016x}" + "00" * 24
        block_id = f"{number:016x}" + hashlib.sha256(f"{number}:{self.salt}".encode()).hexdigest()[:48]
        millis = 1_731_999_000_000 + (number - self.first) * 3_000
        picks = [i for i, every in ((0, 2), (1, 1), (2, 3), (3, 4), (4, 3), (5, 5), (6, 4), (8, 6), (9, 7))
                 if number % every == 0]
        txs, infos = [], []
        for n, index in enumerate(picks):
            tx = copy.deepcopy(self._txs[index])
            old = tx["txID"]
            new = hashlib.sha256(f"{block_id}:{n}:{old}".encode()).hexdigest()
            tx["txID"] = new
            txs.append(tx)
            info = copy.deepcopy(self._infos[old])
            info.update(id=new, blockNumber=number, blockTimeStamp=millis)
            infos.append(info)
            self.copied(block_id, old, new)
        if self.faults.malformed_tx_every and number % self.faults.malformed_tx_every == 0:
            bad = copy.deepcopy(self._txs[7])
            bad["txID"] = hashlib.sha256(f"{block_id}:bad".encode()).hexdigest()
            txs.append(bad)
        block: dict[str, Any] = {"blockID": block_id, "block_header": {"raw_data": {
            "number": number, "txTrieRoot": "00" * 32, "witness_address": "41" + "ab" * 20, "parentHash": parent,
            "version": 31, "timestamp": millis}, "witness_signature": "12" * 65}}
        if txs:
            block["transactions"] = txs
        return {"block": block, "infos": infos}

    # -- the protocol ----------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/wallet/getnowblock", self._now)
        app.router.add_post("/wallet/getblockbynum", self._by_num)
        app.router.add_post("/wallet/gettransactioninfobyblocknum", self._infos_by_num)
        app.router.add_post("/wallet/triggerconstantcontract", self._constant)
        app.middlewares.append(self.count_requests)

    def too_many_requests(self, request: web.Request) -> web.Response | None:
        return web.json_response({"Error": "request rate exceeded"}, status=429)

    @staticmethod
    def _json(value: Any) -> web.Response:
        return web.Response(body=orjson.dumps(value), content_type="application/json")

    def _entry(self, number: Any) -> dict[str, Any] | None:
        index = number - self.first if isinstance(number, int) else -1
        return self.chain[index] if 0 <= index < len(self.chain) else None

    async def _now(self, request: web.Request) -> web.Response:
        return self._json(self.chain[-1]["block"] if self.chain else {})

    async def _by_num(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text() or "{}")
        self.block_reads += 1
        if self.faults.error_every and self.block_reads % self.faults.error_every == 0:
            self.faults.injected.append("Error")
            return self._json({"Error": "class org.tron.core.exception.StoreException : db busy"})
        entry = self._entry(body.get("num"))
        return self._json(entry["block"] if entry else {})

    async def _infos_by_num(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text() or "{}")
        self.info_reads += 1
        if self.faults.garbage_body_every and self.info_reads % self.faults.garbage_body_every == 0:
            return self.garbage_page()
        entry = self._entry(body.get("num"))
        return self._json(entry["infos"] if entry else [])

    async def _constant(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        contract = str(body.get("contract_address", ""))
        self.decimals_asked.append(contract)
        decimals = 2 if contract == self.odd_token_hex else 6
        return self._json({"result": {"result": True}, "energy_used": 222, "constant_result": [f"{decimals:064x}"],
                           "transaction": {"ret": [{}], "txID": "00" * 32}})
