-- driftline event store, Postgres schema (v1). Event tables are append-only; `predictions` is
-- range-partitioned by day on start_timestamp_ms, partitions are created on demand by the writer
-- and dropped by retention.

-- One row per stored prediction UUID, across all partitions: a unique constraint on the
-- partitioned table would have to include the partition key, so idempotency on the UUID alone
-- lives here. It also answers "which deployment and day holds this UUID" without a scan.
CREATE TABLE prediction_ids (
    uuid                 uuid   NOT NULL PRIMARY KEY,
    model_deployment_crn text   NOT NULL,
    start_timestamp_ms   bigint NOT NULL
);

CREATE TABLE predictions (
    uuid                 uuid   NOT NULL,
    model_crn            text   NOT NULL,
    model_build_crn      text   NOT NULL,
    model_deployment_crn text   NOT NULL,
    start_timestamp_ms   bigint NOT NULL,
    end_timestamp_ms     bigint NOT NULL,
    metrics              jsonb  NOT NULL,
    received_at_ms       bigint NOT NULL
) PARTITION BY RANGE (start_timestamp_ms);
CREATE INDEX predictions_deployment_time ON predictions (model_deployment_crn, start_timestamp_ms, uuid);
CREATE INDEX predictions_build_time ON predictions (model_build_crn, start_timestamp_ms, uuid);
CREATE INDEX predictions_model_time ON predictions (model_crn, start_timestamp_ms, uuid);

CREATE TABLE delayed_metrics (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid           uuid   NOT NULL,
    timestamp_ms   bigint NOT NULL,
    metrics        jsonb  NOT NULL,
    digest         bytea  NOT NULL,
    received_at_ms bigint NOT NULL
);
CREATE INDEX delayed_metrics_uuid ON delayed_metrics (uuid, timestamp_ms, id);
-- The same metrics for the same prediction at the same time are one fact: a retried write adds
-- nothing. `digest` is a hash of the metrics' canonical JSON.
CREATE UNIQUE INDEX delayed_metrics_once ON delayed_metrics (uuid, timestamp_ms, digest);

CREATE TABLE aggregate_metrics (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_deployment_crn text   NOT NULL,
    start_timestamp_ms   bigint NOT NULL,
    end_timestamp_ms     bigint NOT NULL,
    metrics              jsonb  NOT NULL,
    source               text   NOT NULL,
    digest               bytea  NOT NULL,
    received_at_ms       bigint NOT NULL
);
CREATE INDEX aggregate_metrics_deployment_time ON aggregate_metrics (model_deployment_crn, start_timestamp_ms, id);
CREATE UNIQUE INDEX aggregate_metrics_once
    ON aggregate_metrics (model_deployment_crn, start_timestamp_ms, end_timestamp_ms, source, digest);

CREATE TABLE dead_letters (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at_ms bigint NOT NULL,
    source         text   NOT NULL,
    reason         text   NOT NULL,
    raw            bytea  NOT NULL,
    source_key     bytea
);

CREATE TABLE ingest_offsets (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint  NOT NULL,
    updated_at_ms  bigint  NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE api_keys (
    id                   text   NOT NULL PRIMARY KEY,
    name                 text   NOT NULL,
    scope                text   NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    model_deployment_crn text,
    key_hash             text   NOT NULL UNIQUE,
    created_at_ms        bigint NOT NULL,
    revoked_at_ms        bigint
);
