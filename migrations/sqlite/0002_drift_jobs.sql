-- Drift jobs and their runs. A job's settings are one JSON document owned by driftline-drift.

CREATE TABLE drift_jobs (
    name          TEXT    NOT NULL PRIMARY KEY,
    spec          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE drift_runs (
    id              INTEGER PRIMARY KEY,
    job             TEXT    NOT NULL REFERENCES drift_jobs (name) ON DELETE CASCADE,
    scheduled_ms    INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL,
    window_end_ms   INTEGER NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    status          TEXT    NOT NULL CHECK (status IN ('running', 'ok', 'warning', 'drift', 'no_data', 'failed')),
    summary         TEXT,
    report_json     TEXT,
    report_html     TEXT
);

CREATE INDEX drift_runs_by_job ON drift_runs (job, scheduled_ms);
-- At most one run of a job at a time, across processes.
CREATE UNIQUE INDEX drift_runs_one_running ON drift_runs (job) WHERE status = 'running';
