"""The Tron full-node HTTP API calls the connector makes (java-tron's ``/wallet/*``, TronGrid and others).

- ``POST /wallet/getnowblock`` → the newest block (its ``block_header.raw_data.number``)
- ``POST /wallet/getblockbynum {"num": n}`` → the block (``blockID``, ``block_header.raw_data`` with
  ``number``, ``parentHash``, ``timestamp`` in ms, and ``transactions``); ``{}`` when there is none yet
- ``POST /wallet/gettransactioninfobyblocknum {"num": n}`` → the receipts of that block's transactions,
  with their event ``log`` (TRC-20 ``Transfer``: topic ``ddf252ad…``, 20-byte hex addresses)
- ``POST /wallet/triggerconstantcontract`` → ``decimals()`` of a TRC-20 token, once per token

Addresses are hex (``41…``) on the wire (``visible`` false, the default) and base58 ``T…`` in our events.
Errors come as ``{"Error": "…"}`` with status 200 (often transient: "db busy", a node catching up); a call
is made again a few times, quickly (:data:`ERROR_REPLY_RETRIES`), before the error is raised as
:class:`NodeError` (the connector then reconnects).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from connectors.addresses import AddressError, tron_to_hex
from connectors.backoff import RetryPolicy, retried
from connectors.feed_loop import NodeError
from connectors.http_json import JsonHttp


class ErrorReply(NodeError):
    """The node answered ``{"Error": …}``."""


ERROR_REPLY_RETRIES = RetryPolicy(attempts=3, first_wait_s=0.2, max_wait_s=2.0, jitter_s=0.2)
"""An ``{"Error": …}`` reply is asked again twice within about a second: a busy node usually answers by then,
and a node that keeps refusing is better left to the connector's reconnect (maybe to another endpoint)."""


def retry_reason(exc: BaseException) -> str | None:
    """An ``{"Error": …}`` reply is worth the same call again; HTTP-level trouble was already retried by
    :class:`~connectors.http_json.JsonHttp`, so it is not retried a second time here."""
    return "node_error" if isinstance(exc, ErrorReply) else None


def _checked(path: str, reply: Any) -> Any:
    if isinstance(reply, dict) and "Error" in reply:
        raise ErrorReply(f"{path}: {reply['Error']}")
    return reply


def block_number(block: Any) -> int | None:
    """``block_header.raw_data.number`` of a block reply, None when the reply holds no block."""
    try:
        number = block["block_header"]["raw_data"]["number"]
    except (KeyError, TypeError):
        return None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


class TronApi:
    """Typed calls over one HTTP session."""

    def __init__(self, http: JsonHttp, attempts: int = 3) -> None:
        self.http = http
        self.attempts = attempts

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        async def once() -> Any:
            return _checked(path, await self.http.post_json(path, body))

        policy = replace(ERROR_REPLY_RETRIES, attempts=self.attempts)
        return await retried(once, f"{self.http.base_url}{path}", retry_reason, policy)

    async def now_block_number(self) -> int:
        block = await self._post("/wallet/getnowblock", {})
        number = block_number(block)
        if number is None:
            raise NodeError(f"/wallet/getnowblock: no block number in {str(block)[:200]}")
        return number

    async def block(self, number: int) -> dict[str, Any] | None:
        """The block at ``number``; None when the node has none there (yet)."""
        block = await self._post("/wallet/getblockbynum", {"num": number})
        if isinstance(block, dict) and not block:
            return None
        if not isinstance(block, dict):
            raise NodeError(f"/wallet/getblockbynum {number}: reply is {type(block).__name__}, not an object")
        return block

    async def block_hash(self, number: int) -> str | None:
        """The node's ``blockID`` at ``number`` (for forks), None when it has no block there."""
        block = await self.block(number)
        block_id = block.get("blockID") if block is not None else None
        return block_id.lower() if isinstance(block_id, str) else None

    async def transaction_info(self, number: int) -> list[Any]:
        infos = await self._post("/wallet/gettransactioninfobyblocknum", {"num": number})
        if isinstance(infos, dict) and not infos:
            return []  # some versions answer {} for a block without transactions
        if not isinstance(infos, list):
            raise NodeError(f"/wallet/gettransactioninfobyblocknum {number}: reply is {type(infos).__name__}")
        return infos

    async def token_decimals(self, token: str) -> int:
        """``decimals()`` of a TRC-20 contract, or -1 when it has none we can read."""
        try:
            contract = tron_to_hex(token)
            reply = await self._post("/wallet/triggerconstantcontract", {
                "owner_address": contract, "contract_address": contract, "function_selector": "decimals()",
                "parameter": "",
            })
            result = reply["constant_result"][0]
            value = int(result, 16) if isinstance(result, str) and result else -1
        except (NodeError, AddressError, KeyError, IndexError, TypeError, ValueError):
            return -1
        return value if 0 <= value <= 255 else -1
