//! Results as aligned text tables for a terminal: a comparison's verdicts and a model's
//! metrics.

use crate::compare::Comparison;
use crate::format::number;
use crate::stats::performance::{Binary, Multiclass, Regression};
use crate::stats::value::Stat;
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
    rows.push(["macro_f1".into(), stat_text(&m.macro_f1)]);
    for (class, f1) in &m.f1_per_class {
        rows.push([format!("f1[{class}]"), number(*f1)]);
    }
    text_table(&rows)
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
