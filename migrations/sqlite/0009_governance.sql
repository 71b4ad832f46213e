-- The governance log (crates/store/src/governance.rs; the same logical schema as
-- migrations/postgres/0009): append-only, each event chained by hash to the previous event of
-- its cluster. `governance_heads` holds each cluster's last link.
CREATE TABLE governance_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster_seq INTEGER NOT NULL,
    id          TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    cluster     TEXT    NOT NULL,
    time_ms     INTEGER NOT NULL,
    payload     TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    UNIQUE (cluster, cluster_seq)
);
CREATE INDEX governance_events_subject ON governance_events (subject, seq);

CREATE TABLE governance_heads (
    cluster     TEXT    NOT NULL PRIMARY KEY,
    cluster_seq INTEGER NOT NULL,
    hash        TEXT    NOT NULL
);

-- Nothing edits or removes an event; the chain would show it, and this refuses it first.
CREATE TRIGGER governance_events_no_update BEFORE UPDATE ON governance_events
BEGIN
    SELECT RAISE(ABORT, 'governance_events is append-only');
END;
CREATE TRIGGER governance_events_no_delete BEFORE DELETE ON governance_events
BEGIN
    SELECT RAISE(ABORT, 'governance_events is append-only');
END;

-- Keys of the `govern` scope append governance events. SQLite cannot change a CHECK in place,
-- so the table is copied into one with the wider check.
CREATE TABLE api_keys_new (
    id                   TEXT    NOT NULL PRIMARY KEY,
    name                 TEXT    NOT NULL,
    scope                TEXT    NOT NULL CHECK (scope IN ('read', 'write', 'admin', 'govern')),
    model_deployment_crn TEXT,
    key_hash             TEXT    NOT NULL UNIQUE,
    created_at_ms        INTEGER NOT NULL,
    revoked_at_ms        INTEGER
);
INSERT INTO api_keys_new (id, name, scope, model_deployment_crn, key_hash, created_at_ms, revoked_at_ms)
    SELECT id, name, scope, model_deployment_crn, key_hash, created_at_ms, revoked_at_ms FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;
