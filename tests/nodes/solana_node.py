"""A Solana "validator" on loopback: HTTP JSON-RPC (getSlot, getBlock, getGenesisHash) and pubsub websockets
(rootSubscribe, slotSubscribe) on one port, as documented at solana.com/docs/rpc.

The ledger is made by the test: :meth:`SolanaNode.produce` adds slots, some of them skipped (no block, as
happens on mainnet when a leader misses its turn, sometimes several in a row), the others with blocks whose
transactions are copies of the documented-shape fixture (``tests/fixtures/solana/block.json``) under fresh
signatures. Finality is modelled: ``finalized`` lags the tip by ``finalized_lag`` slots, and the node answers
getBlock above it with -32004 "Block not available", for skipped slots with -32007 (or -32009 below the
first slot), exactly the codes real nodes use.

The oracle is independent of the connector: every copied transaction carries the expected transfers
written by hand next to the fixture (``expected.json``), so the node knows what a correct connector publishes.
Faults are switched on through :class:`SolanaFaults`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from connectors.addresses import b58encode
from tests.nodes.base import NodeServer, WebSocketClients, expected_by_tx

FIXTURES = Path(__file__).parents[1] / "fixtures" / "solana"
GENESIS_HASH = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"
Row = tuple[Any, ...]
"""(block_hash, tx_hash, log_index, asset, amount, decimals, from, to, exchange, direction) of one expected
transfer: the columns of ``expected.json`` behind the block hash."""


def default_skips(slot: int) -> bool:
    """About one slot in six skipped, with a run of three in a row every 50 slots."""
    return slot % 7 == 3 or slot % 50 in (20, 21, 22)


@dataclass
class SolanaFaults:
    junk_after_notification: bool = False
    """After each notification: a non-JSON frame, a JSON array, a notification of an unknown subscription,
    and a reply to a request nobody made."""
    garbage_body_every: int = 0
    """Every n-th getBlock is answered with an HTML error page (status 200): not JSON."""
    malformed_tx_every: int = 0
    """Every n-th block carries a transaction without signatures."""
    unavailable_once: set[int] = field(default_factory=set)
    """Produced slots answered once with -32004 although their block exists (a lagging replica)."""
    rate_limit_every: int = 0
    """Every n-th HTTP request gets HTTP 429."""
    headless_once: set[int] = field(default_factory=set)
    """Produced slots whose block is sent once without its ``blockhash`` (a block the connector cannot use)."""
    injected: list[str] = field(default_factory=list)


class SolanaNode(NodeServer):
    def __init__(self, first_slot: int = 1_000, finalized_lag: int = 3, skipped: Callable[[int], bool] = default_skips,
                 faults: SolanaFaults | None = None) -> None:
        super().__init__()
        self.first_slot = first_slot
        self.finalized_lag = finalized_lag
        self.skipped = skipped
        self.faults = faults or SolanaFaults()
        self.tip = first_slot - 1
        self.blocks: dict[int, dict[str, Any] | None] = {}
        self.expected: list[Row] = []
        self.parent_slot = first_slot - 1
        self.parent_hash = b58encode(hashlib.sha256(b"before the first slot").digest())
        self.get_blocks = 0
        self.ws = WebSocketClients()
        self._subs: dict[web.WebSocketResponse, dict[int, str]] = {}
        self._next_sub = 0
        self._templates, self._template_rows = _templates()

    # -- the ledger ------------------------------------------------------------------------------------
    @property
    def finalized(self) -> int:
        return self.tip - self.finalized_lag

    def produced(self, first: int, last: int) -> list[int]:
        """Slots in ``first..last`` that have a block."""
        return [s for s in range(first, last + 1) if self.blocks.get(s) is not None]

    def withdrawals(self, first: int, last: int) -> set[tuple[str, str, int]]:
        """(block_hash, signature, log_index) of the okx withdrawals in blocks ``first..last``."""
        hashes = {b["blockhash"] for s, b in self.blocks.items() if b is not None and first <= s <= last}
        return {(r[0], r[1], r[2]) for r in self.expected if r[0] in hashes and r[8] == "okx" and r[9] == "withdrawal"}

    def produce(self, count: int) -> int:
        """Add ``count`` slots (thread-safe); returns the new finalized slot."""
        return self.call(self._produce, count)

    async def _produce(self, count: int) -> int:
        new = []
        for _ in range(count):
            self.tip += 1
            new.append(self.tip)
            self.blocks[self.tip] = None if self.skipped(self.tip) else self._block(self.tip)
        await self._notify(new)
        return self.finalized

    def _block(self, slot: int) -> dict[str, Any]:
        block_hash = b58encode(hashlib.sha256(f"block {slot}".encode()).digest())
        picks = [7]  # a vote in every block
        picks += [i for i, every in ((0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 4), (6, 9)) if slot % every == 0]
        txs = []
        for n, index in enumerate(picks):
            tx = copy.deepcopy(self._templates[index])
            old = tx["transaction"]["signatures"][0]
            new = b58encode(hashlib.sha512(f"{slot}:{n}:{old}".encode()).digest())
            tx["transaction"]["signatures"][0] = new
            txs.append(tx)
            for row in self._template_rows.get(old, []):
                self.expected.append((block_hash, new, *row))
        if self.faults.malformed_tx_every and slot % self.faults.malformed_tx_every == 0:
            txs.append(copy.deepcopy(self._templates[8]))
        block = {"blockHeight": slot - 100, "blockTime": 1_732_000_000 + (slot - self.first_slot) * 2 // 5,
                 "blockhash": block_hash, "parentSlot": self.parent_slot, "previousBlockhash": self.parent_hash,
                 "transactions": txs}
        self.parent_slot, self.parent_hash = slot, block_hash
        return block

    async def _notify(self, slots: list[int]) -> None:
        for ws, subs in list(self._subs.items()):
            frames = []
            for sub, kind in subs.items():
                if kind == "rootSubscribe":
                    frames.append({"jsonrpc": "2.0", "method": "rootNotification",
                                   "params": {"result": self.finalized, "subscription": sub}})
                else:
                    frames += [{"jsonrpc": "2.0", "method": "slotNotification",
                                "params": {"result": {"parent": s - 1, "root": self.finalized, "slot": s},
                                           "subscription": sub}} for s in slots]
            texts = [orjson.dumps(f).decode() for f in frames]
            if self.faults.junk_after_notification and texts:
                junk = ["{not json", "[1, 2, 3]",
                        '{"jsonrpc":"2.0","method":"slotNotification","params":{"result":{},"subscription":99999}}',
                        '{"jsonrpc":"2.0","result":42,"id":987654321}']
                self.faults.injected += junk
                texts += junk
            for text in texts:
                if ws.closed:
                    break
                try:
                    await ws.send_str(text)
                except ConnectionError:  # the client went away (a killed connector) while we pushed
                    break

    # -- the protocol ----------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/", self._rpc)
        app.router.add_get("/", self._pubsub)

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        f = self.faults
        if f.rate_limit_every and self.requests % f.rate_limit_every == 0:
            return web.Response(status=429, text='{"jsonrpc":"2.0","error":{"code":429,"message":"Too many requests"}}')
        body = await request.json()
        rid, method, params = body.get("id"), body.get("method"), body.get("params") or []
        if method == "getBlock":
            self.get_blocks += 1
            if f.garbage_body_every and self.get_blocks % f.garbage_body_every == 0:
                f.injected.append("html")
                return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        try:
            result = self._answer(method, params)
        except RpcFailure as exc:
            return web.json_response({"jsonrpc": "2.0", "error": {"code": exc.code, "message": exc.message}, "id": rid})
        return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "result": result, "id": rid}),
                            content_type="application/json")

    def _visible(self, commitment: str) -> int:
        return self.tip if commitment == "confirmed" else self.finalized

    def _answer(self, method: str, params: list[Any]) -> Any:
        options = params[-1] if params and isinstance(params[-1], dict) else {}
        commitment = options.get("commitment", "finalized")
        if method == "getSlot":
            return self._visible(commitment)
        if method == "getGenesisHash":
            return GENESIS_HASH
        if method != "getBlock":
            raise RpcFailure(-32601, "Method not found")
        slot = params[0]
        if slot in self.faults.unavailable_once and self.blocks.get(slot) is not None:
            self.faults.unavailable_once.discard(slot)
            raise RpcFailure(-32004, f"Block not available for slot {slot}")
        if slot > self._visible(commitment):
            raise RpcFailure(-32004, f"Block not available for slot {slot}")
        if slot < self.first_slot:
            raise RpcFailure(-32009, f"Slot {slot} was skipped, or missing in long-term storage")
        block = self.blocks.get(slot)
        if block is None:
            raise RpcFailure(-32007, f"Slot {slot} was skipped, or missing due to ledger jump to recent snapshot")
        if slot in self.faults.headless_once:
            self.faults.headless_once.discard(slot)
            self.faults.injected.append(f"headless {slot}")
            return {k: v for k, v in block.items() if k != "blockhash"}
        if options.get("transactionDetails") == "none":
            return {k: v for k, v in block.items() if k != "transactions"}
        return block

    async def _pubsub(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self.ws.connections += 1
        self.ws.open.add(ws)
        subs = self._subs.setdefault(ws, {})
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                body = json.loads(message.data)
                method = body.get("method")
                if method in ("rootSubscribe", "slotSubscribe"):
                    self._next_sub += 1
                    subs[self._next_sub] = method
                    await ws.send_str(orjson.dumps({"jsonrpc": "2.0", "result": self._next_sub,
                                                    "id": body.get("id")}).decode())
                else:
                    await ws.send_str(orjson.dumps({"jsonrpc": "2.0", "id": body.get("id"), "error": {
                        "code": -32601, "message": "Method not found"}}).decode())
        finally:
            self.ws.open.discard(ws)
            self._subs.pop(ws, None)
        return ws

    def drop_connections(self) -> None:
        """Close every pubsub websocket (the connector must reconnect and read on from its checkpoint)."""
        self.call(self.ws.close_all)


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _templates() -> tuple[list[dict[str, Any]], dict[str, list[tuple[Any, ...]]]]:
    """The fixture block's transactions, and per signature its expected transfers (without block hash)."""
    block = json.loads((FIXTURES / "block.json").read_text())
    expected = json.loads((FIXTURES / "expected.json").read_text())
    return block["transactions"], expected_by_tx(expected["transfers"])
