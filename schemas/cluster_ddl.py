"""The migrations' statements rewritten for a replicated ClickHouse cluster (``--clickhouse-cluster NAME``).

One schema is written, for one server; on a cluster every statement becomes its cluster form, so the two can
never drift apart:

- a table ``X`` becomes ``X_local`` on every node (``ON CLUSTER``), its engine the ``Replicated`` one with the
  path ``/clickhouse/tables/{shard}/<db>/X`` and replica ``{replica}`` (the servers' macros), and ``X`` itself
  becomes a ``Distributed`` table over the ``X_local`` of every shard. Every query, view and insert names ``X``
  as on one server; a row goes to the shard its **sharding key** picks: ``cityHash64(exchange)`` for the tables
  with an exchange column (an exchange's transfers, outages and status stay on one shard, so a query about one
  exchange reads one shard), ``cityHash64(chain)`` for the chain tables, the first column for the others
  (never ``rand()``: a retried insert must split over the shards as the first attempt did, or replicated
  deduplication misses it);
- a materialized view reads and writes the local tables (it sees the rows inserted on its own node, and its
  target replicates them like any other insert);
- ``ALTER TABLE X`` alters ``X_local`` on every node, then rebuilds the ``Distributed`` ``X`` over the new
  columns (18.16 does not alter a Distributed table ``ON CLUSTER``; it holds no data, only the structure);
- views and ``TRUNCATE`` run ``ON CLUSTER``; an ``INSERT ... SELECT`` goes through the ``Distributed`` tables.
"""

from __future__ import annotations

import re

_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)\s*(\(.*\))\s*ENGINE = (\w+)(\([^\n]*\))?(.*)$", re.S)
_CREATE_MV = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+) TO (\w+)\.(\w+) AS(.*)$", re.S)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (\w+)\.(\w+) AS(.*)$", re.S)
_ALTER = re.compile(r"^ALTER TABLE (\w+)\.(\w+)(.*)$", re.S)
_TRUNCATE = re.compile(r"^TRUNCATE TABLE (\w+)\.(\w+)$")
LOCAL = "_local"


def cluster_name(text: str) -> str:
    """``text`` when it can name a cluster in DDL (a plain identifier), else a ValueError saying why."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise ValueError(f"cluster name {text!r} must be a plain identifier (letters, digits, _)")
    return text


class ClusterDdl:
    """Rewrites one database's statements for cluster ``cluster``; remembers each table's sharding key."""

    def __init__(self, db: str, cluster: str) -> None:
        self.db = db
        self.cluster = cluster_name(cluster)
        self.keys: dict[str, str] = {}

    def database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS {self.db} ON CLUSTER {self.cluster}"

    def migrations_table(self) -> str:
        """The record of applied migrations: one replicated table for the whole cluster (every node a replica)."""
        return (f"CREATE TABLE IF NOT EXISTS {self.db}.schema_migrations ON CLUSTER {self.cluster} "
                "(number UInt32, name String) ENGINE = ReplicatedReplacingMergeTree("
                f"'/clickhouse/tables/all/{self.db}/schema_migrations', '{{shard}}-{{replica}}') ORDER BY number")

    def rewrite(self, statement: str) -> list[str]:
        """The cluster form of one statement (one or more statements)."""
        on = f"ON CLUSTER {self.cluster}"
        if m := _CREATE_TABLE.match(statement):
            db, table, columns, engine, args, rest = m.groups()
            first = re.search(r"^\s*(\w+)\s", columns[1:], re.M)
            key = "cityHash64(exchange)" if re.search(r"^\s*exchange\s", columns, re.M) else (
                "cityHash64(chain)" if re.search(r"^\s*chain\s", columns, re.M) else
                f"cityHash64({first.group(1) if first else 'tuple()'})")
            self.keys[table] = key
            inner = (args or "()")[1:-1].strip()
            replicated = (f"Replicated{engine}('/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'"
                          + (f", {inner})" if inner else ")"))
            return [f"CREATE TABLE IF NOT EXISTS {db}.{table}{LOCAL} {on} {columns}\nENGINE = {replicated}{rest}",
                    self._distributed(table)]
        if m := _CREATE_MV.match(statement):
            db, view, target_db, target, select = m.groups()
            for table in self.keys:  # the view reads its own node's rows: the local tables
                select = re.sub(rf"\b{db}\.{table}\b", f"{db}.{table}{LOCAL}", select)
                select = re.sub(rf"\b{table}\.(\w)", rf"{table}{LOCAL}.\1", select)
            target = f"{target_db}.{target}{LOCAL}"
            return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view} {on} TO {target} AS{select}"]
        if m := _CREATE_VIEW.match(statement):
            db, view, select = m.groups()
            return [f"CREATE VIEW IF NOT EXISTS {db}.{view} {on} AS{select}"]
        if m := _ALTER.match(statement):
            db, table, change = m.groups()
            return [f"ALTER TABLE {db}.{table}{LOCAL} {on}{change}", f"DROP TABLE IF EXISTS {db}.{table} {on}",
                    self._distributed(table)]
        if m := _TRUNCATE.match(statement):
            return [f"TRUNCATE TABLE {m.group(1)}.{m.group(2)}{LOCAL} {on}"]
        if statement.startswith("INSERT INTO "):
            return [statement]
        raise ValueError(f"no cluster form for statement: {statement[:80]!r}")

    def _distributed(self, table: str) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self.db}.{table} ON CLUSTER {self.cluster} AS {self.db}.{table}{LOCAL} "
                f"ENGINE = Distributed({self.cluster}, {self.db}, {table}{LOCAL}, {self.keys[table]})")
