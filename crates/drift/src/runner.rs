//! One run of a drift job: read the current window from the store with its late ground truth
//! joined on, read the reference, compute drift and performance, write the results back as an
//! aggregate metrics event (`source = drift:<job>`), and store the run with its reports.

use crate::compare::{self, Comparison, Options};
use crate::files::{Metrics, Task};
use crate::frame::{format_number, ColumnData, Table};
use crate::job::{task_metrics, JobSpec, Reference};
use crate::performance::{self, RocPoint};
use crate::report;
use crate::Error;
use driftline_core::event::AggregateMetrics;
use driftline_core::time::now_ms;
use driftline_store::{NewRun, RunOutcome, RunStatus, Selection, Store, StoredRun, Window, WriteBatch};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The JSON report of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub job: String,
    pub run_id: i64,
    pub deployment: String,
    pub status: RunStatus,
    /// The current window `[start_ms, end_ms)`.
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub reference: ReferenceInfo,
    /// Predictions in the current window.
    pub rows: usize,
    /// Predictions whose ground truth has arrived.
    pub labelled: usize,
    /// Predictions without ground truth yet.
    pub unlabelled: usize,
    /// Predictions whose ground truth or score does not fit the task (left out of performance).
    pub invalid: usize,
    pub drift: Comparison,
    pub performance: Option<Metrics>,
    /// The ROC curve (binary task), at most 200 points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roc_curve: Vec<RocPoint>,
    /// Why the status is `warning`, when an alert bound was crossed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The aggregate metrics written for the window.
    pub aggregate: Map<String, Value>,
}

/// What the window was compared with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceInfo {
    pub description: String,
    pub rows: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Finished {
    pub run: StoredRun,
    /// The report, unless the run failed.
    pub report: Option<RunReport>,
}

/// Runs `spec` for the window ending at `scheduled_ms`. Fails with [`Error::Busy`] when the job
/// is running already (here or in another process); any other failure is recorded as a failed
/// run and returned as its summary.
pub async fn run_job(store: &dyn Store, spec: &JobSpec, scheduled_ms: i64) -> Result<Finished, Error> {
    spec.validate()?;
    let window = Window { start_ms: scheduled_ms - spec.window.ms, end_ms: scheduled_ms };
    let id = store
        .begin_run(&NewRun {
            job: &spec.name,
            scheduled_ms,
            window_start_ms: window.start_ms,
            window_end_ms: window.end_ms,
            started_at_ms: now_ms(),
        })
        .await?
        .ok_or_else(|| Error::Busy { job: spec.name.clone() })?;
    let (outcome, report) = match execute(store, spec, id, window).await {
        Ok((report, html)) => {
            let outcome = RunOutcome {
                status: report.status,
                finished_at_ms: now_ms(),
                summary: summary(&report).to_string(),
                report_json: Some(serde_json::to_string(&report).expect("reports serialize")),
                report_html: Some(html),
            };
            (outcome, Some(report))
        }
        Err(e) => {
            tracing::warn!(job = %spec.name, run = id, error = %e, "drift run failed");
            let outcome = RunOutcome {
                status: RunStatus::Failed,
                finished_at_ms: now_ms(),
                summary: json!({ "error": e.to_string() }).to_string(),
                report_json: None,
                report_html: None,
            };
            (outcome, None)
        }
    };
    store.finish_run(id, &outcome).await?;
    let run = store.run(&spec.name, id).await?.ok_or_else(|| Error::Invalid {
        field: "job".into(),
        message: format!("run {id} of `{}` vanished; was the job deleted while it ran?", spec.name),
    })?;
    Ok(Finished { run, report })
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
    })
}

async fn execute(store: &dyn Store, spec: &JobSpec, id: i64, window: Window) -> Result<(RunReport, String), Error> {
    let selection = Selection::Deployment(spec.deployment.clone());
    let current = collect(store, &selection, window, spec, true).await?;
    let (reference_columns, reference) = match &spec.reference {
        Reference::Baseline { start_ms, end_ms } => {
            let w = Window { start_ms: *start_ms, end_ms: *end_ms };
            let data = collect(store, &selection, w, spec, false).await?;
            let info = ReferenceInfo {
                description: format!("baseline window {} .. {}", time(w.start_ms), time(w.end_ms)),
                rows: data.rows,
                start_ms: Some(w.start_ms),
                end_ms: Some(w.end_ms),
            };
            (data.features, info)
        }
        Reference::Previous { offset } => {
            let w = Window { start_ms: window.start_ms - offset.ms, end_ms: window.end_ms - offset.ms };
            let data = collect(store, &selection, w, spec, false).await?;
            let info = ReferenceInfo {
                description: format!("the same window {offset} earlier"),
                rows: data.rows,
                start_ms: Some(w.start_ms),
                end_ms: Some(w.end_ms),
            };
            (data.features, info)
        }
        Reference::File { path } => {
            let path = path.clone();
            let features = spec.features.clone();
            let (columns, rows) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let table = Table::read(&path)?;
                let columns = features.iter().map(|f| table.column(f)).collect::<Result<Vec<_>, _>>()?;
                Ok((columns, table.rows()))
            })
            .await
            .map_err(|e| Error::Invalid { field: "reference".into(), message: e.to_string() })??;
            let info = ReferenceInfo {
                description: format!("reference file {}", spec_path(&spec.reference)),
                rows,
                start_ms: None,
                end_ms: None,
            };
            (columns, info)
        }
    };

    let options =
        Options { method: spec.method, threshold: spec.threshold, bins: spec.bins, drift_share: spec.drift_share };
    let spec_owned = spec.clone();
    let rows = current.rows;
    // The statistics are CPU work: keep them off the async threads.
    let computed = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let columns: Vec<(String, ColumnData, ColumnData)> = spec_owned
            .features
            .iter()
            .cloned()
            .zip(reference_columns)
            .zip(current.features)
            .map(|((name, r), c)| (name, r, c))
            .collect();
        let drift = compare::compare(&columns, &options)?;
        let perf = performance_of(&spec_owned, &current.scores, &current.labels);
        Ok((drift, perf))
    })
    .await
    .map_err(|e| Error::Invalid { field: "job".into(), message: e.to_string() })??;
    let (drift, perf) = computed;

    let performance_values = perf.metrics.as_ref().map(|m| metric_values(spec.task, m)).unwrap_or_default();
    let alert = spec.alert.as_ref().and_then(|a| {
        let value = performance_values.get(&a.metric)?.as_f64()?;
        match (a.below, a.above) {
            (Some(b), _) if value < b => Some(format!("{} = {value:.4} is below {b}", a.metric)),
            (_, Some(b)) if value > b => Some(format!("{} = {value:.4} is above {b}", a.metric)),
            _ => None,
        }
    });
    let status = if rows == 0 {
        RunStatus::NoData
    } else if drift.dataset_drift {
        RunStatus::Drift
    } else if drift.drifted_columns > 0 || alert.is_some() {
        RunStatus::Warning
    } else {
        RunStatus::Ok
    };

    let mut aggregate = Map::new();
    aggregate.insert("status".into(), json!(status));
    aggregate.insert("rows".into(), json!(rows));
    aggregate.insert("labelled".into(), json!(perf.labelled));
    aggregate.insert("unlabelled".into(), json!(perf.unlabelled));
    aggregate.insert("share_drifted".into(), json!(drift.share_drifted));
    aggregate.insert("dataset_drift".into(), json!(drift.dataset_drift));
    let mut per_feature = Map::new();
    for c in &drift.columns {
        per_feature.insert(
            c.column.clone(),
            json!({ "method": c.method, "statistic": c.statistic, "p_value": c.p_value, "drifted": c.drifted }),
        );
    }
    aggregate.insert("drift".into(), Value::Object(per_feature));
    aggregate.insert("performance".into(), Value::Object(performance_values));

    let mut batch = WriteBatch::new(now_ms());
    batch.aggregate_metrics.push(AggregateMetrics {
        model_deployment_crn: spec.deployment.clone(),
        start_timestamp_ms: window.start_ms,
        end_timestamp_ms: window.end_ms,
        metrics: aggregate.clone(),
        source: format!("drift:{}", spec.name),
    });
    store.write(&batch).await?;

    let report = RunReport {
        job: spec.name.clone(),
        run_id: id,
        deployment: spec.deployment.clone(),
        status,
        window_start_ms: window.start_ms,
        window_end_ms: window.end_ms,
        reference,
        rows,
        labelled: perf.labelled,
        unlabelled: perf.unlabelled,
        invalid: perf.invalid,
        drift,
        performance: perf.metrics,
        roc_curve: thin(perf.roc, 200),
        alert,
        aggregate,
    };
    // The history holds this run as still running: show it as it ends.
    let mut history = store.runs(&spec.name, 30).await?;
    for r in history.iter_mut().filter(|r| r.id == id) {
        r.status = report.status;
        r.summary = Some(summary(&report).to_string());
    }
    let html = report::run_page(spec, &report, &history);
    Ok((report, html))
}

fn spec_path(reference: &Reference) -> String {
    match reference {
        Reference::File { path } => path.display().to_string(),
        _ => String::new(),
    }
}

/// A time as RFC 3339 in UTC.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn thin(points: Vec<RocPoint>, max: usize) -> Vec<RocPoint> {
    if points.len() <= max {
        return points;
    }
    let step = points.len() as f64 / (max - 1) as f64;
    let mut out: Vec<RocPoint> = (0..max - 1).map(|i| points[(i as f64 * step) as usize]).collect();
    out.push(*points.last().expect("not empty"));
    out
}

/// A cell of a column read from events.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Missing,
    Number(f64),
    Text(String),
}

impl Cell {
    fn of(value: Option<&Value>) -> Cell {
        match value {
            None | Some(Value::Null) => Cell::Missing,
            Some(Value::Number(n)) => n.as_f64().map_or(Cell::Missing, Cell::Number),
            Some(Value::Bool(b)) => Cell::Text(b.to_string()),
            Some(Value::String(s)) => Cell::Text(s.clone()),
            // Arrays and objects are not values of one feature: shown as their JSON text.
            Some(other) => Cell::Text(other.to_string()),
        }
    }
}

/// Cells become numbers when every present one is a number, categories otherwise.
fn column_of(cells: Vec<Cell>) -> ColumnData {
    if cells.iter().all(|c| !matches!(c, Cell::Text(_))) {
        ColumnData::Numeric(cells.into_iter().map(|c| if let Cell::Number(x) = c { Some(x) } else { None }).collect())
    } else {
        ColumnData::Categorical(
            cells
                .into_iter()
                .map(|c| match c {
                    Cell::Missing => None,
                    Cell::Number(x) => Some(format_number(x)),
                    Cell::Text(s) => Some(s),
                })
                .collect(),
        )
    }
}

/// Walks a dotted path into metrics.
fn lookup<'a>(metrics: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = metrics.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

struct Collected {
    rows: usize,
    features: Vec<ColumnData>,
    scores: Vec<Cell>,
    labels: Vec<Cell>,
}

async fn collect(
    store: &dyn Store,
    selection: &Selection,
    window: Window,
    spec: &JobSpec,
    outcomes: bool,
) -> Result<Collected, Error> {
    let mut stream = store.read_window(selection.clone(), window);
    let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); spec.features.len()];
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    let mut rows = 0;
    while let Some(record) = stream.next().await {
        let record = record?;
        rows += 1;
        for (column, path) in cells.iter_mut().zip(&spec.features) {
            column.push(Cell::of(lookup(&record.metrics, path)));
        }
        if outcomes {
            scores.push(Cell::of(lookup(&record.metrics, &spec.score)));
            labels.push(Cell::of(lookup(&record.metrics, &spec.label)));
        }
    }
    Ok(Collected { rows, features: cells.into_iter().map(column_of).collect(), scores, labels })
}

struct Performance {
    metrics: Option<Metrics>,
    roc: Vec<RocPoint>,
    labelled: usize,
    unlabelled: usize,
    invalid: usize,
}

fn performance_of(spec: &JobSpec, scores: &[Cell], labels: &[Cell]) -> Performance {
    let unlabelled = labels.iter().filter(|l| **l == Cell::Missing).count();
    let labelled = labels.len() - unlabelled;
    let mut invalid = 0;
    let (metrics, roc) = match spec.task {
        Task::Binary => {
            let (mut s, mut l) = (Vec::new(), Vec::new());
            for (score, label) in scores.iter().zip(labels) {
                let truth = match label {
                    Cell::Missing => continue,
                    Cell::Number(x) if *x == 0.0 => Some(false),
                    Cell::Number(x) if *x == 1.0 => Some(true),
                    Cell::Text(t) if t == "true" || t == "1" => Some(true),
                    Cell::Text(t) if t == "false" || t == "0" => Some(false),
                    _ => None,
                };
                match (score, truth) {
                    (Cell::Number(x), Some(t)) if x.is_finite() => {
                        s.push(*x);
                        l.push(t);
                    }
                    _ => invalid += 1,
                }
            }
            let roc = performance::roc_curve(&s, &l);
            (Metrics::Binary(performance::binary(&s, &l, 0.5)), roc)
        }
        Task::Regression => {
            let (mut p, mut t) = (Vec::new(), Vec::new());
            for (score, label) in scores.iter().zip(labels) {
                match (score, label) {
                    (_, Cell::Missing) => {}
                    (Cell::Number(x), Cell::Number(y)) if x.is_finite() && y.is_finite() => {
                        p.push(*x);
                        t.push(*y);
                    }
                    _ => invalid += 1,
                }
            }
            (Metrics::Regression(performance::regression(&p, &t)), Vec::new())
        }
        Task::Multiclass => {
            let name = |c: &Cell| match c {
                Cell::Missing => None,
                Cell::Number(x) => Some(format_number(*x)),
                Cell::Text(s) => Some(s.clone()),
            };
            let (mut p, mut t) = (Vec::new(), Vec::new());
            for (score, label) in scores.iter().zip(labels) {
                if *label == Cell::Missing {
                    continue;
                }
                match (name(score), name(label)) {
                    (Some(a), Some(b)) => {
                        p.push(a);
                        t.push(b);
                    }
                    _ => invalid += 1,
                }
            }
            let p: Vec<&str> = p.iter().map(String::as_str).collect();
            let t: Vec<&str> = t.iter().map(String::as_str).collect();
            (Metrics::Multiclass(performance::multiclass(&p, &t)), Vec::new())
        }
    };
    Performance { metrics: Some(metrics), roc, labelled, unlabelled, invalid }
}

/// The task's metrics as a flat JSON object of numbers (null where undefined).
pub(crate) fn metric_values(task: Task, metrics: &Metrics) -> Map<String, Value> {
    let value = serde_json::to_value(metrics).expect("metrics serialize");
    task_metrics(task)
        .iter()
        .map(|name| (name.to_string(), value.get(*name).and_then(|s| s.get("value")).cloned().unwrap_or(Value::Null)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_walk_nested_objects() {
        let m: Map<String, Value> =
            serde_json::from_str(r#"{"input":{"tenure":12,"plan":"basic"},"prediction":0.8}"#).unwrap();
        assert_eq!(lookup(&m, "input.tenure"), Some(&json!(12)));
        assert_eq!(lookup(&m, "prediction"), Some(&json!(0.8)));
        assert_eq!(lookup(&m, "input.missing"), None);
        assert_eq!(lookup(&m, "prediction.deeper"), None);
    }

    #[test]
    fn mixed_cells_become_categories() {
        let numbers = column_of(vec![Cell::Number(1.0), Cell::Missing]);
        assert_eq!(numbers, ColumnData::Numeric(vec![Some(1.0), None]));
        let mixed = column_of(vec![Cell::Number(1.0), Cell::Text("a".into())]);
        assert_eq!(mixed, ColumnData::Categorical(vec![Some("1".into()), Some("a".into())]));
    }
}
