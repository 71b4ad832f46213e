-- Syncs (crates/store/src/governance.rs; the same logical schema as migrations/postgres/0010).
-- `sync_cursors`: how far a sync from this store has got, by name (`governance <url>` for the
-- governance sync to a primary), so a restarted sync resumes where it stopped.
CREATE TABLE sync_cursors (
    name          TEXT   NOT NULL PRIMARY KEY,
    position      INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- On a primary: what each remote cluster's sync last said of itself.
CREATE TABLE governance_remotes (
    cluster           TEXT   NOT NULL PRIMARY KEY,
    remote_seq        INTEGER NOT NULL,
    pending           INTEGER NOT NULL,
    oldest_pending_ms INTEGER,
    last_event_ms     INTEGER,
    contacted_at_ms   INTEGER NOT NULL
);

-- Each run of a sync from another system (the MLflow sync), with what it did: its activity
-- record.
CREATE TABLE sync_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER NOT NULL,
    created        INTEGER NOT NULL,
    updated        INTEGER NOT NULL,
    skipped        INTEGER NOT NULL,
    failed         INTEGER NOT NULL,
    detail         TEXT    NOT NULL
);
CREATE INDEX sync_runs_name ON sync_runs (name, id);
