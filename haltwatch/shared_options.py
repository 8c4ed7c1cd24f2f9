"""Options several commands share, declared once (type, flag, environment variable, help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from connectors.block_layout import LAYOUT_ENV, TransferLayout
from haltwatch.log_setup import LogFormat
from haltwatch.setting_types import HostPorts, UrlOf

VerboseOpt = Annotated[bool, typer.Option(help="Debug logging, the Kafka and ClickHouse clients' own included.")]

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
ClusterOpt = Annotated[
    str | None,
    typer.Option(envvar="HALTWATCH_CLICKHOUSE_CLUSTER",
                 help="ClickHouse cluster (remote_servers) to create replicated tables on, ON CLUSTER, with a "
                      "Distributed table over them, sharded by exchange; unset = plain tables on one server."),
]
ChdbOpt = Annotated[Path, typer.Option(envvar="HALTWATCH_CHDB_PATH", help="Data folder of the embedded chdb store.")]
TransferRecordsOpt = Annotated[
    TransferLayout,
    typer.Option("--transfer-records", envvar=LAYOUT_ENV, case_sensitive=False,
                 help="Transfers-topic layout: block (one record per block and partition) or event (one per "
                      "transfer, for consumers that read one event per record)."),
]


LogFormatOpt = Annotated[
    LogFormat, typer.Option(envvar="HALTWATCH_LOG_FORMAT", case_sensitive=False,
                            help="text, or json: one JSON object per log line, for log pipelines.")
]
MetricsPortOpt = Annotated[
    int, typer.Option(envvar="HALTWATCH_METRICS_PORT", min=0, help="Prometheus /metrics port; 0 = off.")
]
