"""Process wiring for ``haltwatch connect`` (every family) and ``haltwatch backfill``: Kafka, labels, metrics, signals.

Kept out of the CLI so the command functions stay a list of options, and so tests and the benchmark can start
the same wiring in-process. The option parsing of every family lives here too (:func:`feed_for`), so that
``connect`` is one path (options, :func:`feed_for`, :func:`run_feed`) whatever the chain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from access.kafka_security import PLAINTEXT, KafkaSecurity
from access.kafka_topics import DEFAULT_REPLICATION_FACTOR
from connectors.addresses import tron_address
from connectors.block_layout import TransferLayout
from connectors.checkpoint import EXIT_CHECKPOINT, CheckpointError, CheckpointFile
from connectors.family import ChainFamily
from connectors.feed_loop import FeedLoop, FeedSettings, WrongNetwork
from connectors.label_watch import LabelSource
from connectors.labels import LabelError, describe
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher, PublishError, ensure_topics
from schemas.topics import Topics

log = logging.getLogger(__name__)
EXIT_CONFIG = 2
EXIT_KAFKA = 1
"""Kafka could not be reached at start-up (after the retries ``ensure_topics`` logs): a supervisor may retry."""
S = TypeVar("S", bound=FeedSettings)
T = TypeVar("T")


def load_labels(config: FeedSettings, paths: Sequence[Path]) -> LabelSource:
    """The label source; a chain labelled as another family than the connector's is a LabelError."""
    source = LabelSource(paths)  # LabelError propagates: a bad file at start is the user's to fix
    family = source.registry.family(config.chain)
    if family is not None and family is not config.family:
        raise LabelError(f"the label files make chain {config.chain!r} a {family.value} chain, but this is a "
                         f"{config.family.value} connector; use the chain name of its labels or family = "
                         f'"{config.family.value}" in them')
    wallets = source.registry.wallets(config.chain)
    if not wallets:
        log.warning("%s: no labelled wallet for this chain in %s", config.chain, [str(p) for p in paths])
    log.info("%s: labels: %s", config.chain, describe(wallets))
    return source


def split_values(values: Sequence[str]) -> tuple[str, ...]:
    """Values given as repeated options and/or comma/space separated (as in one environment variable)."""
    return tuple(v for item in values for v in item.replace(",", " ").split() if v)


class OptionError(ValueError):
    """A ``connect`` option that does not fit the chain's family; ``flag`` is the option to fix."""

    def __init__(self, message: str, flag: str) -> None:
        super().__init__(message)
        self.flag = flag


def parse_headers(values: Sequence[str]) -> dict[str, str]:
    """``Name: value`` pairs (an API key header of a commercial endpoint)."""
    headers = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"an HTTP header is 'Name: value', got {item!r}")
        headers[name.strip()] = value.strip()
    return headers


def run_process(chain: str, kafka: str, topics: Topics, partitions: int, metrics_port: int,
                checkpoint: CheckpointFile, main: Callable[[BlockPublisher, ConnectorMetrics], Coroutine[Any, Any, T]],
                config_errors: tuple[type[Exception], ...] = (WrongNetwork,),
                replication_factor: int = DEFAULT_REPLICATION_FACTOR,
                layout: TransferLayout = TransferLayout.BLOCK,
                security: KafkaSecurity = PLAINTEXT) -> T | int:
    """Topics, a producer and the metrics endpoint, then ``main`` until it returns. A configuration error found
    on the way (wrong network) is logged and becomes :data:`EXIT_CONFIG`; a checkpoint that cannot be read or
    written, at start-up or still failing when stopped, becomes :data:`EXIT_CHECKPOINT`."""
    try:  # what waiting for Kafka cannot fix is said before it: a garbage or unwritable checkpoint
        checkpoint.load()
        checkpoint.check_writable()
    except CheckpointError as exc:
        log.error("%s", exc)
        return EXIT_CHECKPOINT
    try:
        ensure_topics(kafka, topics, partitions, replication_factor=replication_factor, security=security)
    except PublishError as exc:
        log.error("%s", exc)
        return EXIT_KAFKA
    publisher = BlockPublisher(kafka, topics, layout=layout, security=security)
    metrics = ConnectorMetrics(chain)
    metrics.serve(metrics_port)
    try:
        result = asyncio.run(main(publisher, metrics))
    except CheckpointError as exc:
        log.error("%s", exc)
        return EXIT_CHECKPOINT
    except config_errors as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    finally:
        publisher.close()
    return EXIT_CHECKPOINT if checkpoint.last_error is not None else result


def on_signals(stop: Callable[[], None], reload: Callable[[], None] | None = None) -> None:
    """SIGINT/SIGTERM stop the running loop gracefully; SIGHUP (when ``reload`` is given) reloads labels."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


def run_feed(feed_class: type[FeedLoop[S]], config: S, label_paths: Sequence[Path], checkpoint: Path, kafka: str,
             topics: Topics, partitions: int, metrics_port: int,
             replication_factor: int = DEFAULT_REPLICATION_FACTOR,
             layout: TransferLayout = TransferLayout.BLOCK, security: KafkaSecurity = PLAINTEXT) -> int:
    """Follow the chain until SIGINT/SIGTERM (SIGHUP reloads labels); returns the exit code."""
    source = load_labels(config, label_paths)

    checkpoint_file = CheckpointFile(checkpoint)

    async def main(publisher: BlockPublisher, metrics: ConnectorMetrics) -> int:
        feed = feed_class(config, source, publisher, checkpoint_file, metrics)
        on_signals(feed.stop, feed.request_label_reload)
        await feed.run()
        return 0

    return run_process(config.chain, kafka, topics, partitions, metrics_port, checkpoint_file, main,
                       replication_factor=replication_factor, layout=layout, security=security)


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """The ``haltwatch connect`` options, as typed on the command line; each family uses those it has."""

    chain: str
    urls: Sequence[str]
    """HTTP(S) endpoints (not EVM)."""
    ws_urls: Sequence[str] = ()
    confirmations: int = 0
    start_block: int | None = None
    genesis_hash: str | None = None
    headers: Sequence[str] = ()
    poll_s: float | None = None
    commitment: str = "finalized"
    tokens: Sequence[str] = ()
    reorg_window: int = 0
    max_response_mb: int = 64
    """The largest message accepted, MB: a websocket frame, an HTTP body."""
    rotation_min_funding: int | None = None
    """None: the family's default (:data:`DEFAULT_ROTATION_FUNDING`)."""
    rotation_min_recipients: int = 20
    chain_id: int | None = None
    """EVM: the expected ``eth_chainId``."""
    lag_blocks: int = 5
    """EVM: leave a node this many blocks behind another."""
    lag_check_s: float = 30.0
    """EVM: seconds between endpoint head checks."""


DEFAULT_POLL_S = {ChainFamily.SOLANA: 5.0, ChainFamily.BITCOIN: 30.0, ChainFamily.TRON: 3.0}
"""Seconds without a push before asking the head (Tron: the poll interval, one block)."""
DEFAULT_ROTATION_FUNDING = {ChainFamily.EVM: 50, ChainFamily.SOLANA: 500, ChainFamily.BITCOIN: 10,
                            ChainFamily.TRON: 100_000}
"""Whole coins a funding of a fresh address must reach to watch it as a possible new hot wallet: large enough
(tens of thousands of dollars or more) that ordinary user withdrawals are not watched."""


def _rotation_min_funding(family: ChainFamily, options: FeedOptions) -> int:
    given = options.rotation_min_funding
    return DEFAULT_ROTATION_FUNDING[family] if given is None else given


def feed_for(family: ChainFamily, options: FeedOptions) -> tuple[type[FeedLoop[Any]], FeedSettings]:
    """The connector class and its configuration for ``family`` (ValueError on a bad option; an
    :class:`OptionError` names the option). The families' modules are imported here, on use, so that this
    family-neutral module does not depend on any of them."""
    if family is ChainFamily.EVM:
        return _evm_feed(options)
    from connectors.bitcoin.config import BitcoinConfig
    from connectors.bitcoin.connector import BitcoinConnector
    from connectors.solana.config import SolanaConfig
    from connectors.solana.connector import SolanaConnector
    from connectors.tron.config import TronConfig
    from connectors.tron.connector import TronConnector

    if options.tokens and family is not ChainFamily.TRON:
        raise ValueError(f"--token selects TRC-20 contracts on Tron; {family.value} reads every token it sees")
    common: dict[str, Any] = {
        "chain": options.chain, "urls": split_values(options.urls), "ws_urls": split_values(options.ws_urls),
        "confirmations": options.confirmations, "start_block": options.start_block,
        "genesis_hash": options.genesis_hash, "headers": parse_headers(options.headers),
        "head_poll_s": options.poll_s or DEFAULT_POLL_S[family], "reorg_window": options.reorg_window,
        "max_response_bytes": options.max_response_mb * 1024 * 1024,
        "rotation_min_funding": _rotation_min_funding(family, options),
        "rotation_min_recipients": options.rotation_min_recipients,
    }
    if family is ChainFamily.SOLANA:
        return SolanaConnector, SolanaConfig(**common, commitment=options.commitment)
    if family is ChainFamily.BITCOIN:
        return BitcoinConnector, BitcoinConfig(**common)
    if common["ws_urls"]:
        raise ValueError("Tron's HTTP API has no websocket feed: give --url only (it is polled)")
    tokens = frozenset(tron_address(t) for t in split_values(options.tokens)) or None
    return TronConnector, TronConfig(**common, tokens=tokens)


def _evm_feed(options: FeedOptions) -> tuple[type[FeedLoop[Any]], FeedSettings]:
    """An EVM chain is followed over node websockets only: ``--ws-url`` is required and ``--url`` refused."""
    from connectors.evm.config import EvmChainConfig, parse_tokens
    from connectors.evm.connector import EvmConnector

    if not options.ws_urls:
        raise OptionError("an EVM chain needs at least one node websocket URL", "--ws-url")
    if options.urls:
        raise OptionError(f"{options.chain} is an EVM chain, followed over --ws-url; --url is for solana, bitcoin "
                          "and tron (or say --family)", "--url")
    config = EvmChainConfig(
        options.chain, split_values(options.ws_urls), options.confirmations, options.start_block,
        chain_id=options.chain_id, tokens=parse_tokens(options.tokens), reorg_window=options.reorg_window,
        lag_blocks=options.lag_blocks, lag_check_s=options.lag_check_s,
        max_frame_bytes=options.max_response_mb * 1024 * 1024,
        rotation_min_funding=_rotation_min_funding(ChainFamily.EVM, options),
        rotation_min_recipients=options.rotation_min_recipients,
    )
    return EvmConnector, config
