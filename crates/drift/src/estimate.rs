//! Performance estimated without labels, per chunk: NannyML's confidence-based performance
//! estimation (CBPE) for a binary classifier. A calibrated score is the probability that the
//! row's label is 1, so a chunk's expected confusion matrix is a sum of scores:
//!
//! | | predicted 1 | predicted 0 |
//! |---|---|---|
//! | label 1 | TP = Σ p | FN = Σ p |
//! | label 0 | FP = Σ (1 − p) | TN = Σ (1 − p) |
//!
//! (each sum over the rows predicted 1, or 0), and precision, recall, specificity, F1 and
//! accuracy follow from it as from a counted matrix. ROC AUC is estimated from the expected ROC
//! curve: rows ordered by score, highest first, the expected true positives after `i` rows the
//! running sum of their calibrated scores (rounded to five decimals, as NannyML rounds them) and
//! the false positives the rest of those rows.
//!
//! Scores are calibrated on the reference first: isotonic regression of its labels on its scores
//! ([`crate::stats::calibration`]), when that lowers the calibration error out of sample (or
//! always, or never, as asked). Each estimate has a sampling error, from the reference's
//! variability scaled by the chunk's size (NannyML's formulas), and a confidence band of three
//! sampling errors kept within [0, 1]. Thresholds are mean ± k·σ of the *realised* metric over
//! the reference chunks, within [0, 1]; a chunk alerts when its estimate is outside them. Where a
//! chunk has labels, its realised metric is given beside the estimate.
//!
//! With [`Basis::Realized`] the same machinery gives NannyML's realised performance per chunk:
//! each chunk's metric from its labels, with the same sampling errors, bands and thresholds,
//! alerting on the realised value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chunk::{self, ChunkInfo, Span};
use crate::chunked::{band_within, in_parallel, ChunkThreshold};
use crate::stats::calibration::{calibration_helps, Isotonic};
use crate::stats::performance;
use crate::Error;

/// A metric per chunk: estimated (binary) or realised (every task). A multiclass model's
/// classification metrics are macro averages over its classes, one-vs-rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimateMetric {
    RocAuc,
    F1,
    Precision,
    Recall,
    Specificity,
    Accuracy,
    /// Mean absolute error.
    Mae,
    /// Mean absolute percentage error, as a fraction.
    Mape,
    /// Mean squared error.
    Mse,
    /// Mean squared logarithmic error.
    Msle,
    /// Root mean squared error.
    Rmse,
    /// Root mean squared logarithmic error.
    Rmsle,
}

impl EstimateMetric {
    /// A classifier's metrics (binary or multiclass), in NannyML's order.
    pub const CLASSIFICATION: [EstimateMetric; 6] = [
        EstimateMetric::RocAuc,
        EstimateMetric::F1,
        EstimateMetric::Precision,
        EstimateMetric::Recall,
        EstimateMetric::Specificity,
        EstimateMetric::Accuracy,
    ];

    /// A regression model's errors, in NannyML's order.
    pub const REGRESSION: [EstimateMetric; 6] = [
        EstimateMetric::Mae,
        EstimateMetric::Mape,
        EstimateMetric::Mse,
        EstimateMetric::Msle,
        EstimateMetric::Rmse,
        EstimateMetric::Rmsle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EstimateMetric::RocAuc => "roc_auc",
            EstimateMetric::F1 => "f1",
            EstimateMetric::Precision => "precision",
            EstimateMetric::Recall => "recall",
            EstimateMetric::Specificity => "specificity",
            EstimateMetric::Accuracy => "accuracy",
            EstimateMetric::Mae => "mae",
            EstimateMetric::Mape => "mape",
            EstimateMetric::Mse => "mse",
            EstimateMetric::Msle => "msle",
            EstimateMetric::Rmse => "rmse",
            EstimateMetric::Rmsle => "rmsle",
        }
    }

    /// Whether the metric is an error (lower is better, no upper limit) rather than a
    /// classifier's share within [0, 1].
    pub fn is_error(self) -> bool {
        EstimateMetric::REGRESSION.contains(&self)
    }

    /// The values the metric can take, `(lower, upper)`: thresholds and confidence bands stay
    /// within them.
    pub fn limits(self) -> (f64, f64) {
        if self.is_error() {
            (0.0, f64::INFINITY)
        } else {
            (0.0, 1.0)
        }
    }
}

impl std::fmt::Display for EstimateMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EstimateMetric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let every = || EstimateMetric::CLASSIFICATION.into_iter().chain(EstimateMetric::REGRESSION);
        every().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = every().map(EstimateMetric::name).collect();
            format!("unknown metric `{s}`; use one of {}", names.join(", "))
        })
    }
}

/// The classification metrics' names, for messages.
pub(crate) fn classification_names() -> String {
    EstimateMetric::CLASSIFICATION.map(EstimateMetric::name).join(", ")
}

/// Whether scores are calibrated before estimating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibrate {
    /// When calibrating lowers the reference's calibration error out of sample.
    #[default]
    Auto,
    Always,
    Never,
}

impl std::str::FromStr for Calibrate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Calibrate::Auto),
            "always" | "isotonic" => Ok(Calibrate::Always),
            "never" | "none" => Ok(Calibrate::Never),
            other => Err(format!("`{other}` is not a calibration choice; use auto, always or never")),
        }
    }
}

/// One period's rows, in chunk order: the model's score (probability of class 1), its
/// predicted class, and the label where it is known. Missing values are `None`.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    pub scores: Vec<Option<f64>>,
    pub predicted: Vec<Option<bool>>,
    pub labels: Vec<Option<bool>>,
}

impl Predictions {
    fn rows(&self) -> usize {
        self.scores.len()
    }
}

/// What to estimate.
#[derive(Debug, Clone)]
pub struct EstimateOptions {
    pub metrics: Vec<EstimateMetric>,
    pub calibrate: Calibrate,
    /// Thresholds: mean ± k·σ of the realised metric over the reference chunks, or a constant
    /// lower bound (a chunk alerts when its value is below it).
    pub threshold: ChunkThreshold,
    pub basis: Basis,
}

impl Default for EstimateOptions {
    fn default() -> Self {
        EstimateOptions {
            metrics: EstimateMetric::CLASSIFICATION.to_vec(),
            calibrate: Calibrate::Auto,
            threshold: ChunkThreshold::default(),
            basis: Basis::Estimated,
        }
    }
}

/// What a chunk's value is, and so what alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Estimated from the scores (CBPE); the realised value, where labels are known, beside it.
    #[default]
    Estimated,
    /// Realised, from the chunk's labels (NannyML's performance calculator): the same
    /// thresholds, sampling errors and bands, no calibration, and no separate realised value.
    Realized,
}

/// How the scores were calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Whether the estimates use isotonic-calibrated scores.
    pub calibrated: bool,
    /// Why, in words.
    pub reason: String,
    /// The reference's expected calibration error out of sample (ten stratified folds), before
    /// and after calibrating, when it was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_after: Option<f64>,
    /// The calibration as `[score, calibrated]` knots (linear between them), when used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knots: Vec<[f64; 2]>,
}

impl CalibrationReport {
    /// No calibration, for the reason given.
    pub(crate) fn not_used(reason: &str) -> CalibrationReport {
        CalibrationReport {
            calibrated: false,
            reason: reason.into(),
            error_before: None,
            error_after: None,
            knots: Vec::new(),
        }
    }
}

/// One metric of one chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimatedValue {
    /// The estimate; `null` when the chunk has no row with a score and a predicted class.
    pub value: Option<f64>,
    pub sampling_error: Option<f64>,
    /// The metric from the chunk's labels, when it has labels (and the metric is defined).
    pub realized: Option<f64>,
    pub upper_confidence_boundary: Option<f64>,
    pub lower_confidence_boundary: Option<f64>,
    pub upper_threshold: Option<f64>,
    pub lower_threshold: Option<f64>,
    pub alert: bool,
}

/// A chunk and its estimates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimatedChunk {
    #[serde(flatten)]
    pub chunk: ChunkInfo,
    /// Rows with a score and a predicted class (the others are left out).
    pub rows_used: usize,
    /// Rows of those with a label.
    pub rows_labelled: usize,
    pub metrics: BTreeMap<EstimateMetric, EstimatedValue>,
}

/// Performance estimated per chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Whether the values are estimates (with realised values beside them) or realised.
    pub basis: Basis,
    pub calibration: CalibrationReport,
    pub threshold: ChunkThreshold,
    pub metrics: Vec<EstimateMetric>,
    /// Reference rows without a score, a predicted class or a label, left out of the fit.
    pub reference_rows_excluded: usize,
    /// Reference chunks first, then analysis chunks, each in time order.
    pub chunks: Vec<EstimatedChunk>,
    /// Analysis chunks with at least one alert.
    pub alerting_chunks: usize,
}

/// How many sampling errors wide a confidence band is on each side.
const BAND: f64 = 3.0;

/// Estimates `options.metrics` for every chunk of `reference` (cut by `reference_spans`; it
/// needs labels) and of `analysis` (cut by `analysis_spans`; labels optional).
pub fn estimate(
    reference: &Predictions,
    reference_spans: &[Span],
    analysis: &Predictions,
    analysis_spans: &[Span],
    options: &EstimateOptions,
) -> Result<Estimate, Error> {
    let (ChunkThreshold::StandardDeviations(k) | ChunkThreshold::Constant(k)) = options.threshold;
    if !k.is_finite() || k < 0.0 {
        return Err(Error::Invalid { field: "threshold".into(), message: format!("{k} is not a non-negative number") });
    }
    if options.metrics.is_empty() {
        return Err(Error::Invalid { field: "metrics".into(), message: "name at least one metric".into() });
    }
    if let Some(m) = options.metrics.iter().find(|m| m.is_error()) {
        return Err(Error::Invalid {
            field: "metrics".into(),
            message: format!("{m} is a regression error; a binary classifier's metrics are {}", classification_names()),
        });
    }
    let fit = Rows::complete(reference, 0..reference.rows());
    let excluded = reference.rows() - fit.scores.len();
    let positives = fit.labels.iter().filter(|l| **l).count();
    if positives == 0 || positives == fit.labels.len() {
        return Err(Error::Invalid {
            field: "label".into(),
            message: format!(
                "the reference's {} rows with a score, a predicted class and a label hold {}; estimation learns from \
                 both classes",
                fit.scores.len(),
                if fit.labels.is_empty() { "nothing" } else { "one class only" }
            ),
        });
    }
    let spread = Spread::of(&fit);
    let (calibration, calibrator) = match options.basis {
        Basis::Estimated => calibrate(&fit, options.calibrate),
        Basis::Realized => (CalibrationReport::not_used("realised from the labels: scores are not calibrated"), None),
    };
    let calibrated = |s: f64| calibrator.as_ref().map_or(s, |c| c.calibrate(s));

    let periods: Vec<(&Predictions, &Span)> =
        reference_spans.iter().map(|s| (reference, s)).chain(analysis_spans.iter().map(|s| (analysis, s))).collect();
    let measured: Vec<ChunkMeasures> = in_parallel(&periods, |(rows, span)| {
        let used = Rows::scored(rows, span.start..span.end);
        let labelled = Rows::complete(rows, span.start..span.end);
        let p: Vec<f64> = match options.basis {
            Basis::Estimated => used.scores.iter().map(|s| calibrated(*s)).collect(),
            Basis::Realized => Vec::new(),
        };
        let per_metric = options
            .metrics
            .iter()
            .map(|m| {
                let measured = match options.basis {
                    Basis::Estimated => Measured {
                        value: estimated(*m, &used, &p),
                        sampling_error: spread.error(*m, used.scores.len()),
                        realized: realized(*m, &labelled),
                    },
                    Basis::Realized => Measured {
                        value: realized(*m, &labelled),
                        sampling_error: spread.error(*m, labelled.scores.len()),
                        realized: None,
                    },
                };
                (*m, measured)
            })
            .collect();
        ChunkMeasures { used: used.scores.len(), labelled: labelled.scores.len(), per_metric }
    });

    let infos = chunk::describe(reference_spans, analysis_spans);
    let (chunks, alerting_chunks) = judge(infos, measured, &options.metrics, options.threshold, options.basis);
    Ok(Estimate {
        basis: options.basis,
        calibration,
        threshold: options.threshold,
        metrics: options.metrics.clone(),
        reference_rows_excluded: excluded,
        chunks,
        alerting_chunks,
    })
}

/// Thresholds, confidence bands and alerts for every chunk's measures (`infos` and `measured`
/// alike in chunk order, reference chunks first); also how many analysis chunks alerted.
///
/// Thresholds are the mean ± k·σ of the reference chunks' realised values, kept within the
/// metric's limits, or a constant that a classifier's metric must not fall below and an error
/// must not rise above. Bands are three sampling errors each side, within the limits too.
pub(crate) fn judge(
    infos: Vec<ChunkInfo>,
    measured: Vec<ChunkMeasures>,
    metrics: &[EstimateMetric],
    threshold: ChunkThreshold,
    basis: Basis,
) -> (Vec<EstimatedChunk>, usize) {
    let bands: BTreeMap<EstimateMetric, (Option<f64>, Option<f64>)> = metrics
        .iter()
        .map(|m| {
            let band = match threshold {
                ChunkThreshold::Constant(c) if m.is_error() => (None, Some(c)),
                ChunkThreshold::Constant(c) => (Some(c), None),
                ChunkThreshold::StandardDeviations(k) => {
                    let realized: Vec<Option<f64>> = infos
                        .iter()
                        .zip(&measured)
                        .filter(|(info, _)| info.is_reference())
                        .map(|(_, measures)| {
                            let measured = measures.per_metric[m];
                            match basis {
                                Basis::Estimated => measured.realized,
                                Basis::Realized => measured.value,
                            }
                        })
                        .collect();
                    band_within(&realized, k, m.limits())
                }
            };
            (*m, band)
        })
        .collect();
    let chunks: Vec<EstimatedChunk> = infos
        .into_iter()
        .zip(measured)
        .map(|(chunk, measures)| {
            let metrics = measures
                .per_metric
                .into_iter()
                .map(|(m, Measured { value, sampling_error, realized })| {
                    let (lower, upper) = bands[&m];
                    let (floor, ceiling) = m.limits();
                    let bound = |sign: f64| match (value, sampling_error) {
                        (Some(v), Some(se)) => Some((v + sign * BAND * se).clamp(floor, ceiling)),
                        _ => None,
                    };
                    let outside = value.is_some_and(|v| lower.is_some_and(|l| v < l) || upper.is_some_and(|u| v > u));
                    let shown = EstimatedValue {
                        value,
                        sampling_error,
                        realized,
                        upper_confidence_boundary: bound(1.0),
                        lower_confidence_boundary: bound(-1.0),
                        upper_threshold: upper,
                        lower_threshold: lower,
                        alert: outside,
                    };
                    (m, shown)
                })
                .collect();
            EstimatedChunk { chunk, rows_used: measures.used, rows_labelled: measures.labelled, metrics }
        })
        .collect();
    let alerting = chunks.iter().filter(|c| !c.chunk.is_reference() && c.metrics.values().any(|v| v.alert)).count();
    (chunks, alerting)
}

/// A chunk's figures per metric.
pub(crate) struct ChunkMeasures {
    /// Rows the values come from, and of those the rows with a label.
    pub(crate) used: usize,
    pub(crate) labelled: usize,
    pub(crate) per_metric: BTreeMap<EstimateMetric, Measured>,
}

/// One metric of one chunk before thresholds.
#[derive(Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) value: Option<f64>,
    pub(crate) sampling_error: Option<f64>,
    /// The realised value beside an estimate.
    pub(crate) realized: Option<f64>,
}

/// Rows with what a computation needs, others left out.
struct Rows {
    scores: Vec<f64>,
    predicted: Vec<bool>,
    /// Empty unless labels were asked for.
    labels: Vec<bool>,
}

impl Rows {
    /// The rows of `range` with a finite score and a predicted class.
    fn scored(p: &Predictions, range: std::ops::Range<usize>) -> Rows {
        let (mut scores, mut predicted) = (Vec::with_capacity(range.len()), Vec::with_capacity(range.len()));
        for i in range {
            if let (Some(s), Some(y)) = (p.scores[i].filter(|s| s.is_finite()), p.predicted[i]) {
                scores.push(s);
                predicted.push(y);
            }
        }
        Rows { scores, predicted, labels: Vec::new() }
    }

    /// The rows of `range` with a finite score, a predicted class and a label.
    fn complete(p: &Predictions, range: std::ops::Range<usize>) -> Rows {
        let mut rows = Rows { scores: Vec::new(), predicted: Vec::new(), labels: Vec::new() };
        for i in range {
            if let (Some(s), Some(y), Some(l)) = (p.scores[i].filter(|s| s.is_finite()), p.predicted[i], p.labels[i]) {
                rows.scores.push(s);
                rows.predicted.push(y);
                rows.labels.push(l);
            }
        }
        rows
    }

    /// The counted confusion matrix `(tp, fp, fn, tn)`.
    fn confusion(&self) -> (f64, f64, f64, f64) {
        let mut c = [0u64; 4];
        for (y, l) in self.predicted.iter().zip(&self.labels) {
            c[match (y, l) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            }] += 1;
        }
        (c[0] as f64, c[1] as f64, c[2] as f64, c[3] as f64)
    }
}

/// The calibration to use and how it was chosen.
fn calibrate(fit: &Rows, how: Calibrate) -> (CalibrationReport, Option<Isotonic>) {
    let (use_it, reason, before, after) = match how {
        Calibrate::Never => (false, "calibration was turned off".to_string(), None, None),
        Calibrate::Always => (true, "calibration was asked for".to_string(), None, None),
        Calibrate::Auto => {
            let check = calibration_helps(&fit.scores, &fit.labels, performance::roc_auc(&fit.scores, &fit.labels));
            (check.helps, check.reason, check.before, check.after)
        }
    };
    let calibrator = if use_it { Isotonic::fit(&fit.scores, &fit.labels) } else { None };
    let knots = calibrator.iter().flat_map(|c| c.knots().map(|(s, p)| [s, p])).collect();
    let report =
        CalibrationReport { calibrated: calibrator.is_some(), reason, error_before: before, error_after: after, knots };
    (report, calibrator)
}

/// A metric estimated from calibrated scores `p` of `rows`.
fn estimated(metric: EstimateMetric, rows: &Rows, p: &[f64]) -> Option<f64> {
    let n = p.len();
    if n == 0 {
        return None;
    }
    if metric == EstimateMetric::RocAuc {
        return estimated_roc_auc(&rows.scores, p);
    }
    if metric.is_error() {
        return None;
    }
    let (mut tp, mut fp, mut fn_, mut tn) = (0.0, 0.0, 0.0, 0.0);
    for (p, y) in p.iter().zip(&rows.predicted) {
        if *y {
            tp += p;
            fp += 1.0 - p;
        } else {
            fn_ += p;
            tn += 1.0 - p;
        }
    }
    let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    Some(match metric {
        EstimateMetric::F1 => ratio(tp, tp + 0.5 * (fp + fn_)),
        EstimateMetric::Precision => ratio(tp, tp + fp),
        EstimateMetric::Recall => ratio(tp, tp + fn_),
        EstimateMetric::Specificity => ratio(tn, tn + fp),
        EstimateMetric::Accuracy => (tp + tn) / n as f64,
        _ => unreachable!("ROC AUC and errors are answered above"),
    })
}

/// The area under the expected ROC curve: every row a point, rows ordered by the uncalibrated
/// score from the highest (rows with equal scores have equal calibrated ones, so their order
/// does not matter), expected counts rounded to five decimals.
fn estimated_roc_auc(scores: &[f64], p: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let round = |x: f64| (x * 1e5).round_ties_even() / 1e5;
    let (mut tps, mut fps) = (Vec::with_capacity(p.len() + 1), Vec::with_capacity(p.len() + 1));
    tps.push(0.0);
    fps.push(0.0);
    let mut running = 0.0;
    for (i, &row) in order.iter().enumerate() {
        running += p[row];
        tps.push(round(running));
        fps.push(round((1 + i) as f64 - running));
    }
    let (tp_all, fp_all) = (tps[tps.len() - 1], fps[fps.len() - 1]);
    if tp_all == 0.0 || fp_all == 0.0 {
        return None;
    }
    let area = (1..tps.len())
        .map(|k| (fps[k] / fp_all - fps[k - 1] / fp_all) * (tps[k] / tp_all + tps[k - 1] / tp_all) / 2.0)
        .sum();
    Some(area)
}

/// The metrics from the labels of `rows` (those with a score, a predicted class and a label),
/// and how many rows that is.
pub fn realized_metrics(
    rows: &Predictions,
    metrics: &[EstimateMetric],
) -> (BTreeMap<EstimateMetric, Option<f64>>, usize) {
    let labelled = Rows::complete(rows, 0..rows.rows());
    (metrics.iter().map(|m| (*m, realized(*m, &labelled))).collect(), labelled.scores.len())
}

/// A metric from the labels; `None` where NannyML's is undefined: ROC AUC with one class of
/// labels; F1, precision and recall with one class of labels or of predictions; specificity
/// without negative labels; anything without rows.
fn realized(metric: EstimateMetric, rows: &Rows) -> Option<f64> {
    let n = rows.labels.len();
    if n == 0 {
        return None;
    }
    let one_class = |v: &[bool]| v.iter().all(|x| *x == v[0]);
    let (tp, fp, fn_, tn) = rows.confusion();
    let defined = |ok: bool, value: f64| ok.then_some(value);
    match metric {
        EstimateMetric::RocAuc => performance::roc_auc(&rows.scores, &rows.labels),
        EstimateMetric::F1 | EstimateMetric::Precision | EstimateMetric::Recall
            if one_class(&rows.labels) || one_class(&rows.predicted) =>
        {
            None
        }
        EstimateMetric::F1 => Some(2.0 * tp / (2.0 * tp + fn_ + fp)),
        EstimateMetric::Precision => defined(tp + fp > 0.0, tp / (tp + fp)),
        EstimateMetric::Recall => defined(tp + fn_ > 0.0, tp / (tp + fn_)),
        EstimateMetric::Specificity => defined(tn + fp > 0.0, tn / (tn + fp)),
        EstimateMetric::Accuracy => Some((tp + tn) / n as f64),
        _ => None,
    }
}

/// The reference's variability per metric, from which a chunk's sampling error follows:
/// `σ / √(n · share)`, with `σ` the population standard deviation of the metric's per-row
/// contributions on the reference and `share` the fraction of rows that contribute (NannyML's
/// sampling-error formulas).
struct Spread {
    by_metric: BTreeMap<EstimateMetric, (f64, f64)>,
}

impl Spread {
    fn of(fit: &Rows) -> Spread {
        let (tp, fp, fn_, tn) = fit.confusion();
        let rows = fit.labels.len() as f64;
        // The population σ of `ones` values `scale` and `total − ones` zeros.
        let sd = |ones: f64, total: f64, scale: f64| {
            if total == 0.0 {
                return f64::NAN;
            }
            let mean = ones * scale / total;
            ((ones * (scale - mean).powi(2) + (total - ones) * mean * mean) / total).sqrt()
        };
        let f1_rows = tp + fn_ + fp;
        let f1_scale = f1_rows / ((fn_ + fp) * 0.5 + tp);
        let by_metric = BTreeMap::from([
            (EstimateMetric::RocAuc, roc_auc_spread(&fit.scores, &fit.labels)),
            (EstimateMetric::F1, (sd(tp, f1_rows, f1_scale), f1_rows / rows)),
            (EstimateMetric::Precision, (sd(tp, tp + fp, 1.0), (tp + fp) / rows)),
            (EstimateMetric::Recall, (sd(tp, tp + fn_, 1.0), (tp + fn_) / rows)),
            (EstimateMetric::Specificity, (sd(tn, tn + fp, 1.0), (tn + fp) / rows)),
            (EstimateMetric::Accuracy, (sd(tp + tn, rows, 1.0), 1.0)),
        ]);
        Spread { by_metric }
    }

    /// The sampling error of `metric` in a chunk of `n` rows.
    fn error(&self, metric: EstimateMetric, n: usize) -> Option<f64> {
        let (sd, share) = *self.by_metric.get(&metric)?;
        let se = sd / (n as f64 * share).sqrt();
        (n > 0 && se.is_finite()).then_some(se)
    }
}

/// ROC AUC's per-positive contributions (NannyML's `auroc_sampling_error_components`): with the
/// minority class as positive (labels and scores flipped when most labels are 1), rows ordered
/// by score (ties in row order), each positive's share of the negatives ranked below it; their
/// population σ, and the positives' share of the rows.
pub(crate) fn roc_auc_spread(scores: &[f64], labels: &[bool]) -> (f64, f64) {
    let n = labels.len();
    let flip = labels.iter().filter(|l| **l).count() * 2 > n;
    let (s, y): (Vec<f64>, Vec<bool>) =
        scores.iter().zip(labels).map(|(s, l)| if flip { (1.0 - s, !l) } else { (*s, *l) }).unzip();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| s[a].total_cmp(&s[b]));
    // Positions of the positives; a positive at position 0 has no negative below it and, as in
    // NannyML (which drops the rank 0 with the negatives' zeros), no contribution.
    let ranks: Vec<usize> =
        order.iter().enumerate().filter(|(_, &row)| y[row]).map(|(at, _)| at).filter(|at| *at > 0).collect();
    let positives = y.iter().filter(|l| **l).count();
    let negatives = (n - positives) as f64;
    let below: Vec<f64> = ranks.iter().enumerate().map(|(i, r)| (*r - i) as f64 / negatives).collect();
    if below.is_empty() {
        return (f64::NAN, positives as f64 / n as f64);
    }
    let mean = below.iter().sum::<f64>() / below.len() as f64;
    let sd = (below.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / below.len() as f64).sqrt();
    (sd, positives as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(scores: &[f64], predicted: &[bool], labels: &[bool]) -> Rows {
        Rows { scores: scores.to_vec(), predicted: predicted.to_vec(), labels: labels.to_vec() }
    }

    #[test]
    fn the_expected_confusion_matrix_is_a_sum_of_probabilities() {
        // Predicted 1 at 0.8 and 0.6, predicted 0 at 0.3: TP 1.4, FP 0.6, FN 0.3, TN 0.7.
        let r = rows(&[0.8, 0.6, 0.3], &[true, true, false], &[]);
        let p = [0.8, 0.6, 0.3];
        let close = |m, want: f64| (estimated(m, &r, &p).unwrap() - want).abs() < 1e-12;
        assert!(close(EstimateMetric::Precision, 1.4 / 2.0));
        assert!(close(EstimateMetric::Recall, 1.4 / 1.7));
        assert!(close(EstimateMetric::Specificity, 0.7 / 1.3));
        assert!(close(EstimateMetric::F1, 1.4 / (1.4 + 0.45)));
        assert!(close(EstimateMetric::Accuracy, 2.1 / 3.0));
        assert_eq!(estimated(EstimateMetric::Accuracy, &rows(&[], &[], &[]), &[]), None);
    }

    #[test]
    fn the_expected_roc_curve_has_a_point_per_row() {
        // Scores 0.9, 0.5, 0.1 (calibrated as they are): expected TP 0.9, 1.4, 1.5 and FP 0.1,
        // 0.6, 1.5; the trapezoids over (0,0) and the three points.
        let tps = [0.0, 0.9, 1.4, 1.5];
        let fps = [0.0, 0.1, 0.6, 1.5];
        let want: f64 = (1..4).map(|k| (fps[k] - fps[k - 1]) / 1.5 * (tps[k] + tps[k - 1]) / 1.5 / 2.0).sum();
        let got = estimated_roc_auc(&[0.5, 0.1, 0.9], &[0.5, 0.1, 0.9]).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} {want}");
        assert_eq!(estimated_roc_auc(&[0.5, 0.7], &[1.0, 1.0]), None, "no expected negatives");
    }

    #[test]
    fn realised_metrics_are_undefined_where_nannyml_leaves_them_out() {
        let one_prediction = rows(&[0.9, 0.8], &[true, true], &[true, false]);
        assert_eq!(realized(EstimateMetric::F1, &one_prediction), None);
        assert_eq!(realized(EstimateMetric::Precision, &one_prediction), None);
        assert_eq!(realized(EstimateMetric::Accuracy, &one_prediction), Some(0.5));
        assert_eq!(realized(EstimateMetric::RocAuc, &one_prediction), Some(1.0));
        let one_label = rows(&[0.9, 0.2], &[true, false], &[true, true]);
        assert_eq!(realized(EstimateMetric::RocAuc, &one_label), None);
        assert_eq!(realized(EstimateMetric::Specificity, &one_label), None);
    }

    #[test]
    fn roc_auc_spread_counts_negatives_below_each_positive() {
        // Most labels are 1, so the classes flip: scores 0.9, 0.8, …, 0.5 with labels 1 at rows
        // 0 and 2. Ordered by score, the positives are at positions 2 and 4: 2 and 3 of the 3
        // negatives are below them.
        let scores = [0.1, 0.2, 0.3, 0.4, 0.5];
        let labels = [false, true, false, true, true];
        let (sd, share) = roc_auc_spread(&scores, &labels);
        let below: [f64; 2] = [2.0 / 3.0, 3.0 / 3.0];
        let mean = (below[0] + below[1]) / 2.0;
        let want = (((below[0] - mean) * (below[0] - mean) + (below[1] - mean) * (below[1] - mean)) / 2.0).sqrt();
        assert!((sd - want).abs() < 1e-15, "{sd} {want}");
        assert_eq!(share, 2.0 / 5.0);
    }
}
