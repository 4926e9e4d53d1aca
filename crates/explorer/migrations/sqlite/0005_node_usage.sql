-- Capacity a node had in use over time, for the cockpit's chart: one row per node and
-- 5-minute bucket (the bucket's latest heartbeat), kept for a day.
CREATE TABLE node_usage (
    node_id TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    used_cru BIGINT NOT NULL, used_mru BIGINT NOT NULL, used_sru BIGINT NOT NULL, used_hru BIGINT NOT NULL,
    PRIMARY KEY (node_id, bucket)
);
CREATE INDEX node_usage_bucket ON node_usage(bucket);
