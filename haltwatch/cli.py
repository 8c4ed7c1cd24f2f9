"""The ``haltwatch`` command: one entry point for the connector, the worker, queries and the demo.

Every option can also be set by an environment variable (shown in ``--help``), which is how
docker-compose configures the services.
"""

from __future__ import annotations

import asyncio
import logging
import signal
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
    ws_url: Annotated[str, typer.Option(envvar="HALTWATCH_WS_URL", help="Node websocket URL.")],
    labels: Annotated[
        list[Path], typer.Option(envvar="HALTWATCH_LABELS", help="Label file(s), TOML; later files extend earlier.")
    ],
    checkpoint: Annotated[
        Path, typer.Option(envvar="HALTWATCH_CHECKPOINT", help="File holding the last published block.")
    ] = Path(".haltwatch/checkpoint.json"),
    confirmations: Annotated[int, typer.Option(envvar="HALTWATCH_CONFIRMATIONS", min=0)] = 0,
    start_block: Annotated[
        int | None, typer.Option(envvar="HALTWATCH_START_BLOCK", help="First block when there is no checkpoint.")
    ] = None,
    kafka: KafkaOpt = "127.0.0.1:9092",
    prefix: PrefixOpt = "haltwatch",
    partitions: PartitionsOpt = 8,
    verbose: bool = False,
) -> None:
    """Follow an EVM chain and publish labelled transfers and chain heads to Kafka."""
    from connectors.checkpoint import CheckpointFile
    from connectors.evm.connector import EvmChainConfig, EvmConnector
    from connectors.labels import LabelError, LabelRegistry
    from connectors.publisher import BlockPublisher, ensure_topics

    _logging(verbose)
    try:
        registry = LabelRegistry.from_files(labels)
    except LabelError as exc:
        raise typer.BadParameter(str(exc), param_hint="--labels") from None
    topics = Topics(prefix)
    ensure_topics(kafka, topics, partitions)
    publisher = BlockPublisher(kafka, topics)
    connector = EvmConnector(
        EvmChainConfig(chain, ws_url, confirmations, start_block), registry, publisher, CheckpointFile(checkpoint)
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, connector.stop)
        await connector.run()

    try:
        asyncio.run(main())
    finally:
        publisher.close()


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


def main() -> None:
    app()
