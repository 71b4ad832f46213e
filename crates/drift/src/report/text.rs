//! Results as aligned text tables for a terminal: a comparison's verdicts and a model's
//! metrics.

use crate::chunk::ChunkInfo;
use crate::chunked::{ChunkMethod, ChunkValue, ChunkedDrift};
use crate::compare::Comparison;
use crate::estimate::{Basis, Estimate, EstimateMetric, EstimatedValue};
use crate::format::number;
use crate::stats::performance::{Binary, Multiclass, Regression};
use crate::stats::value::Stat;
use crate::table::files::FilePerformance;
use std::fmt::Write as _;

/// The comparison as an aligned text table.
pub fn comparison_table(c: &Comparison) -> String {
    let mut rows = vec![[
        "column".to_string(),
        "kind".into(),
        "method".into(),
        "statistic".into(),
        "p-value".into(),
        "threshold".into(),
        "drift".into(),
        "excluded (ref/cur)".into(),
    ]];
    for col in &c.columns {
        rows.push([
            col.column.clone(),
            format!("{:?}", col.kind).to_lowercase(),
            col.method.to_string(),
            match (col.statistic, &col.approximate) {
                (None, _) => "—".into(),
                (Some(x), None) => number(x),
                (Some(x), Some(a)) => match a.error_bound {
                    Some(bound) => format!("≈{} ±{}", number(x), number(bound)),
                    None => format!("≈{}", number(x)),
                },
            },
            col.p_value.map(number).unwrap_or_else(|| "—".into()),
            number(col.threshold),
            if col.reason.is_some() {
                "n/a".into()
            } else if col.drifted {
                "DRIFT".into()
            } else {
                "ok".into()
            },
            format!("{}/{}", col.reference.excluded, col.current.excluded),
        ]);
    }
    let mut out = text_table(&rows);
    if c.columns.iter().any(|c| c.approximate.is_some()) {
        out.push_str("≈: computed from rollups (sketches and value counts), the raw values being gone; ± the bound it is within\n");
    }
    for col in c.columns.iter().filter(|c| c.reason.is_some()) {
        let _ = writeln!(out, "{}: {}", col.column, col.reason.as_deref().unwrap_or_default());
    }
    for col in &c.columns {
        if let (Some(raw), Some(normalized)) = (col.wasserstein, col.wasserstein_normalized) {
            let _ = writeln!(
                out,
                "{}: Wasserstein distance {} in its units, {} reference standard deviations (the statistic)",
                col.column,
                number(raw),
                number(normalized)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{} of {} columns drifted ({:.0}%); dataset drift: {} (at {:.0}% of columns)",
        c.drifted_columns,
        c.columns.len(),
        c.share_drifted * 100.0,
        if c.dataset_drift { "YES" } else { "no" },
        c.drift_share * 100.0
    );
    out
}

/// Drift per chunk: one row per chunk, column and statistic.
pub fn chunks_table(d: &ChunkedDrift) -> String {
    let mut rows = vec![[
        "chunk".to_string(),
        "period".into(),
        "rows".into(),
        "column".into(),
        "statistic".into(),
        "value".into(),
        "threshold".into(),
        "alert".into(),
    ]];
    for (chunk, column, method, v) in chunk_rows(d) {
        rows.push([
            chunk.key.clone(),
            chunk.period.clone(),
            chunk.size.to_string(),
            column.to_string(),
            method.to_string(),
            v.value.map(number).unwrap_or_else(|| "—".into()),
            match (v.upper_threshold, v.p_value) {
                (Some(u), _) => format!("> {}", number(u)),
                (None, Some(p)) => format!("p {} < 0.05", number(p)),
                (None, None) => "—".into(),
            },
            if v.alert { "ALERT".into() } else { "ok".into() },
        ]);
    }
    let mut out = text_table(&rows);
    let analysis = d.chunks.iter().filter(|c| !c.chunk.is_reference()).count();
    let _ = writeln!(out, "\n{} of {} analysis chunks alerted", d.alerting_chunks, analysis);
    out
}

/// Drift per chunk as CSV with a header: one line per chunk, column and statistic.
pub fn chunks_csv(d: &ChunkedDrift) -> String {
    let mut out = String::from(
        "chunk,period,start_index,end_index,start_timestamp_ms,end_timestamp_ms,rows,column,statistic,value,p_value,upper_threshold,lower_threshold,alert\n",
    );
    let opt = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
    for (chunk, column, method, v) in chunk_rows(d) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&chunk.key),
            chunk.period,
            chunk.start_index,
            chunk.end_index,
            chunk.start_timestamp_ms.map(|t| t.to_string()).unwrap_or_default(),
            chunk.end_timestamp_ms.map(|t| t.to_string()).unwrap_or_default(),
            chunk.size,
            csv_field(column),
            method,
            opt(v.value),
            opt(v.p_value),
            opt(v.upper_threshold),
            opt(v.lower_threshold),
            v.alert
        );
    }
    out
}

/// Performance per chunk, estimated or realised: one row per chunk and metric, then (for
/// estimates) how scores were calibrated, and how many analysis chunks alerted.
pub fn estimate_table(e: &Estimate) -> String {
    let estimated = e.basis == Basis::Estimated;
    let header = [
        "chunk".to_string(),
        "period".into(),
        "rows".into(),
        "metric".into(),
        if estimated { "estimate" } else { "realised" }.into(),
        "band".into(),
        "realised".into(),
        "thresholds".into(),
        "alert".into(),
    ];
    let shown = |x: Option<f64>| x.map(number).unwrap_or_else(|| "—".into());
    let range = |lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
        (None, None) => "—".to_string(),
        (lo, hi) => format!("{} .. {}", shown(lo), shown(hi)),
    };
    let mut rows = vec![header];
    for (chunk, metric, v) in estimate_rows(e) {
        rows.push([
            chunk.key.clone(),
            chunk.period.clone(),
            chunk.size.to_string(),
            metric.to_string(),
            shown(v.value),
            range(v.lower_confidence_boundary, v.upper_confidence_boundary),
            shown(v.realized),
            range(v.lower_threshold, v.upper_threshold),
            if v.alert { "ALERT".into() } else { "ok".into() },
        ]);
    }
    let mut out = if estimated {
        text_table(&rows)
    } else {
        // Realised values need no second column of them.
        let rows: Vec<[String; 8]> = rows
            .into_iter()
            .map(|[a, b, c, d, value, band, _, thresholds, alert]| [a, b, c, d, value, band, thresholds, alert])
            .collect();
        text_table(&rows)
    };
    let analysis = e.chunks.iter().filter(|c| !c.chunk.is_reference()).count();
    if estimated {
        let how = if e.calibration.calibrated { "calibrated (isotonic)" } else { "used as they are" };
        let _ = writeln!(out, "\nscores {how}: {}", e.calibration.reason);
    } else {
        out.push('\n');
    }
    let _ = writeln!(out, "{} of {} analysis chunks alerted", e.alerting_chunks, analysis);
    out
}

/// Performance estimated per chunk as CSV with a header: one line per chunk and metric.
pub fn estimate_csv(e: &Estimate) -> String {
    let mut out = String::from(
        "chunk,period,start_index,end_index,start_timestamp_ms,end_timestamp_ms,rows,metric,value,sampling_error,realized,lower_confidence_boundary,upper_confidence_boundary,lower_threshold,upper_threshold,alert\n",
    );
    let opt = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
    let time = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
    for (chunk, metric, v) in estimate_rows(e) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{metric},{},{},{},{},{},{},{},{}",
            csv_field(&chunk.key),
            chunk.period,
            chunk.start_index,
            chunk.end_index,
            time(chunk.start_timestamp_ms),
            time(chunk.end_timestamp_ms),
            chunk.size,
            opt(v.value),
            opt(v.sampling_error),
            opt(v.realized),
            opt(v.lower_confidence_boundary),
            opt(v.upper_confidence_boundary),
            opt(v.lower_threshold),
            opt(v.upper_threshold),
            v.alert
        );
    }
    out
}

/// Every chunk's estimates, in chunk order, then metric order.
fn estimate_rows(e: &Estimate) -> impl Iterator<Item = (&ChunkInfo, EstimateMetric, &EstimatedValue)> {
    e.chunks.iter().flat_map(move |c| e.metrics.iter().filter_map(move |m| Some((&c.chunk, *m, c.metrics.get(m)?))))
}

/// Every chunk's results, in chunk order, then column and statistic order.
fn chunk_rows(d: &ChunkedDrift) -> impl Iterator<Item = (&ChunkInfo, &str, ChunkMethod, &ChunkValue)> {
    d.chunks.iter().flat_map(move |chunk| {
        d.columns.iter().flat_map(move |(column, methods)| {
            methods.iter().filter_map(move |m| {
                chunk.results.get(column).and_then(|r| r.get(m)).map(|v| (&chunk.chunk, column.as_str(), *m, v))
            })
        })
    })
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// What a file's performance was computed from, on one line: file, task, columns, rows.
pub fn performance_heading(p: &FilePerformance) -> String {
    let classes = match &p.prediction {
        Some(column) => format!(" · predicted classes `{column}`"),
        None => String::new(),
    };
    format!(
        "{} · {} · score `{}`{classes} · label `{}` · {} rows, {} left out (missing or not finite)",
        p.input.path,
        p.task.name(),
        p.score,
        p.label,
        p.input.rows,
        p.rows_excluded
    )
}

/// Binary metrics as a two-column table.
pub fn binary_table(b: &Binary) -> String {
    let mut rows = vec![["metric".to_string(), "value".into()]];
    rows.push(["rows".into(), b.rows.to_string()]);
    rows.push(["positives".into(), b.positives.to_string()]);
    rows.push(["threshold".into(), b.threshold.map(number).unwrap_or_else(|| "— (classes as predicted)".into())]);
    for (name, stat) in [
        ("roc_auc", &b.roc_auc),
        ("average_precision", &b.average_precision),
        ("accuracy", &b.accuracy),
        ("precision", &b.precision),
        ("recall", &b.recall),
        ("f1", &b.f1),
        ("log_loss", &b.log_loss),
        ("brier", &b.brier),
    ] {
        rows.push([name.into(), stat_text(stat)]);
    }
    let c = &b.confusion;
    rows.push([
        "confusion (tn fp / fn tp)".into(),
        format!("{} {} / {} {}", c.true_negatives, c.false_positives, c.false_negatives, c.true_positives),
    ]);
    text_table(&rows)
}

pub fn multiclass_table(m: &Multiclass) -> String {
    let mut rows = vec![["metric".to_string(), "value".into()]];
    rows.push(["rows".into(), m.rows.to_string()]);
    rows.push(["classes".into(), m.classes.to_string()]);
    rows.push(["accuracy".into(), stat_text(&m.accuracy)]);
    for (name, stat) in [
        ("macro_precision", &m.macro_precision),
        ("macro_recall", &m.macro_recall),
        ("macro_f1", &m.macro_f1),
        ("weighted_precision", &m.weighted_precision),
        ("weighted_recall", &m.weighted_recall),
        ("weighted_f1", &m.weighted_f1),
    ] {
        rows.push([name.into(), stat_text(stat)]);
    }
    if let Some(ovr) = &m.one_vs_rest {
        rows.push(["roc_auc (one-vs-rest, macro)".into(), stat_text(&ovr.macro_roc_auc)]);
        rows.push(["roc_auc (one-vs-rest, weighted)".into(), stat_text(&ovr.weighted_roc_auc)]);
    }
    let mut out = text_table(&rows);
    let shown = |x: Option<f64>| x.map(number).unwrap_or_else(|| "—".into());
    let mut classes = vec![[
        "class".to_string(),
        "precision".into(),
        "recall".into(),
        "f1".into(),
        "support".into(),
        "roc_auc (vs rest)".into(),
    ]];
    for (class, c) in &m.per_class {
        let auc = m.one_vs_rest.as_ref().and_then(|o| o.per_class.get(class).copied().flatten());
        classes.push([
            class.clone(),
            number(c.precision),
            number(c.recall),
            number(c.f1),
            c.support.to_string(),
            shown(auc),
        ]);
    }
    out.push('\n');
    out.push_str(&text_table(&classes));
    out
}

pub fn regression_table(r: &Regression) -> String {
    let mut rows = vec![["metric".to_string(), "value".into()]];
    rows.push(["rows".into(), r.rows.to_string()]);
    for (name, stat) in [("mse", &r.mse), ("rmse", &r.rmse), ("mae", &r.mae), ("r2", &r.r2), ("mape", &r.mape)] {
        rows.push([name.into(), stat_text(stat)]);
    }
    text_table(&rows)
}

fn stat_text(s: &Stat) -> String {
    match (s.value, &s.reason) {
        (Some(v), _) => number(v),
        (None, Some(r)) => format!("— ({r})"),
        (None, None) => "—".into(),
    }
}

/// Rows as an aligned text table; the first row is the header.
pub fn text_table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    out
}
