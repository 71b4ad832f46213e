-- Predictions whose day has no partition yet land here instead of making a write create one:
-- partitions are made ahead of time by a background task, never inside a write transaction.
CREATE TABLE IF NOT EXISTS predictions_default PARTITION OF predictions DEFAULT;
