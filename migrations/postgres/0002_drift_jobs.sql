-- Drift jobs and their runs. A job's settings are one JSON document owned by driftline-drift.

CREATE TABLE drift_jobs (
    name          text   NOT NULL PRIMARY KEY,
    spec          text   NOT NULL,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

CREATE TABLE drift_runs (
    id              bigserial PRIMARY KEY,
    job             text   NOT NULL REFERENCES drift_jobs (name) ON DELETE CASCADE,
    scheduled_ms    bigint NOT NULL,
    window_start_ms bigint NOT NULL,
    window_end_ms   bigint NOT NULL,
    started_at_ms   bigint NOT NULL,
    finished_at_ms  bigint,
    status          text   NOT NULL CHECK (status IN ('running', 'ok', 'warning', 'drift', 'no_data', 'failed')),
    summary         text,
    report_json     text,
    report_html     text
);

CREATE INDEX drift_runs_by_job ON drift_runs (job, scheduled_ms);
-- At most one run of a job at a time, across processes.
CREATE UNIQUE INDEX drift_runs_one_running ON drift_runs (job) WHERE status = 'running';
