-- Resource use of model replicas (`replica_stats` events), append-only; see
-- migrations/postgres/0006_replica_stats.sql.
CREATE TABLE replica_stats (
    id                   INTEGER PRIMARY KEY,
    model_deployment_crn TEXT    NOT NULL,
    replica_id           TEXT    NOT NULL,
    timestamp_ms         INTEGER NOT NULL,
    cpu_percent          REAL    NOT NULL,
    memory_bytes         INTEGER NOT NULL,
    received_at_ms       INTEGER NOT NULL
);
CREATE UNIQUE INDEX replica_stats_once ON replica_stats (model_deployment_crn, timestamp_ms, replica_id);
-- Retention removes old rows by time.
CREATE INDEX replica_stats_time ON replica_stats (timestamp_ms);

ALTER TABLE dead_letters ADD COLUMN model_deployment_crn TEXT;
CREATE INDEX dead_letters_deployment_time ON dead_letters (model_deployment_crn, received_at_ms)
    WHERE model_deployment_crn IS NOT NULL;
CREATE INDEX dead_letters_received ON dead_letters (received_at_ms);
