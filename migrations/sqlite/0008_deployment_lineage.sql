-- Which model and build each deployment's predictions name: one row per distinct triple,
-- written in the transaction that stores the predictions (see migrations/postgres/0008).
--
-- On SQLite it replaces the two indexes on predictions by build and by model: each stored
-- prediction paid for three long text keys in them (a third of the insert's cost), while reads
-- by build or model are served by the deployment index, over the deployments this table names
-- for that build or model.
CREATE TABLE deployment_lineage (
    model_deployment_crn TEXT    NOT NULL,
    model_build_crn      TEXT    NOT NULL,
    model_crn            TEXT    NOT NULL,
    first_seen_ms        INTEGER NOT NULL,
    PRIMARY KEY (model_deployment_crn, model_build_crn, model_crn)
) WITHOUT ROWID;
CREATE INDEX deployment_lineage_build ON deployment_lineage (model_build_crn);
CREATE INDEX deployment_lineage_model ON deployment_lineage (model_crn);
INSERT INTO deployment_lineage (model_deployment_crn, model_build_crn, model_crn, first_seen_ms)
    SELECT model_deployment_crn, model_build_crn, model_crn, min(received_at_ms)
    FROM predictions GROUP BY model_deployment_crn, model_build_crn, model_crn;
DROP INDEX predictions_build_time;
DROP INDEX predictions_model_time;
