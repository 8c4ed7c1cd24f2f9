"""The transfers sink's memory on chdb: new transfers go in without a lookup, and what it does not know it asks."""

from __future__ import annotations

from typing import Any

from streams.store.backend import ClickHouseBackend
from streams.store.dedup import TransferDedup
from streams.store.queries import withdrawal_count
from streams.store.recent_transfers import RecentTransfers, key_hash
from streams.store.sink import TableSink
from tests.unit.test_store_chdb import T0, assert_view_matches_truth, chdb, raw_rows, transfer

__all__ = ["chdb"]  # the fixture, used by name


class CountingBackend:
    """The backend, counting the queries the dedup sends."""

    def __init__(self, backend: ClickHouseBackend) -> None:
        self.backend = backend
        self.queries: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def query(self, sql: str, params: Any = None) -> Any:
        self.queries.append(sql.split(" FROM ")[0])
        return self.backend.query(sql, params)


def sink_of(backend: Any, dedup: TransferDedup) -> TableSink:
    return TableSink(backend, "transfers", max_rows=100_000, retry_for_s=30, dedup=dedup)


def write(sink: TableSink, rows: list[dict[str, Any]]) -> int:
    for row in rows:
        sink.add(row)
    return sink.flush()


def test_new_transfers_need_no_lookup_and_redeliveries_are_still_dropped(chdb: ClickHouseBackend) -> None:
    backend = CountingBackend(chdb)
    dedup = TransferDedup()
    sink = sink_of(backend, dedup)
    assert write(sink, [transfer(i) for i in range(100)]) == 100
    assert len(backend.queries) == 1 and "max(block_time)" in backend.queries[0], "one query: the floors"
    backend.queries.clear()
    assert write(sink, [transfer(i) for i in range(100, 200)]) == 100
    assert backend.queries == [], "newer than the floor and not remembered: new, no lookup"
    redelivered = [transfer(i) for i in range(175, 200)]  # same offsets, within the last 300 s of block time
    republished = [transfer(i, version=1000 + i) for i in range(180, 190)]  # unchanged under new offsets
    retracted = [transfer(i, version=2000 + i, removed=1) for i in range(190, 195)]
    assert write(sink, redelivered + republished + retracted + [transfer(i) for i in range(200, 210)]) == 15
    assert backend.queries == []
    assert dedup.rows_looked_up == 0
    assert raw_rows(chdb, "okx") == 215
    assert withdrawal_count(chdb, "okx") == 205
    assert_view_matches_truth(chdb, "okx")


def test_what_a_restarted_process_does_not_remember_is_looked_up(chdb: ClickHouseBackend) -> None:
    write(sink_of(chdb, TransferDedup()), [transfer(i) for i in range(100)])
    backend = CountingBackend(chdb)
    dedup = TransferDedup()
    sink = sink_of(backend, dedup)
    again = [transfer(i) for i in range(90, 110)]  # 10 redelivered from before the restart, 10 new
    assert write(sink, again) == 10
    assert dedup.rows_looked_up == 10, "the rows at or below the stored floor, and only them"
    assert raw_rows(chdb, "okx") == 110
    assert_view_matches_truth(chdb, "okx")


def test_a_retry_checks_every_row_against_the_table(chdb: ClickHouseBackend) -> None:
    dedup = TransferDedup()
    sink = sink_of(chdb, dedup)
    write(sink, [transfer(i) for i in range(10)])
    columns: Any = {k: [r[k] for r in [transfer(i) for i in range(10, 20)]] for k in transfer(0)}
    assert dedup.keep(chdb, columns) is None
    chdb.insert("transfers", [transfer(i) for i in range(10, 20)])  # the attempt landed, then the link broke
    kept = dedup.keep(chdb, columns)  # the retry: no after_insert came in between
    assert kept == [], "the rows the failed attempt stored are found and not written twice"
    assert dedup.rows_looked_up == 10


def test_a_rebalance_forgets_and_asks_the_floors_again(chdb: ClickHouseBackend) -> None:
    backend = CountingBackend(chdb)
    dedup = TransferDedup()
    sink = sink_of(backend, dedup)
    write(sink, [transfer(i) for i in range(10)])
    assert dedup.recent is not None
    dedup.recent.forget()
    write(sink_of(chdb, TransferDedup()), [transfer(i) for i in range(10, 20)])  # another owner meanwhile
    backend.queries.clear()
    assert write(sink, [transfer(i) for i in range(15, 25)]) == 5
    assert "max(block_time)" in backend.queries[0]
    assert raw_rows(chdb, "okx") == 25


def test_old_keys_are_forgotten_and_the_floor_moves_past_them() -> None:
    recent = RecentTransfers(window_s=100)
    pair = ("okx", "ethereum")
    recent.set_floors({pair: T0}, recent.generation)
    keys = [("okx", "ethereum", f"0xb{i}", f"0xt{i}", 0) for i in range(3)]
    recent.remember([(pair, T0 + 10, key_hash(keys[0]), 1, 0), (pair, T0 + 50, key_hash(keys[1]), 2, 0)],
                    recent.generation)
    assert recent.state(key_hash(keys[0])) == (1, 0)
    recent.remember([(pair, T0 + 200, key_hash(keys[2]), 3, 0)], recent.generation)
    assert recent.state(key_hash(keys[0])) is None and recent.state(key_hash(keys[1])) is None
    assert not recent.fresh(pair, T0 + 50), "a row as old as a forgotten key is looked up again"
    assert recent.fresh(pair, T0 + 51)
    stale = recent.generation
    recent.forget()
    recent.remember([(pair, T0 + 300, key_hash(keys[0]), 4, 0)], stale)
    assert len(recent) == 0, "what an insert started before a rebalance learned is not kept"
