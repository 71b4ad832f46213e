-- Where each rollup resolution now starts after retention: buckets before it may be gone. Drift
-- jobs that read a window from rollups choose the finest resolution still kept for each part.
ALTER TABLE rollup_state ADD COLUMN minute_kept_from_ms bigint;
ALTER TABLE rollup_state ADD COLUMN hour_kept_from_ms bigint;
