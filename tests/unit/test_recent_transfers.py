"""The transfers sink's memory on chdb: new transfers go in without a lookup, and what it does not know it asks."""

from __future__ import annotations

from typing import Any

from streams.store.backend import ClickHouseBackend
from streams.store.dedup import TransferDedup
from streams.store.queries import withdrawal_count
from streams.store.recent_transfers import RecentTransfers, block_key
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


def test_new_transfers_need_no_lookup_and_the_rest_is_looked_up(chdb: ClickHouseBackend) -> None:
    backend = CountingBackend(chdb)
    dedup = TransferDedup()
    sink = sink_of(backend, dedup)
    assert write(sink, [transfer(i) for i in range(100)]) == 100
    assert len(backend.queries) == 1 and "max(block_time)" in backend.queries[0], "one query: the floors"
    backend.queries.clear()
    assert write(sink, [transfer(i) for i in range(100, 200)]) == 100
    assert backend.queries == [], "newer than the floor, of blocks not stored yet: new, no lookup"
    assert dedup.rows_looked_up == 0
    redelivered = [transfer(i) for i in range(150, 200)]  # same offsets
    republished = [transfer(i, version=1000 + i) for i in range(180, 190)]  # unchanged under new offsets
    retracted = [transfer(i, version=2000 + i, removed=1) for i in range(190, 195)]
    assert write(sink, redelivered + republished + retracted + [transfer(i) for i in range(200, 210)]) == 15
    assert dedup.rows_looked_up == 65, "the rows of stored blocks and the retractions, not the 10 new ones"
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


def unsure(recent: RecentTransfers, block_time: int, block: str, removed: int = 0) -> bool:
    """Whether one okx/ethereum row of ``block`` would be looked up."""
    rows, keys = recent.unsure_rows(["okx"], ["ethereum"], [block], [block_time], [removed])
    assert keys == [block_key("okx", "ethereum", block)]
    return rows == [0]


def test_old_blocks_are_forgotten_and_the_floor_moves_past_them() -> None:
    recent = RecentTransfers(window_s=100)
    pair = ("okx", "ethereum")
    assert unsure(recent, T0 + 1, "0xb0"), "no floor yet: unknown"
    recent.set_floors({pair: T0}, recent.generation)
    assert not unsure(recent, T0 + 10, "0xb0")
    assert unsure(recent, T0, "0xb0"), "as old as the table's newest: looked up"
    assert unsure(recent, T0 + 10, "0xb0", removed=1), "a retraction is always looked up"
    blocks = [block_key("okx", "ethereum", f"0xb{i}") for i in range(3)]
    recent.remember([(pair, T0 + 10, blocks[0]), (pair, T0 + 50, blocks[1])], recent.generation)
    assert unsure(recent, T0 + 10, "0xb0"), "a block stored: its rows are looked up"
    recent.remember([(pair, T0 + 200, blocks[2])], recent.generation)
    assert len(recent) == 1, "the two blocks 100 s older than the newest are forgotten"
    assert unsure(recent, T0 + 50, "0xother"), "the floor moved up"
    assert not unsure(recent, T0 + 51, "0xother")
    stale = recent.generation
    recent.forget()
    recent.remember([(pair, T0 + 300, blocks[0])], stale)
    assert len(recent) == 0, "what an insert started before a rebalance learned is not kept"


def test_blocks_stored_by_a_retry_are_remembered_too(chdb: ClickHouseBackend) -> None:
    """A retry looks every row up; what it then stores must be remembered, or a republish of it would pass."""
    dedup = TransferDedup()
    sink = sink_of(chdb, dedup)
    write(sink, [transfer(i) for i in range(10)])
    columns: Any = {k: [r[k] for r in [transfer(i) for i in range(10, 20)]] for k in transfer(0)}
    dedup.keep(chdb, columns)  # an attempt that failed before reaching the server
    assert dedup.keep(chdb, columns) is None, "the retry finds nothing stored: every row goes in"
    chdb.insert("transfers", [transfer(i) for i in range(10, 20)])
    dedup.after_insert(chdb)
    looked_up = dedup.rows_looked_up
    assert write(sink, [transfer(i, version=500 + i) for i in range(10, 20)]) == 0, "republished: dropped"
    assert dedup.rows_looked_up == looked_up + 10
    assert raw_rows(chdb, "okx") == 20
