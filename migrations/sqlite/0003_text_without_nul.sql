-- Text columns refuse NUL characters, as Postgres's do, so that both backends hold the same
-- values and a write that slips past validation fails the same way on both. The triggers raise
-- SQLITE_CONSTRAINT, which a writer treats as a refusal of the data (not a retryable failure).
CREATE TRIGGER predictions_text_without_nul BEFORE INSERT ON predictions
WHEN instr(CAST(NEW.model_crn AS BLOB), x'00') > 0
  OR instr(CAST(NEW.model_build_crn AS BLOB), x'00') > 0
  OR instr(CAST(NEW.model_deployment_crn AS BLOB), x'00') > 0
  OR instr(CAST(NEW.metrics AS BLOB), x'00') > 0
BEGIN
  SELECT RAISE(ABORT, 'a text value of this prediction contains a NUL character');
END;

CREATE TRIGGER delayed_metrics_text_without_nul BEFORE INSERT ON delayed_metrics
WHEN instr(CAST(NEW.metrics AS BLOB), x'00') > 0
BEGIN
  SELECT RAISE(ABORT, 'the metrics of these delayed metrics contain a NUL character');
END;

CREATE TRIGGER aggregate_metrics_text_without_nul BEFORE INSERT ON aggregate_metrics
WHEN instr(CAST(NEW.model_deployment_crn AS BLOB), x'00') > 0
  OR instr(CAST(NEW.source AS BLOB), x'00') > 0
  OR instr(CAST(NEW.metrics AS BLOB), x'00') > 0
BEGIN
  SELECT RAISE(ABORT, 'a text value of these aggregate metrics contains a NUL character');
END;
