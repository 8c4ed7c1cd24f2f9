"""haltwatch on a replicated ClickHouse: two Debian clickhouse-server replicas of one shard and Apache ZooKeeper.

The same store cases as on one server run against the cluster's Distributed tables; a retried insert whose first
answer was lost, retried on the other replica, leaves each row once on both; and the halt scenario runs with the
worker writing to the cluster while one replica is killed and restarted mid-stream, `haltwatch status` answering
from the surviving replica all along.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haltwatch.local import REPO
from haltwatch.traffic import SCENARIOS, BlockPlayed
from schemas.records import OutageState
from streams.store.backend import ClickHouseBackend, DriverBackend, StoreError, open_backend
from streams.store.dedup import TransferDedup
from streams.store.migrate import apply_migrations
from streams.store.sink import TableSink
from tests.conftest import ReplicaPair
from tests.integration.test_end_to_end import (
    EXCHANGE,
    exchange_pipeline,
    last_withdrawal_before,
    start_pipeline,
    wait_until_connector_published,
)
from tests.unit.test_store_chdb import CASES, transfer

pytestmark = pytest.mark.integration
CLUSTER = ReplicaPair.CLUSTER


def fresh_database() -> str:
    return f"c{time.time_ns()}"


def drop(pair: ReplicaPair, database: str) -> None:
    backend = DriverBackend(pair.url(database))
    try:
        backend.execute(f"DROP DATABASE IF EXISTS {database} ON CLUSTER {CLUSTER}")
    finally:
        backend.close()


@pytest.fixture
def cluster_db(clickhouse_cluster: ReplicaPair) -> Iterator[ClickHouseBackend]:
    database = fresh_database()
    backend = open_backend(clickhouse_cluster.url(database), Path(), CLUSTER)  # as the worker opens it
    apply_migrations(backend, CLUSTER)
    try:
        yield backend
    finally:
        backend.close()
        drop(clickhouse_cluster, database)


def on_each_replica(pair: ReplicaPair, database: str, sql: str) -> list[list[dict[str, Any]]]:
    """``sql`` answered by each replica alone, after it has caught up with the replication queue."""
    answers = []
    for i in range(2):
        backend = DriverBackend(pair.replica_url(i, database))
        try:
            for table in ("transfers_local", "outage_events_local", "withdrawals_per_minute_local"):
                backend.execute(f"SYSTEM SYNC REPLICA {database}.{table}")
            answers.append(backend.query(sql))
        finally:
            backend.close()
    return answers


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_every_store_case_holds_on_the_replicated_pair(cluster_db: ClickHouseBackend, case: Any) -> None:
    """Queries, views and the transfers' deduplication read the Distributed tables as they read one server's."""
    case(cluster_db)


def test_the_migrations_make_replicated_tables_on_both_replicas(cluster_db: ClickHouseBackend,
                                                               clickhouse_cluster: ReplicaPair) -> None:
    for i in range(2):
        backend = DriverBackend(clickhouse_cluster.replica_url(i, cluster_db.database))
        try:
            engines = {r["name"]: r["engine"] for r in backend.query(
                "SELECT name, engine FROM system.tables WHERE database = {db:String}", {"db": cluster_db.database})}
        finally:
            backend.close()
        assert engines["transfers_local"] == "ReplicatedReplacingMergeTree"
        assert engines["withdrawals_per_minute_local"] == "ReplicatedSummingMergeTree"
        assert engines["transfers"] == engines["outage_events"] == "Distributed"
        assert engines["current_status"] == "View" and engines["withdrawals_per_minute_mv"] == "MaterializedView"
    assert apply_migrations(cluster_db, CLUSTER) == []


class LostAnswerOnce:
    """A backend whose first insert reaches replica 1, after which replica 1 is killed: the answer is lost."""

    def __init__(self, inner: ClickHouseBackend, pair: ReplicaPair) -> None:
        self.inner, self.pair, self.database = inner, pair, inner.database
        self.inserts = 0

    def insert_columns(self, table: str, columns: Any) -> None:
        self.inserts += 1
        self.inner.insert_columns(table, columns)
        if self.inserts == 1:
            self.pair.kill(0)
            raise StoreError("connection reset by peer (simulated lost answer)", retryable=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_retry_on_the_other_replica_after_a_lost_answer_leaves_each_row_once(
        clickhouse_cluster: ReplicaPair) -> None:
    pair = clickhouse_cluster
    database = fresh_database()
    backend = open_backend(pair.url(database), Path(), CLUSTER)
    apply_migrations(backend, CLUSTER)
    second = DriverBackend(pair.replica_url(1, database))
    try:
        # replica 2 does not copy replica 1's parts yet: when replica 1 dies, what it stored exists nowhere else
        second.execute(f"SYSTEM STOP FETCHES {database}.transfers_local")
        earlier = [transfer(i) for i in range(100)]
        first = TableSink(backend, "transfers", dedup=TransferDedup(), replicated=True)
        first.extend(earlier)
        assert first.flush() == 100
        # a redelivery of those 100 with 100 new ones: on replica 1 the filter keeps the new ones only; the answer
        # is lost and replica 1 killed; the retry goes to replica 2, which has not seen the first 100 yet
        sink = TableSink(LostAnswerOnce(backend, pair), "transfers", retry_refused=True,  # type: ignore[arg-type]
                         dedup=TransferDedup(), replicated=True)
        sink.extend(earlier + [transfer(i) for i in range(100, 200)])
        assert sink.flush() == 100 and sink.retries == 1
        assert second.query(f"SELECT count() AS n FROM {database}.transfers_local") == [{"n": 0}], \
            "the retry's block was recognised as the killed replica's and dropped"
        second.execute(f"SYSTEM START FETCHES {database}.transfers_local")
        pair.start_replica(0)
        counts = on_each_replica(pair, database, "SELECT count() AS n, uniqExact(tx_hash, log_index) AS u "
                                 f"FROM {database}.transfers_local")
        assert counts == [[{"n": 200, "u": 200}], [{"n": 200, "u": 200}]]
    finally:
        pair.start_replica(0)
        second.close()
        backend.close()
        drop(pair, database)


class StatusPoller:
    """Runs `haltwatch status` against the cluster URL every half second until stopped; counts the outcomes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            done = subprocess.run([sys.executable, "-m", "haltwatch", "status", "--clickhouse-url", self.url,
                                   "--json"], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
            self.answers.append((time.monotonic(), done.returncode, done.stderr[-300:]))
            self.stop.wait(0.5)

    def __enter__(self) -> StatusPoller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(70)


def test_the_halt_scenario_on_the_cluster_survives_a_replica_killed_mid_stream(
        clickhouse_cluster: ReplicaPair, kafka: str, anvil: str, run_dir: Path) -> None:
    pair = clickhouse_cluster
    database = fresh_database()
    url = pair.url(database)
    player, pipeline, watcher = exchange_pipeline(kafka, anvil, run_dir, "tcluster", 41, url,
                                                  clickhouse_cluster=CLUSTER)
    outage: dict[str, float] = {}
    played_so_far: list[BlockPlayed] = []
    poller = StatusPoller(url)

    def on_block(block: BlockPlayed) -> None:
        """Replica 1, the worker's first host, dies during the steady phase and stays down for 150 blocks and
        at least three answers of `haltwatch status` (waited for, not timed)."""
        index = len(played_so_far)
        played_so_far.append(block)
        if index == 150:
            pair.kill(0)
            outage["killed"] = time.monotonic()
        elif index == 300:
            deadline = time.monotonic() + 180
            while sum(1 for a in poller.answers if a[0] >= outage["killed"]) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            pair.start_replica(0)
            outage["restarted"] = time.monotonic()

    try:
        start_pipeline(pipeline, anvil)
        with poller:
            played = asyncio.run(player.play(SCENARIOS["halt"], on_block))
            assert watcher.wait_for(lambda evs: any(e.state is OutageState.RESOLVED for e in evs), 120), (
                f"no resolved outage; events: {watcher.events}")
            wait_until_connector_published(pipeline, played[-1].number)
        events = list(watcher.events)
        assert [e.version for e in events] == list(range(1, len(events) + 1))
        assert len({e.outage_id for e in events}) == 1
        assert events[-1].state is OutageState.RESOLVED
        assert events[-2].started_at == last_withdrawal_before(played, "halt").block_time
        down = [a for a in poller.answers if outage["killed"] <= a[0] <= outage["restarted"]]
        assert len(down) >= 3, f"status was asked {len(down)} times while replica 1 was down"
        assert all(code == 0 for _, code, _ in poller.answers), [a for a in poller.answers if a[1] != 0][:3]
        sent = {tx for b in played for tx in b.withdrawals}
        # the worker may still be inserting the newest rows: wait for them on the cluster, then compare each replica
        deadline = time.monotonic() + 60
        check = DriverBackend(url)
        try:
            while time.monotonic() < deadline:
                stored = check.query(f"SELECT count() AS n FROM {database}.transfers WHERE exchange = {{e:String}} "
                                     "AND direction = 'withdrawal'", {"e": EXCHANGE})
                if stored[0]["n"] >= len(sent):
                    break
                time.sleep(0.5)
        finally:
            check.close()
    finally:
        watcher.close()
        pipeline.stop()
    rows = on_each_replica(pair, database, f"SELECT tx_hash, count() AS n FROM {database}.transfers_local "
                           f"WHERE exchange = '{EXCHANGE}' AND direction = 'withdrawal' GROUP BY tx_hash")
    for i, replica in enumerate(rows):
        assert {r["tx_hash"] for r in replica} == sent, f"replica {i + 1}"
        assert all(r["n"] == 1 for r in replica), f"replica {i + 1} holds a withdrawal twice"
    versions = on_each_replica(pair, database, f"SELECT outage_id, version, count() AS n FROM "
                               f"{database}.outage_events_local GROUP BY outage_id, version ORDER BY version")
    expected = [{"outage_id": e.outage_id, "version": e.version, "n": 1} for e in events]
    assert versions == [expected, expected]
    drop(pair, database)
