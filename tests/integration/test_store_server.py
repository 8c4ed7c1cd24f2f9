"""The store on Debian's ClickHouse 18.16 server: the chdb cases again, a flush that outlives a server
restart, and the ``status`` / ``outages`` commands against both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from haltwatch.local import infra
from streams.store.backend import ChdbBackend, DriverBackend
from streams.store.dedup import TransferDedup
from streams.store.migrate import apply_migrations
from streams.store.queries import current_status, recent_outages, withdrawal_count, withdrawal_summary
from streams.store.sink import TableSink
from tests.conftest import CLICKHOUSE_ENV
from tests.unit.test_store_chdb import (
    CASES,
    NASTY,
    assert_view_matches_truth,
    outage,
    raw_rows,
    status_row,
    transfer,
)


def database_url(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def server(clickhouse_server: str) -> Iterator[DriverBackend]:
    backend = DriverBackend(database_url(clickhouse_server, f"t{time.time_ns()}"))
    apply_migrations(backend)
    try:
        yield backend
    finally:
        try:
            backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        finally:
            backend.close()


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_on_server(server, case):
    case(server)


def test_server_gets_plain_types(server):
    assert server.server_version()[:2] == (18, 16)
    types = {r["name"]: r["type"] for r in server.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'withdrawals_per_minute'",
        {"db": server.database})}
    assert types["exchange"] == "String" and types["minute"] == "DateTime('UTC')"


def _flush_in_thread(sink: TableSink, outcome: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            outcome["written"] = sink.flush()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"flush-{sink.table}", daemon=True)
    thread.start()
    return thread


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def transfer_columns(first: int, count: int) -> dict[str, list[Any]]:
    """``transfer(i)`` for i in [first, first + count), as columns (a tenth of the memory of row dicts)."""
    names = list(transfer(0))
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i in range(first, first + count):
        for name, value in transfer(i).items():
            columns[name].append(value)
    return columns


@pytest.mark.parametrize("stop", ["graceful", "killed"])
def test_flush_outlives_a_server_restart_without_loss_or_duplicates(server, clickhouse_server, state_dir, stop):
    """Stop the server while a batch is being inserted and another one waits, then start it again.

    ``graceful``: SIGTERM; 18.16 finishes the running insert before it exits, the waiting batch retries.
    ``killed``: SIGKILL right after SIGTERM, in the middle of the big batch, which is sent in blocks
    of 1,000 rows so that part of it is stored: 18.16 has then written those rows to ``transfers`` but
    not to the per-minute view. The retry must add exactly the rest and repair the view's minutes.
    """
    env = {**CLICKHOUSE_ENV, "CLICKHOUSE_STATE_DIR": str(state_dir / "clickhouse"),
           "CLICKHOUSE_STOP_TIMEOUT": "30" if stop == "graceful" else "0"}
    big, small = 400_000, 1_000
    writer = DriverBackend(f"{database_url(clickhouse_server, server.database)}?insert_block_size=1000")
    sinks = [TableSink(writer, "transfers", max_rows=big, retry_for_s=240, dedup=TransferDedup(), max_backoff_s=1.0)
             for _ in range(2)]
    sinks[0].add_columns(transfer_columns(0, big))
    sinks[1].add_columns(transfer_columns(big, small))

    watcher = DriverBackend(clickhouse_server)
    outcomes: list[dict[str, Any]] = [{}, {}]
    threads = [_flush_in_thread(sinks[0], outcomes[0])]
    try:
        def stored() -> int:
            return int(watcher.query(f"SELECT count() AS n FROM {server.database}.transfers")[0]["n"])

        _wait(lambda: outcomes[0] or stored() >= 20_000, 60, "the big insert to be partly stored")
        infra("clickhouse", "stop", env)
        threads.append(_flush_in_thread(sinks[1], outcomes[1]))
        _wait(lambda: sinks[1].retries >= 2, 60, "the second flush to retry against the stopped server")
    finally:
        watcher.close()
        infra("clickhouse", "start", env)
    for thread in threads:
        thread.join(240)
    writer.close()
    assert "error" not in outcomes[0] and "error" not in outcomes[1], outcomes
    assert sinks[1].retries >= 2
    if stop == "killed":
        assert sinks[0].retries >= 1 and sinks[0].rows_dropped > 0, "the kill did not land mid-batch"

    n = big + small
    assert raw_rows(server, "okx") == n, "every row stored exactly once"
    assert withdrawal_count(server, "okx") == n
    assert withdrawal_summary(server, "okx")["withdrawals"] == n, "the per-minute view counted each once"
    assert_view_matches_truth(server, "okx")

    # and a redelivery of both batches after the restart changes nothing
    again = TableSink(server, "transfers", max_rows=n, dedup=TransferDedup())
    again.add_columns(transfer_columns(0, n))
    assert again.flush() == 0
    assert raw_rows(server, "okx") == n
    assert withdrawal_summary(server, "okx")["withdrawals"] == n


def haltwatch(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it (its own process: chdb allows one process per folder)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALTWATCH_") or k == "HALTWATCH_CACHE"}
    return subprocess.run([sys.executable, "-m", "haltwatch", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def fill_query_tables(backend: Any) -> None:
    now = int(time.time())
    backend.insert("detector_status", [status_row(name, "ethereum", "open", 10 + k, outage_id=f"id-{k}",
                                                  updated_at=now) for k, name in enumerate(NASTY)])
    backend.insert("outage_events", [outage(name, f"a{k}", v, "open" if v == 1 else "resolved",
                                            resolved_at=None if v == 1 else now)
                                     for k, name in enumerate(NASTY) for v in (1, 2)])


def check_cli(source: list[str], expected_status: dict[str, list[dict[str, Any]]],
              expected_outages: dict[str, list[dict[str, Any]]]) -> None:
    for name in NASTY:
        done = haltwatch("status", *source, "--exchange", name, "--json")
        assert done.returncode == 0, done.stderr
        assert json_lines(done.stdout) == expected_status[name]
        done = haltwatch("outages", *source, "--exchange", name, "--since", "1d", "--all", "--json")
        assert done.returncode == 0, done.stderr
        assert json_lines(done.stdout) == expected_outages[name]
        assert [r["version"] for r in expected_outages[name]] == [1, 2]
    table = haltwatch("status", *source)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["EXCHANGE", "CHAIN", "STATE"]
    assert len(table.stdout.splitlines()) == 1 + len(NASTY)
    latest = haltwatch("outages", *source)
    assert latest.returncode == 0 and len(latest.stdout.splitlines()) == 1 + len(NASTY)
    assert all(" resolved " in line for line in latest.stdout.splitlines()[1:])


def test_cli_reads_the_server(server):
    fill_query_tables(server)
    check_cli(["--clickhouse-url", database_url("clickhouse://default@127.0.0.1:"
                                               f"{CLICKHOUSE_ENV['CLICKHOUSE_TCP_PORT']}/x", server.database)],
              {n: current_status(server, n) for n in NASTY},
              {n: recent_outages(server, n, since=0) for n in NASTY})


def test_cli_reads_embedded_chdb_and_says_when_a_worker_holds_it(tmp_path):
    path = tmp_path / "chdb"
    backend = ChdbBackend(path)
    try:
        apply_migrations(backend)
        fill_query_tables(backend)
        expected_status = {n: current_status(backend, n) for n in NASTY}
        expected_outages = {n: recent_outages(backend, n, since=0) for n in NASTY}
        held = haltwatch("status", "--chdb-path", str(path))
        assert held.returncode == 2
        assert "--api" in held.stderr, held.stderr
    finally:
        backend.close()
    check_cli(["--chdb-path", str(path)], expected_status, expected_outages)


def test_cli_rejects_a_bad_since(tmp_path):
    done = haltwatch("outages", "--chdb-path", str(tmp_path / "none"), "--since", "last tuesday")
    assert done.returncode == 2 and "not a time" in done.stderr
