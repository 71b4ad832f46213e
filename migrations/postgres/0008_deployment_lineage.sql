-- Which model and build each deployment's predictions name: one row per distinct triple,
-- written in the transaction that stores the predictions (the same logical schema as
-- migrations/sqlite/0008). Postgres keeps its indexes on predictions by build and by model
-- (its inserts are cheap enough with them); SQLite serves those reads through this table.
CREATE TABLE deployment_lineage (
    model_deployment_crn text   NOT NULL,
    model_build_crn      text   NOT NULL,
    model_crn            text   NOT NULL,
    first_seen_ms        bigint NOT NULL,
    PRIMARY KEY (model_deployment_crn, model_build_crn, model_crn)
);
CREATE INDEX deployment_lineage_build ON deployment_lineage (model_build_crn);
CREATE INDEX deployment_lineage_model ON deployment_lineage (model_crn);
INSERT INTO deployment_lineage (model_deployment_crn, model_build_crn, model_crn, first_seen_ms)
    SELECT model_deployment_crn, model_build_crn, model_crn, min(received_at_ms)
    FROM predictions GROUP BY model_deployment_crn, model_build_crn, model_crn;
