"""Apply the contract's DDL migrations once each, recording them in the store itself."""

from __future__ import annotations

from schemas.ddl import migrations
from streams.store.backend import ClickHouseBackend


def apply_migrations(backend: ClickHouseBackend) -> list[str]:
    """Create the database and apply every migration not yet recorded; returns the names applied."""
    db = backend.database
    version = backend.server_version()
    backend.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    backend.execute(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (number UInt32, name String) "
        "ENGINE = ReplacingMergeTree ORDER BY number"
    )
    done = {int(r["number"]) for r in backend.query(f"SELECT number FROM {db}.schema_migrations")}
    applied = []
    for migration in migrations(db, version):
        if migration.number in done:
            continue
        for statement in migration.statements:
            backend.execute(statement)
        backend.insert("schema_migrations", [{"number": migration.number, "name": migration.name}])
        applied.append(migration.name)
    return applied
