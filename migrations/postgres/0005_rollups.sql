-- Rollups: per (deployment, metric path, bucket) summaries at 1 minute, 1 hour and 1 day,
-- derived from the event tables by the rollup worker (and rebuilt by `driftline replay`).
-- Numeric values: count, sum, min, max, m2 (the sum of squared deviations from the mean, the
-- numerically stable form of the sum of squares) and a DataSketches KLL sketch in its standard
-- serialization. Strings and booleans: counts per value (top K, JSON object) and an "other" count.
CREATE TABLE rollups_1m (
    model_deployment_crn text             NOT NULL,
    path                 text             NOT NULL,
    bucket_start_ms      bigint           NOT NULL,
    n_numeric            bigint           NOT NULL,
    sum                  double precision NOT NULL,
    min                  double precision,
    max                  double precision,
    m2                   double precision NOT NULL,
    sketch               bytea,
    n_categorical        bigint           NOT NULL,
    value_counts         text,
    other_count          bigint           NOT NULL,
    PRIMARY KEY (model_deployment_crn, path, bucket_start_ms)
);
CREATE TABLE rollups_1h (LIKE rollups_1m INCLUDING ALL);
CREATE TABLE rollups_1d (LIKE rollups_1m INCLUDING ALL);
-- Retention removes old buckets by time across deployments.
CREATE INDEX rollups_1m_bucket ON rollups_1m (bucket_start_ms);
CREATE INDEX rollups_1h_bucket ON rollups_1h (bucket_start_ms);

-- The deployments that have sent predictions, so that work per deployment (rolling, discovery)
-- finds them without scanning the events.
CREATE TABLE deployments (
    model_deployment_crn text   NOT NULL PRIMARY KEY,
    first_seen_ms        bigint NOT NULL
);
INSERT INTO deployments (model_deployment_crn, first_seen_ms)
    SELECT model_deployment_crn, min(received_at_ms) FROM predictions GROUP BY model_deployment_crn;

-- The worker's progress. Every prediction starting before `rolled_to_ms` is in the rollups (or
-- its minute is in rollup_dirty). `rolling_to_ms` is the range the worker has announced it is
-- about to roll: writers mark a late event's minute dirty when it starts before it. NULL: nothing
-- rolled yet.
CREATE TABLE rollup_state (
    id              smallint NOT NULL PRIMARY KEY CHECK (id = 1),
    rolling_to_ms   bigint,
    rolled_to_ms    bigint,
    raw_kept_from_ms bigint,
    generation      bigint   NOT NULL DEFAULT 0,
    updated_at_ms   bigint   NOT NULL
);
INSERT INTO rollup_state (id, updated_at_ms) VALUES (1, 0);

-- The invalidation log: minutes of a deployment whose rollups are stale because an event (a
-- late prediction, or a delayed metric of an already rolled prediction) arrived after they were
-- rolled. Written in the event's own transaction; an entry is removed, by id, in the transaction
-- that re-rolls its minute.
CREATE TABLE rollup_dirty (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_deployment_crn text   NOT NULL,
    bucket_start_ms      bigint NOT NULL
);
CREATE INDEX rollup_dirty_bucket ON rollup_dirty (model_deployment_crn, bucket_start_ms);

-- Metric paths admitted per deployment (the cardinality guard), and those refused, with how many
-- values of them were not rolled up.
CREATE TABLE rollup_paths (
    model_deployment_crn text    NOT NULL,
    path                 text    NOT NULL,
    admitted             boolean NOT NULL,
    refused_values       bigint  NOT NULL,
    first_seen_ms        bigint  NOT NULL,
    PRIMARY KEY (model_deployment_crn, path)
);
