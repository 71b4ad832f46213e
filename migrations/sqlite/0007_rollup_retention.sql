-- Where each rollup resolution now starts after retention (see migrations/postgres/0007).
ALTER TABLE rollup_state ADD COLUMN minute_kept_from_ms INTEGER;
ALTER TABLE rollup_state ADD COLUMN hour_kept_from_ms INTEGER;
