"""The worker's sinks and store views on embedded chdb: add per record, flush per batch, a full buffer
written before it grows, and the JSON views of what was stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from schemas.records import BlockTransfers, ChainHead, Direction, OutageEvent, OutageState, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector
from streams.store.queries import withdrawal_count
from streams.store.rows import head_row, outage_row, transfer_rows
from streams.web.store_api import StoreApi
from streams.worker.sinks import ClickHouseStore, RecordSink, one_row

T0 = 1_700_000_000
TABLES: Any = {
    TransferEvent: ("transfers", transfer_rows), BlockTransfers: ("transfers", transfer_rows),
    ChainHead: ("chain_heads", one_row(head_row)), OutageEvent: ("outage_events", one_row(outage_row)),
}


def withdrawal(i: int, exchange: str = "okx") -> TransferEvent:
    return TransferEvent("ethereum", 100 + i, f"0xb{i}", T0 + 12 * i, f"0xtx{i}", 0, "native", "1", 18, "0xhot",
                         f"0xuser{i}", exchange, Direction.WITHDRAWAL)


def head(i: int) -> ChainHead:
    return ChainHead("ethereum", 100 + i, f"0xb{i}", f"0xb{i - 1}", T0 + 12 * i, float(T0 + 12 * i))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    found = ClickHouseStore(None, tmp_path / "chdb", batch_rows=3)
    try:
        yield found
    finally:
        found.stopping.set()
        found.backend().close()


def stored(store: ClickHouseStore, table: str) -> int:
    database = store.backend().database
    return int(store.backend().query(f"SELECT count() AS n FROM {database}.{table}")[0]["n"])


async def test_records_wait_in_their_tables_buffer_until_the_batch_is_flushed(store: ClickHouseStore) -> None:
    sink = RecordSink(store, TABLES)
    await sink.add(withdrawal(1), offset=7)
    await sink.add(head(1), offset=8)
    await sink.add(object(), offset=9)  # not this agent's to store
    assert {table: len(s) for table, s in store.sinks.items()} == {"transfers": 1, "chain_heads": 1}
    assert stored(store, "transfers") == 0
    await sink.flush()
    assert (stored(store, "transfers"), stored(store, "chain_heads")) == (1, 1)
    assert all(len(s) == 0 for s in store.sinks.values())
    await sink.flush()  # nothing buffered: nothing written twice
    assert stored(store, "transfers") == 1


async def test_a_full_buffer_is_written_before_it_grows(store: ClickHouseStore) -> None:
    sink = RecordSink(store, TABLES)
    for i in range(4):
        await sink.add(withdrawal(i), offset=i)
    assert stored(store, "transfers") == 3, "the fourth row found the buffer of 3 full: the 3 went first"
    assert len(store.sinks["transfers"]) == 1
    block = BlockTransfers([withdrawal(10 + i) for i in range(7)], head(200))
    await sink.add(block, offset=50)  # more rows than a buffer holds: written in buffer-sized pieces
    assert len(store.sinks["transfers"]) <= 3
    await sink.flush()
    assert stored(store, "transfers") == 11
    assert withdrawal_count(store.backend(), "okx") == 11


@pytest.fixture
async def views(store: ClickHouseStore) -> AsyncIterator[tuple[TestClient[Any, Any], OutageDetector]]:
    detector = OutageDetector(DetectionPolicy(), ManualClock(0.0))
    app = web.Application()
    for path, handler in StoreApi(store.read, detector).routes().items():
        app.router.add_get(path, handler)
    async with TestClient(TestServer(app)) as client:
        yield client, detector


async def get(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return orjson.loads(await response.read())


async def test_the_views_answer_from_the_store_and_the_detector(
        store: ClickHouseStore, views: tuple[TestClient[Any, Any], OutageDetector]) -> None:
    client, detector = views
    sink = RecordSink(store, TABLES)
    outage = OutageEvent("id1", 1, "okx", ["ethereum"], OutageState.OPEN, T0, T0 + 600, None, 60.0, 600, 10.0, 0,
                         0.99, 1e-5, "0xtx1", "ethereum", T0 + 600.0, "no withdrawal")
    for i in range(2):
        await sink.add(withdrawal(i), offset=i)
    await sink.add(outage, offset=5)
    await sink.flush()
    assert await get(client, "/withdrawals/count?exchange=okx") == {"exchange": "okx", "count": 2}
    (row,) = await get(client, "/outages?exchange=okx")
    assert (row["outage_id"], row["state"]) == ("id1", "open")
    assert await get(client, "/outages?limit=many", status=400) == {"error": "since and limit must be integers"}
    assert await get(client, "/status") == []
    assert await get(client, "/detector") == []
    detector.on_transfer(withdrawal(3))
    (mine,) = await get(client, "/detector")
    assert (mine["exchange"], mine["chain"], mine["withdrawals_seen"]) == ("okx", "ethereum", 1)


async def test_a_store_that_cannot_answer_gives_503_with_the_reason(tmp_path: Path) -> None:
    broken = ClickHouseStore("clickhouse://127.0.0.1:9/haltwatch", tmp_path / "unused", batch_rows=3)
    broken.stopping.set()  # the first open gives up at once instead of retrying
    app = web.Application()
    for path, handler in StoreApi(broken.read, OutageDetector(DetectionPolicy(), ManualClock(0.0))).routes().items():
        app.router.add_get(path, handler)
    async with TestClient(TestServer(app)) as client:
        body = await get(client, "/status", status=503)
    assert body.get("error")
