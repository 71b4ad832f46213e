//! The report of a drift job's run: what it found, as JSON ([`RunReport`]), and as one
//! self-contained HTML page ([`page`]: per-feature histograms with the verdicts, the ROC curve
//! and the performance metrics, and the job's recent runs as line charts; no scripts, no
//! network).

use super::html::{self, escape};
use crate::chunk::Chunking;
use crate::chunked::{ChunkMethod, ChunkResult, ChunkResults, ChunkThreshold, ChunkValue};
use crate::compare::{Approximation, Comparison};
use crate::estimate::{CalibrationReport, EstimateMetric, EstimatedChunk, EstimatedValue};
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
    /// The realised performance of the window's chunks against the reference chunks'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<ChunkPerformance>,
}

/// The realised performance of a window's chunks ([`crate::job`]'s `chunk_performance`): the
/// window's chunks as [`RunChunks`] cuts them, each with the task's metrics from its labelled
/// predictions, thresholds from the reference chunks' values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkPerformance {
    pub metrics: Vec<EstimateMetric>,
    /// The thresholds' rule: standard deviations of the reference chunks' values.
    pub threshold: ChunkThreshold,
    /// The window's chunks in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<EstimatedChunk>,
    /// Why there are no chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ChunkPerformance {
    /// Each metric outside its thresholds, in words: the value, or for several chunks how many
    /// were outside, the first and the furthest.
    pub fn alerts(&self) -> Vec<String> {
        let mut alerts = Vec::new();
        for metric in &self.metrics {
            let outside: Vec<(&str, &EstimatedValue)> = self
                .chunks
                .iter()
                .filter_map(|c| Some((c.chunk.key.as_str(), c.metrics.get(metric)?)))
                .filter(|(_, v)| v.alert)
                .collect();
            let Some((first_key, first)) = outside.first() else { continue };
            let thresholds = range(first.lower_threshold, first.upper_threshold);
            if self.chunks.len() == 1 {
                alerts.push(format!("realised {metric} = {} is outside {thresholds}", shown(first.value)));
                continue;
            }
            let gap = |v: &EstimatedValue| distance(v.value, v.lower_threshold, v.upper_threshold);
            let furthest = outside.iter().map(|(_, v)| *v).max_by(|a, b| gap(a).total_cmp(&gap(b))).unwrap_or(first);
            alerts.push(format!(
                "realised {metric} is outside {thresholds} in {} of {} chunks, from {first_key} ({}; furthest {})",
                outside.len(),
                self.chunks.len(),
                shown(first.value),
                shown(furthest.value)
            ));
        }
        alerts
    }
}

impl RunChunks {
    /// The statistics outside their thresholds, in words (with the chunk's name when the
    /// window is split).
    pub fn alerts(&self) -> Option<String> {
        let alerts: Vec<String> = if self.chunks.is_empty() {
            self.results
                .iter()
                .flat_map(|(feature, methods)| methods.iter().map(move |(m, v)| (feature, m, v)))
                .filter(|(.., v)| v.alert)
                .map(|(feature, method, v)| {
                    format!(
                        "{feature} {method} = {} is outside {}",
                        shown(v.value),
                        range(v.lower_threshold, v.upper_threshold)
                    )
                })
                .collect()
        } else {
            self.outside().iter().map(Outside::words).collect()
        };
        let alerts: Vec<String> =
            alerts.into_iter().chain(self.performance.iter().flat_map(ChunkPerformance::alerts)).collect();
        (!alerts.is_empty()).then(|| alerts.join("; "))
    }

    /// For a split window: each feature and statistic that left its thresholds in some chunk.
    pub fn outside(&self) -> Vec<Outside<'_>> {
        let mut found: BTreeMap<(&str, ChunkMethod), Outside<'_>> = BTreeMap::new();
        for chunk in &self.chunks {
            for (feature, methods) in &chunk.results {
                for (method, v) in methods.iter().filter(|(_, v)| v.alert) {
                    let entry = found.entry((feature.as_str(), *method)).or_insert_with(|| Outside {
                        feature,
                        method: *method,
                        chunks: 0,
                        of: self.chunks.len(),
                        first: &chunk.chunk.key,
                        first_value: v,
                        furthest: v,
                    });
                    entry.chunks += 1;
                    let gap = |v: &ChunkValue| distance(v.value, v.lower_threshold, v.upper_threshold);
                    if gap(v) > gap(entry.furthest) {
                        entry.furthest = v;
                    }
                }
            }
        }
        found.into_values().collect()
    }
}

/// A feature's statistic outside its thresholds in chunks of a split window.
#[derive(Debug)]
pub struct Outside<'a> {
    pub feature: &'a str,
    pub method: ChunkMethod,
    /// Chunks outside, of all the window's chunks.
    pub chunks: usize,
    pub of: usize,
    /// The first chunk outside, and its value.
    pub first: &'a str,
    pub first_value: &'a ChunkValue,
    /// The value furthest outside.
    pub furthest: &'a ChunkValue,
}

impl Outside<'_> {
    fn words(&self) -> String {
        format!(
            "{} {} is outside {} in {} of {} chunks, from {} ({}; furthest {})",
            self.feature,
            self.method,
            range(self.first_value.lower_threshold, self.first_value.upper_threshold),
            self.chunks,
            self.of,
            self.first,
            shown(self.first_value.value),
            shown(self.furthest.value)
        )
    }
}

/// How far a value lies outside its thresholds (0 inside, or without a value).
fn distance(value: Option<f64>, lower: Option<f64>, upper: Option<f64>) -> f64 {
    let Some(x) = value else { return 0.0 };
    let above = upper.map_or(0.0, |u| x - u);
    let below = lower.map_or(0.0, |l| l - x);
    above.max(below).max(0.0)
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
                        Some(whole) => value(whole.get(feature).and_then(|m| m.get(method.name())))
                            .map(|v| (label.clone(), v))
                            .into_iter()
                            .collect(),
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
    let performance = c.performance.as_ref().map(performance_section).unwrap_or_default();
    if c.split.is_some() {
        out.push_str("<div class=\"grid\">");
        for (feature, methods) in c.chunks.first().map(|k| &k.results).into_iter().flatten().take(MAX_CHUNK_CHARTS) {
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
        out.push_str("</div>");
        // Before the list of chunks outside, which may be long.
        out.push_str(&performance);
        out.push_str("<h3>Drift outside the thresholds</h3>");
        out.push_str(&outside_tables(c));
        return out;
    }
    out.push_str("<table><tr><th>feature</th><th>statistic</th><th>window</th><th>thresholds</th><th></th></tr>");
    for (feature, methods) in &c.results {
        for (method, v) in methods {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{method}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                escape(feature),
                shown(v.value),
                range(v.lower_threshold, v.upper_threshold),
                if v.alert { "drift" } else { "ok" },
                if v.alert { "alert" } else { "ok" }
            );
        }
    }
    out.push_str("</table>");
    out.push_str(&performance);
    out
}

/// The realised performance per chunk: a chart per metric over the window's chunks, with the
/// band and the thresholds.
fn performance_section(p: &ChunkPerformance) -> String {
    let mut out = String::from("<h3>Realised performance per chunk</h3>");
    if let Some(note) = &p.note {
        let _ = write!(out, "<p class=\"sub\">{}</p>", escape(note));
        return out;
    }
    // Always standard deviations: a job's constant drift threshold is no bound for a metric.
    let (ChunkThreshold::StandardDeviations(k) | ChunkThreshold::Constant(k)) = p.threshold;
    let _ = write!(
        out,
        "<p class=\"sub\">Each chunk's metrics from its predictions with ground truth; band: three sampling \
         errors; thresholds: the mean of the reference chunks' values ± {} standard deviations.</p>",
        number(k)
    );
    out.push_str(&html::estimate_cards(&p.metrics, &p.chunks, "chunks"));
    out
}

/// Most rows of the table of chunks outside their thresholds (the JSON report has them all).
const MAX_OUTSIDE_ROWS: usize = 200;

/// For a split window: per feature and statistic, how many chunks left the thresholds; then
/// each chunk outside, with its value.
fn outside_tables(c: &RunChunks) -> String {
    let mut out = String::from(
        "<table><tr><th>feature</th><th>statistic</th><th>thresholds</th><th>chunks outside</th>\
         <th>first outside</th><th>furthest</th></tr>",
    );
    let outside = c.outside();
    let first = c.chunks.first().map(|k| &k.results);
    for (feature, methods) in first.into_iter().flatten() {
        for (method, v) in methods {
            let o = outside.iter().find(|o| o.feature == feature && o.method == *method);
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{method}</td><td>{}</td><td class=\"{}\">{} of {}</td><td>{}</td><td>{}</td></tr>",
                escape(feature),
                range(v.lower_threshold, v.upper_threshold),
                if o.is_some() { "drift" } else { "ok" },
                o.map_or(0, |o| o.chunks),
                c.chunks.len(),
                o.map(|o| format!("{} ({})", escape(o.first), shown(o.first_value.value)))
                    .unwrap_or_else(|| "—".into()),
                o.map(|o| shown(o.furthest.value)).unwrap_or_else(|| "—".into()),
            );
        }
    }
    out.push_str("</table>");
    let rows: Vec<(&ChunkResult, &String, &ChunkMethod, &ChunkValue)> = c
        .chunks
        .iter()
        .flat_map(|k| k.results.iter().flat_map(move |(f, methods)| methods.iter().map(move |(m, v)| (k, f, m, v))))
        .filter(|(.., v)| v.alert)
        .collect();
    if rows.is_empty() {
        out.push_str("<p class=\"sub\">No chunk of the window is outside its thresholds.</p>");
        return out;
    }
    let _ = write!(
        out,
        "<h3>Chunks outside their thresholds</h3><p class=\"sub\">{}</p>",
        if rows.len() > MAX_OUTSIDE_ROWS {
            format!("The first {MAX_OUTSIDE_ROWS} of {}; the JSON report has them all.", rows.len())
        } else {
            format!("{} in all.", rows.len())
        }
    );
    out.push_str(
        "<table><tr><th>chunk</th><th>rows</th><th>feature</th><th>statistic</th><th>value</th><th>thresholds</th></tr>",
    );
    for (k, feature, method, v) in rows.into_iter().take(MAX_OUTSIDE_ROWS) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{method}</td><td class=\"drift\">{}</td><td>{}</td></tr>",
            escape(&k.chunk.key),
            k.chunk.size,
            escape(feature),
            shown(v.value),
            range(v.lower_threshold, v.upper_threshold)
        );
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
