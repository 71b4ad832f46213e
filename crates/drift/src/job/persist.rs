//! What a run leaves behind: the aggregate metrics event of its window (`source =
//! drift:<job>`), which any reader of aggregate metrics sees; its stored outcome, with the
//! summary that history charts read and both reports; and, when asked, its report files.

use super::spec::JobSpec;
use crate::report::run::{self, RunReport};
use crate::Error;
use driftline_core::event::AggregateMetrics;
use driftline_core::time::now_ms;
use driftline_store::{RunOutcome, RunStatus, Store, StoredRun, Window, WriteBatch};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Writes the run's results as one aggregate metrics event over its window.
pub(crate) async fn write_aggregate(
    store: &dyn Store,
    spec: &JobSpec,
    window: Window,
    aggregate: &Map<String, Value>,
) -> Result<(), Error> {
    let mut batch = WriteBatch::new(now_ms());
    batch.aggregate_metrics.push(AggregateMetrics {
        model_deployment_crn: spec.deployment.clone(),
        start_timestamp_ms: window.start_ms,
        end_timestamp_ms: window.end_ms,
        metrics: aggregate.clone().into(),
        source: format!("drift:{}", spec.name),
    });
    store.write(&batch).await?;
    Ok(())
}

/// The HTML report of a run, with the job's recent runs for its charts.
pub(crate) async fn render(store: &dyn Store, spec: &JobSpec, report: &RunReport) -> Result<String, Error> {
    // The history holds this run as still running: show it as it ends.
    let mut history = store.runs(&spec.name, 30).await?;
    for r in history.iter_mut().filter(|r| r.id == report.run_id) {
        r.status = report.status;
        r.summary = Some(summary(report).to_string());
    }
    let chart_metric = spec.alert.as_ref().map_or(spec.task.headline_metric(), |a| a.metric.as_str());
    Ok(run::page(report, chart_metric, &history))
}

/// The stored outcome of a run that finished, with both reports.
pub(crate) fn finished(report: &RunReport, html: String) -> RunOutcome {
    RunOutcome {
        status: report.status,
        finished_at_ms: now_ms(),
        summary: summary(report).to_string(),
        report_json: Some(serde_json::to_string(report).expect("reports serialize")),
        report_html: Some(html),
    }
}

/// The stored outcome of a run that failed, with the reason.
pub(crate) fn failed(error: &Error) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Failed,
        finished_at_ms: now_ms(),
        summary: json!({ "error": error.to_string() }).to_string(),
        report_json: None,
        report_html: None,
    }
}

/// The compact summary stored with a run, which history charts read.
fn summary(r: &RunReport) -> Value {
    json!({
        "status": r.status,
        "rows": r.rows,
        "labelled": r.labelled,
        "share_drifted": r.drift.share_drifted,
        "dataset_drift": r.drift.dataset_drift,
        "drifted": r.drift.columns.iter().filter(|c| c.drifted).map(|c| c.column.clone()).collect::<Vec<_>>(),
        "performance": r.aggregate.get("performance").cloned().unwrap_or(Value::Null),
        "estimated_performance": r.estimate.as_ref().and_then(|e| e.chunk.as_ref()).map(|c| json!(c.metrics)),
        // By feature then statistic; for a split window a list of chunks, each with its key.
        "chunks": r.chunks.as_ref().and_then(|c| {
            if !c.results.is_empty() {
                Some(json!(c.results))
            } else if !c.chunks.is_empty() {
                Some(Value::Array(c.chunks.iter().map(|k| json!({"key": k.chunk.key, "results": k.results})).collect()))
            } else {
                None
            }
        }),
    })
}

/// Writes a run's stored reports as `<job>-run<id>.json` and `.html` into `dir` (created when
/// missing); `None` when the run has no reports (it failed).
pub async fn write_reports(
    store: &dyn Store,
    run: &StoredRun,
    dir: &Path,
) -> Result<Option<(PathBuf, PathBuf)>, Error> {
    let Some((Some(json), Some(html))) = store.run_reports(&run.job, run.id).await? else { return Ok(None) };
    let failed = |path: &Path, source: std::io::Error| Error::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let (json_path, html_path) = report_paths(dir, &run.job, run.id);
    std::fs::write(&json_path, json).map_err(|e| failed(&json_path, e))?;
    std::fs::write(&html_path, html).map_err(|e| failed(&html_path, e))?;
    Ok(Some((json_path, html_path)))
}

/// The JSON and HTML report files of run `id` of `job`. Job names may hold dots, so the name
/// is written out whole rather than treated as a file name with an extension.
fn report_paths(dir: &Path, job: &str, id: i64) -> (PathBuf, PathBuf) {
    (dir.join(format!("{job}-run{id}.json")), dir.join(format!("{job}-run{id}.html")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_files_are_unique_per_run_even_with_dots_in_the_name() {
        let dir = Path::new("reports");
        let (json, html) = report_paths(dir, "churn.v2", 7);
        assert_eq!((json, html), (dir.join("churn.v2-run7.json"), dir.join("churn.v2-run7.html")));
        assert_ne!(report_paths(dir, "churn.v2", 8).0, report_paths(dir, "churn.v2", 7).0);
    }
}
