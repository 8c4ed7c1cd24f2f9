"""The store on embedded chdb: idempotent transfer sink, exact per-minute view, status and outage queries.

The ``case_*`` functions take any backend; tests/integration/test_store_server.py runs the same cases
on Debian's ClickHouse 18.16 server.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.store.backend import ChdbBackend, ClickHouseBackend, StoreError
from streams.store.columns import transpose
from streams.store.dedup import KEY, TransferDedup, _inlined_bytes
from streams.store.migrate import apply_migrations
from streams.store.queries import (
    current_status,
    recent_outages,
    transfers_between,
    withdrawal_count,
    withdrawal_summary,
    withdrawals_per_minute,
)
from streams.store.sink import TableSink

T0 = 1_700_006_400  # midnight UTC
NASTY = [
    "o'kx",
    'bin"ance',
    "back\\slash",
    "x' OR '1'='1",
    "'; DROP TABLE haltwatch.transfers; --",
    "{exchange:String}",
    "%(exchange)s",
    "交易所",
]
"""Exchange names that would break or inject SQL if they ever reached it unescaped."""


def transfer(i: int, exchange: str = "okx", version: int | None = None, removed: int = 0, chain: str = "ethereum",
             direction: str = "withdrawal", decimals: int = 18, raw: str = "1500000000000000000") -> dict[str, Any]:
    """Transfer ``i`` of ``exchange`` (block time T0 + 10 i), as the sink receives it."""
    return {
        "exchange": exchange, "chain": chain, "direction": direction, "block_time": T0 + 10 * i,
        "block_number": 1000 + i, "block_hash": f"0xblock{i}", "tx_hash": f"0xtx{i}", "log_index": i % 3 - 1,
        "asset": "native" if i % 2 else "0xdac17f958d2ee523a2206206994597c13d831ec7", "amount": raw,
        "decimals": decimals, "from_address": "0xhot", "to_address": f"0xuser{i}", "removed": removed,
        "ingest_version": i if version is None else version,
    }


def sink(backend: ClickHouseBackend) -> TableSink:
    return TableSink(backend, "transfers", max_rows=100_000, retry_for_s=30, dedup=TransferDedup())


def write(backend: ClickHouseBackend, rows: list[dict[str, Any]]) -> int:
    s = sink(backend)
    for row in rows:
        s.add(row)
    return s.flush()


def raw_rows(backend: ClickHouseBackend, exchange: str) -> int:
    """Rows physically stored (no FINAL): duplicates would show here."""
    rows = backend.query(f"SELECT count() AS n FROM {backend.database}.transfers WHERE exchange = {{e:String}}",
                         {"e": exchange})
    return int(rows[0]["n"])


def canonical(backend: ClickHouseBackend, exchange: str) -> set[str]:
    rows = backend.query(
        f"SELECT tx_hash FROM {backend.database}.transfers FINAL "
        "WHERE exchange = {e:String} AND direction = 'withdrawal' AND removed = 0", {"e": exchange})
    return {r["tx_hash"] for r in rows}


def assert_view_matches_truth(backend: ClickHouseBackend, exchange: str, amount_each: float = 1.5) -> None:
    truth = canonical(backend, exchange)
    summary = withdrawal_summary(backend, exchange)
    assert summary["withdrawals"] == len(truth) == withdrawal_count(backend, exchange)
    assert summary["amount"] == pytest.approx(amount_each * len(truth))


# -- cases shared with the server tests ------------------------------------------------------------------
def case_insert_then_redelivery_adds_nothing(backend: ClickHouseBackend) -> None:
    rows = [transfer(i, exchange=NASTY[i % len(NASTY)]) for i in range(400)]
    rows += [transfer(i, exchange="okx", direction="deposit") for i in range(400, 450)]
    assert write(backend, rows) == 450
    for name in NASTY:
        assert raw_rows(backend, name) == 50
        assert_view_matches_truth(backend, name)
    before = {name: withdrawal_summary(backend, name) for name in NASTY}
    # the same messages again (same offsets), mixed with 10 new ones
    again = [*rows, *(transfer(i, exchange="okx") for i in range(1000, 1010))]
    s = sink(backend)
    for row in again:
        s.add(row)
    assert s.flush() == 10
    assert s.rows_dropped == 450
    for name in NASTY:
        assert raw_rows(backend, name) == 50, "redelivered rows were not inserted again"
        assert withdrawal_summary(backend, name) == before[name]
    assert_view_matches_truth(backend, "okx")
    assert withdrawal_count(backend, "okx") == 10


def case_reorg_retraction_and_flip_back(backend: ClickHouseBackend) -> None:
    write(backend, [transfer(i) for i in range(100)])
    assert_view_matches_truth(backend, "okx")
    # reorg: 20 withdrawals retracted (same transfer, new offset, removed = 1)
    assert write(backend, [transfer(i, version=500 + i, removed=1) for i in range(20)]) == 20
    assert canonical(backend, "okx") == {f"0xtx{i}" for i in range(20, 100)}
    assert withdrawal_summary(backend, "okx")["withdrawals"] == 80
    assert_view_matches_truth(backend, "okx")
    # redelivery of the retractions, a retraction of something never stored, a republished unchanged add
    noise = [transfer(i, version=500 + i, removed=1) for i in range(20)]
    noise += [transfer(900, version=901, removed=1), transfer(50, version=902)]
    assert write(backend, noise) == 0
    assert withdrawal_summary(backend, "okx")["withdrawals"] == 80
    # the reorg flips back: the first 5 are canonical again (new offsets)
    assert write(backend, [transfer(i, version=800 + i) for i in range(5)]) == 5
    assert canonical(backend, "okx") == {f"0xtx{i}" for i in (*range(5), *range(20, 100))}
    assert_view_matches_truth(backend, "okx")
    # one batch holding an add, its retraction and its return, in offset order: net one withdrawal
    assert write(backend, [transfer(300, version=3000), transfer(300, version=3001, removed=1),
                           transfer(300, version=3002)]) == 3
    assert_view_matches_truth(backend, "okx")


def merge_now(backend: ClickHouseBackend, table: str) -> None:
    """Merge a table's parts now; on a cluster, the replicated table under the Distributed one, until each of its
    partitions is one part on this replica (18.16 sometimes schedules no merge for an OPTIMIZE of a replicated
    table, answering "Unknown log entry type: 0": it is asked again, on the condition, with a deadline)."""
    engine = backend.query("SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                           {"db": backend.database, "t": table})
    if not engine or engine[0]["engine"] != "Distributed":
        backend.execute(f"OPTIMIZE TABLE {backend.database}.{table} FINAL")
        return
    local = f"{backend.database}.{table}_local"
    deadline = time.monotonic() + 120
    while True:
        try:
            backend.execute(f"OPTIMIZE TABLE {local} FINAL")
        except StoreError as exc:
            if "Unknown log entry type: 0" not in str(exc):
                raise
        backend.execute(f"SYSTEM SYNC REPLICA {local}")  # the merge runs from the replication queue
        parts = backend.query("SELECT max(n) AS most FROM (SELECT partition, count() AS n FROM system.parts WHERE "
                              "database = {db:String} AND table = {t:String} AND active GROUP BY partition)",
                              {"db": backend.database, "t": f"{table}_local"})
        if parts[0]["most"] <= 1:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{local} still has {parts[0]['most']} parts in a partition after 120 s of merging")


def case_replay_after_merge_is_not_counted_again(backend: ClickHouseBackend) -> None:
    """A merge keeps only the newest version: an old offset replayed later must still be recognised."""
    write(backend, [transfer(i) for i in range(10)])
    write(backend, [transfer(i, version=100 + i, removed=1) for i in range(3)])
    merge_now(backend, "transfers")
    assert raw_rows(backend, "okx") == 10, "the merge dropped the superseded versions"
    assert write(backend, [transfer(i) for i in range(10)]) == 0
    assert_view_matches_truth(backend, "okx")
    assert withdrawal_summary(backend, "okx")["withdrawals"] == 7


def case_view_rows_lost_in_a_crash_are_repaired_on_redelivery(backend: ClickHouseBackend) -> None:
    """A server killed mid-insert can keep rows in transfers that the view never counted (see summary.py)."""
    rows = [transfer(i) for i in range(40)] + [transfer(i, exchange="other") for i in range(40, 50)]
    write(backend, rows)
    # the crash took the view's share of the first 12 (minutes 0 and 1, 3 native + 3 USDT each)
    backend.insert("withdrawals_per_minute", [
        {"minute": T0 + minute, "exchange": "okx", "chain": "ethereum", "asset": asset, "withdrawals": -3,
         "amount": -4.5} for minute in (0, 60) for asset in ("native", "0xdac17f958d2ee523a2206206994597c13d831ec7")
    ])
    assert withdrawal_summary(backend, "okx")["withdrawals"] == 40 - 12
    assert write(backend, rows[:12]) == 0, "the replayed messages are already stored"
    assert_view_matches_truth(backend, "okx")
    assert_view_matches_truth(backend, "other")
    assert write(backend, rows[:12]) == 0
    assert_view_matches_truth(backend, "okx")


def case_amounts_in_whole_units_unknown_decimals_counted(backend: ClickHouseBackend) -> None:
    write(backend, [
        transfer(0, decimals=6, raw="2500000"),  # 2.5 USDT
        transfer(1, decimals=-1, raw="123"),  # unknown decimals: counted, amount 0
        transfer(2, decimals=18, raw="115792089237316195423570985008687907853269984665640564039457584007913129639935"),
    ])
    summary = withdrawal_summary(backend, "okx")
    assert summary["withdrawals"] == 3
    assert summary["amount"] == pytest.approx(2.5 + 0 + 1.157920892373162e59)
    raw = transfers_between(backend, "okx", T0, T0 + 30)
    assert [r["amount"] for r in raw][2].startswith("1157920892373161954235709850086879078532699846656405")


def case_per_minute_and_raw_history_queries(backend: ClickHouseBackend) -> None:
    write(backend, [transfer(i) for i in range(18)] + [transfer(i, exchange="other") for i in range(18, 30)])
    write(backend, [transfer(3, version=99, removed=1)])
    per_minute = withdrawals_per_minute(backend, "okx", T0, T0 + 3600)
    assert [(r["minute"] - T0, r["withdrawals"]) for r in per_minute] == [(0, 5), (60, 6), (120, 6)]
    assert sum(r["amount"] for r in per_minute) == pytest.approx(17 * 1.5)
    assert withdrawals_per_minute(backend, "okx", T0 + 60, T0 + 120) == [
        {"minute": T0 + 60, "withdrawals": 6, "amount": pytest.approx(9.0)}
    ]
    raw = transfers_between(backend, "okx", T0, T0 + 60)
    assert [r["tx_hash"] for r in raw] == ["0xtx0", "0xtx1", "0xtx2", "0xtx4", "0xtx5"]
    assert raw[0]["block_time"] == T0
    for name in NASTY:
        assert withdrawals_per_minute(backend, name, T0, T0 + 3600) == []
        assert transfers_between(backend, name, T0, T0 + 3600) == []


def status_row(exchange: str, chain: str, state: str, version: int, **extra: Any) -> dict[str, Any]:
    """A detector_status row; updated_at is now, since rows 30 days old expire (TTL, on newer servers)."""
    row = {"exchange": exchange, "chain": chain, "state": state, "outage_id": "", "last_withdrawal_time": T0,
           "head_number": 7, "head_time": T0 + 600, "gap_s": 600, "expected_rate_per_hour": 450.0,
           "withdrawals_seen": 90, "updated_at": int(time.time()), "version": version}
    return {**row, **extra}


def chain_status(chain: str, state: str, emitted_at: float) -> dict[str, Any]:
    return {"chain": chain, "state": state, "last_number": 7, "last_block_time": T0, "last_received_at": T0 + 1.0,
            "node_head_number": None, "reason": "test", "emitted_at": emitted_at}


def case_current_status_latest_snapshot_with_chain_override(backend: ClickHouseBackend) -> None:
    rows = []
    for k, name in enumerate(NASTY):
        rows.append(status_row(name, "ethereum", "ok", 10 + k))
        rows.append(status_row(name, "ethereum", "open", 20 + k, outage_id=f"id-{k}", gap_s=3600))
        rows.append(status_row(name, "tron", "suspected", 30 + k, last_withdrawal_time=None, gap_s=None))
    rows.append(status_row("okx", "ethereum", "warming_up", 5))
    backend.insert("detector_status", rows)
    backend.insert("detector_status", [status_row(NASTY[0], "ethereum", "ok", 1)])  # older: loses
    backend.insert("chain_status", [chain_status("tron", "ok", 1.0), chain_status("tron", "no_data", 2.0)])

    everything = current_status(backend)
    assert len(everything) == 2 * len(NASTY) + 1
    for k, name in enumerate(NASTY):
        status = {r["chain"]: r for r in current_status(backend, name)}
        assert set(status) == {"ethereum", "tron"}, name
        eth, tron = status["ethereum"], status["tron"]
        assert (eth["exchange"], eth["state"], eth["outage_id"], eth["gap_s"]) == (name, "open", f"id-{k}", 3600)
        assert eth["chain_state"] is None and eth["last_withdrawal_time"] == T0 and eth["head_time"] == T0 + 600
        assert eth["expected_rate_per_hour"] == 450.0 and eth["withdrawals_seen"] == 90
        assert (tron["state"], tron["detector_state"], tron["chain_state"]) == ("no_data", "suspected", "no_data")
        assert tron["last_withdrawal_time"] is None and tron["gap_s"] is None and tron["outage_id"] is None
    assert current_status(backend, "nobody") == []
    assert current_status(backend, "okx")[0]["state"] == "warming_up"
    assert_tables_intact(backend)


def outage(exchange: str, outage_id: str, version: int, state: str, resolved_at: int | None = None,
           detected_at: int = T0 + 120) -> dict[str, Any]:
    return {"outage_id": outage_id, "version": version, "exchange": exchange, "scope": ["ethereum"], "state": state,
            "started_at": T0, "detected_at": detected_at, "resolved_at": resolved_at,
            "expected_rate_per_hour": 450.0, "observed_gap_s": 120, "expected_count": 15.0, "observed_count": 0,
            "confidence": 0.999, "p_value": 1e-6, "last_withdrawal_tx": "0xtx", "last_withdrawal_chain": "ethereum",
            "emitted_at": float(T0 + version), "reason": "test"}


def case_outages_latest_all_and_since(backend: ClickHouseBackend) -> None:
    rows = []
    for k, name in enumerate(NASTY):
        rows += [outage(name, f"a{k}", 1, "suspected"), outage(name, f"a{k}", 2, "open"),
                 outage(name, f"a{k}", 3, "resolved", resolved_at=T0 + 3600)]
        rows += [outage(name, f"b{k}", 1, "open", detected_at=T0 + 7200)]
    backend.insert("outage_events", rows)
    backend.insert("outage_events", rows[:5])  # redelivered versions collapse

    for k, name in enumerate(NASTY):
        latest = recent_outages(backend, name, latest=True)
        assert sorted((r["outage_id"], r["version"], r["state"]) for r in latest) == [
            (f"a{k}", 3, "resolved"), (f"b{k}", 1, "open")], name
        every = recent_outages(backend, name)
        assert sorted((r["outage_id"], r["version"]) for r in every) == [
            (f"a{k}", 1), (f"a{k}", 2), (f"a{k}", 3), (f"b{k}", 1)]
        assert {r["exchange"] for r in every} == {name}
        # since: a{k} resolved at T0 + 3600, b{k} still open
        assert {r["outage_id"] for r in recent_outages(backend, name, since=T0 + 3600, latest=True)} == {
            f"a{k}", f"b{k}"}
        assert [r["outage_id"] for r in recent_outages(backend, name, since=T0 + 3601, latest=True)] == [f"b{k}"]
        assert [r["version"] for r in recent_outages(backend, name, since=T0 + 3601)] == [1]
    latest = recent_outages(backend, NASTY[0], latest=True)
    resolved = next(r for r in latest if r["state"] == "resolved")
    assert (resolved["started_at"], resolved["detected_at"], resolved["resolved_at"]) == (T0, T0 + 120, T0 + 3600)
    assert resolved["scope"] == ["ethereum"]
    assert len(recent_outages(backend, latest=True, limit=3)) == 3
    assert recent_outages(backend, "nobody") == []
    assert_tables_intact(backend)


def assert_tables_intact(backend: ClickHouseBackend) -> None:
    """Nothing an exchange name said was executed."""
    tables = {r["name"] for r in backend.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", {"db": backend.database})}
    assert {"transfers", "outage_events", "detector_status", "current_status", "outages_latest",
            "withdrawals_per_minute"} <= tables


def case_sink_buffer_is_bounded(backend: ClickHouseBackend) -> None:
    s = TableSink(backend, "transfers", max_rows=3, dedup=TransferDedup())
    for i in range(3):
        s.add(transfer(i))
    assert s.full
    with pytest.raises(BufferError):
        s.add(transfer(3))
    assert s.flush() == 3 and len(s) == 0 and not s.full
    s.add_columns({k: [v] for k, v in transfer(3).items()})
    assert s.flush() == 1
    assert withdrawal_count(backend, "okx") == 4
    s.extend([transfer(4), {**transfer(5), "typo": 1}])
    with pytest.raises(ValueError, match="exactly the columns"):
        s.flush()
    assert len(s) == 2, "a refused batch stays buffered"
    with pytest.raises(BufferError):
        s.extend([transfer(6), transfer(7)])
    assert s.discard() == 2 and len(s) == 0


MAX_QUERY_SIZE = 262144
"""ClickHouse 18.16's default max_query_size: the longest query text it parses."""


class RecordingBackend:
    """A backend that keeps every query it ran, with the text clickhouse-driver would send for it."""

    def __init__(self, inner: ClickHouseBackend) -> None:
        self.inner = inner
        self.database = inner.database
        self.sent: list[str] = []

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from clickhouse_driver.util.escape import escape_param

        values = params or {}
        self.sent.append(re.sub(r"\{(\w+):[^}]+\}", lambda m: str(escape_param(values[m.group(1)], None)), sql))
        return self.inner.query(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in KEY)


def case_lookup_returns_only_the_batchs_transfers(backend: ClickHouseBackend) -> None:
    """Many transfers of the batch's exchanges stored in its time window: only the batch's own come back."""
    exchanges = ["okx", NASTY[0], NASTY[3]]
    stored = [transfer(i, exchange=exchanges[i % 3]) for i in range(1200)]  # T0 .. T0 + 3h20m, interleaved
    assert write(backend, stored) == 1200
    # five new transfers in blocks across the window, a redelivered one, a retraction of a stored one
    new = [{**transfer(i, exchange=exchanges[i % 3], version=5000 + i), "tx_hash": f"0xnew{i}"}
           for i in (0, 299, 600, 901, 1199)]
    batch = [*new, stored[450], transfer(451, exchange=exchanges[451 % 3], version=6000, removed=1)]
    columns = transpose(batch)
    expected = {key(stored[450]): (450, 0), key(stored[451]): (451, 0)}
    assert TransferDedup().stored(backend, columns) == expected
    # the same with every span in its own query and a span per stored block (a batch of distant times)
    assert TransferDedup(one_range_s=0, cluster_gap_s=5, max_ranges=2).stored(backend, columns) == expected
    assert TransferDedup().keep(backend, columns) == [0, 1, 2, 3, 4, 6]
    assert write(backend, batch) == 6
    for name in exchanges:
        assert_view_matches_truth(backend, name)
    assert sum(withdrawal_count(backend, name) for name in exchanges) == 1200 + 5 - 1


def case_unusual_tx_hashes_are_still_found(backend: ClickHouseBackend) -> None:
    """Hashes the lookup cannot list (a comma: the spans alone then) or that are not ASCII: still deduplicated."""
    odd = [{**transfer(i), "tx_hash": f"0xtx{i},{i}"} for i in range(3)]
    odd += [{**transfer(i), "tx_hash": name * 6} for i, name in enumerate(NASTY, start=3)]  # longer than a prefix
    assert write(backend, [*odd, transfer(20)]) == len(odd) + 1
    assert write(backend, [*odd, transfer(20), transfer(21)]) == 1
    assert write(backend, [*odd[3:], transfer(22)]) == 1
    assert raw_rows(backend, "okx") == len(odd) + 3
    assert_view_matches_truth(backend, "okx")


def case_large_batch_lookup_stays_under_max_query_size(backend: ClickHouseBackend) -> None:
    """20,000 distinct tx hashes (a 340 KB list even as prefixes) are looked up in queries 18.16 can parse."""
    exchanges = ["okx", NASTY[0], NASTY[2]]
    n = 20_000
    rows = [{**transfer(m, exchange=exchanges[m % 3]), "block_time": T0 + m // 4,
             "tx_hash": "0x" + hashlib.sha256(str(m).encode()).hexdigest()} for m in range(n)]
    assert write(backend, rows[::2]) == n // 2
    columns = transpose(rows)
    dedup = TransferDedup()
    recording = RecordingBackend(backend)
    found = dedup.stored(recording, columns)  # type: ignore[arg-type]
    assert found == {key(r): (r["ingest_version"], 0) for r in rows[::2]}
    assert len(recording.sent) > 1, "split to fit"
    assert max(len(sql.encode()) for sql in recording.sent) <= dedup.max_query_bytes < MAX_QUERY_SIZE
    assert sum(sql.count("0x") for sql in recording.sent) == n, "each transaction asked for once"
    assert dedup.keep(backend, columns) == list(range(1, n, 2))
    assert write(backend, rows) == n // 2
    assert raw_rows(backend, NASTY[0]) == len(range(1, n, 3))
    assert_view_matches_truth(backend, "okx")


def case_label_suggestion_keeps_its_evidence(backend: ClickHouseBackend) -> None:
    from schemas.records import LabelSuggestion
    from streams.store.rows import suggestion_row

    evidence = "funded by 0xc; 3 top-ups from exchange wallets; 41 sweeps from one-off addresses; 'quoted'"
    s = LabelSuggestion("okx", "tron", "TNew", "hot", "TCold", 100, "f00d", 25, 40, 2_000, 3.0, top_ups=3,
                        sweeps=41, steadiness=0.875, evidence=evidence)
    backend.insert("label_suggestions", [suggestion_row(s)])
    (row,) = backend.query(f"SELECT address, top_ups, sweeps, steadiness, evidence, distinct_recipients "
                           f"FROM {backend.database}.label_suggestions")
    assert (row["address"], row["top_ups"], row["sweeps"], row["steadiness"], row["evidence"],
            row["distinct_recipients"]) == ("TNew", 3, 41, 0.875, evidence, 25)


CASES = [
    case_insert_then_redelivery_adds_nothing,
    case_reorg_retraction_and_flip_back,
    case_replay_after_merge_is_not_counted_again,
    case_view_rows_lost_in_a_crash_are_repaired_on_redelivery,
    case_amounts_in_whole_units_unknown_decimals_counted,
    case_per_minute_and_raw_history_queries,
    case_current_status_latest_snapshot_with_chain_override,
    case_outages_latest_all_and_since,
    case_sink_buffer_is_bounded,
    case_lookup_returns_only_the_batchs_transfers,
    case_unusual_tx_hashes_are_still_found,
    case_large_batch_lookup_stays_under_max_query_size,
    case_label_suggestion_keeps_its_evidence,
]


# -- chdb ------------------------------------------------------------------------------------------------
@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[ChdbBackend]:
    backend = ChdbBackend(tmp_path / "chdb", database=f"t{time.time_ns()}")
    try:
        apply_migrations(backend)
        yield backend
    finally:
        backend.close()


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_on_chdb(chdb, case):
    case(chdb)


def test_migrations_are_applied_once(chdb):
    assert apply_migrations(chdb) == []
    numbers = [r["number"] for r in chdb.query(f"SELECT number FROM {chdb.database}.schema_migrations ORDER BY number")]
    assert numbers == [1, 2, 3, 4, 5]


def test_migration_counts_transfers_stored_before_the_view_existed(tmp_path):
    """0003 backfills the per-minute table from what transfers held when it was applied."""
    from schemas.ddl import migrations

    backend = ChdbBackend(tmp_path / "chdb", database="early")
    try:
        backend.execute("CREATE DATABASE early")
        for migration in migrations("early", backend.server_version())[:2]:
            for statement in migration.statements:
                backend.execute(statement)
        backend.execute("CREATE TABLE early.schema_migrations (number UInt32, name String) "
                        "ENGINE = ReplacingMergeTree ORDER BY number")
        backend.insert("schema_migrations", [{"number": 1, "name": "0001_init"},
                                             {"number": 2, "name": "0002_incidents_and_chains"}])
        old = [transfer(i) for i in range(30)] + [transfer(i, version=100 + i, removed=1) for i in range(4)]
        backend.insert("transfers", old + old[:10])  # the old sink could store redeliveries twice
        assert apply_migrations(backend) == ["0003_withdrawals_per_minute", "0004_status_and_latest_views",
                                              "0005_suggestion_evidence"]
        assert withdrawal_summary(backend, "okx")["withdrawals"] == 26
        assert_view_matches_truth(backend, "okx")
    finally:
        backend.close()


def test_lookup_text_is_measured_as_the_driver_inlines_it():
    from clickhouse_driver.util.escape import escape_param

    for value in [*NASTY, "0x" + "ab" * 32, "", "tab\there\nnewline\0nul", ",".join(NASTY)]:
        assert _inlined_bytes(value) == len(escape_param(value, None).encode()), value
