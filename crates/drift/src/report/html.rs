//! Self-contained HTML for people: pages with inline CSS and SVG (histogram overlays, the ROC
//! curve, line charts), no scripts, nothing fetched over the network.

use crate::chunked::{ChunkValue, ChunkedDrift};
use crate::compare::{Comparison, Histogram};
use crate::estimate::{Basis, Estimate, EstimateMetric, EstimatedChunk, EstimatedValue};
use crate::format::{number, shorten};
use crate::stats::performance::{Metrics, RocPoint};
use crate::table::files::FilePerformance;
use serde_json::Value;
use std::fmt::Write as _;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2430;padding:0 1rem}\
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}.sub{color:#5b6575}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}\
.card{border:1px solid #d9dee6;border-radius:8px;padding:.8rem 1rem;background:#fff}\
.card h3{margin:.1rem 0 .3rem;font-size:1rem}.drift{color:#b42318;font-weight:600}.ok{color:#067647;font-weight:600}.na{color:#6b7280}\
table{border-collapse:collapse}td,th{padding:.25rem .7rem;border-bottom:1px solid #eceff3;text-align:left}\
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;vertical-align:middle}\
.banner{padding:.6rem 1rem;border-radius:6px;margin:1rem 0}.banner.drift{background:#fef3f2}.banner.ok{background:#ecfdf3}";

/// Colours of the reference and current series.
const REFERENCE: &str = "#4e79a7";
const CURRENT: &str = "#f28e2b";

/// Starts a self-contained page.
pub fn page_start(title: &str, subtitle: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{STYLE}</style></head><body>\
<h1>{t}</h1><p class=\"sub\">{s}</p>\n",
        t = escape(title),
        s = escape(subtitle)
    )
}

pub fn page_end() -> &'static str {
    "</body></html>\n"
}

/// A legend for reference and current.
pub fn legend() -> String {
    format!(
        "<p class=\"legend\"><span style=\"background:{REFERENCE}\"></span>reference<span style=\"background:{CURRENT}\"></span>current</p>"
    )
}

/// Per-column cards with overlaid histograms of the comparison.
pub fn comparison_section(c: &Comparison) -> String {
    let mut out = String::new();
    let (class, verdict) =
        if c.dataset_drift { ("drift", "Dataset drift detected") } else { ("ok", "No dataset drift") };
    let _ = write!(
        out,
        "<div class=\"banner {class}\"><b>{verdict}</b>: {} of {} columns drifted ({:.0}%, threshold {:.0}%).</div>{}<div class=\"grid\">",
        c.drifted_columns,
        c.columns.len(),
        c.share_drifted * 100.0,
        c.drift_share * 100.0,
        legend()
    );
    for col in &c.columns {
        let (class, verdict) = match (&col.reason, col.drifted) {
            (Some(_), _) => ("na", "not computed"),
            (None, true) => ("drift", "drift"),
            (None, false) => ("ok", "no drift"),
        };
        let mut detail = format!("{} {}", col.method, col.statistic.map(number).unwrap_or_else(|| "—".into()));
        if let Some(p) = col.p_value {
            let _ = write!(detail, ", p = {}", number(p));
        }
        if let Some(raw) = col.wasserstein {
            let _ = write!(detail, " (reference standard deviations; distance {})", number(raw));
        }
        if let Some(variant) = &col.variant {
            let _ = write!(detail, " · {}", variant.replace('_', " "));
        }
        if let Some(a) = &col.approximate {
            let _ = write!(detail, " · approximate, from {}", a.from);
            if let Some(bound) = a.error_bound {
                let _ = write!(detail, ", within ±{}", number(bound));
            }
            if let Some(e) = a.rank_error {
                let _ = write!(detail, ", rank error {}", number(e));
            }
        }
        let _ = write!(
            out,
            "<div class=\"card\"><h3>{}</h3><div><span class=\"{class}\">{verdict}</span> · {} · threshold {}</div>{}<div class=\"sub\">{} / {} values, {} / {} excluded{}</div></div>",
            escape(&col.column),
            escape(&detail),
            number(col.threshold),
            histogram_svg(&col.histogram),
            col.reference.values,
            col.current.values,
            col.reference.excluded,
            col.current.excluded,
            col.reason.as_deref().map(|r| format!(" · {}", escape(r))).unwrap_or_default()
        );
    }
    out.push_str("</div>\n");
    out
}

/// A whole page for a file comparison.
pub fn comparison_page(c: &Comparison, title: &str, subtitle: &str) -> String {
    let mut out = page_start(title, subtitle);
    out.push_str(&comparison_section(c));
    out.push_str(page_end());
    out
}

/// A whole page for drift per chunk: per column and statistic, its value over the chunks as a
/// line (reference chunks, then analysis chunks, a dashed line between them), the upper
/// threshold as a band edge, and alerting chunks marked.
pub fn chunks_page(d: &ChunkedDrift, title: &str, subtitle: &str) -> String {
    let mut out = page_start(title, subtitle);
    let analysis = d.chunks.iter().filter(|c| !c.chunk.is_reference()).count();
    let (class, verdict) = if d.alerting_chunks > 0 { ("drift", "Drift alerts") } else { ("ok", "No drift alerts") };
    let _ = write!(
        out,
        "<div class=\"banner {class}\"><b>{verdict}</b>: {} of {analysis} analysis chunks alerted.</div><div class=\"grid\">",
        d.alerting_chunks
    );
    for (column, methods) in &d.columns {
        for method in methods {
            let points: Vec<ChunkPoint> = d
                .chunks
                .iter()
                .filter_map(|c| {
                    let v = c.results.get(column)?.get(method)?;
                    Some(ChunkPoint::of(&c.chunk.key, c.chunk.is_reference(), v))
                })
                .collect();
            let alerts = points.iter().filter(|p| p.alert && !p.reference).count();
            let _ = write!(
                out,
                "<div class=\"card\"><h3>{} · {}</h3>{}<div class=\"sub\">{alerts} analysis chunks alerted</div></div>",
                escape(column),
                escape(method.name()),
                chunk_svg(&points)
            );
        }
    }
    out.push_str("</div>");
    out.push_str(page_end());
    out
}

/// One chunk's point in a chunk chart.
#[derive(Default)]
struct ChunkPoint<'a> {
    key: &'a str,
    reference: bool,
    value: Option<f64>,
    upper: Option<f64>,
    lower: Option<f64>,
    /// A confidence band around the value.
    band: Option<(f64, f64)>,
    /// The realised value beside an estimate.
    realized: Option<f64>,
    alert: bool,
}

impl<'a> ChunkPoint<'a> {
    /// A statistic's point: its value and thresholds.
    fn of(key: &'a str, reference: bool, v: &ChunkValue) -> Self {
        ChunkPoint {
            key,
            reference,
            value: v.value,
            upper: v.upper_threshold,
            lower: v.lower_threshold,
            alert: v.alert,
            ..ChunkPoint::default()
        }
    }

    /// An estimate's point: its band, realised value and thresholds.
    fn estimated(key: &'a str, reference: bool, v: &EstimatedValue) -> Self {
        ChunkPoint {
            key,
            reference,
            value: v.value,
            upper: v.upper_threshold,
            lower: v.lower_threshold,
            band: v.lower_confidence_boundary.zip(v.upper_confidence_boundary),
            realized: v.realized,
            alert: v.alert,
        }
    }
}

/// A value over chunks: the line (its confidence band shaded), the realised values dashed, the
/// thresholds as red dashed lines with the alerting side shaded, alerts in red, the axis's
/// bottom and top labelled.
fn chunk_svg(points: &[ChunkPoint<'_>]) -> String {
    let (w, h, pad, left) = (340.0, 180.0, 22.0, 52.0);
    let shown: Vec<f64> = points
        .iter()
        .flat_map(|p| [p.value, p.upper, p.lower, p.realized, p.band.map(|b| b.0), p.band.map(|b| b.1)])
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    let max = shown.iter().copied().fold(f64::MIN, f64::max);
    let min = shown.iter().copied().fold(f64::MAX, f64::min);
    // Statistics that are distances start at 0; metrics near 1 get a range around their values.
    let (bottom, top) = if shown.is_empty() {
        (0.0, 1.0)
    } else if max - min < 1e-12 {
        // One value throughout (no missing values in any chunk, say): a plain range around it.
        if (0.0..=1.0).contains(&min) {
            (0.0, 1.0)
        } else {
            (min - 1.0, max + 1.0)
        }
    } else if points.iter().all(|p| p.lower.is_none() && p.band.is_none()) && min >= 0.0 {
        (0.0, (max * 1.1).max(f64::MIN_POSITIVE))
    } else {
        // A range around the values, kept within [0, 1] when they are (shares and rates).
        let margin = ((max - min) * 0.1).max(1e-6);
        let bottom = if min >= 0.0 { (min - margin).max(0.0) } else { min - margin };
        let top = if max <= 1.0 { (max + margin).min(1.0) } else { max + margin };
        (bottom, top)
    };
    let x =
        |i: usize| left + (w - left - pad) * if points.len() > 1 { i as f64 / (points.len() - 1) as f64 } else { 0.5 };
    let y = |v: f64| h - pad - (h - 2.0 * pad) * ((v - bottom) / (top - bottom));
    let mut svg = format!("<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\"><title>value per chunk</title>");
    for (v, label_y) in [(top, pad + 4.0), (bottom, h - pad)] {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{label_y:.2}\" font-size=\"10\" text-anchor=\"end\" fill=\"#5b6575\">{}</text>",
            left - 4.0,
            number(v)
        );
    }
    let _ = write!(svg, "<line x1=\"{left}\" x2=\"{left}\" y1=\"{pad}\" y2=\"{}\" stroke=\"#d9dee6\"/>", h - pad);
    if let Some(u) = points.iter().find_map(|p| p.upper).filter(|u| *u < top) {
        let _ = write!(
            svg,
            "<rect x=\"{left}\" y=\"{pad}\" width=\"{}\" height=\"{:.2}\" fill=\"#fef3f2\"/>{}",
            w - left - pad,
            (y(u) - pad).max(0.0),
            threshold_line(left, w - pad, y(u))
        );
    }
    if let Some(l) = points.iter().find_map(|p| p.lower).filter(|l| *l > bottom) {
        let _ = write!(
            svg,
            "<rect x=\"{left}\" y=\"{:.2}\" width=\"{}\" height=\"{:.2}\" fill=\"#fef3f2\"/>{}",
            y(l),
            w - left - pad,
            (h - pad - y(l)).max(0.0),
            threshold_line(left, w - pad, y(l))
        );
    }
    let banded: Vec<(usize, (f64, f64))> = points.iter().enumerate().filter_map(|(i, p)| Some((i, p.band?))).collect();
    if !banded.is_empty() {
        let upper = banded.iter().map(|(i, b)| format!("{:.2},{:.2}", x(*i), y(b.1)));
        let lower = banded.iter().rev().map(|(i, b)| format!("{:.2},{:.2}", x(*i), y(b.0)));
        let outline: Vec<String> = upper.chain(lower).collect();
        let _ = write!(svg, "<polygon points=\"{}\" fill=\"{REFERENCE}\" fill-opacity=\"0.15\"/>", outline.join(" "));
    }
    if let Some(first) = points.iter().position(|p| !p.reference).filter(|i| *i > 0) {
        let at = (x(first - 1) + x(first)) / 2.0;
        let _ = write!(
            svg,
            "<line x1=\"{at:.2}\" x2=\"{at:.2}\" y1=\"{pad}\" y2=\"{}\" stroke=\"#9aa3af\" stroke-dasharray=\"2 3\"/>",
            h - pad
        );
    }
    let line = |pick: &dyn Fn(&ChunkPoint) -> Option<f64>| -> String {
        points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| pick(p).map(|v| format!("{:.2},{:.2}", x(i), y(v))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if points.iter().any(|p| p.realized.is_some()) {
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{CURRENT}\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>",
            line(&|p| p.realized)
        );
    }
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{REFERENCE}\" stroke-width=\"1.5\"/>",
        line(&|p| p.value)
    );
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p.value {
            let colour = if p.alert { "#b42318" } else { REFERENCE };
            let _ = write!(
                svg,
                "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"2.5\" fill=\"{colour}\"><title>{}: {}</title></circle>",
                x(i),
                y(v),
                escape(p.key),
                number(v)
            );
        }
    }
    if points.iter().any(|p| p.reference) {
        let _ = write!(
            svg,
            "<text x=\"{left}\" y=\"{}\" font-size=\"10\" fill=\"#5b6575\">reference chunks | analysis chunks</text>",
            h - 6.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Estimates over time, one point per label (a run's window): the estimate with its band, the
/// realised value (dashed) and the thresholds.
pub fn estimates_svg(points: &[(String, EstimatedValue)]) -> String {
    let points: Vec<ChunkPoint> = points.iter().map(|(key, v)| ChunkPoint::estimated(key, false, v)).collect();
    chunk_svg(&points)
}

/// A statistic over time, one point per label (a run's window), with its thresholds.
pub fn chunk_values_svg(points: &[(String, ChunkValue)]) -> String {
    let points: Vec<ChunkPoint> = points.iter().map(|(key, v)| ChunkPoint::of(key, false, v)).collect();
    chunk_svg(&points)
}

/// A threshold: a red dashed line across the chart at height `y`.
fn threshold_line(from: f64, to: f64, y: f64) -> String {
    format!("<line x1=\"{from}\" x2=\"{to}\" y1=\"{y:.2}\" y2=\"{y:.2}\" stroke=\"#b42318\" stroke-dasharray=\"4 3\"/>")
}

/// A whole page for performance estimated per chunk: per metric, the estimate over the chunks
/// with its confidence band, the realised value where labels are known (dashed), the thresholds
/// and the alerts.
pub fn estimate_page(e: &Estimate, title: &str, subtitle: &str) -> String {
    let mut out = page_start(title, subtitle);
    let analysis = e.chunks.iter().filter(|c| !c.chunk.is_reference()).count();
    let (class, verdict) =
        if e.alerting_chunks > 0 { ("drift", "Performance alerts") } else { ("ok", "No performance alerts") };
    let (scores, legend) = match e.basis {
        Basis::Estimated => (
            format!(
                " Scores {}: {}.",
                if e.calibration.calibrated { "calibrated (isotonic)" } else { "used as they are" },
                escape(&e.calibration.reason)
            ),
            format!(
                "<span style=\"background:{REFERENCE}\"></span>estimated (band: three sampling errors)\
                 <span style=\"background:{CURRENT}\"></span>realised, where labels are known"
            ),
        ),
        Basis::Realized => (
            String::new(),
            format!("<span style=\"background:{REFERENCE}\"></span>realised (band: three sampling errors)"),
        ),
    };
    let _ = write!(
        out,
        "<div class=\"banner {class}\"><b>{verdict}</b>: {} of {analysis} analysis chunks alerted.{scores}</div>\
         <p class=\"legend\">{legend}<span style=\"background:#b42318\"></span>thresholds</p>",
        e.alerting_chunks,
    );
    out.push_str(&estimate_cards(&e.metrics, &e.chunks, "analysis chunks"));
    out.push_str(page_end());
    out
}

/// A grid of one chart per metric over `chunks`: the value, its band, the realised value
/// beside an estimate, and the thresholds; under each, how many chunks (other than the
/// reference's, called `counted`) alerted.
pub(crate) fn estimate_cards(metrics: &[EstimateMetric], chunks: &[EstimatedChunk], counted: &str) -> String {
    let mut out = String::from("<div class=\"grid\">");
    for metric in metrics {
        let points: Vec<ChunkPoint> = chunks
            .iter()
            .filter_map(|c| Some(ChunkPoint::estimated(&c.chunk.key, c.chunk.is_reference(), c.metrics.get(metric)?)))
            .collect();
        let alerts = points.iter().filter(|p| p.alert && !p.reference).count();
        let _ = write!(
            out,
            "<div class=\"card\"><h3>{}</h3>{}<div class=\"sub\">{alerts} {counted} alerted</div></div>",
            escape(metric.name()),
            chunk_svg(&points)
        );
    }
    out.push_str("</div>");
    out
}

/// A whole page for the performance of a file's predictions: the metrics, and for a binary
/// model the confusion matrix and the ROC curve.
pub fn performance_page(p: &FilePerformance, title: &str) -> String {
    let mut out = page_start(title, &super::text::performance_heading(p));
    out.push_str("<div class=\"grid\"><div class=\"card\"><h3>Metrics</h3><table>");
    out.push_str(&metric_rows(&p.metrics));
    out.push_str("</table></div>");
    if let Metrics::Binary(b) = &p.metrics {
        let c = &b.confusion;
        let _ = write!(
            out,
            "<div class=\"card\"><h3>Confusion matrix</h3><table><tr><th></th><th>predicted 0</th><th>predicted 1</th></tr>\
             <tr><th>label 0</th><td>{}</td><td>{}</td></tr><tr><th>label 1</th><td>{}</td><td>{}</td></tr></table></div>",
            c.true_negatives, c.false_positives, c.false_negatives, c.true_positives
        );
        if !p.roc_curve.is_empty() {
            let _ =
                write!(out, "<div class=\"card\"><h3>ROC curve</h3>{}</div>", roc_svg(&p.roc_curve, b.roc_auc.value));
        }
    }
    out.push_str("</div>");
    out.push_str(page_end());
    out
}

/// Each metric as a table row of its name and value, in the order the JSON has them.
pub(crate) fn metric_rows(metrics: &Metrics) -> String {
    let mut out = String::new();
    for (name, value) in performance_rows(metrics) {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", escape(&name), escape(&value));
    }
    out
}

/// Each metric's name and value as text, in the order the JSON has them.
fn performance_rows(metrics: &Metrics) -> Vec<(String, String)> {
    let value = serde_json::to_value(metrics).expect("metrics serialize");
    let mut rows = Vec::new();
    if let Value::Object(map) = value {
        for (name, v) in map {
            if name == "one_vs_rest" {
                // Multiclass class scores: the averages, then each class's ROC AUC.
                for average in ["macro_roc_auc", "weighted_roc_auc"] {
                    let stat = v.get(average).and_then(|s| s.get("value")).and_then(Value::as_f64);
                    rows.push((format!("{average} (one-vs-rest)"), stat.map(number).unwrap_or_else(|| "—".into())));
                }
                for (class, auc) in v.get("per_class").and_then(Value::as_object).into_iter().flatten() {
                    rows.push((
                        format!("roc_auc of class {class}"),
                        auc.as_f64().map(number).unwrap_or_else(|| "—".into()),
                    ));
                }
                continue;
            }
            let text = match &v {
                Value::Object(o) if o.contains_key("value") => match o.get("value").and_then(Value::as_f64) {
                    Some(x) => number(x),
                    None => format!("— ({})", o.get("reason").and_then(Value::as_str).unwrap_or("undefined")),
                },
                Value::Object(o) => o.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            rows.push((name, text));
        }
    }
    rows
}

/// Reference and current shares as overlaid bars. At most 30 bars; further categories are
/// summed into "other".
pub fn histogram_svg(h: &Histogram) -> String {
    let (labels, reference, current) = fold_tail(h, 30);
    let (w, ht, pad_left, pad_bottom) = (320.0, 170.0, 34.0, 38.0);
    let max = reference.iter().chain(&current).cloned().fold(0.0f64, f64::max).max(1e-9);
    let n = labels.len().max(1) as f64;
    let slot = (w - pad_left - 4.0) / n;
    let plot_h = ht - pad_bottom - 6.0;
    let mut svg = format!("<svg viewBox=\"0 0 {w} {ht}\" width=\"100%\" role=\"img\"><title>histogram</title>");
    let _ = write!(
        svg,
        "<line x1=\"{pad_left}\" y1=\"{y}\" x2=\"{w}\" y2=\"{y}\" stroke=\"#9aa3af\"/>",
        y = ht - pad_bottom
    );
    let _ = write!(svg, "<text x=\"2\" y=\"12\" font-size=\"9\" fill=\"#5b6575\">{:.0}%</text>", max * 100.0);
    for (i, (r, c)) in reference.iter().zip(&current).enumerate() {
        let x = pad_left + i as f64 * slot;
        for (value, colour, offset) in [(r, REFERENCE, 0.0), (c, CURRENT, slot * 0.25)] {
            let bh = value / max * plot_h;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"0.7\"><title>{}: {:.2}%</title></rect>",
                x + offset + slot * 0.05,
                ht - pad_bottom - bh,
                slot * 0.65,
                bh,
                escape(&labels[i]),
                value * 100.0
            );
        }
        if labels.len() <= 12 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"8\" fill=\"#5b6575\" transform=\"rotate(35 {:.1} {:.1})\">{}</text>",
                x + 2.0,
                ht - pad_bottom + 10.0,
                x + 2.0,
                ht - pad_bottom + 10.0,
                escape(&shorten(&labels[i], 14))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn fold_tail(h: &Histogram, max: usize) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    if h.labels.len() <= max {
        return (h.labels.clone(), h.reference.clone(), h.current.clone());
    }
    // Keep the categories with the largest combined share; the comparison's own "other" (the
    // last label when categories were folded) joins the bars folded here.
    let named = h.labels.len() - usize::from(h.other_categories.is_some());
    let mut order: Vec<usize> = (0..named).collect();
    order.sort_by(|a, b| (h.reference[*b] + h.current[*b]).total_cmp(&(h.reference[*a] + h.current[*a])));
    let (keep, rest) = order.split_at(max - 1);
    let mut rest = rest.to_vec();
    let mut folded = rest.len();
    if let Some(more) = h.other_categories {
        rest.push(named);
        folded += more;
    }
    let mut labels: Vec<String> = keep.iter().map(|i| h.labels[*i].clone()).collect();
    let mut r: Vec<f64> = keep.iter().map(|i| h.reference[*i]).collect();
    let mut c: Vec<f64> = keep.iter().map(|i| h.current[*i]).collect();
    labels.push(format!("other ({folded})"));
    r.push(rest.iter().map(|i| h.reference[*i]).sum());
    c.push(rest.iter().map(|i| h.current[*i]).sum());
    (labels, r, c)
}

/// The ROC curve with the diagonal.
pub fn roc_svg(points: &[RocPoint], auc: Option<f64>) -> String {
    let (size, pad) = (260.0, 30.0);
    let span = size - 2.0 * pad;
    let mut svg = format!("<svg viewBox=\"0 0 {size} {size}\" width=\"300\" role=\"img\"><title>ROC curve</title>");
    let _ = write!(
        svg,
        "<rect x=\"{pad}\" y=\"{pad}\" width=\"{span}\" height=\"{span}\" fill=\"none\" stroke=\"#9aa3af\"/>"
    );
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{pad}\" stroke=\"#c5cad3\" stroke-dasharray=\"4 3\"/>",
        y0 = pad + span,
        x1 = pad + span
    );
    // Thin the curve to at most 500 points for the page's size.
    let step = (points.len() / 500).max(1);
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i == points.len() - 1)
        .map(|(_, p)| {
            format!("{:.2},{:.2}", pad + p.false_positive_rate * span, pad + (1.0 - p.true_positive_rate) * span)
        })
        .collect();
    if !path.is_empty() {
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{REFERENCE}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"{}\" font-size=\"10\" fill=\"#5b6575\">false positive rate</text>",
        size - 8.0
    );
    let _ = write!(svg, "<text x=\"10\" y=\"{}\" font-size=\"10\" fill=\"#5b6575\" transform=\"rotate(-90 10 {})\">true positive rate</text>", size - pad, size - pad);
    if let Some(a) = auc {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\">AUC {:.3}</text>",
            pad + span * 0.55,
            pad + span * 0.9,
            a
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A line chart of one metric over time: `(label, value)` in order.
pub fn line_svg(title: &str, points: &[(String, Option<f64>)]) -> String {
    let (w, h, pad) = (520.0, 180.0, 36.0);
    let values: Vec<f64> = points.iter().filter_map(|p| p.1).collect();
    let mut svg = format!("<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\"><title>{}</title>", escape(title));
    let _ = write!(svg, "<text x=\"{pad}\" y=\"14\" font-size=\"12\">{}</text>", escape(title));
    if values.is_empty() {
        svg.push_str("<text x=\"40\" y=\"90\" font-size=\"12\" fill=\"#6b7280\">no values yet</text></svg>");
        return svg;
    }
    let (mut lo, mut hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    if hi - lo < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    let n = points.len();
    let x = |i: usize| if n == 1 { w / 2.0 } else { pad + i as f64 * (w - 2.0 * pad) / (n - 1) as f64 };
    let y = |v: f64| h - pad - (v - lo) / (hi - lo) * (h - 2.0 * pad);
    let _ = write!(svg, "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#9aa3af\"/>", h - pad, w - pad);
    let _ =
        write!(svg, "<text x=\"2\" y=\"{:.1}\" font-size=\"9\" fill=\"#5b6575\">{}</text>", y(hi) + 3.0, number(hi));
    let _ =
        write!(svg, "<text x=\"2\" y=\"{:.1}\" font-size=\"9\" fill=\"#5b6575\">{}</text>", y(lo) + 3.0, number(lo));
    let coords: Vec<String> =
        points.iter().enumerate().filter_map(|(i, p)| p.1.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect();
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{CURRENT}\" stroke-width=\"2\"/>",
        coords.join(" ")
    );
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p.1 {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{CURRENT}\"><title>{}: {}</title></circle>",
                x(i),
                y(v),
                escape(&p.0),
                number(v)
            );
        }
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            svg,
            "<text x=\"{pad}\" y=\"{}\" font-size=\"9\" fill=\"#5b6575\">{}</text>",
            h - 12.0,
            escape(&first.0)
        );
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"9\" fill=\"#5b6575\" text-anchor=\"end\">{}</text>",
            w - pad,
            h - 12.0,
            escape(&last.0)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_markup_out() {
        assert_eq!(escape("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }

    #[test]
    fn long_category_lists_fold_into_other() {
        let n = 40;
        let h = Histogram {
            labels: (0..n).map(|i| format!("c{i}")).collect(),
            reference: vec![1.0 / n as f64; n],
            current: vec![1.0 / n as f64; n],
            other_categories: None,
        };
        let (labels, r, _) = fold_tail(&h, 30);
        assert_eq!(labels.len(), 30);
        assert_eq!(labels[29], "other (11)");
        assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);

        // A comparison's own "other" (standing for 1,000 categories) is folded in, whatever its share.
        let mut h = h;
        h.labels[n - 1] = "other (1000 categories)".into();
        h.reference[n - 1] = 0.5;
        h.other_categories = Some(1000);
        let (labels, r, _) = fold_tail(&h, 30);
        assert_eq!(labels.len(), 30);
        assert_eq!(labels[29], "other (1010)");
        assert!(!labels[..29].iter().any(|l| l.starts_with("other")));
        assert!((r[29] - (0.5 + 10.0 / n as f64)).abs() < 1e-12);
    }
}
