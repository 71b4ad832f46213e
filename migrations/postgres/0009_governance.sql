-- The governance log (crates/store/src/governance.rs; the same logical schema as
-- migrations/sqlite/0009): append-only, each event chained by hash to the previous event of its
-- cluster. `governance_heads` holds each cluster's last link; appends lock its row.
CREATE TABLE governance_events (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_seq bigint NOT NULL,
    id          text   NOT NULL UNIQUE,
    kind        text   NOT NULL,
    subject     text   NOT NULL,
    actor       text   NOT NULL,
    cluster     text   NOT NULL,
    time_ms     bigint NOT NULL,
    payload     text   NOT NULL,
    prev_hash   text   NOT NULL,
    hash        text   NOT NULL,
    UNIQUE (cluster, cluster_seq)
);
CREATE INDEX governance_events_subject ON governance_events (subject, seq);

CREATE TABLE governance_heads (
    cluster     text   NOT NULL PRIMARY KEY,
    cluster_seq bigint NOT NULL,
    hash        text   NOT NULL
);

-- Nothing edits or removes an event; the chain would show it, and this refuses it first.
CREATE FUNCTION governance_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'governance_events is append-only';
END
$$;
CREATE TRIGGER governance_events_append_only BEFORE UPDATE OR DELETE ON governance_events
    FOR EACH ROW EXECUTE FUNCTION governance_events_append_only();

-- Keys of the `govern` scope append governance events.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check CHECK (scope IN ('read', 'write', 'admin', 'govern'));
