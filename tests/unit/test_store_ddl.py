"""The migrations render for every supported server: newer features gated, never a different answer."""

from __future__ import annotations

import re

import pytest

from schemas.ddl import CODEC_SINCE, TTL_SINCE, gated_clause, migrations, placeholders, render

OLD = (18, 16, 1)
NEW = (26, 9, 2, 1)


def all_sql(version: tuple[int, ...]) -> str:
    return ";\n".join(s for m in migrations("haltwatch", version) for s in m.statements)


def test_no_placeholder_survives_rendering():
    for version in (OLD, (19, 6), (19, 9), CODEC_SINCE, NEW):
        assert not re.search(r"\{[a-z_]+(:[^}]*)?\}", all_sql(version)), version


def test_old_server_gets_plain_types_no_codecs_no_ttl():
    sql = all_sql(OLD)
    assert "LowCardinality" not in sql
    assert "CODEC(" not in sql
    assert "TTL " not in sql


def test_new_server_gets_low_cardinality_codecs_and_ttl():
    sql = all_sql(NEW)
    assert "LowCardinality(String)" in sql
    assert "CODEC(DoubleDelta, LZ4)" in sql
    assert "TTL updated_at + INTERVAL 30 DAY" in sql


@pytest.mark.parametrize(("version", "codec", "ttl"), [
    ((19, 5), False, False), (TTL_SINCE, False, True), (CODEC_SINCE, True, True), ((24, 8), True, True),
])
def test_each_clause_is_gated_on_its_own_version(version, codec, ttl):
    assert bool(gated_clause("codec", "ZSTD(1)", version)) is codec
    assert bool(gated_clause("ttl", "t + INTERVAL 1 DAY", version)) is ttl


def test_render_fills_gated_clauses_and_plain_placeholders():
    values = placeholders("db1", NEW)
    assert render("x {tz_datetime} {codec:Delta, ZSTD} FROM {db}.t {ttl:x + 1}", values, NEW) == (
        "x DateTime('UTC') CODEC(Delta, ZSTD) FROM db1.t TTL x + 1"
    )
    assert render("x {codec:Delta} {ttl:x + 1}", placeholders("db1", OLD), OLD) == "x  "


def test_migrations_are_numbered_without_gaps_and_the_first_two_never_change_name():
    names = [m.name for m in migrations("haltwatch", NEW)]
    assert [m.number for m in migrations("haltwatch", NEW)] == list(range(1, len(names) + 1))
    assert names[:4] == [
        "0001_init", "0002_incidents_and_chains", "0003_withdrawals_per_minute", "0004_status_and_latest_views",
    ]


def test_database_name_must_be_an_identifier():
    with pytest.raises(ValueError):
        placeholders("x; DROP TABLE y", NEW)


def test_cluster_migrations_make_replicated_local_tables_and_distributed_ones_over_them():
    from schemas.ddl import migrations

    statements = [s for m in migrations("hw", (18, 16, 1), "main") for s in m.statements]
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    local = [s for s in creates if "_local ON CLUSTER main" in s.split("(")[0]]
    distributed = [s for s in creates if "ENGINE = Distributed(main, hw, " in s]
    assert len(local) == len({s.split()[5] for s in distributed}) == 8, "every table both ways"
    assert all("ENGINE = Replicated" in s and "'/clickhouse/tables/{shard}/hw/" in s and "'{replica}'" in s
               for s in local)
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/hw/transfers', '{replica}', " \
           "ingest_version)" in next(s for s in local if "hw.transfers_local" in s)
    keys = {s.split()[5].removeprefix("hw."): s.rsplit(", ", 1)[1].rstrip(")") for s in distributed}
    assert keys["transfers"] == keys["outage_events"] == keys["detector_status"] == "cityHash64(exchange"
    assert keys["chain_heads"] == "cityHash64(chain" and "rand" not in " ".join(distributed)
    view = next(s for s in statements if "MATERIALIZED VIEW" in s)
    assert "TO hw.withdrawals_per_minute_local" in view and "FROM hw.transfers_local" in view
    assert "transfers_local.amount" in view and "hw.transfers\n" not in view
    alter = statements.index(next(s for s in statements if s.startswith("ALTER TABLE")))
    assert statements[alter].startswith("ALTER TABLE hw.label_suggestions_local ON CLUSTER main")
    assert statements[alter + 1] == "DROP TABLE IF EXISTS hw.label_suggestions ON CLUSTER main"
    assert statements[alter + 2].startswith("CREATE TABLE IF NOT EXISTS hw.label_suggestions ON CLUSTER main AS")
    assert all("ON CLUSTER main" in s for s in statements if not s.startswith("INSERT"))


def test_single_server_migrations_are_untouched_by_the_cluster_code():
    from schemas.ddl import migrations

    text = " ".join(s for m in migrations("hw", (18, 16, 1)) for s in m.statements)
    assert "ON CLUSTER" not in text and "Replicated" not in text and "Distributed" not in text


def test_a_cluster_name_must_be_an_identifier_and_every_statement_needs_a_cluster_form():
    from schemas.cluster_ddl import ClusterDdl

    with pytest.raises(ValueError, match="plain identifier"):
        ClusterDdl("hw", "main; DROP")
    with pytest.raises(ValueError, match="no cluster form"):
        ClusterDdl("hw", "main").rewrite("RENAME TABLE hw.a TO hw.b")
