//! The report of a drift job's run: what it found, as JSON ([`RunReport`]), and as one
//! self-contained HTML page ([`page`]: per-feature histograms with the verdicts, the ROC curve
//! and the performance metrics, and the job's recent runs as line charts; no scripts, no
//! network).

use super::html::{self, escape};
use crate::chunk::Chunking;
use crate::chunked::{ChunkResult, ChunkResults, ChunkThreshold, ChunkValue};
use crate::compare::{Approximation, Comparison};
use crate::estimate::{CalibrationReport, EstimatedChunk, EstimatedValue};
use crate::format::{number, time};
use crate::stats::performance::{Metrics, RocPoint};
use driftline_store::{RunStatus, StoredRun};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

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
    /// Set when performance was estimated from rollups (the raw rows of the window are gone):
    /// what it is within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_approximate: Option<Approximation>,
    /// The windows read from rollups instead of raw rows, because retention removed those:
    /// their results are approximate (each column says what it is within).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_rollups: Vec<RollupRead>,
    /// The ROC curve (binary task), at most 200 points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roc_curve: Vec<RocPoint>,
    /// Why the status is `warning`, when an alert bound was crossed or an estimate alerted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// Performance estimated from the scores, when the job estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<RunEstimate>,
    /// Each feature against thresholds from the reference's chunks, when the job has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<RunChunks>,
    /// The aggregate metrics written for the window.
    pub aggregate: Map<String, Value>,
}

/// A run's performance estimate ([`crate::estimate`]): the window as one chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEstimate {
    /// How the scores were calibrated (without the knots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationReport>,
    /// The reference chunks the thresholds come from.
    pub reference_chunks: usize,
    /// The window's estimates, each with the realised value from the labels that had arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<EstimatedChunk>,
    /// Why there is no estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl RunEstimate {
    /// The estimates outside their thresholds, in words.
    pub fn alerts(&self) -> Option<String> {
        let chunk = self.chunk.as_ref()?;
        let alerts: Vec<String> = chunk
            .metrics
            .iter()
            .filter(|(_, v)| v.alert)
            .map(|(m, v)| {
                format!(
                    "estimated {m} = {} is outside {}",
                    v.value.map(number).unwrap_or_default(),
                    range(v.lower_threshold, v.upper_threshold)
                )
            })
            .collect();
        (!alerts.is_empty()).then(|| alerts.join("; "))
    }
}

/// A run's drift against reference chunks ([`crate::chunked`]): the window as one chunk
/// (`results`), or cut into several (`chunks`) when the job splits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunChunks {
    pub threshold: ChunkThreshold,
    /// The reference chunks the thresholds come from.
    pub reference_chunks: usize,
    /// How the window and the reference were cut, when the job splits the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Chunking>,
    /// By feature, then statistic: the window's value against the whole reference, the
    /// thresholds and the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub results: ChunkResults,
    /// The window's chunks in time order, each with its results as `results` has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkResult>,
    /// Why there are no results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl RunChunks {
    /// The statistics outside their thresholds, in words (with the chunk's name when the
    /// window is split).
    pub fn alerts(&self) -> Option<String> {
        let whole = std::iter::once((None, &self.results));
        let split = self.chunks.iter().map(|c| (Some(c.chunk.key.as_str()), &c.results));
        let alerts: Vec<String> = whole
            .chain(split)
            .flat_map(|(chunk, results)| {
                results.iter().flat_map(move |(feature, methods)| methods.iter().map(move |(m, v)| (chunk, feature, m, v)))
            })
            .filter(|(.., v)| v.alert)
            .map(|(chunk, feature, method, v)| {
                let at = chunk.map(|k| format!(" in chunk {k}")).unwrap_or_default();
                format!(
                    "{feature} {method} = {}{at} is outside {}",
                    shown(v.value),
                    range(v.lower_threshold, v.upper_threshold)
                )
            })
            .collect();
        (!alerts.is_empty()).then(|| alerts.join("; "))
    }
}

/// A value, or a dash.
fn shown(x: Option<f64>) -> String {
    x.map(number).unwrap_or_else(|| "—".into())
}

/// Thresholds as a range, an open side as a dash.
fn range(lower: Option<f64>, upper: Option<f64>) -> String {
    format!(
        "{} .. {}",
        lower.map(number).unwrap_or_else(|| "-".into()),
        upper.map(number).unwrap_or_else(|| "-".into())
    )
}

/// Where a window was read from when it was read from the rollups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupRead {
    /// `reference` or `current`.
    pub window: String,
    /// The resolutions read, in time order (`1d + 1h + 1m`).
    pub resolutions: String,
    /// The time covered: the window rounded out to whole buckets.
    pub covered_start_ms: i64,
    pub covered_end_ms: i64,
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

/// The report page of one run, with `history` (newest first) for the charts, which show the
/// share of drifted features and `chart_metric` over time.
pub fn page(report: &RunReport, chart_metric: &str, history: &[StoredRun]) -> String {
    let title = format!("driftline · {} · run {}", report.job, report.run_id);
    let subtitle = format!(
        "deployment {} · window {} .. {} · compared with {} ({} rows)",
        report.deployment,
        time(report.window_start_ms),
        time(report.window_end_ms),
        report.reference.description,
        report.reference.rows
    );
    let mut out = html::page_start(&title, &subtitle);
    let (class, text) = match report.status {
        RunStatus::Drift => ("drift", "Drift"),
        RunStatus::Warning => ("drift", "Warning"),
        RunStatus::NoData => ("ok", "No data in the window"),
        RunStatus::Failed => ("drift", "Failed"),
        RunStatus::Ok | RunStatus::Running => ("ok", "OK"),
    };
    let _ = write!(
        out,
        "<div class=\"banner {class}\"><b>Status: {text}</b> · {} predictions, {} with ground truth, {} still unlabelled{}{}</div>",
        report.rows,
        report.labelled,
        report.unlabelled,
        if report.invalid > 0 { format!(", {} with a label or score that does not fit the task", report.invalid) } else { String::new() },
        report.alert.as_deref().map(|a| format!(" · alert: {}", escape(a))).unwrap_or_default()
    );

    for read in &report.from_rollups {
        let _ = write!(
            out,
            "<div class=\"banner na\"><b>Approximate</b>: the {} window's raw rows are gone (retention); it was read \
             from rollups ({}) covering {} .. {}, so its statistics come from sketches and value counts, each \
             marked with what it is within.</div>",
            escape(&read.window),
            escape(&read.resolutions),
            time(read.covered_start_ms),
            time(read.covered_end_ms)
        );
    }
    out.push_str("<h2>Feature drift</h2>");
    out.push_str(&html::comparison_section(&report.drift));

    out.push_str("<h2>Performance</h2>");
    match &report.performance {
        Some(metrics) => {
            if let Some(a) = &report.performance_approximate {
                let _ = write!(
                    out,
                    "<p class=\"sub\">Approximate: {}{}.</p>",
                    escape(a.note.as_deref().unwrap_or(&a.from)),
                    a.error_bound.map(|b| format!(", within ±{}", number(b))).unwrap_or_default()
                );
            }
            out.push_str("<div class=\"grid\"><div class=\"card\"><table>");
            out.push_str(&html::metric_rows(metrics));
            out.push_str("</table></div>");
            if let Metrics::Binary(b) = metrics {
                let _ = write!(
                    out,
                    "<div class=\"card\"><h3>ROC curve</h3>{}</div>",
                    html::roc_svg(&report.roc_curve, b.roc_auc.value)
                );
            }
            out.push_str("</div>");
        }
        None => out.push_str("<p class=\"sub\">No performance: no predictions with ground truth in the window.</p>"),
    }

    if let Some(estimate) = &report.estimate {
        out.push_str(&estimate_section(estimate));
    }
    if let Some(chunks) = &report.chunks {
        out.push_str(&chunks_section(chunks));
    }

    out.push_str("<h2>Recent runs</h2><div class=\"grid\">");
    let mut runs: Vec<&StoredRun> = history.iter().collect();
    runs.reverse();
    let summaries: Vec<(String, Option<Value>)> = runs
        .iter()
        .map(|r| (time(r.scheduled_ms), r.summary.as_deref().and_then(|s| serde_json::from_str(s).ok())))
        .collect();
    let series = |pick: &dyn Fn(&Value) -> Option<f64>| -> Vec<(String, Option<f64>)> {
        summaries.iter().map(|(label, s)| (label.clone(), s.as_ref().and_then(pick))).collect()
    };
    let _ = write!(
        out,
        "<div class=\"card\">{}</div>",
        html::line_svg("share of features drifted", &series(&|s| s.get("share_drifted")?.as_f64()))
    );
    let _ = write!(
        out,
        "<div class=\"card\">{}</div>",
        html::line_svg(chart_metric, &series(&|s| s.get("performance")?.get(chart_metric)?.as_f64()))
    );
    if report.estimate.is_some() {
        let estimated: Vec<(String, EstimatedValue)> = summaries
            .iter()
            .filter_map(|(label, s)| {
                let v = s.as_ref()?.get("estimated_performance")?.get(chart_metric)?;
                Some((label.clone(), serde_json::from_value(v.clone()).ok()?))
            })
            .collect();
        let _ = write!(
            out,
            "<div class=\"card\"><h3>{} estimated, and realised as labelled at each run</h3>{}</div>",
            escape(chart_metric),
            html::estimates_svg(&estimated)
        );
    }
    if let Some(chunks) = &report.chunks {
        let first = chunks.chunks.first().map_or(&chunks.results, |k| &k.results);
        for (feature, methods) in first.iter().take(MAX_CHUNK_CHARTS) {
            for method in methods.keys() {
                let value = |v: Option<&Value>| serde_json::from_value::<ChunkValue>(v?.clone()).ok();
                // A point per run, or per chunk of each run when the window is split.
                let points: Vec<(String, ChunkValue)> = summaries
                    .iter()
                    .flat_map(|(label, s)| match s.as_ref().and_then(|s| s.get("chunks")) {
                        Some(Value::Array(split)) => split
                            .iter()
                            .filter_map(|k| {
                                let v = value(k.get("results")?.get(feature)?.get(method.name()))?;
                                Some((k.get("key")?.as_str()?.to_owned(), v))
                            })
                            .collect(),
                        Some(whole) => {
                            value(whole.get(feature).and_then(|m| m.get(method.name()))).map(|v| (label.clone(), v)).into_iter().collect()
                        }
                        None => Vec::new(),
                    })
                    .collect();
                let points = &points[points.len().saturating_sub(MAX_HISTORY_POINTS)..];
                let _ = write!(
                    out,
                    "<div class=\"card\"><h3>{} · {method} at each run</h3>{}</div>",
                    escape(feature),
                    html::chunk_values_svg(points)
                );
            }
        }
    }
    out.push_str("</div><table><tr><th>run</th><th>window end</th><th>status</th></tr>");
    for r in history.iter().take(10) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.id,
            escape(&time(r.scheduled_ms)),
            r.status.as_str()
        );
    }
    out.push_str("</table>");
    out.push_str(html::page_end());
    out
}

/// The estimate of a run's window: a row per metric with the band, the realised value from the
/// labels so far, the thresholds and the alert.
fn estimate_section(e: &RunEstimate) -> String {
    let mut out = String::from("<h2>Estimated performance</h2>");
    let Some(chunk) = &e.chunk else {
        let _ = write!(out, "<p class=\"sub\">{}</p>", escape(e.note.as_deref().unwrap_or("not estimated")));
        return out;
    };
    if let Some(c) = &e.calibration {
        let _ = write!(
            out,
            "<p class=\"sub\">From all {} scores of the window, labelled or not; scores {}: {}. Thresholds from {} \
             reference chunks; realised values from the {} labels that had arrived.</p>",
            chunk.rows_used,
            if c.calibrated { "calibrated (isotonic)" } else { "used as they are" },
            escape(&c.reason),
            e.reference_chunks,
            chunk.rows_labelled
        );
    }
    out.push_str(
        "<table><tr><th>metric</th><th>estimate</th><th>band (±3 sampling errors)</th><th>realised so \
         far</th><th>thresholds</th><th></th></tr>",
    );
    for (metric, v) in &chunk.metrics {
        let _ = write!(
            out,
            "<tr><td>{metric}</td><td>{}</td><td>{} .. {}</td><td>{}</td><td>{} .. {}</td><td class=\"{}\">{}</td></tr>",
            shown(v.value),
            shown(v.lower_confidence_boundary),
            shown(v.upper_confidence_boundary),
            shown(v.realized),
            shown(v.lower_threshold),
            shown(v.upper_threshold),
            if v.alert { "drift" } else { "ok" },
            if v.alert { "alert" } else { "ok" }
        );
    }
    out.push_str("</table>");
    out
}

/// Features whose statistics get a history chart on a run's page (the table has them all).
const MAX_CHUNK_CHARTS: usize = 8;

/// The most recent points a history chart of chunk values draws (runs, or chunks of runs).
const MAX_HISTORY_POINTS: usize = 60;

/// Drift against reference chunks: a row per feature and statistic (and chunk, when the window
/// is split) with its thresholds; for a split window also each statistic over the chunks as a
/// chart with its thresholds.
fn chunks_section(c: &RunChunks) -> String {
    let mut out = String::from("<h2>Drift against reference chunks</h2>");
    if let Some(note) = &c.note {
        let _ = write!(out, "<p class=\"sub\">{}</p>", escape(note));
        return out;
    }
    let rule = match c.threshold {
        ChunkThreshold::StandardDeviations(k) => {
            format!(
                "the mean of the {} reference chunks' values ± {} standard deviations",
                c.reference_chunks,
                number(k)
            )
        }
        ChunkThreshold::Constant(k) => format!("the constant {}", number(k)),
    };
    let how = match c.split {
        None => format!(
            "The window is one chunk, compared with the whole reference; the reference is cut into {} chunks of the \
             window's size (smaller when that would make fewer than ten), each compared with the whole reference the \
             same way.",
            c.reference_chunks
        ),
        Some(split) => format!(
            "The window is cut into {} chunks {}, each compared with the whole reference; the reference is cut the \
             same way, into {} chunks, each compared with the whole reference too.",
            c.chunks.len(),
            split_words(split),
            c.reference_chunks
        ),
    };
    let _ = write!(out, "<p class=\"sub\">{} Thresholds: {}.</p>", escape(&how), escape(&rule));
    let rows: Vec<(Option<&ChunkResult>, &ChunkResults)> = if c.chunks.is_empty() {
        vec![(None, &c.results)]
    } else {
        c.chunks.iter().map(|k| (Some(k), &k.results)).collect()
    };
    if c.split.is_some() {
        out.push_str("<div class=\"grid\">");
        if let Some((_, first)) = rows.first() {
            for (feature, methods) in first.iter().take(MAX_CHUNK_CHARTS) {
                for method in methods.keys() {
                    let points: Vec<(String, ChunkValue)> = c
                        .chunks
                        .iter()
                        .filter_map(|k| Some((k.chunk.key.clone(), k.results.get(feature)?.get(method)?.clone())))
                        .collect();
                    let _ = write!(
                        out,
                        "<div class=\"card\"><h3>{} · {method} per chunk</h3>{}</div>",
                        escape(feature),
                        html::chunk_values_svg(&points)
                    );
                }
            }
        }
        out.push_str("</div>");
    }
    let chunk_head = if c.split.is_some() { "<th>chunk</th><th>rows</th>" } else { "" };
    let _ = write!(
        out,
        "<table><tr>{chunk_head}<th>feature</th><th>statistic</th><th>window</th><th>thresholds</th><th></th></tr>"
    );
    for (chunk, results) in rows {
        let chunk_cells = chunk
            .map(|k| format!("<td>{}</td><td>{}</td>", escape(&k.chunk.key), k.chunk.size))
            .unwrap_or_default();
        for (feature, methods) in results {
            for (method, v) in methods {
                let _ = write!(
                    out,
                    "<tr>{chunk_cells}<td>{}</td><td>{method}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                    escape(feature),
                    shown(v.value),
                    range(v.lower_threshold, v.upper_threshold),
                    if v.alert { "drift" } else { "ok" },
                    if v.alert { "alert" } else { "ok" }
                );
            }
        }
    }
    out.push_str("</table>");
    out
}

/// How a split cuts, in words.
fn split_words(split: Chunking) -> String {
    match split {
        Chunking::Size(n) => format!("of {n} predictions (the last may be smaller)"),
        Chunking::Number(n) => format!("as {n} of equal size (a remainder makes one more)"),
        Chunking::Period(p) => format!("one per {} (UTC) holding predictions", p.name()),
    }
}
