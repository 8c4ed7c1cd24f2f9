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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tests.nodes.base import NodeServer, WebSocketClients

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bitcoin"
PAGE = 25


@dataclass
class EsploraFaults:
    junk_after_push: bool = False
    """After each pushed block: a non-JSON frame, a JSON array and a ``block`` without a height."""
    garbage_body_every: int = 0
    """Every n-th ``/block/:hash`` answer is an HTML error page with status 200."""
    malformed_tx_every: int = 0
    """Every n-th block carries a transaction whose output value is not a number."""
    rate_limit_every: int = 0
    """Every n-th request gets HTTP 429."""
    filler_txs: int = 0
    """Unlabelled transactions added to every block, so blocks span several pages."""
    injected: list[str] = field(default_factory=list)


class EsploraNode(NodeServer):
    def __init__(self, first_height: int = 870_000, faults: EsploraFaults | None = None) -> None:
        super().__init__()
        self.first_height = first_height
        self.faults = faults or EsploraFaults()
        self.chain: list[dict[str, Any]] = []
        """Best chain, from ``first_height``: each {"block": …, "txs": […]}."""
        self.by_hash: dict[str, dict[str, Any]] = {}
        self.expected: list[tuple[Any, ...]] = []
        self.block_reads = 0
        self.reorgs = 0
        self.ws = WebSocketClients()
        fixture = json.loads((FIXTURES / "txs.json").read_text())
        rows = json.loads((FIXTURES / "expected.json").read_text())["transfers"]
        self._templates: list[dict[str, Any]] = fixture
        self._rows: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            self._rows.setdefault(row[0], []).append(tuple(row[1:]))
        self._salt = 0

    # -- the ledger ------------------------------------------------------------------------------------
    @property
    def tip(self) -> int:
        return self.first_height + len(self.chain) - 1

    def canonical_hashes(self) -> set[str]:
        return {entry["block"]["id"] for entry in self.chain}

    def withdrawals(self) -> set[tuple[str, str, int]]:
        """(block_hash, txid, vout) of okx withdrawals on the best chain."""
        best = self.canonical_hashes()
        return {(r[0], r[1], r[2]) for r in self.expected if r[0] in best and r[8] == "okx" and r[9] == "withdrawal"}

    def produce(self, count: int) -> int:
        """Mine ``count`` blocks (thread-safe); returns the tip height."""
        return self.call(self._produce, count)

    def reorg(self, depth: int) -> int:
        """Replace the newest ``depth`` blocks by ``depth + 1`` others (thread-safe); returns the tip height."""
        return self.call(self._reorg, depth)

    async def _produce(self, count: int) -> int:
        for _ in range(count):
            entry = self._block(self.tip + 1)
            self.chain.append(entry)
            self.by_hash[entry["block"]["id"]] = entry
            await self._push(entry["block"])
        return self.tip

    async def _reorg(self, depth: int) -> int:
        del self.chain[len(self.chain) - depth:]
        self._salt += 1
        self.reorgs += 1
        return await self._produce(depth + 1)

    def _block(self, height: int) -> dict[str, Any]:
        parent = self.chain[-1]["block"]["id"] if self.chain else "00" * 32
        block_hash = "0000000000000000000" + hashlib.sha256(f"{height}:{self._salt}".encode()).hexdigest()[19:]
        picks = [0] + [i for i, every in ((1, 2), (2, 3), (3, 4), (5, 5), (6, 3)) if height % every == 0]
        txs = []
        for n, index in enumerate(picks):
            tx = copy.deepcopy(self._templates[index])
            old = tx["txid"]
            tx["txid"] = hashlib.sha256(f"{block_hash}:{n}:{old}".encode()).hexdigest()
            tx["status"] = {"confirmed": True, "block_height": height, "block_hash": block_hash,
                            "block_time": 1_731_999_000 + (height - self.first_height) * 600}
            txs.append(tx)
            for row in self._rows.get(old, []):
                self.expected.append((block_hash, tx["txid"], *row))
        for n in range(self.faults.filler_txs):
            filler = copy.deepcopy(self._templates[2])  # a deposit shape between outsiders: nothing labelled
            filler["txid"] = hashlib.sha256(f"{block_hash}:filler:{n}".encode()).hexdigest()
            for vout in filler["vout"]:
                vout["scriptpubkey_address"] = filler["vin"][0]["prevout"]["scriptpubkey_address"]
            txs.append(filler)
        if self.faults.malformed_tx_every and height % self.faults.malformed_tx_every == 0:
            txs.append(copy.deepcopy(self._templates[7]))
        block = {"id": block_hash, "height": height, "version": 536870912,
                 "timestamp": 1_731_999_000 + (height - self.first_height) * 600, "tx_count": len(txs),
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
        app.middlewares.append(self._count)

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        if self.faults.rate_limit_every and self.requests % self.faults.rate_limit_every == 0 and \
                request.path != "/api/v1/ws":
            return web.Response(status=429, text="Too Many Requests")
        response: web.StreamResponse = await handler(request)
        return response

    async def _tip(self, request: web.Request) -> web.Response:
        return web.Response(text=str(self.tip))

    async def _height(self, request: web.Request) -> web.Response:
        index = int(request.match_info["height"]) - self.first_height
        if not 0 <= index < len(self.chain):
            return web.Response(status=404, text="Block not found")
        return web.Response(text=self.chain[index]["block"]["id"])

    async def _block_json(self, request: web.Request) -> web.Response:
        entry = self.by_hash.get(request.match_info["hash"])
        if entry is None:
            return web.Response(status=404, text="Block not found")
        self.block_reads += 1
        if self.faults.garbage_body_every and self.block_reads % self.faults.garbage_body_every == 0:
            self.faults.injected.append("html")
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
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
