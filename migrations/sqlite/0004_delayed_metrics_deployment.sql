-- Delayed metrics sent with a deployment-scoped key are kept with the key's deployment and join
-- only that deployment's predictions (a key of another deployment cannot label them in advance).
-- NULL: sent by an unscoped key or through Kafka; joins any prediction of its UUID.
ALTER TABLE delayed_metrics ADD COLUMN model_deployment_crn TEXT;
DROP INDEX delayed_metrics_once;
CREATE UNIQUE INDEX delayed_metrics_once
    ON delayed_metrics (uuid, timestamp_ms, digest, coalesce(model_deployment_crn, ''));
