-- haltwatch ClickHouse schema, migration 1.
-- Placeholders: {db} is the database; {tz_datetime} and {str_lc} are filled per server version
-- (see schemas/ddl.py) so the same file runs on ClickHouse 18.16 and on embedded chdb 26.x.

-- Raw labelled transfers. A reorg retraction is the same key with removed = 1 and a higher
-- ingest_version, so FINAL (or argMax on ingest_version) yields the canonical set.
CREATE TABLE IF NOT EXISTS {db}.transfers
(
    exchange {str_lc},
    chain {str_lc},
    direction {str_lc},
    block_time {tz_datetime},
    block_number UInt64,
    block_hash String,
    tx_hash String,
    log_index Int32,
    asset String,
    amount String,
    decimals Int16,
    from_address String,
    to_address String,
    removed UInt8,
    ingest_version UInt64
)
ENGINE = ReplacingMergeTree(ingest_version)
PARTITION BY toYYYYMMDD(block_time)
ORDER BY (exchange, chain, block_time, block_hash, tx_hash, log_index);

-- One row per fully published block; shows what chain time the pipeline has covered.
CREATE TABLE IF NOT EXISTS {db}.chain_heads
(
    chain {str_lc},
    number UInt64,
    hash String,
    parent_hash String,
    block_time {tz_datetime},
    received_at Float64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(block_time)
ORDER BY (chain, number, hash);

-- One row per outage state change; (outage_id, version) is unique, so a redelivered event collapses.
CREATE TABLE IF NOT EXISTS {db}.outage_events
(
    outage_id String,
    version UInt32,
    exchange {str_lc},
    scope Array(String),
    state {str_lc},
    started_at {tz_datetime},
    detected_at {tz_datetime},
    resolved_at Nullable({tz_datetime}),
    expected_rate_per_hour Float64,
    observed_gap_s Int64,
    expected_count Float64,
    observed_count UInt64,
    confidence Float64,
    p_value Float64,
    last_withdrawal_tx String,
    last_withdrawal_chain String,
    emitted_at Float64,
    reason String
)
ENGINE = ReplacingMergeTree
ORDER BY (exchange, outage_id, version);
