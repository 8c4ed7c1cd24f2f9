"""``haltwatch worker``: the Faust worker that detects, correlates, monitors chains and stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from access.kafka_security import PLAINTEXT, KafkaSecurity
from access.kafka_topics import DEFAULT_REPLICATION_FACTOR
from access.secrets import redact
from haltwatch.kafka_options import check_access, with_kafka_security
from haltwatch.log_setup import LogFormat, worker_logging_config
from haltwatch.setting_types import FiniteNumber, UrlOf
from haltwatch.shared_options import (
    ChdbOpt,
    ClickHouseOpt,
    ClusterOpt,
    KafkaOpt,
    LogFormatOpt,
    PartitionsOpt,
    PrefixOpt,
    ReplicationOpt,
    VerboseOpt,
)
from schemas.topics import Topics
from streams.alerts.channels import PAGERDUTY_EVENTS_URL
from streams.group_membership import DEFAULT_SESSION_TIMEOUT_S
from streams.roles import WorkerRole


@with_kafka_security
def worker(
    kafka: KafkaOpt = "127.0.0.1:9092",
    prefix: PrefixOpt = "haltwatch",
    partitions: PartitionsOpt = 8,
    replication_factor: ReplicationOpt = DEFAULT_REPLICATION_FACTOR,
    clickhouse_url: ClickHouseOpt = None,
    clickhouse_cluster: ClusterOpt = None,
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
    ] = PAGERDUTY_EVENTS_URL,
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
    from streams.app import create_app
    from streams.detection import DetectionPolicy, load_exchange_metadata
    from streams.detection.correlation import MetadataError
    from streams.web import OperatorSettings
    from streams.worker.settings import WorkerSettings

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
    if clickhouse_cluster and not clickhouse_url:
        raise typer.BadParameter("needs a ClickHouse server (--clickhouse-url); embedded chdb has no cluster",
                                 param_hint="--clickhouse-cluster")
    if clickhouse_cluster:
        from schemas.cluster_ddl import cluster_name

        try:
            cluster_name(clickhouse_cluster)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--clickhouse-cluster") from None
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
        clickhouse_cluster=clickhouse_cluster,
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


def register(app: typer.Typer) -> None:
    app.command()(worker)
