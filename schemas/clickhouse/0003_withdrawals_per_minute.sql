-- haltwatch ClickHouse schema, migration 3: per-minute withdrawals, kept by a materialized view.
--
-- A materialized view sees every block inserted into transfers, duplicates included, so the sink never
-- inserts a transfer row that would not change the transfer's canonical state (streams/store/dedup.py),
-- and the view counts with sign: a retraction (removed = 1) counts -1 and takes its amount back. The sum
-- per (exchange, chain, asset, minute) therefore equals the canonical withdrawals of that minute.
-- Amounts are whole units as Float64 (raw / 10^decimals; decimals -1 = unknown: counted, amount 0);
-- the exact raw amounts stay in transfers. Read it with sum() ... GROUP BY: rows collapse only on merges.
CREATE TABLE IF NOT EXISTS {db}.withdrawals_per_minute
(
    minute {tz_datetime} {codec:DoubleDelta, LZ4},
    exchange {str_lc},
    chain {str_lc},
    asset {str_lc},
    withdrawals Int64,
    amount Float64
)
ENGINE = SummingMergeTree((withdrawals, amount))
PARTITION BY toYYYYMM(minute)
ORDER BY (exchange, minute, chain, asset);

-- transfers.amount is qualified: the output column of the same name would otherwise shadow it.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.withdrawals_per_minute_mv TO {db}.withdrawals_per_minute AS
SELECT
    toStartOfMinute(block_time) AS minute,
    exchange,
    chain,
    asset,
    sum(if(removed = 1, -1, 1)) AS withdrawals,
    sum(if(decimals < 0, 0, toFloat64OrZero(transfers.amount) / pow(10, decimals)) * if(removed = 1, -1, 1)) AS amount
FROM {db}.transfers
WHERE direction = 'withdrawal'
GROUP BY minute, exchange, chain, asset;

-- Transfers stored before this migration: count their canonical state once. The worker applies
-- migrations before its first insert; truncating first makes a re-run after a crash mid-migration exact.
TRUNCATE TABLE {db}.withdrawals_per_minute;

INSERT INTO {db}.withdrawals_per_minute (minute, exchange, chain, asset, withdrawals, amount)
SELECT
    toStartOfMinute(block_time) AS minute,
    exchange,
    chain,
    asset,
    toInt64(count()) AS withdrawals,
    sum(if(decimals < 0, 0, toFloat64OrZero(transfers.amount) / pow(10, decimals))) AS amount
FROM {db}.transfers FINAL
WHERE direction = 'withdrawal' AND removed = 0
GROUP BY minute, exchange, chain, asset;
