//! Judging a run: each feature's drift against the reference, the model's performance on the
//! labelled predictions, its performance estimated from all the scores (when the job
//! estimates), the alerts, the status, and the aggregate metrics written for the window. CPU
//! work, done on a blocking thread.

use super::chunk_performance::chunk_performance;
use super::load::{ChunkRows, Columns, Current, EstimateRows, ReferenceRead, RowOutcomes};
use super::spec::{ChunksSpec, EstimateSpec, JobSpec};
use crate::chunk::{self, Chunking, Span};
use crate::chunked::{self, ChunkColumn, ChunkResults, ChunkThreshold, Values};
use crate::compare::{self, Approximation, Comparison};
use crate::estimate::{self, CalibrationReport, EstimateOptions};
use crate::format::{category_name, time};
use crate::report::run::{ChunkPerformance, RunChunks, RunEstimate};
use crate::stats::performance::{Metrics, RocPoint};
use crate::summarised::{self, Side};
use crate::Error;
use driftline_store::{RunStatus, Window};
use serde_json::{json, Map, Value};

/// Most points of the ROC curve kept in a report.
const ROC_POINTS: usize = 200;

/// What a run found.
pub(crate) struct Judgement {
    pub(crate) status: RunStatus,
    /// Predictions in the current window.
    pub(crate) rows: usize,
    pub(crate) labelled: usize,
    pub(crate) unlabelled: usize,
    pub(crate) invalid: usize,
    pub(crate) drift: Comparison,
    pub(crate) performance: Metrics,
    /// Set when performance was estimated from the rollups.
    pub(crate) performance_approximate: Option<Approximation>,
    /// At most [`ROC_POINTS`] points; empty unless the task is binary.
    pub(crate) roc_curve: Vec<RocPoint>,
    /// Why the status is `warning`, when the alert's bound was crossed or an estimate alerted.
    pub(crate) alert: Option<String>,
    pub(crate) estimate: Option<RunEstimate>,
    pub(crate) chunks: Option<RunChunks>,
    /// The aggregate metrics of the window.
    pub(crate) aggregate: Map<String, Value>,
}

/// Judges the current window against the reference, on a blocking thread.
pub(crate) async fn judge(
    spec: &JobSpec,
    window: Window,
    current: Current,
    reference: ReferenceRead,
) -> Result<Judgement, Error> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || judge_now(&spec, window, current, reference))
        .await
        .map_err(|e| Error::Internal { what: "the drift computation".into(), message: e.to_string() })?
}

fn judge_now(spec: &JobSpec, window: Window, current: Current, reference: ReferenceRead) -> Result<Judgement, Error> {
    let rows = current.rows;
    let estimate =
        spec.estimate.as_ref().map(|e| estimate_window(e, window, reference.estimate_rows, current.estimate_rows));
    let chunks = spec.chunks.as_ref().map(|c| chunk_window(c, spec, window, reference.chunk_rows, current.chunk_rows));
    let drift = match (reference.columns, current.features) {
        (Columns::Raw(r), Columns::Raw(c)) => {
            let columns: Vec<_> =
                spec.features.iter().cloned().zip(r).zip(c).map(|((name, r), c)| (name, r, c)).collect();
            compare::compare(&columns, &spec.options())?
        }
        (r, c) => {
            let options = spec.options();
            let verdicts = spec
                .features
                .iter()
                .enumerate()
                .map(|(i, name)| summarised::compare_column(name, side(&r, i), side(&c, i), &options))
                .collect::<Result<Vec<_>, _>>()?;
            compare::Comparison::of(verdicts, &options)
        }
    };
    let perf = current.outcomes.performance();

    let performance_values = perf.metrics.values(spec.task);
    let bound_crossed = spec.alert.as_ref().and_then(|a| {
        let value = performance_values.get(&a.metric)?.as_f64()?;
        match (a.below, a.above) {
            (Some(b), _) if value < b => Some(format!("{} = {value:.4} is below {b}", a.metric)),
            (_, Some(b)) if value > b => Some(format!("{} = {value:.4} is above {b}", a.metric)),
            _ => None,
        }
    });
    let alerts: Vec<String> =
        [bound_crossed, estimate.as_ref().and_then(RunEstimate::alerts), chunks.as_ref().and_then(RunChunks::alerts)]
            .into_iter()
            .flatten()
            .collect();
    let alert = (!alerts.is_empty()).then(|| alerts.join("; "));
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
        let mut verdict =
            json!({ "method": c.method, "statistic": c.statistic, "p_value": c.p_value, "drifted": c.drifted });
        if let Some(a) = &c.approximate {
            verdict["approximate"] = json!({ "from": a.from, "error_bound": a.error_bound });
        }
        per_feature.insert(c.column.clone(), verdict);
    }
    aggregate.insert("drift".into(), Value::Object(per_feature));
    aggregate.insert("performance".into(), Value::Object(performance_values));
    if let Some(estimated) = estimate.as_ref().and_then(|e| e.chunk.as_ref()) {
        let values: Map<String, Value> =
            estimated.metrics.iter().map(|(m, v)| (m.name().to_string(), json!(v.value))).collect();
        aggregate.insert("estimated_performance".into(), Value::Object(values));
    }
    if let Some(c) = chunks.as_ref() {
        let values = |results: &ChunkResults| -> Value {
            results
                .iter()
                .map(|(feature, methods)| {
                    (feature.clone(), methods.iter().map(|(m, v)| (m.name().to_string(), json!(v.value))).collect())
                })
                .collect::<Map<String, Value>>()
                .into()
        };
        let performance = |key: &str| -> Option<Value> {
            let chunk = c.performance.as_ref()?.chunks.iter().find(|k| k.chunk.key == key)?;
            Some(
                chunk.metrics.iter().map(|(m, v)| (m.name().to_string(), json!(v.value))).collect::<Map<_, _>>().into(),
            )
        };
        if !c.results.is_empty() {
            aggregate.insert("chunk_drift".into(), values(&c.results));
            if let Some(p) = c.performance.as_ref().and_then(|p| p.chunks.first()) {
                aggregate.insert("chunk_performance".into(), performance(&p.chunk.key).unwrap_or_default());
            }
        } else if !c.chunks.is_empty() {
            let per_chunk: Vec<Value> = c
                .chunks
                .iter()
                .map(|k| {
                    json!({
                        "chunk": k.chunk.key,
                        "start_timestamp_ms": k.chunk.start_timestamp_ms,
                        "end_timestamp_ms": k.chunk.end_timestamp_ms,
                        "size": k.chunk.size,
                        "values": values(&k.results),
                        "performance": performance(&k.chunk.key),
                    })
                })
                .collect();
            aggregate.insert("chunk_drift".into(), Value::Array(per_chunk));
        }
    }

    Ok(Judgement {
        status,
        rows,
        labelled: perf.labelled,
        unlabelled: perf.unlabelled,
        invalid: perf.invalid,
        drift,
        performance: perf.metrics,
        performance_approximate: perf.approximate,
        roc_curve: thin(perf.roc, ROC_POINTS),
        alert,
        estimate,
        chunks,
        aggregate,
    })
}

/// A run's chunks from the `(reference, current)` row counts: the reference cut into chunks of
/// the window's size, or into ten when it holds fewer than ten windows' rows, and the window as
/// one chunk; or why there are none.
fn window_as_chunk(
    window: Window,
    (reference_rows, current_rows): (usize, usize),
) -> Result<(Vec<Span>, Span), String> {
    if current_rows == 0 {
        return Err("no predictions in the window".into());
    }
    let size = current_rows.min(reference_rows.div_ceil(10)).max(1);
    let reference_spans = chunk::split(reference_rows, None, Chunking::Size(size)).map_err(|e| e.to_string())?;
    let key = format!("{} .. {}", time(window.start_ms), time(window.end_ms));
    let current =
        Span { key, start: 0, end: current_rows, start_ms: Some(window.start_ms), end_ms: Some(window.end_ms - 1) };
    Ok((reference_spans, current))
}

/// The window and the reference cut by `split`: the reference by the same size or period, or
/// into the same number of chunks; or why they cannot be.
fn split_window(
    split: Chunking,
    (reference_rows, current_rows): (usize, usize),
    reference_times: Option<&[i64]>,
    current_times: Option<&[i64]>,
) -> Result<(Vec<Span>, Vec<Span>), String> {
    if current_rows == 0 {
        return Err("no predictions in the window".into());
    }
    let cut = |rows, times, which: &str| {
        chunk::split(rows, times, split).map_err(|e| match e {
            Error::Invalid { message, .. } => format!("the {which}: {message}"),
            other => other.to_string(),
        })
    };
    Ok((cut(reference_rows, reference_times, "reference")?, cut(current_rows, current_times, "window")?))
}

/// Each feature's drift with thresholds from the reference's chunks: the window is one chunk,
/// the reference cut as [`window_as_chunk`] says; or, when the job splits the window, each of
/// its chunks, as [`split_window`] cuts them.
fn chunk_window(
    spec: &ChunksSpec,
    job: &JobSpec,
    window: Window,
    reference: ChunkRows,
    current: ChunkRows,
) -> RunChunks {
    let not_judged = |note: String| RunChunks {
        threshold: spec.threshold,
        reference_chunks: 0,
        split: spec.split,
        results: Default::default(),
        chunks: Vec::new(),
        note: Some(note),
        performance: None,
    };
    let (reference, current) = match (reference, current) {
        (Some(Ok(r)), Some(Ok(c))) => (r, c),
        (Some(Err(why)), _) | (_, Some(Err(why))) => return not_judged(format!("not computed: {why}")),
        _ => return not_judged("not computed: no rows were read for it".into()),
    };
    let rows = (reference.columns.first().map_or(0, |v| v.len()), current.columns.first().map_or(0, |v| v.len()));
    let spans = match spec.split {
        None => window_as_chunk(window, rows).map(|(reference, current)| (reference, vec![current])),
        Some(split) => split_window(split, rows, reference.times.as_deref(), current.times.as_deref()),
    };
    let (reference_spans, current_spans) = match spans {
        Ok(spans) => spans,
        Err(why) => return not_judged(format!("not computed: {why}")),
    };
    let performance = performance_per_chunk(
        job,
        (reference.outcomes, &reference_spans),
        (current.outcomes, &current_spans),
        spec.threshold,
    );
    let columns: Vec<ChunkColumn> = job
        .features
        .iter()
        .zip(reference.columns)
        .zip(current.columns)
        .map(|((name, reference), current)| {
            let (reference, analysis) = one_kind(reference, current);
            ChunkColumn { name: name.clone(), reference, analysis }
        })
        .collect();
    match chunked::chunked_drift(&columns, &reference_spans, &current_spans, &spec.methods, spec.threshold) {
        Ok(d) => {
            let mut window_chunks: Vec<_> = d.chunks.into_iter().filter(|c| !c.chunk.is_reference()).collect();
            let results = match spec.split {
                None => window_chunks.pop().map(|c| c.results).unwrap_or_default(),
                Some(_) => Default::default(),
            };
            RunChunks {
                threshold: spec.threshold,
                reference_chunks: reference_spans.len(),
                split: spec.split,
                results,
                chunks: window_chunks,
                note: None,
                performance: Some(performance),
            }
        }
        Err(e) => not_judged(format!("not computed: {e}")),
    }
}

/// The realised performance of the window's chunks, or why there is none.
fn performance_per_chunk(
    job: &JobSpec,
    (reference, reference_spans): (Result<RowOutcomes, String>, &[Span]),
    (current, current_spans): (Result<RowOutcomes, String>, &[Span]),
    threshold: ChunkThreshold,
) -> ChunkPerformance {
    let not_computed =
        |why: String| ChunkPerformance { metrics: Vec::new(), threshold, chunks: Vec::new(), note: Some(why) };
    let (reference, current) = match (reference, current) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(why), _) => return not_computed(format!("not computed: the reference {why}")),
        (_, Err(why)) => return not_computed(format!("not computed: the window {why}")),
    };
    let classes: Vec<String> = job.class_scores.keys().cloned().collect();
    match chunk_performance(job.task, &classes, (reference, reference_spans), (current, current_spans), threshold) {
        Ok(e) => ChunkPerformance {
            metrics: e.metrics,
            threshold: e.threshold,
            chunks: e.chunks.into_iter().filter(|c| !c.chunk.is_reference()).collect(),
            note: None,
        },
        Err(e) => not_computed(format!("not computed: {e}")),
    }
}

/// Performance of the current window estimated from its scores: the window is one chunk; the
/// reference, cut as [`window_as_chunk`] says, sets the thresholds.
fn estimate_window(spec: &EstimateSpec, window: Window, reference: EstimateRows, current: EstimateRows) -> RunEstimate {
    let not_estimated =
        |note: String| RunEstimate { calibration: None, reference_chunks: 0, chunk: None, note: Some(note) };
    let (reference, current) = match (reference, current) {
        (Some(Ok(r)), Some(Ok(c))) => (r, c),
        (Some(Err(why)), _) | (_, Some(Err(why))) => return not_estimated(format!("not estimated: {why}")),
        _ => return not_estimated("not estimated: no rows were read for it".into()),
    };
    let (reference_spans, current_span) = match window_as_chunk(window, (reference.scores.len(), current.scores.len()))
    {
        Ok(spans) => spans,
        Err(why) => return not_estimated(format!("not estimated: {why}")),
    };
    let options = EstimateOptions { calibrate: spec.calibration, ..EstimateOptions::default() };
    match estimate::estimate(&reference, &reference_spans, &current, &[current_span], &options) {
        Ok(mut e) => RunEstimate {
            reference_chunks: reference_spans.len(),
            chunk: e.chunks.pop(),
            calibration: Some(CalibrationReport { knots: Vec::new(), ..e.calibration }),
            note: None,
        },
        Err(e) => not_estimated(format!("not estimated: {e}")),
    }
}

/// A feature's reference and current values as one kind: when one side holds numbers and the
/// other categories, both are categories, numbers named by their JSON text (as they are counted
/// for the window's own comparison).
fn one_kind(reference: Values, current: Values) -> (Values, Values) {
    fn named(numbers: Vec<Option<f64>>) -> Values {
        let names: Vec<Option<String>> =
            numbers.into_iter().map(|x| x.filter(|x| x.is_finite()).map(category_name)).collect();
        Values::categories(names.iter().map(Option::as_deref))
    }
    match (reference, current) {
        (Values::Numbers(r), c @ Values::Categories { .. }) => (named(r), c),
        (r @ Values::Categories { .. }, Values::Numbers(c)) => (r, named(c)),
        pair => pair,
    }
}

/// Feature `i` of a window's columns.
fn side(columns: &Columns, i: usize) -> Side<'_> {
    match columns {
        Columns::Raw(v) => Side::Raw(&v[i]),
        Columns::Summarised(v) => Side::Summary(&v[i]),
    }
}

/// At most `max` points of a curve, evenly spread, the last one kept.
fn thin(points: Vec<RocPoint>, max: usize) -> Vec<RocPoint> {
    if points.len() <= max {
        return points;
    }
    let step = points.len() as f64 / (max - 1) as f64;
    let mut out: Vec<RocPoint> = (0..max - 1).map(|i| points[(i as f64 * step) as usize]).collect();
    out.push(*points.last().expect("not empty"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_curves_are_thinned_to_their_limit_with_both_ends() {
        let points: Vec<RocPoint> = (0..=1000)
            .map(|i| RocPoint {
                false_positive_rate: i as f64 / 1000.0,
                true_positive_rate: i as f64 / 1000.0,
                threshold: None,
            })
            .collect();
        let thinned = thin(points.clone(), ROC_POINTS);
        assert_eq!(thinned.len(), ROC_POINTS);
        assert_eq!((thinned[0], thinned[ROC_POINTS - 1]), (points[0], points[1000]));
        assert_eq!(thin(points[..10].to_vec(), ROC_POINTS).len(), 10);
    }
}
