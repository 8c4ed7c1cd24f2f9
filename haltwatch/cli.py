"""The ``haltwatch`` command: one entry point for the connector, the worker, queries and the demo.

Every option can also be set by an environment variable (shown in ``--help``), which is how
docker-compose configures the services.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import orjson
import typer

from schemas.topics import Topics

app = typer.Typer(help="Detect crypto-exchange withdrawal halts from on-chain data.", no_args_is_help=True)

KafkaOpt = Annotated[str, typer.Option(envvar="HALTWATCH_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")]
PrefixOpt = Annotated[str, typer.Option(envvar="HALTWATCH_TOPIC_PREFIX", help="Prefix of every topic name.")]
PartitionsOpt = Annotated[int, typer.Option(envvar="HALTWATCH_PARTITIONS", min=1, help="Partitions per topic.")]
ClickHouseOpt = Annotated[
    str | None,
    typer.Option(envvar="HALTWATCH_CLICKHOUSE_URL", help="clickhouse://user:pass@host:9000/db; unset = embedded chdb."),
]
ChdbOpt = Annotated[Path, typer.Option(envvar="HALTWATCH_CHDB_PATH", help="Data folder of the embedded chdb store.")]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def connect(
    chain: Annotated[str, typer.Option(envvar="HALTWATCH_CHAIN", help="Chain name used in events, e.g. ethereum.")],
    ws_url: Annotated[
        list[str],
        typer.Option(envvar="HALTWATCH_WS_URL", help="Node websocket URL; repeat (or comma-separate) for failover."),
    ],
    labels: Annotated[
        list[Path],
        typer.Option(envvar="HALTWATCH_LABELS", help="Label file(s) or folder(s), TOML; later files extend earlier."),
    ],
    checkpoint: Annotated[
        Path, typer.Option(envvar="HALTWATCH_CHECKPOINT", help="File holding the last published blocks.")
    ] = Path(".haltwatch/checkpoint.json"),
    confirmations: Annotated[int, typer.Option(envvar="HALTWATCH_CONFIRMATIONS", min=0)] = 0,
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
    metrics_port: Annotated[
        int, typer.Option(envvar="HALTWATCH_METRICS_PORT", min=0, help="Prometheus /metrics port; 0 = off.")
    ] = 0,
    max_frame_mb: Annotated[int, typer.Option(envvar="HALTWATCH_MAX_FRAME_MB", min=1)] = 64,
    rotation_min_funding: Annotated[
        int,
        typer.Option(envvar="HALTWATCH_ROTATION_MIN_FUNDING", min=0,
                     help="Native coins an exchange wallet must send a fresh address to watch it as a possible "
                          "new hot wallet (0: off)."),
    ] = 50,
    rotation_min_recipients: Annotated[
        int,
        typer.Option(envvar="HALTWATCH_ROTATION_MIN_RECIPIENTS", min=1,
                     help="Distinct outside addresses it must pay before it is suggested as a hot wallet."),
    ] = 20,
    kafka: KafkaOpt = "127.0.0.1:9092",
    prefix: PrefixOpt = "haltwatch",
    partitions: PartitionsOpt = 8,
    verbose: bool = False,
) -> None:
    """Follow an EVM chain and publish labelled transfers and chain heads to Kafka (SIGHUP reloads labels)."""
    from connectors.evm.config import EvmChainConfig
    from connectors.evm.run import parse_tokens, run_connector, split_urls
    from connectors.labels import LabelError

    _logging(verbose)
    try:
        config = EvmChainConfig(
            chain, split_urls(ws_url), confirmations, start_block, chain_id=chain_id,
            tokens=parse_tokens(token or []), reorg_window=reorg_window, lag_blocks=lag_blocks,
            lag_check_s=lag_check_s, max_frame_bytes=max_frame_mb * 1024 * 1024,
            rotation_min_funding=rotation_min_funding, rotation_min_recipients=rotation_min_recipients,
        )
        code = run_connector(config, labels, checkpoint, kafka, Topics(prefix), partitions, metrics_port)
    except LabelError as exc:
        raise typer.BadParameter(str(exc), param_hint="--labels") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def backfill(
    chain: Annotated[str, typer.Option(envvar="HALTWATCH_CHAIN", help="Chain name used in events, e.g. ethereum.")],
    ws_url: Annotated[
        list[str], typer.Option(envvar="HALTWATCH_WS_URL", help="Node websocket URL; repeat for failover.")
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
    metrics_port: Annotated[int, typer.Option(envvar="HALTWATCH_METRICS_PORT", min=0)] = 0,
    kafka: KafkaOpt = "127.0.0.1:9092",
    prefix: PrefixOpt = "haltwatch",
    partitions: PartitionsOpt = 8,
    verbose: bool = False,
) -> None:
    """Publish past blocks like the live connector (events and heads), to pre-warm detection; resumable."""
    from connectors.evm.config import EvmChainConfig
    from connectors.evm.run import parse_tokens, run_backfill, split_urls
    from connectors.labels import LabelError

    _logging(verbose)
    resume = checkpoint or Path(f".haltwatch/backfill-{chain}-{from_block}-{to_block}.json")
    try:
        config = EvmChainConfig(chain, split_urls(ws_url), chain_id=chain_id, tokens=parse_tokens(token or []))
        result = run_backfill(config, labels, resume, kafka, Topics(prefix), partitions, from_block, to_block,
                              metrics_port, progress)
    except LabelError as exc:
        raise typer.BadParameter(str(exc), param_hint="--labels") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if isinstance(result, int):
        raise typer.Exit(result)
    typer.echo(
        f"backfill {chain} {from_block}..{to_block}: {result.blocks} blocks, {result.events} events published in "
        f"{result.seconds:.1f} s ({result.blocks_per_s:.1f} blocks/s, {result.events_per_s:.0f} events/s); "
        f"checkpoint {resume}"
    )


@app.command()
def worker(
    kafka: KafkaOpt = "127.0.0.1:9092",
    prefix: PrefixOpt = "haltwatch",
    partitions: PartitionsOpt = 8,
    clickhouse_url: ClickHouseOpt = None,
    chdb_path: ChdbOpt = Path(".haltwatch/chdb"),
    web_port: Annotated[int, typer.Option(envvar="HALTWATCH_WEB_PORT")] = 6066,
    web_host: Annotated[str, typer.Option(envvar="HALTWATCH_WEB_HOST")] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(envvar="HALTWATCH_DATA_DIR")] = Path(".haltwatch/worker"),
    false_alarms: Annotated[
        float,
        typer.Option(envvar="HALTWATCH_FALSE_ALARMS", help="False alarms allowed per exchange per budget period."),
    ] = 1.0,
    budget_days: Annotated[
        float, typer.Option(envvar="HALTWATCH_BUDGET_DAYS", help="Length of the false-alarm budget period, days.")
    ] = 90.0,
    exchange_metadata: Annotated[
        Path | None,
        typer.Option(envvar="HALTWATCH_EXCHANGE_METADATA", help="TOML of exchange hosting provider/region."),
    ] = None,
    verbose: bool = False,
) -> None:
    """Run a Faust worker: detection, correlation, chain monitoring, outage events and the ClickHouse sink."""
    from faust.worker import Worker

    from streams.app import WorkerSettings, create_app
    from streams.detection import DetectionPolicy, load_exchange_metadata
    from streams.detection.correlation import MetadataError

    try:
        policy = DetectionPolicy(false_alarms_per_exchange=false_alarms, budget_days=budget_days)
        metadata = load_exchange_metadata(exchange_metadata) if exchange_metadata else {}
    except (ValueError, MetadataError) as exc:
        raise typer.BadParameter(str(exc)) from None

    settings = WorkerSettings(
        kafka_bootstrap=kafka,
        topics=Topics(prefix),
        partitions=partitions,
        app_id=f"{prefix}-worker",
        clickhouse_url=clickhouse_url,
        chdb_path=chdb_path,
        web_host=web_host,
        web_port=web_port,
        data_dir=data_dir,
        policy=policy,
        exchange_metadata=metadata,
    )
    faust_app = create_app(settings)
    Worker(faust_app, loglevel="debug" if verbose else "info", quiet=True).execute_from_commandline()


@app.command()
def outages(
    exchange: Annotated[str | None, typer.Option(help="Only this exchange.")] = None,
    clickhouse_url: ClickHouseOpt = None,
    chdb_path: ChdbOpt = Path(".haltwatch/chdb"),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List outage state changes stored in ClickHouse (stop the worker first when using embedded chdb)."""
    from streams.store.backend import open_backend
    from streams.store.queries import recent_outages

    backend = open_backend(clickhouse_url, chdb_path)
    try:
        rows = recent_outages(backend, exchange)
    finally:
        backend.close()
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    if not rows:
        typer.echo("no outages stored")
    for row in rows:
        typer.echo(
            f"{row['exchange']:<12} {row['state']:<9} scope={','.join(row['scope'])} "
            f"started={row['started_at']} resolved={row['resolved_at']} confidence={row['confidence']:.6f} "
            f"id={row['outage_id']}"
        )


@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help="halt | stall | normal")] = "halt",
    keep_running: Annotated[bool, typer.Option(help="Leave Kafka and anvil running at the end.")] = False,
) -> None:
    """Play an exchange halt on a local chain and watch haltwatch detect it (starts and stops everything)."""
    from haltwatch.demo import run_demo

    raise typer.Exit(run_demo(scenario, keep_running))


operator_cli.register(app)


def hoist_config(argv: list[str]) -> list[str]:
    """Accept ``--config FILE`` after the command too (``haltwatch worker --config f.toml``): it is an option
    of ``haltwatch`` itself, so it moves to the front."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return [arg, argv[i + 1], *argv[:i], *argv[i + 2:]]
        if arg.startswith("--config="):
            return [arg, *argv[:i], *argv[i + 1:]]
    return argv


@app.command()
def backtest(
    input_path: Annotated[
        Path, typer.Option("--input", exists=True, dir_okay=False, help="Events as on the topics: JSONL or JSONL.gz.")
    ],
    output_path: Annotated[Path, typer.Option("--output", help="Where to write the detector's outputs (JSONL).")],
    false_alarms: Annotated[float, typer.Option(help="False alarms allowed per exchange per budget period.")] = 1.0,
    budget_days: Annotated[float, typer.Option(help="Length of the false-alarm budget period, days.")] = 90.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay a file of transfer events and chain heads through the same detector the worker runs."""
    import dataclasses

    from streams.detection import DetectionPolicy
    from streams.detection.backtest import BacktestError, run_backtest

    try:
        policy = DetectionPolicy(false_alarms_per_exchange=false_alarms, budget_days=budget_days)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        summary = run_backtest(input_path, output_path, policy, progress=progress and not as_json)
    except BacktestError as exc:
        typer.echo(f"backtest failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(orjson.dumps(dataclasses.asdict(summary), default=str).decode())
    else:
        typer.echo(summary.format())


def main() -> None:
    secrets.install()
    app(args=hoist_config(sys.argv[1:]), prog_name="haltwatch")
