-- haltwatch ClickHouse schema, migration 5: the evidence a hot-wallet suggestion was made on.
--
-- The same scoring proposes wallets live (the connectors' rotation watch) and in label files
-- (haltwatch labels discover); these columns keep what it saw, so a reviewer can judge a suggestion
-- from the table alone. Rows written before this migration read 0 and ''. One statement, so the
-- columns arrive together (18.16 has no ADD COLUMN IF NOT EXISTS to make a half-applied run safe).
ALTER TABLE {db}.label_suggestions
    ADD COLUMN top_ups UInt32 DEFAULT 0,
    ADD COLUMN sweeps UInt32 DEFAULT 0,
    ADD COLUMN steadiness Float64 DEFAULT 0,
    ADD COLUMN evidence String DEFAULT ''
