//! Estimates checked against the labels that arrived later: for a job's recent runs, the
//! performance each run estimated for its window beside the performance of that window now,
//! from the labels the store holds today.

use super::load;
use super::spec::JobSpec;
use crate::estimate::{self, EstimateMetric, EstimatedValue};
use crate::format::{number, time};
use crate::report::html;
use crate::report::text::text_table;
use crate::Error;
use driftline_store::{Store, Window};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run's estimates and its window's performance now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateCheck {
    pub run_id: i64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Predictions in the window now.
    pub rows: usize,
    /// Of those, the ones with a score, a predicted class and a label now.
    pub labelled: usize,
    pub metrics: BTreeMap<EstimateMetric, CheckedMetric>,
}

/// A metric as the run estimated it, and as the labels give it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedMetric {
    /// The run's estimate; its `realized` is what the labels at run time gave.
    pub estimated: EstimatedValue,
    /// The metric from the labels now; `null` while none (or one class only) arrived.
    pub realized_now: Option<f64>,
    /// Whether the realised value now is within the estimate's confidence band.
    pub within_band: Option<bool>,
}

/// The job's last `runs` runs that estimated performance, newest first, each checked against
/// the labels now in the store.
pub async fn check(store: &dyn Store, spec: &JobSpec, runs: u32) -> Result<Vec<EstimateCheck>, Error> {
    if spec.estimate.is_none() {
        return Err(Error::Invalid {
            field: "estimate".into(),
            message: format!(
                "job `{}` does not estimate performance; create it with estimates to check them",
                spec.name
            ),
        });
    }
    let mut out = Vec::new();
    for run in store.runs(&spec.name, runs).await? {
        let Some(estimated) =
            run.summary.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()).and_then(|s| {
                serde_json::from_value::<BTreeMap<EstimateMetric, EstimatedValue>>(
                    s.get("estimated_performance")?.clone(),
                )
                .ok()
            })
        else {
            continue;
        };
        let window = Window { start_ms: run.window_start_ms, end_ms: run.window_end_ms };
        let current = load::current(store, spec, window).await?;
        let (realized, labelled) = match current.estimate_rows {
            Some(Ok(rows)) => {
                let metrics: Vec<EstimateMetric> = estimated.keys().copied().collect();
                estimate::realized_metrics(&rows, &metrics)
            }
            _ => (BTreeMap::new(), 0),
        };
        let metrics = estimated
            .into_iter()
            .map(|(m, estimated)| {
                let realized_now = realized.get(&m).copied().flatten();
                let within_band =
                    match (realized_now, estimated.lower_confidence_boundary, estimated.upper_confidence_boundary) {
                        (Some(r), Some(lo), Some(hi)) => Some(lo <= r && r <= hi),
                        _ => None,
                    };
                (m, CheckedMetric { estimated, realized_now, within_band })
            })
            .collect();
        out.push(EstimateCheck {
            run_id: run.id,
            window_start_ms: run.window_start_ms,
            window_end_ms: run.window_end_ms,
            rows: current.rows,
            labelled,
            metrics,
        });
    }
    Ok(out)
}

/// The checks as a terminal table: a row per run and metric.
pub fn table(checks: &[EstimateCheck]) -> String {
    let shown = |x: Option<f64>| x.map(number).unwrap_or_else(|| "—".into());
    let mut rows = vec![[
        "run".to_string(),
        "window".into(),
        "metric".into(),
        "estimated".into(),
        "band".into(),
        "realised then".into(),
        "realised now".into(),
        "labelled now".into(),
        "in band".into(),
    ]];
    for c in checks {
        for (m, v) in &c.metrics {
            let e = &v.estimated;
            rows.push([
                c.run_id.to_string(),
                format!("{} .. {}", time(c.window_start_ms), time(c.window_end_ms)),
                m.to_string(),
                shown(e.value),
                format!("{} .. {}", shown(e.lower_confidence_boundary), shown(e.upper_confidence_boundary)),
                shown(e.realized),
                shown(v.realized_now),
                format!("{} of {}", c.labelled, c.rows),
                match v.within_band {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "—".into(),
                },
            ]);
        }
    }
    text_table(&rows)
}

/// The checks as a self-contained page: per metric, the estimates over the runs' windows (oldest
/// first) with their bands and thresholds, and the realised values now (dashed).
pub fn page(job: &str, checks: &[EstimateCheck]) -> String {
    let mut out = html::page_start(
        &format!("driftline · {job} · estimated and realised performance"),
        &format!("{} runs; realised values from the labels in the store now", checks.len()),
    );
    let metrics: Vec<EstimateMetric> = checks
        .iter()
        .flat_map(|c| c.metrics.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    out.push_str("<div class=\"grid\">");
    for m in metrics {
        let points: Vec<(String, EstimatedValue)> = checks
            .iter()
            .rev()
            .filter_map(|c| {
                let v = c.metrics.get(&m)?;
                Some((time(c.window_end_ms), EstimatedValue { realized: v.realized_now, ..v.estimated.clone() }))
            })
            .collect();
        let _ = write!(out, "<div class=\"card\"><h3>{m}</h3>{}</div>", html::estimates_svg(&points));
    }
    out.push_str("</div>");
    out.push_str(html::page_end());
    out
}
