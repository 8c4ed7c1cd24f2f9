"""``haltwatch connect`` and ``haltwatch backfill``: follow a chain, or publish a range of its past blocks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import orjson
import typer

from access.kafka_security import PLAINTEXT, KafkaSecurity
from access.kafka_topics import DEFAULT_REPLICATION_FACTOR
from access.secrets import redact
from connectors.block_layout import TransferLayout
from haltwatch.kafka_options import check_access, with_kafka_security
from haltwatch.log_setup import LogFormat, configure_logging
from haltwatch.setting_types import UrlOf
from haltwatch.shared_options import (
    KafkaOpt,
    LogFormatOpt,
    MetricsPortOpt,
    PartitionsOpt,
    PrefixOpt,
    ReplicationOpt,
    TransferRecordsOpt,
    VerboseOpt,
)
from schemas.topics import Topics


@with_kafka_security
def connect(
    chain: Annotated[str, typer.Option(envvar="HALTWATCH_CHAIN", help="Chain name used in events, e.g. ethereum.")],
    labels: Annotated[
        list[Path],
        typer.Option(envvar="HALTWATCH_LABELS", help="Label file(s) or folder(s), TOML; later files extend earlier."),
    ],
    ws_url: Annotated[
        list[str] | None,
        typer.Option(envvar="HALTWATCH_WS_URL", parser=UrlOf("ws", "wss", several=True),
                     help="Node websocket URL; repeat (or comma-separate) for failover. "
                     "EVM: required. Solana: pubsub websocket per --url; Bitcoin: mempool.space-style block "
                     "push per --url (optional)."),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option(envvar="HALTWATCH_FAMILY", help="evm | solana | bitcoin | tron; default: from the chain name "
                     "(solana*, bitcoin*, tron*), else evm."),
    ] = None,
    url: Annotated[
        list[str] | None,
        typer.Option(envvar="HALTWATCH_URL", parser=UrlOf("http", "https", several=True),
                     help="Non-EVM: HTTP(S) endpoint (Solana JSON-RPC, Esplora REST base "
                     "such as https://mempool.space/api, Tron full-node HTTP API); repeat for failover."),
    ] = None,
    commitment: Annotated[
        str, typer.Option(envvar="HALTWATCH_COMMITMENT", help="Solana: finalized | confirmed.")
    ] = "finalized",
    poll_s: Annotated[
        float | None,
        typer.Option(envvar="HALTWATCH_POLL_S", min=0.1, help="Non-EVM: seconds without a push before asking the "
                     "node's head (Tron: the poll interval) [solana 5, bitcoin 30, tron 3]."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(envvar="HALTWATCH_HTTP_HEADER", help="Non-EVM: extra HTTP header 'Name: value' (an API key "
                     "header of a commercial endpoint); repeatable."),
    ] = None,
    genesis_hash: Annotated[
        str | None,
        typer.Option(envvar="HALTWATCH_GENESIS_HASH", help="Non-EVM: expected genesis hash; an endpoint of another "
                     "network is refused."),
    ] = None,
    checkpoint: Annotated[
        Path, typer.Option(envvar="HALTWATCH_CHECKPOINT", help="File holding the last published blocks.")
    ] = Path(".haltwatch/checkpoint.json"),
    confirmations: Annotated[
        int, typer.Option(envvar="HALTWATCH_CONFIRMATIONS", min=0, help="Blocks to wait before publishing one "
                          "(0: publish at once and retract on reorgs).")
    ] = 0,
    start_block: Annotated[
        int | None, typer.Option(envvar="HALTWATCH_START_BLOCK", help="First block when there is no checkpoint.")
    ] = None,
    chain_id: Annotated[
        int | None, typer.Option(envvar="HALTWATCH_CHAIN_ID", help="Expected eth_chainId; a node serving another "
                                 "chain is refused.")
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option(envvar="HALTWATCH_TOKENS", help="ERC-20 contract(s) of interest; none = every ERC-20."),
    ] = None,
    reorg_window: Annotated[
        int, typer.Option(envvar="HALTWATCH_REORG_WINDOW", min=0, help="Published blocks remembered for reorgs "
                          "(at least confirmations + 64).")
    ] = 0,
    lag_blocks: Annotated[
        int, typer.Option(envvar="HALTWATCH_LAG_BLOCKS", min=1, help="Leave a node this many blocks behind another.")
    ] = 5,
    lag_check_s: Annotated[
        float, typer.Option(envvar="HALTWATCH_LAG_CHECK_S", min=0.1, help="Seconds between endpoint head checks.")
    ] = 30.0,
    metrics_port: MetricsPortOpt = 0,
    max_frame_mb: Annotated[
        int, typer.Option(envvar="HALTWATCH_MAX_FRAME_MB", min=1,
                          help="Largest websocket frame (non-EVM: also HTTP body) accepted, MB.")
    ] = 64,
    rotation_min_funding: Annotated[
        int | None,
        typer.Option(envvar="HALTWATCH_ROTATION_MIN_FUNDING", min=0,
                     help="Native coins an exchange wallet must send a fresh address to watch it as a possible "
                          "new hot wallet (0: off) [evm 50, solana 500, bitcoin 10, tron 100000]."),
    ] = None,
    rotation_min_recipients: Annotated[
        int,
        typer.Option(envvar="HALTWATCH_ROTATION_MIN_RECIPIENTS", min=1,
                     help="Distinct outside addresses it must pay before it is suggested as a hot wallet."),
    ] = 20,
    transfer_records: TransferRecordsOpt = TransferLayout.BLOCK,
    kafka: KafkaOpt = "127.0.0.1:9092",
    prefix: PrefixOpt = "haltwatch",
    partitions: PartitionsOpt = 8,
    replication_factor: ReplicationOpt = DEFAULT_REPLICATION_FACTOR,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
    kafka_security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Follow a chain (EVM, Solana, Bitcoin or Tron) and publish labelled transfers and chain heads to Kafka
    (SIGHUP reloads labels)."""
    from connectors.family import family_of, parse_family
    from connectors.run_feed import FeedOptions, feed_for, run_feed

    configure_logging(verbose, log_format)
    check_access(kafka, kafka_security)
    try:
        chosen = parse_family(family) if family else family_of(chain)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--family") from None
    options = FeedOptions(
        chain, url or [], ws_url or [], confirmations, start_block, genesis_hash, header or [], poll_s,
        commitment, token or [], reorg_window, max_frame_mb, rotation_min_funding, rotation_min_recipients,
        chain_id, lag_blocks, lag_check_s,
    )
    with usage_errors():
        feed_class, feed_config = feed_for(chosen, options)
        code = run_feed(feed_class, feed_config, labels, checkpoint, kafka, Topics(prefix), partitions,
                        metrics_port, replication_factor, transfer_records, kafka_security)
    raise typer.Exit(code)


@with_kafka_security
def backfill(
    chain: Annotated[str, typer.Option(envvar="HALTWATCH_CHAIN", help="Chain name used in events, e.g. ethereum.")],
    ws_url: Annotated[
        list[str], typer.Option(envvar="HALTWATCH_WS_URL", parser=UrlOf("ws", "wss", several=True),
                                help="Node websocket URL; repeat for failover.")
    ],
    labels: Annotated[list[Path], typer.Option(envvar="HALTWATCH_LABELS", help="Label file(s) or folder(s), TOML.")],
    from_block: Annotated[int, typer.Option(min=0, help="First block to publish.")],
    to_block: Annotated[int, typer.Option(min=0, help="Last block to publish (inclusive).")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Resume file of this backfill [.haltwatch/backfill-CHAIN-FROM-TO.json].")
    ] = None,
    chain_id: Annotated[int | None, typer.Option(envvar="HALTWATCH_CHAIN_ID", help="Expected eth_chainId.")] = None,
    token: Annotated[list[str] | None, typer.Option(envvar="HALTWATCH_TOKENS", help="ERC-20 contract(s).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    metrics_port: MetricsPortOpt = 0,
    transfer_records: TransferRecordsOpt = TransferLayout.BLOCK,
    kafka: KafkaOpt = "127.0.0.1:9092",
    prefix: PrefixOpt = "haltwatch",
    partitions: PartitionsOpt = 8,
    replication_factor: ReplicationOpt = DEFAULT_REPLICATION_FACTOR,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
    kafka_security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Publish past blocks like the live connector (events and heads), to pre-warm detection; resumable."""
    from connectors.evm.config import EvmChainConfig, parse_tokens
    from connectors.evm.run import run_backfill
    from connectors.run_feed import split_values

    configure_logging(verbose, log_format)
    if to_block < from_block:
        raise typer.BadParameter(f"must be at least --from-block ({from_block}), got {to_block}",
                                 param_hint="'--to-block'")
    check_access(kafka, kafka_security)
    resume = checkpoint or Path(f".haltwatch/backfill-{chain}-{from_block}-{to_block}.json")
    with usage_errors():
        config = EvmChainConfig(chain, split_values(ws_url), chain_id=chain_id, tokens=parse_tokens(token or []))
        result = run_backfill(config, labels, resume, kafka, Topics(prefix), partitions, from_block, to_block,
                              metrics_port, progress, replication_factor, transfer_records, kafka_security)
    if isinstance(result, int):
        raise typer.Exit(result)
    if as_json:
        typer.echo(orjson.dumps({
            "chain": chain, "from_block": from_block, "to_block": to_block, "blocks": result.blocks,
            "events": result.events, "seconds": result.seconds, "blocks_per_s": result.blocks_per_s,
            "events_per_s": result.events_per_s, "checkpoint": str(resume)}).decode())
        return
    typer.echo(
        f"backfill {chain} {from_block}..{to_block}: {result.blocks} blocks, {result.events} events published in "
        f"{result.seconds:.1f} s ({result.blocks_per_s:.1f} blocks/s, {result.events_per_s:.0f} events/s); "
        f"checkpoint {resume}"
    )


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """A bad label file or option found while building the connector: one usage line naming the flag (exit 2),
    secrets masked, not a traceback."""
    from connectors.labels import LabelError

    try:
        yield
    except LabelError as exc:
        raise typer.BadParameter(redact(str(exc)), param_hint="--labels") from None
    except ValueError as exc:  # an OptionError names its flag
        raise typer.BadParameter(redact(str(exc)), param_hint=getattr(exc, "flag", None)) from None


def register(app: typer.Typer) -> None:
    app.command()(connect)
    app.command()(backfill)
