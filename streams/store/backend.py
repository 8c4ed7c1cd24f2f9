"""Two ways to reach ClickHouse behind one small interface.

A ClickHouse server (through clickhouse-driver's native protocol) is the production store; embedded chdb
is the default when no server is configured, so the demo needs nothing but Kafka. Queries are written once
with ClickHouse's ``{name:Type}`` parameters; the driver backend, whose old servers lack server-side
parameters, turns them into client-side escaped values, so user input never reaches SQL unescaped.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import orjson

from schemas.ddl import parse_version

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]+\}")


class StoreError(RuntimeError):
    """The store refused or could not run a statement; the message names the statement."""


class ClickHouseBackend(Protocol):
    """What the sink and the queries need from a ClickHouse connection."""

    database: str

    def server_version(self) -> tuple[int, ...]: ...

    def execute(self, sql: str) -> None: ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class ChdbBackend:
    """Embedded ClickHouse in this process; one session, serialised by a lock."""

    def __init__(self, path: Path, database: str = "haltwatch") -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.path = path
        self._lock = threading.Lock()
        self._session = session.Session(str(path))  # type: ignore[no-untyped-call]

    def server_version(self) -> tuple[int, ...]:
        rows = self.query("SELECT version() AS v")
        return parse_version(str(rows[0]["v"]))

    def execute(self, sql: str) -> None:
        with self._lock:
            try:
                self._session.query(sql, "CSV")  # type: ignore[no-untyped-call]
            except Exception as exc:  # chdb raises plain RuntimeError with the server message
                raise StoreError(f"{exc} (in: {sql[:200]})") from exc

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        body = b"\n".join(orjson.dumps(dict(r)) for r in rows).decode()
        self.execute(f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow\n{body}")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            try:
                result = self._session.query(sql, "JSONEachRow", params=dict(params or {}))  # type: ignore[no-untyped-call]
            except Exception as exc:
                raise StoreError(f"{exc} (in: {sql[:200]})") from exc
        text = result.bytes() if hasattr(result, "bytes") else str(result).encode()
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        with self._lock:
            self._session.close()  # type: ignore[no-untyped-call]


class DriverBackend:
    """A ClickHouse server over the native protocol; one client, serialised by a lock."""

    def __init__(self, url: str) -> None:
        from clickhouse_driver import Client

        parsed = urlparse(url)
        if parsed.scheme not in ("clickhouse", "tcp"):
            raise ValueError(f"ClickHouse URL must start with clickhouse:// (got scheme {parsed.scheme!r})")
        self.database = (parsed.path or "/haltwatch").lstrip("/") or "haltwatch"
        self._lock = threading.Lock()
        self._client = Client(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 9000,
            user=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            connect_timeout=5,
            send_receive_timeout=30,
        )
        self._datetime_columns: dict[str, frozenset[str]] = {}

    def server_version(self) -> tuple[int, ...]:
        rows = self.query("SELECT version() AS v")
        return parse_version(str(rows[0]["v"]))

    def execute(self, sql: str) -> None:
        with self._lock:
            try:
                self._client.execute(sql)
            except Exception as exc:
                raise StoreError(f"{exc} (in: {sql[:200]})") from exc

    def _datetime_columns_of(self, table: str) -> frozenset[str]:
        if table not in self._datetime_columns:
            rows = self.query(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                {"db": self.database, "t": table},
            )
            self._datetime_columns[table] = frozenset(r["name"] for r in rows if "DateTime" in r["type"])
        return self._datetime_columns[table]

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        columns = list(rows[0].keys())
        times = self._datetime_columns_of(table)

        def cell(name: str, value: Any) -> Any:
            if name in times and isinstance(value, int | float):
                return datetime.fromtimestamp(value, UTC)
            return value

        data = [tuple(cell(c, r[c]) for c in columns) for r in rows]
        sql = f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES"
        with self._lock:
            try:
                self._client.execute(sql, data)
            except Exception as exc:
                raise StoreError(f"{exc} (in: {sql})") from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        driver_sql = _PARAM.sub(lambda m: f"%({m.group(1)})s", sql)
        with self._lock:
            try:
                rows, columns = self._client.execute(driver_sql, dict(params or {}), with_column_types=True)
            except Exception as exc:
                raise StoreError(f"{exc} (in: {sql[:200]})") from exc
        names = [c[0] for c in columns]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()


def open_backend(url: str | None, chdb_path: Path) -> ClickHouseBackend:
    """A server backend when a URL is configured, embedded chdb otherwise."""
    if url:
        return DriverBackend(url)
    return ChdbBackend(chdb_path)
