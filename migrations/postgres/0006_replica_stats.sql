-- Resource use of model replicas (`replica_stats` events), append-only. The same figures of the
-- same replica at the same moment are one fact: a retried write adds nothing.
CREATE TABLE replica_stats (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_deployment_crn text             NOT NULL,
    replica_id           text             NOT NULL,
    timestamp_ms         bigint           NOT NULL,
    cpu_percent          double precision NOT NULL,
    memory_bytes         bigint           NOT NULL,
    received_at_ms       bigint           NOT NULL
);
CREATE UNIQUE INDEX replica_stats_once ON replica_stats (model_deployment_crn, timestamp_ms, replica_id);
-- Retention removes old rows by time.
CREATE INDEX replica_stats_time ON replica_stats (timestamp_ms);

-- Dead letters carry the deployment they name, when they name one, for the `@rejected` series.
ALTER TABLE dead_letters ADD COLUMN model_deployment_crn text;
CREATE INDEX dead_letters_deployment_time ON dead_letters (model_deployment_crn, received_at_ms)
    WHERE model_deployment_crn IS NOT NULL;
CREATE INDEX dead_letters_received ON dead_letters (received_at_ms);
