"""Solana's HTTP JSON-RPC: the calls the connector makes, and what their errors mean.

A validator's websocket port only serves subscriptions, so blocks are read over HTTP (``getBlock``). Its
errors are part of the protocol and are told apart here, because they decide between "no block will ever
be at this slot" and "not yet":

- -32007 "Slot N was skipped, or missing due to ledger jump to recent snapshot" and -32009 "… missing in
  long-term storage": no block at that slot (:class:`SlotSkipped`). Skipped slots are normal (a leader
  missed its turn) and are neither a stall nor a gap.
- -32004 "Block not available for slot N" and -32014 "Block status not yet available": not yet
  (:class:`SlotUnavailable`); some providers also say -32004 for old skipped slots, so the connector
  never trusts either answer alone: the next block's ``parentSlot`` decides.
- rate limits (HTTP 429 from :class:`~connectors.http_json.JsonHttp`, or JSON-RPC 429 / "too many
  requests") are retried with jittered waits (:func:`connectors.backoff.retried`); anything else is a
  :class:`SolanaRpcError`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from connectors.backoff import RetryPolicy, retried
from connectors.feed_loop import NodeError
from connectors.http_json import JsonHttp

SKIPPED_CODES = frozenset({-32007, -32009})
NOT_YET_CODES = frozenset({-32004, -32014})
_RATE_LIMIT_CODES = frozenset({429, -32429})
_RATE_LIMIT_WORDS = ("rate limit", "too many requests")
BLOCK_OPTIONS = {"encoding": "jsonParsed", "transactionDetails": "full", "maxSupportedTransactionVersion": 0,
                 "rewards": False}
"""jsonParsed names every account (also those from address lookup tables) and decodes system and token
instructions; version 0 admits the versioned transactions exchanges send."""


class SolanaRpcError(NodeError):
    """A JSON-RPC error reply."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: node error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message

    @property
    def rate_limited(self) -> bool:
        return self.code in _RATE_LIMIT_CODES or any(w in self.message.lower() for w in _RATE_LIMIT_WORDS)


def retry_reason(exc: BaseException) -> str | None:
    """A JSON-RPC rate limit in a 200 answer is worth the same call again; an HTTP-level trouble was already
    retried by :class:`~connectors.http_json.JsonHttp`, so it is not retried a second time here."""
    return "rate_limited" if isinstance(exc, SolanaRpcError) and exc.rate_limited else None


@dataclass(frozen=True, slots=True)
class SlotSkipped:
    """The node says no block was produced at this slot."""

    slot: int
    reason: str


@dataclass(frozen=True, slots=True)
class SlotUnavailable:
    """The node has no block at this slot yet (or will not say)."""

    slot: int
    reason: str


BlockReply = dict[str, Any] | SlotSkipped | SlotUnavailable


class SolanaRpc:
    """Typed calls over one HTTP session, at one commitment."""

    def __init__(self, http: JsonHttp, commitment: str, attempts: int = 6) -> None:
        self.http = http
        self.commitment = commitment
        self.attempts = attempts
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        return await retried(lambda: self._call_once(method, params or []), f"{method} on {self.http.base_url}",
                             retry_reason, RetryPolicy(self.attempts))

    async def _call_once(self, method: str, params: list[Any]) -> Any:
        reply = await self.http.post_json("", {"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                                               "params": params})
        if not isinstance(reply, dict):
            raise NodeError(f"{method}: JSON-RPC reply is {type(reply).__name__}, not an object")
        error = reply.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise SolanaRpcError(method, code if isinstance(code, int) else -1, str(message))
        if "result" not in reply:
            raise NodeError(f"{method}: reply with neither result nor error")
        return reply["result"]

    async def get_slot(self) -> int:
        """The newest slot at our commitment."""
        slot = await self.call("getSlot", [{"commitment": self.commitment}])
        if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
            raise NodeError(f"getSlot: expected a slot number, got {slot!r}")
        return slot

    async def genesis_hash(self) -> str:
        value = await self.call("getGenesisHash")
        if not isinstance(value, str):
            raise NodeError(f"getGenesisHash: expected a hash, got {value!r}")
        return value

    async def get_block(self, slot: int, full: bool = True) -> BlockReply:
        """The block at ``slot`` (jsonParsed, full transactions), or why there is none."""
        options: dict[str, Any] = {**BLOCK_OPTIONS, "commitment": self.commitment}
        if not full:
            options["transactionDetails"] = "none"
        try:
            block = await self.call("getBlock", [slot, options])
        except SolanaRpcError as exc:
            if exc.code in SKIPPED_CODES:
                return SlotSkipped(slot, exc.message)
            if exc.code in NOT_YET_CODES:
                return SlotUnavailable(slot, exc.message)
            raise
        if block is None:
            return SlotUnavailable(slot, "getBlock returned null")
        if not isinstance(block, dict):
            raise NodeError(f"getBlock({slot}): block reply is {type(block).__name__}, not an object")
        return block

    async def block_hash(self, slot: int) -> str | None:
        """The canonical blockhash at ``slot`` at our commitment, None when the slot has no block (for forks)."""
        block = await self.get_block(slot, full=False)
        if isinstance(block, dict) and isinstance(block.get("blockhash"), str):
            return str(block["blockhash"])
        return None
