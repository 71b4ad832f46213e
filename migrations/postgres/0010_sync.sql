-- Syncs (crates/store/src/governance.rs; the same logical schema as migrations/sqlite/0010).
-- `sync_cursors`: how far a sync from this store has got, by name (`governance <url>` for the
-- governance sync to a primary), so a restarted sync resumes where it stopped.
CREATE TABLE sync_cursors (
    name          text   NOT NULL PRIMARY KEY,
    position      bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- On a primary: what each remote cluster's sync last said of itself.
CREATE TABLE governance_remotes (
    cluster           text   NOT NULL PRIMARY KEY,
    remote_seq        bigint NOT NULL,
    pending           bigint NOT NULL,
    oldest_pending_ms bigint,
    last_event_ms     bigint,
    contacted_at_ms   bigint NOT NULL
);

-- Each run of a sync from another system (the MLflow sync), with what it did: its activity
-- record.
CREATE TABLE sync_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text   NOT NULL,
    started_at_ms  bigint NOT NULL,
    finished_at_ms bigint NOT NULL,
    created        bigint NOT NULL,
    updated        bigint NOT NULL,
    skipped        bigint NOT NULL,
    failed         bigint NOT NULL,
    detail         text   NOT NULL
);
CREATE INDEX sync_runs_name ON sync_runs (name, id);
