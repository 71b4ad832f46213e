-- Rollups: per (deployment, metric path, bucket) summaries at 1 minute, 1 hour and 1 day,
-- derived from the event tables by the rollup worker (and rebuilt by `driftline replay`).
-- The same logical schema as Postgres (see migrations/postgres/0005_rollups.sql).
CREATE TABLE rollups_1m (
    model_deployment_crn TEXT    NOT NULL,
    path                 TEXT    NOT NULL,
    bucket_start_ms      INTEGER NOT NULL,
    n_numeric            INTEGER NOT NULL,
    sum                  REAL    NOT NULL,
    min                  REAL,
    max                  REAL,
    m2                   REAL    NOT NULL,
    sketch               BLOB,
    n_categorical        INTEGER NOT NULL,
    value_counts         TEXT,
    other_count          INTEGER NOT NULL,
    PRIMARY KEY (model_deployment_crn, path, bucket_start_ms)
) WITHOUT ROWID;
CREATE TABLE rollups_1h (
    model_deployment_crn TEXT    NOT NULL,
    path                 TEXT    NOT NULL,
    bucket_start_ms      INTEGER NOT NULL,
    n_numeric            INTEGER NOT NULL,
    sum                  REAL    NOT NULL,
    min                  REAL,
    max                  REAL,
    m2                   REAL    NOT NULL,
    sketch               BLOB,
    n_categorical        INTEGER NOT NULL,
    value_counts         TEXT,
    other_count          INTEGER NOT NULL,
    PRIMARY KEY (model_deployment_crn, path, bucket_start_ms)
) WITHOUT ROWID;
CREATE TABLE rollups_1d (
    model_deployment_crn TEXT    NOT NULL,
    path                 TEXT    NOT NULL,
    bucket_start_ms      INTEGER NOT NULL,
    n_numeric            INTEGER NOT NULL,
    sum                  REAL    NOT NULL,
    min                  REAL,
    max                  REAL,
    m2                   REAL    NOT NULL,
    sketch               BLOB,
    n_categorical        INTEGER NOT NULL,
    value_counts         TEXT,
    other_count          INTEGER NOT NULL,
    PRIMARY KEY (model_deployment_crn, path, bucket_start_ms)
) WITHOUT ROWID;
CREATE INDEX rollups_1m_bucket ON rollups_1m (bucket_start_ms);
CREATE INDEX rollups_1h_bucket ON rollups_1h (bucket_start_ms);

CREATE TABLE deployments (
    model_deployment_crn TEXT    NOT NULL PRIMARY KEY,
    first_seen_ms        INTEGER NOT NULL
);
INSERT INTO deployments (model_deployment_crn, first_seen_ms)
    SELECT model_deployment_crn, min(received_at_ms) FROM predictions GROUP BY model_deployment_crn;

CREATE TABLE rollup_state (
    id               INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    rolling_to_ms    INTEGER,
    rolled_to_ms     INTEGER,
    raw_kept_from_ms INTEGER,
    generation       INTEGER NOT NULL DEFAULT 0,
    updated_at_ms    INTEGER NOT NULL
);
INSERT INTO rollup_state (id, updated_at_ms) VALUES (1, 0);

CREATE TABLE rollup_dirty (
    id                   INTEGER PRIMARY KEY,
    model_deployment_crn TEXT    NOT NULL,
    bucket_start_ms      INTEGER NOT NULL
);
CREATE INDEX rollup_dirty_bucket ON rollup_dirty (model_deployment_crn, bucket_start_ms);

CREATE TABLE rollup_paths (
    model_deployment_crn TEXT    NOT NULL,
    path                 TEXT    NOT NULL,
    admitted             INTEGER NOT NULL,
    refused_values       INTEGER NOT NULL,
    first_seen_ms        INTEGER NOT NULL,
    PRIMARY KEY (model_deployment_crn, path)
);
