"""Settings and endpoint access every non-EVM connector shares: HTTP(S) node APIs, optional push websockets.

A family's connector (Solana, Bitcoin, Tron) subclasses :class:`ChainFeed`, which adds to the loop of
:mod:`connectors.feed_loop` what those families have in common: HTTP sessions whose unusable bodies become
dead letters, a websocket paired with each HTTP endpoint, the genesis-hash check, and the HTTP errors a
session can end with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from connectors.family import ChainFamily
from connectors.feed_loop import ConnectionLost, FeedLoop, WrongNetwork
from connectors.http_json import BadPayload, HttpError, HttpUnavailable, JsonHttp, RequestTimeout
from connectors.push_socket import CONNECTION_LOST

log = logging.getLogger(__name__)
MIN_FORK_MARGIN = 64


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """Settings every non-EVM connector has; each family adds its own fields in a subclass."""

    chain: str
    urls: tuple[str, ...]
    """HTTP(S) endpoints of the node API, used in turn on failure."""
    ws_urls: tuple[str, ...] = ()
    """Websocket endpoints paired with ``urls`` (same order) where the family has a push feed."""
    confirmations: int = 0
    start_block: int | None = None
    """Where to start without a checkpoint (slot or height); None means the node's current head."""
    genesis_hash: str | None = None
    """Expected hash of the network's first block; another network's endpoint is refused (None: not checked)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra HTTP headers (an API key header of a commercial endpoint)."""
    heartbeat_s: float = 5.0
    head_poll_s: float = 5.0
    """Ask the node for its head when no push came for this long (the poll interval without a push feed)."""
    call_timeout_s: float = 30.0
    max_response_bytes: int = 256 * 1024 * 1024
    prefetch: int = 4
    """Blocks read ahead of the one being published while catching up."""
    labels_poll_s: float = 5.0
    reorg_window: int = 0
    """Published blocks remembered to undo forks; at least ``confirmations + 64``."""
    rotation_min_funding: int = 0
    """Whole native coins an exchange wallet must send a fresh address to watch it as a new hot wallet (0: off)."""
    rotation_min_recipients: int = 20

    family: ClassVar[ChainFamily]
    native_decimals: ClassVar[int]

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError(f"{self.chain}: at least one endpoint URL (--url) is needed")
        if self.ws_urls and len(self.ws_urls) != len(self.urls):
            raise ValueError(f"{self.chain}: give one --ws-url per --url (or none), got {len(self.ws_urls)} for "
                             f"{len(self.urls)}")
        if self.confirmations < 0:
            raise ValueError(f"{self.chain}: confirmations must be >= 0")

    @property
    def endpoint_urls(self) -> tuple[str, ...]:
        """The endpoints a session is opened on, in failover order."""
        return self.urls

    @property
    def window(self) -> int:
        return max(self.reorg_window, self.confirmations + MIN_FORK_MARGIN)

    @property
    def source(self) -> str:
        """The dead-letter ``source`` of this connector."""
        return f"{self.family.value}:{self.chain}"


class ChainFeed(FeedLoop[FeedConfig]):
    """The loop of an HTTP-API family; subclasses implement :meth:`session`."""

    REFUSALS = (HttpError,)
    CONNECTION_ERRORS = (HttpUnavailable, RequestTimeout, aiohttp.ClientError)
    NODE_ERRORS = (BadPayload,)

    @property
    def ws_url(self) -> str | None:
        """The websocket paired with the current endpoint, if the family has one configured."""
        return self.config.ws_urls[self.endpoints.index] if self.config.ws_urls else None

    def http(self, url: str) -> JsonHttp:
        """An HTTP session to ``url`` whose unusable bodies become dead letters."""
        return JsonHttp(url, on_bad_payload=self.bad_payload, timeout_s=self.config.call_timeout_s,
                        headers=self.config.headers, max_bytes=self.config.max_response_bytes,
                        on_retry=self.metrics.rpc_retry)

    async def wait_for_push(self, pushes: asyncio.Queue[Any] | None, what: str) -> None:
        """Until the push websocket announces something (all queued pushes are taken at once), or ``head_poll_s``
        without one; polls alone without a websocket. Pushes are only triggers: blocks are read by number."""
        if pushes is None:
            await self.sleep(self.config.head_poll_s)
            return
        with contextlib.suppress(TimeoutError):
            pushed = await asyncio.wait_for(pushes.get(), timeout=self.config.head_poll_s)
            while True:
                if pushed is CONNECTION_LOST:
                    raise ConnectionLost(f"{what} websocket closed")
                if pushes.empty():
                    return
                pushed = pushes.get_nowait()

    async def check_genesis(self, actual: str) -> None:
        expected = self.config.genesis_hash
        if expected is not None and actual != expected:
            raise WrongNetwork(f"{self.config.chain}: endpoint {self.endpoints.current} serves genesis {actual}, "
                               f"configured {expected}; nothing was published from it")
