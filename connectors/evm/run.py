"""Process wiring for ``haltwatch connect`` and ``haltwatch backfill``: Kafka, labels, metrics, signals.

The wiring itself is every family's (:mod:`connectors.run_feed`); this module adds the EVM options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from access.kafka_security import PLAINTEXT, KafkaSecurity
from access.kafka_topics import DEFAULT_REPLICATION_FACTOR
from connectors.block_layout import TransferLayout
from connectors.checkpoint import CheckpointFile
from connectors.evm.backfill import Backfill, BackfillResult
from connectors.evm.config import EvmChainConfig
from connectors.evm.connector import EvmConnector
from connectors.feed_loop import WrongNetwork
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher
from connectors.run_feed import load_labels, on_signals, run_feed, run_process
from schemas.topics import Topics


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


def run_connector(config: EvmChainConfig, label_paths: Sequence[Path], checkpoint: Path, kafka: str,
                  topics: Topics, partitions: int, metrics_port: int,
                  replication_factor: int = DEFAULT_REPLICATION_FACTOR,
                  layout: TransferLayout = TransferLayout.BLOCK, security: KafkaSecurity = PLAINTEXT) -> int:
    """Follow the chain until SIGINT/SIGTERM (SIGHUP reloads labels); returns the exit code."""
    return run_feed(EvmConnector, config, label_paths, checkpoint, kafka, topics, partitions, metrics_port,
                    replication_factor, layout, security)


def run_backfill(config: EvmChainConfig, label_paths: Sequence[Path], checkpoint: Path, kafka: str, topics: Topics,
                 partitions: int, from_block: int, to_block: int, metrics_port: int = 0,
                 progress: bool = True,
                 replication_factor: int = DEFAULT_REPLICATION_FACTOR,
                 layout: TransferLayout = TransferLayout.BLOCK,
                 security: KafkaSecurity = PLAINTEXT) -> BackfillResult | int:
    """Publish ``from_block..to_block``; returns the result, or an exit code on a configuration error."""
    source = load_labels(config, label_paths)
    checkpoint_file = CheckpointFile(checkpoint)

    async def main(publisher: BlockPublisher, metrics: ConnectorMetrics) -> BackfillResult:
        backfill = Backfill(config, source, publisher, checkpoint_file, from_block, to_block, metrics,
                            progress=progress)
        on_signals(backfill.stop)
        return await backfill.run()

    return run_process(config.chain, kafka, topics, partitions, metrics_port, checkpoint_file, main,
                       (WrongNetwork, ValueError), replication_factor, layout, security)
