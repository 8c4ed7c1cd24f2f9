"""A Bitcoin Esplora server on loopback, with the mempool.space websocket, as documented by those projects:

- ``GET /api/blocks/tip/height``, ``GET /api/block-height/:height`` (text), ``GET /api/block/:hash`` (JSON),
  ``GET /api/block/:hash/txs/:start_index`` (25 transactions per page, ``start_index`` a multiple of 25);
- ``/api/v1/ws``: after ``{"action": "want", "data": ["blocks"]}``, ``{"blocks": [...]}`` then ``{"block": {...}}``
  for each new block, mixed with other live data (``mempoolInfo`` …) that clients ignore.

The test makes the chain: :meth:`EsploraNode.produce` mines blocks whose transactions are copies of the
documented-shape fixture (``tests/fixtures/bitcoin/txs.json``) under fresh txids, and :meth:`reorg` replaces
the newest blocks with others. The oracle is the hand-written ``expected.json`` next to the fixture, carried
along with each copied transaction, so what a correct connector publishes is known without the connector.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tests.nodes.base import FixtureChainNode, NodeFaults, WebSocketClients

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bitcoin"
PAGE = 25


@dataclass
class EsploraFaults(NodeFaults):
    """``garbage_body_every`` hits ``/block/:hash``; ``malformed_tx_every`` adds a transaction whose output value
    is not a number."""

    junk_after_push: bool = False
    """After each pushed block: a non-JSON frame, a JSON array and a ``block`` without a height."""
    filler_txs: int = 0
    """Unlabelled transactions added to every block, so blocks span several pages."""


class EsploraNode(FixtureChainNode):
    HASH_KEY = "id"
    faults: EsploraFaults

    def __init__(self, first_height: int = 870_000, faults: EsploraFaults | None = None) -> None:
        rows = json.loads((FIXTURES / "expected.json").read_text())["transfers"]
        super().__init__(first_height, rows, faults or EsploraFaults())
        self.by_hash: dict[str, dict[str, Any]] = {}
        self.block_reads = 0
        self.ws = WebSocketClients()
        self._templates: list[dict[str, Any]] = json.loads((FIXTURES / "txs.json").read_text())

    # -- the ledger ------------------------------------------------------------------------------------
    async def added(self, entry: dict[str, Any]) -> None:
        self.by_hash[entry["block"]["id"]] = entry
        await self._push(entry["block"])

    def make_block(self, height: int) -> dict[str, Any]:
        parent = self.chain[-1]["block"]["id"] if self.chain else "00" * 32
        block_hash = "0000000000000000000" + hashlib.sha256(f"{height}:{self.salt}".encode()).hexdigest()[19:]
        picks = [0] + [i for i, every in ((1, 2), (2, 3), (3, 4), (5, 5), (6, 3)) if height % every == 0]
        txs = []
        for n, index in enumerate(picks):
            tx = copy.deepcopy(self._templates[index])
            old = tx["txid"]
            tx["txid"] = hashlib.sha256(f"{block_hash}:{n}:{old}".encode()).hexdigest()
            tx["status"] = {"confirmed": True, "block_height": height, "block_hash": block_hash,
                            "block_time": 1_731_999_000 + (height - self.first) * 600}
            txs.append(tx)
            self.copied(block_hash, old, tx["txid"])
        for n in range(self.faults.filler_txs):
            filler = copy.deepcopy(self._templates[2])  # a deposit shape between outsiders: nothing labelled
            filler["txid"] = hashlib.sha256(f"{block_hash}:filler:{n}".encode()).hexdigest()
            for vout in filler["vout"]:
                vout["scriptpubkey_address"] = filler["vin"][0]["prevout"]["scriptpubkey_address"]
            txs.append(filler)
        if self.faults.malformed_tx_every and height % self.faults.malformed_tx_every == 0:
            txs.append(copy.deepcopy(self._templates[7]))
        block = {"id": block_hash, "height": height, "version": 536870912,
                 "timestamp": 1_731_999_000 + (height - self.first) * 600, "tx_count": len(txs),
                 "size": 1000 * len(txs), "weight": 4000 * len(txs), "merkle_root": hashlib.sha256(
                     block_hash.encode()).hexdigest(), "previousblockhash": parent,
                 "mediantime": 1_731_998_000, "nonce": 1, "bits": 386089497, "difficulty": 1.0e14}
        return {"block": block, "txs": txs}

    async def _push(self, block: dict[str, Any]) -> None:
        frames = [orjson.dumps({"block": block, "mempoolInfo": {"size": 1234, "bytes": 567890}}).decode()]
        if self.faults.junk_after_push:
            junk = ["{not json", "[1, 2, 3]", '{"block": {"id": "00"}}']
            self.faults.injected += junk
            frames += junk
        await self.ws.broadcast(frames)

    # -- the protocol ----------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/blocks/tip/height", self._tip)
        app.router.add_get("/api/block-height/{height}", self._height)
        app.router.add_get("/api/block/{hash}", self._block_json)
        app.router.add_get("/api/block/{hash}/txs/{start}", self._txs)
        app.router.add_get("/api/v1/ws", self._websocket)
        app.middlewares.append(self.count_requests)

    def too_many_requests(self, request: web.Request) -> web.Response | None:
        return None if request.path == "/api/v1/ws" else super().too_many_requests(request)

    async def _tip(self, request: web.Request) -> web.Response:
        return web.Response(text=str(self.tip))

    async def _height(self, request: web.Request) -> web.Response:
        index = int(request.match_info["height"]) - self.first
        if not 0 <= index < len(self.chain):
            return web.Response(status=404, text="Block not found")
        return web.Response(text=self.chain[index]["block"]["id"])

    async def _block_json(self, request: web.Request) -> web.Response:
        entry = self.by_hash.get(request.match_info["hash"])
        if entry is None:
            return web.Response(status=404, text="Block not found")
        self.block_reads += 1
        if self.faults.garbage_body_every and self.block_reads % self.faults.garbage_body_every == 0:
            return self.garbage_page()
        return web.json_response(entry["block"])

    async def _txs(self, request: web.Request) -> web.Response:
        entry = self.by_hash.get(request.match_info["hash"])
        start = int(request.match_info["start"])
        if entry is None or start % PAGE or start >= len(entry["txs"]):
            return web.Response(status=404 if entry is None else 400, text="Invalid start index")
        return web.Response(body=orjson.dumps(entry["txs"][start:start + PAGE]), content_type="application/json")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self.ws.connections += 1
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                body = json.loads(message.data)
                if body.get("action") == "want" and "blocks" in body.get("data", []):
                    self.ws.open.add(ws)
                    recent = [e["block"] for e in self.chain[-8:]]
                    await ws.send_str(orjson.dumps({"blocks": recent, "conversions": {"USD": 98000}}).decode())
        finally:
            self.ws.open.discard(ws)
        return ws
