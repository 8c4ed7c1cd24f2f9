"""What every connector does the same way: heartbeats, label reloads, the reconnect loop, placing a block.

A family's connector (EVM, Solana, Bitcoin, Tron) only says how to follow its chain through one endpoint
(:meth:`FeedLoop.session`) and how to read one block. This base runs that session, and when it fails for
any reason other than a stop or a configuration mistake, counts the reason, waits a jittered, growing time,
moves to the next endpoint when several are configured, and starts a new session; every session starts by
reading forward from the checkpoint, so nothing is lost across reconnects or restarts. Heartbeats go out every
few seconds whatever the node does, so the worker can tell a stalled chain from a lost feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, Protocol, TypeVar

from websockets.exceptions import WebSocketException

from connectors.backoff import Backoff
from connectors.checkpoint import CheckpointFile
from connectors.endpoints import EndpointPool, NodeLagging
from connectors.family import ChainFamily
from connectors.label_watch import LabelSource
from connectors.linked_writer import LinkedBlock, LinkedWriter, MalformedBlock, Stopped
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher, PublishError
from connectors.read_ahead import read_ahead
from connectors.reorg import CanonicalHash
from connectors.rotation import RotationWatch
from schemas.records import NATIVE_ASSET, FeedHeartbeat

log = logging.getLogger(__name__)
STABLE_CONNECTION_S = 30.0
"""A session that lasted this long resets the reconnect backoff."""
MAX_FRUITLESS_UNDOS = 10
"""Forks that find nothing to undo, in a row, before the node is taken as inconsistent (reconnect/failover)."""


class NodeError(RuntimeError):
    """The node answered, but not with what the protocol documents (an error reply, an impossible value)."""


class WrongNetwork(RuntimeError):
    """The endpoint serves another network than configured: nothing is published from it, and no retry helps."""


class BlockUnavailable(RuntimeError):
    """The node has no block at this number (yet): wait for the next pass instead of skipping it."""


class ConnectionLost(RuntimeError):
    """A websocket feed of new blocks closed; the session ends and a new one reads from the checkpoint."""


class FeedSettings(Protocol):
    """The settings the loop itself reads; each family's configuration has them and more."""

    @property
    def chain(self) -> str: ...
    @property
    def family(self) -> ChainFamily: ...
    @property
    def source(self) -> str: ...
    @property
    def endpoint_urls(self) -> tuple[str, ...]: ...
    @property
    def window(self) -> int: ...
    @property
    def start_block(self) -> int | None: ...
    @property
    def heartbeat_s(self) -> float: ...
    @property
    def labels_poll_s(self) -> float: ...
    @property
    def prefetch(self) -> int: ...
    @property
    def native_decimals(self) -> int: ...
    @property
    def rotation_min_funding(self) -> int: ...
    @property
    def rotation_min_recipients(self) -> int: ...


S = TypeVar("S", bound=FeedSettings)


class FeedLoop(ABC, Generic[S]):
    """Runs one chain's sessions until stopped; subclasses implement :meth:`session`."""

    REFUSALS: ClassVar[tuple[type[Exception], ...]] = ()
    """The family's errors for an endpoint that refused us with an HTTP ``status`` (429: rate limited)."""
    CONNECTION_ERRORS: ClassVar[tuple[type[Exception], ...]] = ()
    """The family's errors for a lost or unreachable endpoint, besides the OS and websocket ones."""
    NODE_ERRORS: ClassVar[tuple[type[Exception], ...]] = ()
    """The family's errors for a node that answered, but not as its protocol documents."""
    REBASE_ON_NODE: ClassVar[bool] = False
    """Passed to :class:`LinkedWriter` as ``rebase_on_node``: after a fork deeper than remembered, ask the node."""

    def __init__(
        self,
        config: S,
        labels: LabelSource,
        publisher: BlockPublisher,
        checkpoint: CheckpointFile,
        metrics: ConnectorMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.labels = labels
        self.publisher = publisher
        self.clock = clock
        self.metrics = metrics or ConnectorMetrics(config.chain)
        self.stopping = asyncio.Event()
        self.reload_labels = asyncio.Event()
        self.writer = LinkedWriter(config.chain, config.source, config.window, publisher, checkpoint, self.metrics,
                                   self.stopping, clock, rebase_on_node=self.REBASE_ON_NODE)
        self.endpoints = EndpointPool(config.endpoint_urls)
        self.rotation = (
            RotationWatch(
                config.chain, lambda: self.labels.registry,
                {NATIVE_ASSET: config.rotation_min_funding * 10**config.native_decimals},
                min_recipients=config.rotation_min_recipients, clock=clock,
            )
            if config.rotation_min_funding > 0 else None
        )
        self.reconnects = 0
        self.connected = False
        self._fruitless_undos = 0

    # -- control -----------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping.set()

    @property
    def delivering(self) -> bool:
        """Connected, and not held by a checkpoint that cannot be written: the heartbeat's ``connected``, so
        that the worker reports a lost feed (not a stalled chain) while the connector holds at a block."""
        return self.connected and self.writer.checkpoint_file.last_error is None

    def request_label_reload(self) -> None:
        """SIGHUP: reload label files now."""
        self.reload_labels.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep that ends early on stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def bad_payload(self, raw: str, reason: str) -> None:
        """Unusable bytes from the node (a frame or body): a dead letter, never a crash."""
        self.writer.dead_letter(raw, reason, "frame")

    def set_node_head(self, number: int) -> None:
        self.writer.node_head = number
        self.metrics.node_head(number)

    def start_at(self, tip: int) -> None:
        """Without a checkpoint, start at ``--start-block`` or at the node's (confirmed) head."""
        if self.writer.checkpoint is None and self.writer.first_number is None:
            start = self.config.start_block if self.config.start_block is not None else tip
            self.writer.first_number = max(start, 0)

    def heartbeat_node_head(self) -> int:
        """The node head a heartbeat reports: above the published number only while we are behind the node."""
        return self.writer.node_head

    # -- background duties -------------------------------------------------------------------------
    async def _heartbeats(self) -> None:
        while not self.stopping.is_set():
            published = self.writer.published_number
            beat = FeedHeartbeat(self.config.chain, max(self.heartbeat_node_head(), published), published,
                                 self.delivering, self.clock())
            try:
                await asyncio.to_thread(self.publisher.heartbeat, beat)
            except PublishError as exc:
                log.warning("%s: heartbeat not delivered: %s", self.config.chain, exc)
            await self.sleep(self.config.heartbeat_s)

    async def _label_reloads(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reload_labels.wait(), timeout=self.config.labels_poll_s)
            forced = self.reload_labels.is_set()
            self.reload_labels.clear()
            result = await asyncio.to_thread(self.labels.poll, forced)
            if result.registry is not None:
                self.metrics.label_reload("ok")
            elif result.error is not None:
                self.metrics.label_reload("error")
                self.writer.dead_letter(result.error, "label files not reloaded; previous labels kept", "labels")
                await self.writer.flush_dead_letters()

    # -- main loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until :meth:`stop`; reconnects with exponential backoff and jitter."""
        duties = [
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._label_reloads(), name="label reloads"),
        ]
        try:
            await self._run()
        finally:
            self.stopping.set()
            self.reload_labels.set()
            await asyncio.gather(*duties, return_exceptions=True)
            with contextlib.suppress(PublishError):
                await self.writer.flush_dead_letters()

    async def _run(self) -> None:
        backoff = Backoff(initial=0.5, maximum=30.0)
        while not self.stopping.is_set():
            url = self.endpoints.current
            started = time.monotonic()
            failure = await self._session_outcome(url)
            reason = self.classify_failure(failure)
            if reason is None or self.stopping.is_set():
                break
            self.reconnects += 1
            self.metrics.reconnect(reason)
            await self.writer.flush_dead_letters()
            if time.monotonic() - started >= STABLE_CONNECTION_S:
                backoff.reset()
            if isinstance(failure, NodeLagging):
                continue  # the pool already points at the better endpoint
            if len(self.endpoints.urls) > 1:
                log.info("%s: failing over to %s", self.config.chain, self.endpoints.rotate())
            await self.sleep(backoff.next_delay())

    async def _session_outcome(self, url: str) -> BaseException | None:
        """Run one session; the exception that ended it (None when it ended by a stop)."""
        try:
            await self.session(url)
        except Stopped:
            return None
        except WrongNetwork:
            raise
        except Exception as exc:  # classified below; a bug must not end the feed silently
            return exc
        finally:
            self.connected = False
        return None

    def classify_failure(self, exc: BaseException | None) -> str | None:
        """The metrics reason of a failed session (logged); None means: stop the loop."""
        chain = self.config.chain
        if exc is None:
            return None
        if isinstance(exc, NodeLagging):
            log.warning("%s: %s", chain, exc)
            return "node_lagging"
        if isinstance(exc, self.REFUSALS):
            log.warning("%s: %s", chain, exc)
            return "rate_limited" if getattr(exc, "status", None) == 429 else "refused"
        if isinstance(exc, (ConnectionLost, OSError, TimeoutError, WebSocketException, *self.CONNECTION_ERRORS)):
            log.warning("%s: connection to %s lost (%s)", chain, self.endpoints.current, exc)
            return "connection"
        if isinstance(exc, (NodeError, *self.NODE_ERRORS)):
            log.warning("%s: node error from %s (%s)", chain, self.endpoints.current, exc)
            return "node_error"
        if isinstance(exc, MalformedBlock):
            log.warning("%s: malformed block from %s (%s)", chain, self.endpoints.current, exc)
            return "malformed_block"
        log.error("%s: unexpected error; reconnecting", chain, exc_info=exc)
        return "unexpected"

    @abstractmethod
    async def session(self, url: str) -> None:
        """Follow the chain through the endpoint ``url`` until stopped or until something fails."""

    # -- shared block handling ---------------------------------------------------------------------
    async def publish_forward(self, last: int, read: Callable[[int], Awaitable[LinkedBlock]],
                              canonical_hash: CanonicalHash) -> None:
        """Publish every number from the checkpoint up to ``last``, in order; read again after a fork.

        ``prefetch`` reads run ahead of the block being published, no more, so a slow broker slows the reading.
        A number the node has no block at yet (:class:`BlockUnavailable`) ends the pass until the next one.
        """
        again = True
        while again and self.writer.next_number <= last and not self.stopping.is_set():
            again = False
            numbers = range(self.writer.next_number, last + 1)
            try:
                async with contextlib.aclosing(read_ahead(numbers, read, self.config.prefetch)) as reads:
                    async for _, block in reads:
                        if self.stopping.is_set():
                            return
                        if not await self.publish_or_undo(block, canonical_hash):
                            again = True
                            break
            except BlockUnavailable as exc:
                log.info("%s; waiting for the node", exc)
                return

    async def publish_or_undo(self, block: LinkedBlock, canonical_hash: CanonicalHash) -> bool:
        """Publish a block that extends the checkpoint; True when it was published.

        A block whose parent lies ahead of the checkpoint means a block in between was not read yet (False:
        read again from the checkpoint later). A block whose parent is not our last block is a fork: the
        orphaned blocks are retracted (False: read again from the common ancestor).
        """
        if self.writer.extends(block):
            await self.writer.publish(block)
            self._fruitless_undos = 0
            return True
        if self.writer.misses_parent(block):
            log.info("%s: block %d has parent %d, after published %d: waiting for the blocks in between",
                     self.config.chain, block.head.number, block.parent_number, self.writer.published_number)
            return False
        if self.writer.can_walk_back:
            if await self.writer.undo_reorg(canonical_hash) > 0:
                self._fruitless_undos = 0
                return False
            self._fruitless_undos += 1  # the block we read was already replaced, or the node contradicts itself
            if self._fruitless_undos >= MAX_FRUITLESS_UNDOS:
                self._fruitless_undos = 0
                raise NodeError(f"block {block.head.number} names parent {block.head.parent_hash}, but the node "
                                f"still has our block {self.writer.published_number} at that height")
            await self.sleep(0.5)
            return False
        self.writer.accept_unverified(block)
        await self.writer.publish(block)
        return True
