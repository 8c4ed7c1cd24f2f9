"""Two ways to reach ClickHouse behind one small interface.

A ClickHouse server (through clickhouse-driver's native protocol) is the production store; embedded chdb
is the default when no server is configured, so the demo needs nothing but Kafka. Queries are written once
with ClickHouse's ``{name:Type}`` parameters; the driver backend, whose old servers lack server-side
parameters, turns them into client-side escaped values, so user input never reaches SQL unescaped.

Inserts are columnar on both (Arrow for chdb, ``columnar=True`` for the driver). Every failure is a
:class:`StoreError` that says whether trying again can help (server unreachable, busy, out of memory),
so the sink can retry those and stop on the others.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlparse

import orjson

from schemas.ddl import parse_version
from streams.store.columns import arrow_stream, column_length, transpose

DATE_LUT_ENV = "CLICKHOUSE_DRIVER_LASY_DATE_LUT"
"""clickhouse-driver builds, when its column types are first imported, a table of every ``Date``/``Date32`` day
from 1900 to 2299 and its reverse: ~146,000 ``date`` objects in two dicts, ~20 MB held for the life of every
process that writes to ClickHouse (mymarilyn/clickhouse-driver#430), though no table here has a ``Date``
column. With this variable (its spelling is the driver's) the tables are filled on demand instead, from
the range given. Set here, before this module first imports the driver; a value set by the operator wins."""
os.environ.setdefault(DATE_LUT_ENV, "2020-01-01:2040-12-31")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]+\}")
_CODE = re.compile(r"Code: (\d+)\.")
TLS_OPTIONS = frozenset({"secure", "verify", "ca_certs", "certfile", "keyfile"})
"""URL query parameters that configure the driver's TLS (the others are ClickHouse settings)."""
CLIENT_OPTIONS = frozenset({"alt_hosts"})
"""URL query parameters for the driver itself: ``alt_hosts=host:port,host:port``, the replicas to fail over to."""
TRANSIENT_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED (server shutting down)
        425,  # SYSTEM_ERROR
        1000,  # POCO_EXCEPTION
    }
)
"""Server error codes after which the same statement can succeed later."""


class StoreError(RuntimeError):
    """The store refused or could not run a statement; the message names the statement.

    ``retryable`` is true when the same statement can succeed later unchanged (the server was down,
    busy or short of memory), false when the server refused it (bad SQL, unknown table, bad data).
    """

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class StoreInUse(StoreError):
    """The embedded store's folder is held by another process (usually a running worker)."""


def _error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


TLS_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "certificate verify failed")
"""An untrusted certificate, or TLS against a plain port: waiting will not fix either."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means "try again later" rather than "this statement is wrong"."""
    if isinstance(exc, StoreError):
        return exc.retryable
    if any(marker in str(exc) for marker in TLS_REFUSALS):
        return False
    if isinstance(exc, EOFError | OSError | ConnectionError | TimeoutError):
        return True  # clickhouse-driver surfaces a dropped server as these (see PITFALLS)
    try:
        from clickhouse_driver.errors import NetworkError, SocketTimeoutError, UnexpectedPacketFromServerError
    except ImportError:  # pragma: no cover - clickhouse-driver is a dependency
        return False
    if isinstance(exc, NetworkError | SocketTimeoutError | UnexpectedPacketFromServerError):
        return True
    return _error_code(exc) in TRANSIENT_CODES


def _wrap(exc: BaseException, sql: str) -> StoreError:
    return StoreError(f"{exc} (in: {sql[:200]})", retryable=is_transient(exc))


class ClickHouseBackend(Protocol):
    """What the sink and the queries need from a ClickHouse connection."""

    database: str

    def server_version(self) -> tuple[int, ...]: ...

    def execute(self, sql: str) -> None: ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class _ColumnTypes:
    """The ClickHouse type of each column of a table, read once from system.columns."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, str]] = {}

    def of(self, backend: ClickHouseBackend, table: str) -> dict[str, str]:
        if table not in self._types:
            rows = backend.query(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                {"db": backend.database, "t": table},
            )
            self._types[table] = {str(r["name"]): str(r["type"]) for r in rows}
        return self._types[table]


class ChdbBackend:
    """Embedded ClickHouse in this process; one session, serialised by a lock.

    chdb runs one embedded server per process, on one folder, and a second process cannot open a folder
    a first one holds: read it through the worker's API then.
    """

    def __init__(self, path: Path, database: str = "haltwatch") -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.path = path
        self._lock = threading.Lock()
        self._types = _ColumnTypes()
        try:
            self._session = session.Session(str(path))  # type: ignore[no-untyped-call]
        except Exception as exc:
            if "EmbeddedServer" in str(exc) and "already initialized" not in str(exc):
                raise StoreInUse(
                    f"embedded ClickHouse at {path} is in use by another process (a running worker?): {exc}",
                    retryable=False,
                ) from exc
            raise StoreError(f"cannot open embedded ClickHouse at {path}: {exc}", retryable=False) from exc

    def server_version(self) -> tuple[int, ...]:
        rows = self.query("SELECT version() AS v")
        return parse_version(str(rows[0]["v"]))

    def execute(self, sql: str) -> None:
        with self._lock:
            try:
                self._session.query(sql, "CSV")  # type: ignore[no-untyped-call]
            except Exception as exc:  # chdb raises plain RuntimeError with the server message
                raise _wrap(exc, sql) from exc

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.insert_columns(table, transpose(rows))

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        if column_length(columns) == 0:
            return
        data = arrow_stream(columns, self._types.of(self, table))
        # Replacing tables are read with FINAL anyway: collapsing a block's duplicates at insert time
        # (optimize_on_insert) would only make the insert slower (about a third, measured).
        sql = f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) SETTINGS optimize_on_insert = 0"
        with self._lock:
            try:
                with self._session.send_insert(sql, "ArrowStream") as stream:
                    stream.append(data)
                    stream.finish()
            except Exception as exc:
                raise _wrap(exc, sql) from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            try:
                result = self._session.query(sql, "JSONEachRow", params=dict(params or {}))  # type: ignore[no-untyped-call]
            except Exception as exc:
                raise _wrap(exc, sql) from exc
        text = result.bytes() if hasattr(result, "bytes") else str(result).encode()
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        with self._lock:
            self._session.close()  # type: ignore[no-untyped-call]


class DriverBackend:
    """A ClickHouse server over the native protocol, with one client per thread.

    A clickhouse-driver ``Client`` is one socket and not thread-safe, so the sink's writer thread and the
    web API's reader thread each get their own; a slow insert then never delays a status query. Query
    parameters of the URL are client or server settings, e.g. ``?insert_block_size=100000`` (rows per
    block an insert is sent in; each block is stored on its own) or ``?max_execution_time=30``, except the
    TLS ones: ``clickhouses://`` (or ``?secure=true``) speaks TLS, on port 9440 unless the URL says another,
    ``?ca_certs=/path/ca.pem`` names the CA to trust (default: the system's), ``?verify=false`` turns the
    certificate check off, ``?certfile=`` and ``?keyfile=`` give a client certificate. ``?alt_hosts=h:p,h:p``
    names other replicas: a connection that cannot reach the first host tries them in turn.
    """

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("clickhouse", "clickhouses", "tcp"):
            raise ValueError(f"ClickHouse URL must start with clickhouse:// or clickhouses:// (got scheme "
                             f"{parsed.scheme!r})")
        self.database = (parsed.path or "/haltwatch").lstrip("/") or "haltwatch"
        settings: dict[str, Any] = {}
        tls: dict[str, Any] = {}
        client: dict[str, Any] = {}
        for name, value in parse_qsl(parsed.query):
            if name in CLIENT_OPTIONS:
                client[name] = value
            elif name in TLS_OPTIONS:
                tls[name] = value.lower() in ("1", "true", "yes") if name in ("secure", "verify") else value
            else:
                settings[name] = int(value) if value.isdigit() else value
        secure = parsed.scheme == "clickhouses" or bool(tls.pop("secure", False))
        if tls and not secure:
            raise ValueError(f"ClickHouse URL: {', '.join(sorted(tls))} need TLS: use clickhouses://")
        self._connect = {
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or (9440 if secure else 9000),
            "user": unquote(parsed.username or "default"),
            "password": unquote(parsed.password or ""),
            "connect_timeout": 5,
            "send_receive_timeout": 60,
            "settings": settings,
            **client,
            **({"secure": True, "verify": tls.pop("verify", True), **tls} if secure else {}),
        }
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._types = _ColumnTypes()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from clickhouse_driver import Client

            client = Client(**self._connect)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def server_version(self) -> tuple[int, ...]:
        rows = self.query("SELECT version() AS v")
        return parse_version(str(rows[0]["v"]))

    def use_settings(self, **settings: Any) -> None:
        """Settings for every later statement of every thread's connection (on top of the URL's)."""
        self._connect["settings"] = {**self._connect["settings"], **settings}
        with self._clients_lock:
            for client in self._clients:
                client.settings.update(settings)

    def execute(self, sql: str) -> None:
        try:
            self._client().execute(sql)
        except Exception as exc:
            raise _wrap(exc, sql) from exc

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.insert_columns(table, transpose(rows))

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        if column_length(columns) == 0:
            return
        types = self._types.of(self, table)
        data = []
        for name, values in columns.items():
            if "DateTime" in types.get(name, "") and any(isinstance(v, float) for v in values):
                values = [None if v is None else int(v) for v in values]  # the driver takes epoch seconds
            data.append(values)
        sql = f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES"
        try:
            self._client().execute(sql, data, columnar=True)
        except Exception as exc:
            raise _wrap(exc, sql) from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        # the driver %-formats the query when given params: escape literal % first; no params, no formatting
        escaped = sql.replace("%", "%%") if params else sql
        driver_sql = _PARAM.sub(lambda m: f"%({m.group(1)})s", escaped)
        try:
            rows, columns = self._client().execute(driver_sql, dict(params) if params else None, with_column_types=True)
        except Exception as exc:
            raise _wrap(exc, sql) from exc
        names = [c[0] for c in columns]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients:
                client.disconnect()
            self._clients.clear()
        self._local = threading.local()


def refused_store_access(url: str) -> str | None:
    """Why the server at ``url`` refuses this user, password or TLS handshake, in one line; None when it
    answers, or when it cannot be reached at all (the worker's retries handle a server not up yet)."""
    backend = DriverBackend(url)
    driver_log = logging.getLogger("clickhouse_driver")  # it logs each failed connect with a traceback
    saved = driver_log.level
    driver_log.setLevel(logging.CRITICAL)  # its child loggers inherit this level, not a ``disabled`` flag
    try:
        backend.server_version()
        return None
    except StoreError as exc:
        if exc.retryable:
            return None
        said = " ".join(str(exc).split(" (in: ")[0].split("Stack trace:")[0].split())
        return f"ClickHouse refused the connection: {said}"
    finally:
        driver_log.setLevel(saved)
        backend.close()


def open_backend(url: str | None, chdb_path: Path, cluster: str | None = None) -> ClickHouseBackend:
    """A server backend when a URL is configured, embedded chdb otherwise. On a ``cluster`` every insert into a
    Distributed table is written to its shards before it returns (``insert_distributed_sync``): the sink's
    promise is about rows stored, not rows queued on one node."""
    if cluster and not url:
        raise ValueError("--clickhouse-cluster needs a ClickHouse server (--clickhouse-url); embedded chdb has no "
                         "cluster")
    if url:
        backend = DriverBackend(url)
        if cluster:
            backend.use_settings(insert_distributed_sync=1)
        return backend
    return ChdbBackend(chdb_path)
