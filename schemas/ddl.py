"""ClickHouse DDL as ordered migrations, rendered for the server version at hand.

The files are plain SQL with a few placeholders, so that one schema serves both Debian's ClickHouse
18.16 (driven through clickhouse-driver) and embedded chdb 26.x: types newer than a server are swapped
for their plain equivalents instead of keeping two copies of the schema.

Placeholders:
- ``{db}`` the database; ``{tz_datetime}`` ``DateTime('UTC')``;
- ``{str_lc}`` ``LowCardinality(String)`` from 19.9, plain ``String`` before;
- ``{codec:SPEC}`` ``CODEC(SPEC)`` from :data:`CODEC_SINCE`, nothing before (storage only, same data);
- ``{ttl:EXPR}`` ``TTL EXPR`` from :data:`TTL_SINCE`, nothing before (older servers keep rows forever).
Gated clauses change how data is stored or how long it is kept, never what a query returns, so a query
written once is correct on every supported server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from schemas.cluster_ddl import ClusterDdl

MIGRATIONS_DIR = Path(__file__).parent / "clickhouse"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GATED = re.compile(r"\{(codec|ttl):([^{}]+)\}")
LOW_CARDINALITY_SINCE = (19, 9)
"""LowCardinality became a stable, default-enabled type in ClickHouse 19.9."""
TTL_SINCE = (19, 6)
"""Table and column TTL arrived in ClickHouse 19.6."""
CODEC_SINCE = (19, 10)
"""Column codecs arrived during the 19.x series (DoubleDelta/Gorilla last); 19.10 is a conservative floor."""
OLDEST_SUPPORTED = (18, 16)
"""The oldest server the migrations are tested on (Debian's clickhouse-server package)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file, split into statements."""

    number: int
    name: str
    statements: tuple[str, ...]


def parse_version(text: str) -> tuple[int, ...]:
    """'18.16.1' → (18, 16, 1); tolerant of suffixes like '26.9.2.1-stable'."""
    parts = re.findall(r"\d+", text)[:4]
    if not parts:
        raise ValueError(f"not a ClickHouse version: {text!r}")
    return tuple(int(p) for p in parts)


def placeholders(db: str, server_version: tuple[int, ...]) -> dict[str, str]:
    """Values for the placeholders of the migration files on this server."""
    if not _IDENT.match(db):
        raise ValueError(f"database name {db!r} must be a plain identifier (letters, digits, _)")
    lc = server_version >= LOW_CARDINALITY_SINCE
    return {
        "db": db,
        "tz_datetime": "DateTime('UTC')",
        "str_lc": "LowCardinality(String)" if lc else "String",
    }


def gated_clause(kind: str, body: str, server_version: tuple[int, ...]) -> str:
    """``{codec:...}`` / ``{ttl:...}`` rendered for this server: the clause, or nothing when too old."""
    if kind == "codec":
        return f"CODEC({body.strip()})" if server_version >= CODEC_SINCE else ""
    if kind == "ttl":
        return f"TTL {body.strip()}" if server_version >= TTL_SINCE else ""
    raise ValueError(f"unknown gated clause {kind!r}")


def render(sql: str, values: dict[str, str], server_version: tuple[int, ...]) -> str:
    """Fill a migration's placeholders (a gated clause's body is plain SQL without placeholders)."""
    sql = _GATED.sub(lambda m: gated_clause(m.group(1), m.group(2), server_version), sql)
    for key, value in values.items():
        sql = sql.replace("{" + key + "}", value)
    return sql


def _split(sql: str) -> tuple[str, ...]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def migrations(db: str, server_version: tuple[int, ...], cluster: str | None = None) -> list[Migration]:
    """All migrations in order, rendered for ``db`` on a server of ``server_version``; with ``cluster``, in
    their replicated form for that cluster (:mod:`schemas.cluster_ddl`)."""
    values = placeholders(db, server_version)
    on_cluster = ClusterDdl(db, cluster) if cluster else None
    result = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} must be named NNNN_description.sql")
        statements = _split(render(path.read_text(), values, server_version))
        if on_cluster is not None:
            statements = tuple(out for statement in statements for out in on_cluster.rewrite(statement))
        result.append(Migration(int(match.group(1)), path.stem, statements))
    return result
