-- driftline event store, embedded SQLite schema (v1). Event tables are append-only.

CREATE TABLE predictions (
    uuid                 TEXT    NOT NULL PRIMARY KEY,
    model_crn            TEXT    NOT NULL,
    model_build_crn      TEXT    NOT NULL,
    model_deployment_crn TEXT    NOT NULL,
    start_timestamp_ms   INTEGER NOT NULL,
    end_timestamp_ms     INTEGER NOT NULL,
    metrics              TEXT    NOT NULL,
    received_at_ms       INTEGER NOT NULL
);
CREATE INDEX predictions_deployment_time ON predictions (model_deployment_crn, start_timestamp_ms, uuid);
CREATE INDEX predictions_build_time ON predictions (model_build_crn, start_timestamp_ms, uuid);
CREATE INDEX predictions_model_time ON predictions (model_crn, start_timestamp_ms, uuid);

CREATE TABLE delayed_metrics (
    id             INTEGER PRIMARY KEY,
    uuid           TEXT    NOT NULL,
    timestamp_ms   INTEGER NOT NULL,
    metrics        TEXT    NOT NULL,
    digest         BLOB    NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX delayed_metrics_uuid ON delayed_metrics (uuid, timestamp_ms, id);
-- The same metrics for the same prediction at the same time are one fact: a retried write adds
-- nothing. `digest` is a hash of the metrics' canonical JSON.
CREATE UNIQUE INDEX delayed_metrics_once ON delayed_metrics (uuid, timestamp_ms, digest);

CREATE TABLE aggregate_metrics (
    id                   INTEGER PRIMARY KEY,
    model_deployment_crn TEXT    NOT NULL,
    start_timestamp_ms   INTEGER NOT NULL,
    end_timestamp_ms     INTEGER NOT NULL,
    metrics              TEXT    NOT NULL,
    source               TEXT    NOT NULL,
    digest               BLOB    NOT NULL,
    received_at_ms       INTEGER NOT NULL
);
CREATE INDEX aggregate_metrics_deployment_time ON aggregate_metrics (model_deployment_crn, start_timestamp_ms, id);
CREATE UNIQUE INDEX aggregate_metrics_once
    ON aggregate_metrics (model_deployment_crn, start_timestamp_ms, end_timestamp_ms, source, digest);

CREATE TABLE dead_letters (
    id             INTEGER PRIMARY KEY,
    received_at_ms INTEGER NOT NULL,
    source         TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    raw            BLOB    NOT NULL,
    source_key     BLOB
);

CREATE TABLE ingest_offsets (
    consumer_group TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    partition      INTEGER NOT NULL,
    next_offset    INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE api_keys (
    id                   TEXT    NOT NULL PRIMARY KEY,
    name                 TEXT    NOT NULL,
    scope                TEXT    NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    model_deployment_crn TEXT,
    key_hash             TEXT    NOT NULL UNIQUE,
    created_at_ms        INTEGER NOT NULL,
    revoked_at_ms        INTEGER
);
