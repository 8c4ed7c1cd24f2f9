"""Apply the contract's DDL migrations once each, recording them in the store itself."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_never,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)

from schemas.cluster_ddl import ClusterDdl
from schemas.ddl import migrations
from streams.store.backend import ClickHouseBackend, is_transient, open_backend
from streams.store.sink import sleeper

log = logging.getLogger(__name__)


def apply_migrations(backend: ClickHouseBackend, cluster: str | None = None) -> list[str]:
    """Create the database and apply every migration not yet recorded; returns the names applied. With
    ``cluster``, in their replicated form on every node of that cluster (:mod:`schemas.cluster_ddl`)."""
    db = backend.database
    version = backend.server_version()
    if cluster:
        on_cluster = ClusterDdl(db, cluster)
        backend.execute(on_cluster.database())
        backend.execute(on_cluster.migrations_table())
    else:
        backend.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        backend.execute(
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (number UInt32, name String) "
            "ENGINE = ReplacingMergeTree ORDER BY number"
        )
    done = {int(r["number"]) for r in backend.query(f"SELECT number FROM {db}.schema_migrations")}
    applied = []
    for migration in migrations(db, version, cluster):
        if migration.number in done:
            continue
        for statement in migration.statements:
            backend.execute(statement)
        backend.insert("schema_migrations", [{"number": migration.number, "name": migration.name}])
        applied.append(migration.name)
    return applied


def open_migrated(
    url: str | None, chdb_path: Path, stop: threading.Event | None = None, max_backoff_s: float = 30.0,
    cluster: str | None = None,
) -> ClickHouseBackend:
    """Open the store and bring its schema up to date, retrying while a server is unreachable.

    The worker calls it on its first insert: a ClickHouse server that is down when the worker starts
    must delay the sink (Kafka keeps the data), not crash it. Gives up only when ``stop`` is set, or at
    once on an error that waiting cannot fix (a refused statement, a chdb folder held by another process).
    """
    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.5, max=max_backoff_s) + wait_random(0, 0.5),
        stop=stop_when_event_set(stop) if stop is not None else stop_never,
        sleep=sleeper(stop),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            backend = open_backend(url, chdb_path, cluster)
            try:
                applied = apply_migrations(backend, cluster)
            except BaseException:
                backend.close()
                raise
            if applied:
                log.info("applied ClickHouse migrations %s", applied)
    return backend
