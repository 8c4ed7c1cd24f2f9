"""Process wiring for ``haltwatch backfill`` (EVM only): the backfill's loop inside the wiring every connector
shares (:mod:`connectors.run_feed`: Kafka, labels, metrics, signals).

``haltwatch connect`` needs nothing of its own here: :func:`connectors.run_feed.feed_for` builds every
family's connector, EVM's included.
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
from connectors.feed_loop import WrongNetwork
from connectors.metrics import ConnectorMetrics
from connectors.publisher import BlockPublisher
from connectors.run_feed import load_labels, on_signals, run_process
from schemas.topics import Topics


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
