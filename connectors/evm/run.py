"""Process wiring for ``haltwatch connect`` and ``haltwatch backfill``: Kafka, labels, metrics, signals.

Kept out of the CLI module so the command functions stay a list of options, and so tests and the
benchmark can start the same wiring in-process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from connectors.checkpoint import EXIT_CHECKPOINT, CheckpointError, CheckpointFile
from connectors.evm.backfill import Backfill, BackfillResult
from connectors.evm.config import EvmChainConfig
from connectors.evm.connector import EvmConnector
from connectors.evm.node import ChainIdMismatch
from connectors.label_watch import LabelSource
from connectors.labels import describe
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher, ensure_topics
from schemas.topics import Topics

log = logging.getLogger(__name__)
EXIT_CONFIG = 2


def parse_tokens(tokens: Sequence[str]) -> frozenset[str] | None:
    """Token contract addresses (comma or space separated); empty means every ERC-20."""
    found = {t.strip().lower() for item in tokens for t in item.replace(",", " ").split() if t.strip()}
    for token in found:
        if len(token) != 42 or not token.startswith("0x") or any(c not in "0123456789abcdef" for c in token[2:]):
            raise ValueError(f"not a token contract address: {token!r}")
    return frozenset(found) or None


def split_urls(urls: Sequence[str]) -> tuple[str, ...]:
    """Websocket URLs given as repeated options and/or comma/space separated (as in one env variable)."""
    return tuple(u for item in urls for u in item.replace(",", " ").split() if u)


def _labels(config: EvmChainConfig, paths: Sequence[Path]) -> LabelSource:
    source = LabelSource(paths)  # LabelError propagates: a bad file at start is the user's to fix
    wallets = source.registry.wallets(config.chain)
    if not wallets:
        log.warning("%s: no labelled wallet for this chain in %s", config.chain, [str(p) for p in paths])
    log.info("%s: labels: %s", config.chain, describe(wallets))
    return source


def run_connector(config: EvmChainConfig, label_paths: Sequence[Path], checkpoint: Path, kafka: str,
                  topics: Topics, partitions: int, metrics_port: int) -> int:
    """Follow the chain until SIGINT/SIGTERM (SIGHUP reloads labels); returns the exit code."""
    source = _labels(config, label_paths)
    ensure_topics(kafka, topics, partitions)
    publisher = BlockPublisher(kafka, topics)
    metrics = ConnectorMetrics(config.chain)
    metrics.serve(metrics_port)

    checkpoint_file = CheckpointFile(checkpoint)

    async def main() -> None:
        connector = EvmConnector(config, source, publisher, checkpoint_file, metrics)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, connector.stop)
        loop.add_signal_handler(signal.SIGHUP, connector.request_label_reload)
        await connector.run()

    try:
        asyncio.run(main())
    except ChainIdMismatch as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except CheckpointError as exc:
        log.error("%s", exc)
        return EXIT_CHECKPOINT
    finally:
        publisher.close()
    return EXIT_CHECKPOINT if checkpoint_file.last_error is not None else 0


def run_backfill(config: EvmChainConfig, label_paths: Sequence[Path], checkpoint: Path, kafka: str, topics: Topics,
                 partitions: int, from_block: int, to_block: int, metrics_port: int = 0,
                 progress: bool = True) -> BackfillResult | int:
    """Publish ``from_block..to_block``; returns the result, or an exit code on a configuration error."""
    source = _labels(config, label_paths)
    ensure_topics(kafka, topics, partitions)
    publisher = BlockPublisher(kafka, topics)
    metrics = ConnectorMetrics(config.chain)
    metrics.serve(metrics_port)

    checkpoint_file = CheckpointFile(checkpoint)

    async def main() -> BackfillResult:
        backfill = Backfill(config, source, publisher, checkpoint_file, from_block, to_block, metrics,
                            progress=progress)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, backfill.stop)
        return await backfill.run()

    try:
        result = asyncio.run(main())
    except (ChainIdMismatch, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except CheckpointError as exc:
        log.error("%s", exc)
        return EXIT_CHECKPOINT
    finally:
        publisher.close()
    return EXIT_CHECKPOINT if checkpoint_file.last_error is not None else result
