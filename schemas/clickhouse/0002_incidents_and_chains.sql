-- haltwatch ClickHouse schema, migration 2: correlated incidents and chain states.

-- One row per version of a correlated incident; (incident_id, version) is unique.
CREATE TABLE IF NOT EXISTS {db}.correlated_incidents
(
    incident_id String,
    version UInt32,
    exchanges Array(String),
    outage_ids Array(String),
    started_at {tz_datetime},
    detected_at {tz_datetime},
    common_keys Array(String),
    common_values Array(String),
    likely_cause String,
    emitted_at Float64
)
ENGINE = ReplacingMergeTree
ORDER BY (incident_id, version);

-- One row per change of a chain's state (ok / chain_stalled / no_data), judged on the wall clock.
CREATE TABLE IF NOT EXISTS {db}.chain_status
(
    chain {str_lc},
    state {str_lc},
    last_number UInt64,
    last_block_time {tz_datetime},
    last_received_at Float64,
    node_head_number Nullable(UInt64),
    reason String,
    emitted_at Float64
)
ENGINE = ReplacingMergeTree
ORDER BY (chain, emitted_at, state);

-- Likely hot-wallet rotations spotted by the connectors: candidates for the label files.
CREATE TABLE IF NOT EXISTS {db}.label_suggestions
(
    exchange {str_lc},
    chain {str_lc},
    address String,
    suggested_role String,
    funded_by String,
    funded_at {tz_datetime},
    funding_tx String,
    distinct_recipients UInt32,
    payouts UInt32,
    detected_at {tz_datetime},
    emitted_at Float64
)
ENGINE = ReplacingMergeTree
ORDER BY (exchange, chain, address);
