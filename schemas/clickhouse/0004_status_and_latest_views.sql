-- haltwatch ClickHouse schema, migration 4: what is down right now, and the latest state per outage.

-- The detector's view of every (exchange, chain), snapshotted by the worker periodically and on every
-- outage state change. version is the wall clock in nanoseconds at the snapshot (monotonic per worker),
-- so the newest snapshot wins, also between snapshots taken in the same second. Times are chain times;
-- updated_at is the wall clock. Rows of pairs no worker reports any more expire after 30 days.
CREATE TABLE IF NOT EXISTS {db}.detector_status
(
    exchange {str_lc},
    chain {str_lc},
    state {str_lc},
    outage_id String,
    last_withdrawal_time Nullable({tz_datetime}),
    head_number Int64,
    head_time Nullable({tz_datetime}),
    gap_s Nullable(Int64),
    expected_rate_per_hour Float64,
    withdrawals_seen UInt64,
    updated_at {tz_datetime},
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (exchange, chain)
{ttl:updated_at + INTERVAL 30 DAY};

-- One row per (exchange, chain): the latest snapshot, with the chain's own latest state. A chain that is
-- stalled or that we receive no data from overrides the detector's state (silence then proves nothing);
-- detector_state keeps what the detector said.
CREATE VIEW IF NOT EXISTS {db}.current_status AS
SELECT
    exchange,
    chain,
    if(chain_state IN ('chain_stalled', 'no_data'), chain_state, detector_state) AS state,
    detector_state,
    chain_state,
    outage_id,
    last_withdrawal_time,
    head_number,
    head_time,
    gap_s,
    expected_rate_per_hour,
    withdrawals_seen,
    updated_at
FROM
(
    SELECT
        exchange, chain, state AS detector_state, outage_id, last_withdrawal_time, head_number, head_time,
        gap_s, expected_rate_per_hour, withdrawals_seen, updated_at
    FROM {db}.detector_status FINAL
) AS detector
ANY LEFT JOIN
(
    SELECT chain, argMax(state, emitted_at) AS chain_state
    FROM {db}.chain_status
    GROUP BY chain
) AS chains
USING chain;

-- The latest version of every outage (FINAL first collapses redelivered copies of a version).
CREATE VIEW IF NOT EXISTS {db}.outages_latest AS
SELECT *
FROM {db}.outage_events FINAL
ORDER BY exchange, outage_id, version DESC
LIMIT 1 BY exchange, outage_id;
