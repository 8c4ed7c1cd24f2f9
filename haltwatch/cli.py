"""The ``haltwatch`` command: one entry point for the connector, the worker, queries and the demo.

Every option can also be set by an environment variable (shown in ``--help``), which is how
docker-compose configures the services, or in a TOML file given with ``--config`` / ``HALTWATCH_CONFIG``
(``haltwatch/config.py``): command line, then environment, then file, then default. Every command runs
with secrets redacted from its logs and errors (``access/secrets.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from access import secrets
from access.kafka_security import PLAINTEXT, KafkaSecurity, quiet_client_libraries
from access.kafka_topics import DEFAULT_REPLICATION_FACTOR
from access.secrets import redact
from connectors.block_layout import LAYOUT_ENV, TransferLayout
from haltwatch import follow, operator_cli
from haltwatch.kafka_options import check_access, with_kafka_security
from haltwatch.log_setup import LogFormat, configure_logging, worker_logging_config
from haltwatch.setting_types import FiniteNumber, HostPorts, UrlOf
from schemas.topics import Topics
from streams.group_membership import DEFAULT_SESSION_TIMEOUT_S
from streams.roles import WorkerRole

app = typer.Typer(
    help="Detect crypto-exchange withdrawal halts from on-chain data.\n\n"
         "Settings come from, first match wins: the command line, the HALTWATCH_* environment variable shown "
         "in each command's --help, the --config TOML file (top-level keys for every command, [COMMAND] "
         "sections for one; `haltwatch config` shows what applies), then the defaults.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold node URLs with API keys and database passwords
    rich_markup_mode=None,  # a usage error is one plain "Error: ..." line a log pipeline keeps, not a box
)
VerboseOpt = Annotated[bool, typer.Option(help="Debug logging, the Kafka and ClickHouse clients' own included.")]


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="HALTWATCH_CONFIG", help="TOML settings file; checked in full at start.",
                     dir_okay=False),
    ] = None,
) -> None:
    if config is not None:
        from haltwatch.config import ConfigError, load_config

        try:
            ctx.default_map = load_config(config, ctx.command)
            for section in (ctx.default_map or {}).values():
                for key, value in section.items():
                    secrets.register_setting(key, value)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

KafkaOpt = Annotated[
    str, typer.Option(envvar="HALTWATCH_KAFKA_BOOTSTRAP", parser=HostPorts(), help="Kafka bootstrap servers.")
]
PrefixOpt = Annotated[str, typer.Option(envvar="HALTWATCH_TOPIC_PREFIX", help="Prefix of every topic name.")]
PartitionsOpt = Annotated[int, typer.Option(envvar="HALTWATCH_PARTITIONS", min=1, help="Partitions per topic.")]
ReplicationOpt = Annotated[
    int,
    typer.Option(envvar="HALTWATCH_REPLICATION_FACTOR", min=1,
                 help="Copies of each topic haltwatch creates; at most the number of brokers (1: a single broker)."),
]
ClickHouseOpt = Annotated[
    str | None,
    typer.Option(envvar="HALTWATCH_CLICKHOUSE_URL", parser=UrlOf("clickhouse", "clickhouses"),
                 help="clickhouse://user:pass@host:9000/db, or clickhouses://...:9440/db?ca_certs=ca.pem for TLS; "
                      "unset = embedded chdb."),
]
ChdbOpt = Annotated[Path, typer.Option(envvar="HALTWATCH_CHDB_PATH", help="Data folder of the embedded chdb store.")]
TransferRecordsOpt = Annotated[
    TransferLayout,
    typer.Option("--transfer-records", envvar=LAYOUT_ENV, case_sensitive=False,
                 help="Transfers-topic layout: block (one record per block and partition) or event (one per "
                      "transfer, as before block records; for workers that do not read them yet)."),
]


LogFormatOpt = Annotated[
    LogFormat, typer.Option(envvar="HALTWATCH_LOG_FORMAT", case_sensitive=False,
                            help="text, or json: one JSON object per log line, for log pipelines.")
]


@app.command()
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
    metrics_port: Annotated[
        int, typer.Option(envvar="HALTWATCH_METRICS_PORT", min=0, help="Prometheus /metrics port; 0 = off.")
    ] = 0,
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
    from connectors.evm.config import EvmChainConfig
    from connectors.evm.run import parse_tokens, run_connector, split_urls
    from connectors.family import ChainFamily, family_of, parse_family
    from connectors.labels import LabelError
    from connectors.run_feed import FeedOptions, feed_for, run_feed

    configure_logging(verbose, log_format)
    check_access(kafka, kafka_security)
    try:
        chosen = parse_family(family) if family else family_of(chain)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--family") from None
    if chosen is not ChainFamily.EVM:
        options = FeedOptions(
            chain, url or [], ws_url or [], confirmations, start_block, genesis_hash, header or [], poll_s,
            commitment, token or [], reorg_window, max_frame_mb, rotation_min_funding, rotation_min_recipients,
        )
        try:
            feed_class, feed_config = feed_for(chosen, options)
            code = run_feed(feed_class, feed_config, labels, checkpoint, kafka, Topics(prefix), partitions,
                            metrics_port, replication_factor, transfer_records, kafka_security)
        except LabelError as exc:
            raise typer.BadParameter(redact(str(exc)), param_hint="--labels") from None
        except ValueError as exc:
            raise typer.BadParameter(redact(str(exc))) from None
        raise typer.Exit(code)
    if not ws_url:
        raise typer.BadParameter("an EVM chain needs at least one node websocket URL", param_hint="--ws-url")
    if url:
        raise typer.BadParameter(f"{chain} is an EVM chain, followed over --ws-url; --url is for solana, bitcoin "
                                 "and tron (or say --family)", param_hint="--url")
    try:
        config = EvmChainConfig(
            chain, split_urls(ws_url), confirmations, start_block, chain_id=chain_id,
            tokens=parse_tokens(token or []), reorg_window=reorg_window, lag_blocks=lag_blocks,
            lag_check_s=lag_check_s, max_frame_bytes=max_frame_mb * 1024 * 1024,
            rotation_min_funding=50 if rotation_min_funding is None else rotation_min_funding,
            rotation_min_recipients=rotation_min_recipients,
        )
        code = run_connector(config, labels, checkpoint, kafka, Topics(prefix), partitions, metrics_port,
                             replication_factor, transfer_records, kafka_security)
    except LabelError as exc:
        raise typer.BadParameter(redact(str(exc)), param_hint="--labels") from None
    except ValueError as exc:
        raise typer.BadParameter(redact(str(exc))) from None
    raise typer.Exit(code)


@app.command()
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
    metrics_port: Annotated[
        int, typer.Option(envvar="HALTWATCH_METRICS_PORT", min=0, help="Prometheus /metrics port; 0 = off.")
    ] = 0,
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
    from connectors.evm.config import EvmChainConfig
    from connectors.evm.run import parse_tokens, run_backfill, split_urls
    from connectors.labels import LabelError

    configure_logging(verbose, log_format)
    if to_block < from_block:
        raise typer.BadParameter(f"must be at least --from-block ({from_block}), got {to_block}",
                                 param_hint="'--to-block'")
    check_access(kafka, kafka_security)
    resume = checkpoint or Path(f".haltwatch/backfill-{chain}-{from_block}-{to_block}.json")
    try:
        config = EvmChainConfig(chain, split_urls(ws_url), chain_id=chain_id, tokens=parse_tokens(token or []))
        result = run_backfill(config, labels, resume, kafka, Topics(prefix), partitions, from_block, to_block,
                              metrics_port, progress, replication_factor, transfer_records, kafka_security)
    except LabelError as exc:
        raise typer.BadParameter(redact(str(exc)), param_hint="--labels") from None
    except ValueError as exc:
        raise typer.BadParameter(redact(str(exc))) from None
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


@app.command()
@with_kafka_security
def worker(
    kafka: KafkaOpt = "127.0.0.1:9092",
    prefix: PrefixOpt = "haltwatch",
    partitions: PartitionsOpt = 8,
    replication_factor: ReplicationOpt = DEFAULT_REPLICATION_FACTOR,
    clickhouse_url: ClickHouseOpt = None,
    chdb_path: ChdbOpt = Path(".haltwatch/chdb"),
    web_port: Annotated[
        int, typer.Option(envvar="HALTWATCH_WEB_PORT", min=1, max=65535, help="Port of the status page (/ui), JSON "
                          "API, /metrics and /health/*.")
    ] = 6066,
    web_host: Annotated[
        str, typer.Option(envvar="HALTWATCH_WEB_HOST", help="Address the web server binds (0.0.0.0: all).")
    ] = "127.0.0.1",
    data_dir: Annotated[
        Path, typer.Option(envvar="HALTWATCH_DATA_DIR", help="Worker state (Faust tables, alert ledger).")
    ] = Path(".haltwatch/worker"),
    alert_webhook: Annotated[
        str | None,
        typer.Option(envvar="HALTWATCH_ALERT_WEBHOOK_URL", parser=UrlOf("http", "https"),
                     help="POST outage open/degraded/resolved events here "
                     "(Slack-compatible JSON, retried, never twice); unset = no webhook."),
    ] = None,
    pagerduty_routing_key: Annotated[
        str | None,
        typer.Option(envvar="HALTWATCH_PAGERDUTY_ROUTING_KEY", help="PagerDuty Events API v2 integration key: "
                     "trigger on open/degraded, resolve on resolved, one PagerDuty incident per outage."),
    ] = None,
    pagerduty_url: Annotated[
        str, typer.Option(envvar="HALTWATCH_PAGERDUTY_URL", parser=UrlOf("http", "https"),
                          help="PagerDuty Events API endpoint (EU accounts: https://events.eu.pagerduty.com/v2/enqueue).")
    ] = "https://events.pagerduty.com/v2/enqueue",
    alertmanager_url: Annotated[
        str | None,
        typer.Option(envvar="HALTWATCH_ALERTMANAGER_URL", parser=UrlOf("http", "https"),
                     help="Prometheus Alertmanager base URL (http://alertmanager:9093): one alert per incident, "
                     "labels exchange, chains, state; endsAt on resolve."),
    ] = None,
    alert_states: Annotated[
        str, typer.Option(envvar="HALTWATCH_ALERT_STATES",
                          help="Comma-separated outage states sent to the alert channels.")
    ] = "open,degraded,resolved",
    false_alarms: Annotated[
        float,
        typer.Option(envvar="HALTWATCH_FALSE_ALARMS", parser=FiniteNumber(),
                     help="False alarms allowed per exchange per budget period."),
    ] = 1.0,
    budget_days: Annotated[
        float, typer.Option(envvar="HALTWATCH_BUDGET_DAYS", parser=FiniteNumber(),
                            help="Length of the false-alarm budget period, days.")
    ] = 90.0,
    exchange_metadata: Annotated[
        Path | None,
        typer.Option(envvar="HALTWATCH_EXCHANGE_METADATA", help="TOML of exchange hosting provider/region."),
    ] = None,
    role: Annotated[
        WorkerRole, typer.Option(envvar="HALTWATCH_WORKER_ROLE",
                          help="all: everything in one process. detect + store: two processes (two consumer "
                          "groups), so that a slow or unreachable ClickHouse never holds up detection.")
    ] = WorkerRole.ALL,
    kafka_session_timeout: Annotated[
        float, typer.Option(envvar="HALTWATCH_KAFKA_SESSION_TIMEOUT", min=1.0, max=90.0,
                            help="Seconds Kafka waits for a silent worker before its partitions go to the others "
                            "(and before a restarted worker can rejoin); the broker's group.min.session.timeout.ms "
                            "(6 s by default) is the floor.")
    ] = DEFAULT_SESSION_TIMEOUT_S,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
    kafka_security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Run a Faust worker: detection, correlation, chain monitoring, outage events and the ClickHouse sink."""
    from faust.worker import Worker

    from streams.alerts.notifier import DEFAULT_STATES
    from streams.app import WorkerSettings, create_app
    from streams.detection import DetectionPolicy, load_exchange_metadata
    from streams.detection.correlation import MetadataError
    from streams.web import OperatorSettings

    try:
        policy = DetectionPolicy(false_alarms_per_exchange=false_alarms, budget_days=budget_days)
        metadata = load_exchange_metadata(exchange_metadata) if exchange_metadata else {}
    except (ValueError, MetadataError) as exc:
        raise typer.BadParameter(redact(str(exc))) from None
    states = frozenset(s.strip() for s in alert_states.split(",") if s.strip())
    if not states <= DEFAULT_STATES | {"suspected"}:
        raise typer.BadParameter(f"unknown states {sorted(states - DEFAULT_STATES - {'suspected'})}; choose from "
                                 "suspected, open, degraded, resolved", param_hint="--alert-states")
    operator = OperatorSettings(alert_webhook_url=alert_webhook, pagerduty_routing_key=pagerduty_routing_key,
                                pagerduty_url=pagerduty_url, alertmanager_url=alertmanager_url, alert_states=states)
    check_access(kafka, kafka_security)
    if clickhouse_url:
        from streams.store.backend import refused_store_access

        refusal = refused_store_access(clickhouse_url)
        if refusal is not None:  # a wrong password or certificate: not a reason to retry (an unreachable server is)
            typer.echo(f"error: {redact(refusal)}", err=True)
            raise typer.Exit(2)

    settings = WorkerSettings(
        kafka_bootstrap=kafka,
        kafka_security=kafka_security,
        topics=Topics(prefix),
        partitions=partitions,
        replication_factor=replication_factor,
        app_id=f"{prefix}-store" if role == WorkerRole.STORE else f"{prefix}-worker",
        role=role,
        clickhouse_url=clickhouse_url,
        chdb_path=chdb_path,
        web_host=web_host,
        web_port=web_port,
        data_dir=data_dir,
        policy=policy,
        exchange_metadata=metadata,
        operator=operator,
        kafka_session_timeout_s=kafka_session_timeout,
        quiet_clients=not verbose,
    )
    faust_app = create_app(settings)
    Worker(faust_app, loglevel="debug" if verbose else "info", quiet=True,
           logging_config=worker_logging_config(verbose, log_format)).execute_from_commandline()


ApiOpt = Annotated[
    str | None,
    typer.Option(envvar="HALTWATCH_API", help="Read through a running worker's JSON API, e.g. http://127.0.0.1:6066 "
                 "(the way to read its embedded chdb store while it runs)."),
]


def _print_rows(rows: list[dict[str, object]], as_json: bool, lines: list[str]) -> None:
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    for line in lines:
        typer.echo(line)


@app.command()
def status(
    exchange: Annotated[str | None, typer.Option(help="Only this exchange.")] = None,
    clickhouse_url: ClickHouseOpt = None,
    chdb_path: ChdbOpt = Path(".haltwatch/chdb"),
    api: ApiOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """What is down right now: state, last withdrawal, gap and expected rate per exchange and chain."""
    from streams.store.report import SourceError, status_lines, status_rows

    quiet_client_libraries()  # an unreachable server is the one error line below, not the driver's traceback
    try:
        rows = status_rows(exchange, api, clickhouse_url, chdb_path)
    except SourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _print_rows(rows, as_json, [] if as_json else status_lines(rows))


@app.command()
def outages(
    exchange: Annotated[str | None, typer.Option(help="Only this exchange.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only outages active since then (still open, or resolved after it): seconds, "
                     "an ISO date/time (UTC) or an age like 6h, 7d."),
    ] = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Every state change, not only the latest.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows, newest first.")] = 100,
    clickhouse_url: ClickHouseOpt = None,
    chdb_path: ChdbOpt = Path(".haltwatch/chdb"),
    api: ApiOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List incidents stored in ClickHouse: the latest state of each outage, or every version with --all."""
    import time

    from streams.store.report import SourceError, outage_lines, outage_rows, parse_since

    quiet_client_libraries()
    try:
        since_s = parse_since(since, time.time()) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    try:
        rows = outage_rows(exchange, since_s, all_versions, limit, api, clickhouse_url, chdb_path)
    except SourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _print_rows(rows, as_json, [] if as_json else outage_lines(rows))


@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help="halt | stall | normal")] = "halt",
    keep_running: Annotated[bool, typer.Option(help="Leave Kafka and anvil running at the end.")] = False,
) -> None:
    """Play an exchange halt on a local chain and watch haltwatch detect it (starts and stops everything)."""
    from haltwatch.demo import run_demo

    raise typer.Exit(run_demo(scenario, keep_running))


operator_cli.register(app)
follow.register(app)


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
    false_alarms: Annotated[
        float, typer.Option(parser=FiniteNumber(), help="False alarms allowed per exchange per budget period.")
    ] = 1.0,
    budget_days: Annotated[
        float, typer.Option(parser=FiniteNumber(), help="Length of the false-alarm budget period, days.")
    ] = 90.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay a file of transfer events and chain heads through the same detector the worker runs.

    Exits 1 when the replay proves nothing (the input is cut short or holds no valid record), after the
    summary, so a script cannot mistake an empty or corrupt recording for a quiet one."""
    from streams.detection import DetectionPolicy
    from streams.detection.backtest import BacktestError, run_backtest

    try:
        policy = DetectionPolicy(false_alarms_per_exchange=false_alarms, budget_days=budget_days)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not output_path.parent.is_dir():
        raise typer.BadParameter(f"{output_path.parent} is not a directory", param_hint="'--output'")
    try:
        summary = run_backtest(input_path, output_path, policy, progress=progress and not as_json)
    except BacktestError as exc:
        typer.echo(f"backtest failed: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"backtest failed: {exc.strerror or exc}: {exc.filename or input_path}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(orjson.dumps(summary.to_json()).decode())
    else:
        typer.echo(summary.format())
    if summary.failure is not None:
        typer.echo(f"backtest failed: {summary.failure}", err=True)
        raise typer.Exit(1)


def main() -> None:
    secrets.install()
    secrets.register_command_line(sys.argv[1:], dict(os.environ))
    app(args=hoist_config(sys.argv[1:]), prog_name="haltwatch")
