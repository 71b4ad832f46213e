//! Realised performance per chunk of a multiclass classifier or a regression model, as NannyML's
//! performance calculator gives it: each chunk's metric from its labels, a sampling error from
//! the reference's variability scaled by the chunk's size, a band of three sampling errors, and
//! thresholds at the mean ± k·σ of the reference chunks' values (the binary classifier's
//! counterpart is [`crate::estimate`] with [`Basis::Realized`]; both share its judging).
//!
//! A multiclass model's metrics are macro averages over its classes, each class one-vs-rest:
//! ROC AUC of the class's score (undefined unless every class is some row's label), and
//! precision, recall, specificity and F1 of its predictions (a ratio with a zero denominator
//! counts 0, as scikit-learn's `zero_division` default does; undefined when the labels or the
//! predictions hold one class only); accuracy is the share of rows predicted right. A
//! regression model's errors are MAE, MAPE (scikit-learn's: the absolute error over
//! `max(|y|, ε)`, a fraction), MSE, MSLE, RMSE and RMSLE (both undefined when a value is
//! negative).
//!
//! Sampling errors follow NannyML's formulas: for an average over `K` classes,
//! `√(Σₖ vₖ / (n · fₖ)) / K`, with `vₖ` the variance of the class's per-row contributions on the
//! reference (ones and zeros: for precision a 1 per true positive and a 0 per false one, and so
//! on) and `fₖ` the share of reference rows that contribute (ROC AUC's times 1.2, NannyML's
//! empirical factor); for accuracy and the errors of a mean, `σ / √n` with `σ` the reference's
//! standard deviation of the per-row terms; for RMSE and RMSLE, `√(σ² / (4n · m))` with `m` the
//! mean of the squared terms. MAPE's `σ` is of `|e| / y`, MSLE's of `(log(1 + y) − log(1 + ŷ))²`,
//! as NannyML takes them.

use std::collections::BTreeMap;

use crate::chunk::{self, Span};
use crate::chunked::{in_parallel, ChunkThreshold};
use crate::estimate::{
    classification_names, judge, roc_auc_spread, Basis, CalibrationReport, ChunkMeasures, Estimate, EstimateMetric,
    Measured,
};
use crate::stats::performance;
use crate::Error;

/// A multiclass classifier's rows in chunk order. Missing values are `None`.
#[derive(Debug, Clone, Default)]
pub struct ClassRows {
    /// The classes, in the order the indices below count them.
    pub classes: Vec<String>,
    /// Each class's score (its probability) per row, in the order of `classes`; empty when the
    /// scores are not known, and then there is no ROC AUC.
    pub scores: Vec<Vec<Option<f64>>>,
    /// The predicted class's index per row.
    pub predicted: Vec<Option<u32>>,
    /// The true class's index per row.
    pub labels: Vec<Option<u32>>,
}

/// A regression model's rows in chunk order. Missing values are `None`.
#[derive(Debug, Clone, Default)]
pub struct ValueRows {
    pub predicted: Vec<Option<f64>>,
    pub targets: Vec<Option<f64>>,
}

/// One period's rows of a model that is not a binary classifier.
#[derive(Debug, Clone)]
pub enum Outcomes {
    Multiclass(ClassRows),
    Regression(ValueRows),
}

/// Realised `metrics` for every chunk of `reference` (cut by `reference_spans`) and of
/// `analysis` (cut by `analysis_spans`), both of one task, with thresholds from the reference
/// chunks.
pub fn realized(
    reference: &Outcomes,
    reference_spans: &[Span],
    analysis: &Outcomes,
    analysis_spans: &[Span],
    metrics: &[EstimateMetric],
    threshold: ChunkThreshold,
) -> Result<Estimate, Error> {
    let (ChunkThreshold::StandardDeviations(k) | ChunkThreshold::Constant(k)) = threshold;
    if !k.is_finite() || k < 0.0 {
        return Err(Error::Invalid { field: "threshold".into(), message: format!("{k} is not a non-negative number") });
    }
    if metrics.is_empty() {
        return Err(Error::Invalid { field: "metrics".into(), message: "name at least one metric".into() });
    }
    let periods: Vec<(&Outcomes, &Span)> =
        reference_spans.iter().map(|s| (reference, s)).chain(analysis_spans.iter().map(|s| (analysis, s))).collect();
    let (measured, excluded) = match (reference, analysis) {
        (Outcomes::Multiclass(r), Outcomes::Multiclass(a)) => {
            check_multiclass(r, a, metrics)?;
            let fit = Counted::of(r, 0..r.labels.len());
            if fit.rows == 0 {
                return Err(Error::Invalid {
                    field: "label".into(),
                    message: format!(
                        "the reference's {} rows hold none with a predicted class, a label{}; thresholds and \
                         sampling errors come from those rows",
                        r.labels.len(),
                        if r.scores.is_empty() { "" } else { " and every class's score" }
                    ),
                });
            }
            let spread = ClassSpread::of(&fit);
            let measured = in_parallel(&periods, |(rows, span)| {
                let Outcomes::Multiclass(rows) = rows else { unreachable!("both periods are multiclass") };
                let counted = Counted::of(rows, span.start..span.end);
                measures(counted.rows, metrics, |m| counted.metric(m), |m| spread.error(m, counted.rows))
            });
            (measured, r.labels.len() - fit.rows)
        }
        (Outcomes::Regression(r), Outcomes::Regression(_)) => {
            if let Some(m) = metrics.iter().find(|m| !m.is_error()) {
                return Err(Error::Invalid {
                    field: "metrics".into(),
                    message: format!(
                        "{m} is a classifier's metric; a regression model's are {}",
                        EstimateMetric::REGRESSION.map(EstimateMetric::name).join(", ")
                    ),
                });
            }
            let fit = Errors::of(r, 0..r.targets.len());
            if fit.rows == 0 {
                return Err(Error::Invalid {
                    field: "label".into(),
                    message: "the reference has no row with both a prediction and a target; thresholds and \
                              sampling errors come from those rows"
                        .into(),
                });
            }
            let spread = fit.spread();
            let measured = in_parallel(&periods, |(rows, span)| {
                let Outcomes::Regression(rows) = rows else { unreachable!("both periods are regression") };
                let errors = Errors::of(rows, span.start..span.end);
                measures(errors.rows, metrics, |m| errors.metric(m), |m| spread.error(m, errors.rows))
            });
            (measured, r.targets.len() - fit.rows)
        }
        _ => {
            return Err(Error::Invalid {
                field: "task".into(),
                message: "the reference and the analysis rows are of different tasks".into(),
            })
        }
    };
    let infos = chunk::describe(reference_spans, analysis_spans);
    let (chunks, alerting_chunks) = judge(infos, measured, metrics, threshold, Basis::Realized);
    Ok(Estimate {
        basis: Basis::Realized,
        calibration: CalibrationReport::not_used("realised from the labels"),
        threshold,
        metrics: metrics.to_vec(),
        reference_rows_excluded: excluded,
        chunks,
        alerting_chunks,
    })
}

/// One chunk's realised `metrics` from its `rows` labelled rows: each one's value and
/// sampling error.
fn measures(
    rows: usize,
    metrics: &[EstimateMetric],
    value: impl Fn(EstimateMetric) -> Option<f64>,
    sampling_error: impl Fn(EstimateMetric) -> Option<f64>,
) -> ChunkMeasures {
    let per_metric = metrics
        .iter()
        .map(|m| (*m, Measured { value: value(*m), sampling_error: sampling_error(*m), realized: None }))
        .collect();
    ChunkMeasures { used: rows, labelled: rows, per_metric }
}

/// Refuses what a multiclass computation cannot answer: errors as metrics, ROC AUC without the
/// classes' scores, and a reference without rows to learn from.
fn check_multiclass(reference: &ClassRows, analysis: &ClassRows, metrics: &[EstimateMetric]) -> Result<(), Error> {
    if let Some(m) = metrics.iter().find(|m| m.is_error()) {
        return Err(Error::Invalid {
            field: "metrics".into(),
            message: format!(
                "{m} is a regression error; a multiclass classifier's metrics are {}",
                classification_names()
            ),
        });
    }
    if metrics.contains(&EstimateMetric::RocAuc) && (reference.scores.is_empty() || analysis.scores.is_empty()) {
        return Err(Error::Invalid {
            field: "class_scores".into(),
            message: "ROC AUC needs each class's column of scores; name them, or leave roc_auc out of the metrics"
                .into(),
        });
    }
    if reference.classes.len() < 2 {
        return Err(Error::Invalid {
            field: "label".into(),
            message: format!(
                "a multiclass model needs at least two classes; the reference has {}",
                reference.classes.len()
            ),
        });
    }
    Ok(())
}

/// A multiclass chunk's usable rows (a predicted class, a label and, when scores are known, a
/// finite score for every class), counted per class one-vs-rest.
struct Counted {
    rows: usize,
    /// Per class: true positives, false positives, false negatives.
    counts: Vec<[u64; 3]>,
    /// Per class, its scores and whether the row is labelled with it (empty without scores).
    scores: Vec<(Vec<f64>, Vec<bool>)>,
}

impl Counted {
    fn of(p: &ClassRows, range: std::ops::Range<usize>) -> Counted {
        let k = p.classes.len();
        let mut counted = Counted {
            rows: 0,
            counts: vec![[0; 3]; k],
            scores: if p.scores.is_empty() { Vec::new() } else { vec![(Vec::new(), Vec::new()); k] },
        };
        for i in range {
            let (Some(y), Some(l)) = (p.predicted[i], p.labels[i]) else { continue };
            if !p.scores.iter().all(|s| s[i].is_some_and(f64::is_finite)) {
                continue;
            }
            counted.rows += 1;
            if y == l {
                counted.counts[y as usize][0] += 1;
            } else {
                counted.counts[y as usize][1] += 1;
                counted.counts[l as usize][2] += 1;
            }
            for (class, (scores, is_class)) in counted.scores.iter_mut().enumerate() {
                scores.push(p.scores[class][i].expect("checked above"));
                is_class.push(l as usize == class);
            }
        }
        counted
    }

    /// `(tp, fp, fn, tn)` of one class.
    fn confusion(&self, class: usize) -> (f64, f64, f64, f64) {
        let [tp, fp, fn_] = self.counts[class];
        let tn = self.rows as u64 - tp - fp - fn_;
        (tp as f64, fp as f64, fn_ as f64, tn as f64)
    }

    /// A metric's macro average, or accuracy; `None` without rows, and ROC AUC where a class
    /// is the label of no row or of every row.
    fn metric(&self, metric: EstimateMetric) -> Option<f64> {
        if self.rows == 0 {
            return None;
        }
        let k = self.counts.len();
        let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        // Undefined, as NannyML has them, when the labels or the predictions hold one class.
        let labelled = self.counts.iter().filter(|[tp, _, fn_]| tp + fn_ > 0).count();
        let predicted = self.counts.iter().filter(|[tp, fp, _]| tp + fp > 0).count();
        let varied = labelled > 1 && predicted > 1;
        let mean = |per_class: &dyn Fn(usize) -> f64| varied.then(|| (0..k).map(per_class).sum::<f64>() / k as f64);
        match metric {
            EstimateMetric::RocAuc => {
                let each: Option<Vec<f64>> =
                    self.scores.iter().map(|(scores, is_class)| performance::roc_auc(scores, is_class)).collect();
                each.map(|v| v.iter().sum::<f64>() / k as f64)
            }
            EstimateMetric::Precision => mean(&|c| {
                let (tp, fp, _, _) = self.confusion(c);
                ratio(tp, tp + fp)
            }),
            EstimateMetric::Recall => mean(&|c| {
                let (tp, _, fn_, _) = self.confusion(c);
                ratio(tp, tp + fn_)
            }),
            EstimateMetric::Specificity => mean(&|c| {
                let (_, fp, _, tn) = self.confusion(c);
                ratio(tn, tn + fp)
            }),
            EstimateMetric::F1 => mean(&|c| {
                let (tp, fp, fn_, _) = self.confusion(c);
                ratio(2.0 * tp, 2.0 * tp + fp + fn_)
            }),
            EstimateMetric::Accuracy => Some(self.counts.iter().map(|c| c[0]).sum::<u64>() as f64 / self.rows as f64),
            _ => None,
        }
    }
}

/// The reference's variability per class and metric: each class's `(variance, share)` of the
/// per-row contributions, and accuracy's standard deviation over the rows.
struct ClassSpread {
    per_class: BTreeMap<EstimateMetric, Vec<(f64, f64)>>,
    accuracy: f64,
}

impl ClassSpread {
    fn of(fit: &Counted) -> ClassSpread {
        let rows = fit.rows as f64;
        // The variance of `ones` ones and `zeros` zeros, and their share of the rows.
        let ones = |ones: f64, zeros: f64| {
            let total = ones + zeros;
            let p = ones / total;
            (p * (1.0 - p), total / rows)
        };
        let mut per_class: BTreeMap<EstimateMetric, Vec<(f64, f64)>> = BTreeMap::new();
        for class in 0..fit.counts.len() {
            let (tp, fp, fn_, tn) = fit.confusion(class);
            for (metric, component) in [
                (EstimateMetric::F1, ones(tp, fn_ + fp)),
                (EstimateMetric::Precision, ones(tp, fp)),
                (EstimateMetric::Recall, ones(tp, fn_)),
                (EstimateMetric::Specificity, ones(tn, fp)),
            ] {
                per_class.entry(metric).or_default().push(component);
            }
            if let Some((scores, is_class)) = fit.scores.get(class) {
                let (sd, share) = roc_auc_spread(scores, is_class);
                per_class.entry(EstimateMetric::RocAuc).or_default().push((sd * sd, share));
            }
        }
        let correct = fit.counts.iter().map(|c| c[0]).sum::<u64>() as f64;
        let p = correct / rows;
        ClassSpread { per_class, accuracy: (p * (1.0 - p)).sqrt() }
    }

    /// The sampling error of `metric` in a chunk of `n` rows.
    fn error(&self, metric: EstimateMetric, n: usize) -> Option<f64> {
        if n == 0 {
            return None;
        }
        let n = n as f64;
        let se = if metric == EstimateMetric::Accuracy {
            self.accuracy / n.sqrt()
        } else {
            let components = self.per_class.get(&metric)?;
            let k = components.len() as f64;
            let spread = components.iter().map(|(variance, share)| variance / (n * share)).sum::<f64>().sqrt() / k;
            if metric == EstimateMetric::RocAuc {
                spread * 1.2
            } else {
                spread
            }
        };
        se.is_finite().then_some(se)
    }
}

/// A regression chunk's rows with both a prediction and a target, as `(y, ŷ)`.
struct Errors {
    rows: usize,
    pairs: Vec<(f64, f64)>,
}

impl Errors {
    fn of(p: &ValueRows, range: std::ops::Range<usize>) -> Errors {
        let pairs: Vec<(f64, f64)> = range
            .filter_map(|i| match (p.targets[i], p.predicted[i]) {
                (Some(y), Some(y_hat)) if y.is_finite() && y_hat.is_finite() => Some((y, y_hat)),
                _ => None,
            })
            .collect();
        Errors { rows: pairs.len(), pairs }
    }

    /// The mean of `term` over the rows.
    fn mean(&self, term: impl Fn(f64, f64) -> f64) -> f64 {
        self.pairs.iter().map(|&(y, y_hat)| term(y, y_hat)).sum::<f64>() / self.rows as f64
    }

    /// Whether logarithmic errors are defined: no negative value (NannyML refuses them).
    fn logs_defined(&self) -> bool {
        self.pairs.iter().all(|&(y, y_hat)| y >= 0.0 && y_hat >= 0.0)
    }

    fn metric(&self, metric: EstimateMetric) -> Option<f64> {
        if self.rows == 0 {
            return None;
        }
        let squared_logs = || self.logs_defined().then(|| self.mean(|y, y_hat| (y.ln_1p() - y_hat.ln_1p()).powi(2)));
        match metric {
            EstimateMetric::Mae => Some(self.mean(|y, y_hat| (y_hat - y).abs())),
            EstimateMetric::Mape => Some(self.mean(|y, y_hat| (y_hat - y).abs() / y.abs().max(f64::EPSILON))),
            EstimateMetric::Mse => Some(self.mean(|y, y_hat| (y - y_hat) * (y - y_hat))),
            EstimateMetric::Rmse => Some(self.mean(|y, y_hat| (y - y_hat) * (y - y_hat)).sqrt()),
            EstimateMetric::Msle => squared_logs(),
            EstimateMetric::Rmsle => squared_logs().map(f64::sqrt),
            _ => None,
        }
    }

    /// `(σ, mean)` of each metric's per-row terms, as NannyML takes them.
    fn spread(&self) -> ErrorSpread {
        let of = |term: &dyn Fn(f64, f64) -> f64| {
            let mean = self.mean(term);
            let variance = self.mean(|y, y_hat| (term(y, y_hat) - mean) * (term(y, y_hat) - mean));
            (variance.sqrt(), mean)
        };
        let squared_log = |y: f64, y_hat: f64| ((1.0 + y).ln() - (1.0 + y_hat).ln()).powi(2);
        ErrorSpread {
            absolute: of(&|y, y_hat| (y - y_hat).abs()),
            relative: of(&|y, y_hat| (y - y_hat).abs() / y),
            squared: of(&|y, y_hat| (y - y_hat) * (y - y_hat)),
            squared_logs: of(&squared_log),
        }
    }
}

/// The reference's per-row error terms: `(σ, mean)` of each.
struct ErrorSpread {
    absolute: (f64, f64),
    /// `|e| / y`.
    relative: (f64, f64),
    squared: (f64, f64),
    squared_logs: (f64, f64),
}

impl ErrorSpread {
    /// The sampling error of a mean of terms is `σ / √n`; of its square root
    /// `√(σ² / (4n · mean))`.
    fn error(&self, metric: EstimateMetric, n: usize) -> Option<f64> {
        if n == 0 {
            return None;
        }
        let n = n as f64;
        let root = |(sd, mean): (f64, f64)| (sd * sd / ((4.0 * n) * mean)).sqrt();
        let se = match metric {
            EstimateMetric::Mae => self.absolute.0 / n.sqrt(),
            EstimateMetric::Mape => self.relative.0 / n.sqrt(),
            EstimateMetric::Mse => self.squared.0 / n.sqrt(),
            EstimateMetric::Msle => self.squared_logs.0 / n.sqrt(),
            EstimateMetric::Rmse => root(self.squared),
            EstimateMetric::Rmsle => root(self.squared_logs),
            _ => return None,
        };
        se.is_finite().then_some(se)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 3] = ["a", "b", "c"];

    fn class_rows(rows: &[(u32, u32, [f64; 3])]) -> ClassRows {
        ClassRows {
            classes: NAMES.map(String::from).to_vec(),
            scores: (0..3).map(|c| rows.iter().map(|r| Some(r.2[c])).collect()).collect(),
            predicted: rows.iter().map(|r| Some(r.0)).collect(),
            labels: rows.iter().map(|r| Some(r.1)).collect(),
        }
    }

    proptest! {
        /// With every class among the labels and the predictions, the macro averages are
        /// those of the classification report, and ROC AUC the one-vs-rest average.
        #[test]
        fn multiclass_values_are_the_reports_macro_averages(
            rows in prop::collection::vec((0u32..3, 0u32..3, [0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0]), 6..80)
        ) {
            let mut rows = rows;
            for (c, row) in rows.iter_mut().take(3).enumerate() {
                *row = (c as u32, c as u32, row.2);
            }
            let p = class_rows(&rows);
            let counted = Counted::of(&p, 0..rows.len());
            let predicted: Vec<&str> = rows.iter().map(|r| NAMES[r.0 as usize]).collect();
            let labels: Vec<&str> = rows.iter().map(|r| NAMES[r.1 as usize]).collect();
            let report = performance::multiclass(&predicted, &labels);
            let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-12,
                _ => false,
            };
            prop_assert!(close(counted.metric(EstimateMetric::Accuracy), report.accuracy.value));
            prop_assert!(close(counted.metric(EstimateMetric::F1), report.macro_f1.value));
            prop_assert!(close(counted.metric(EstimateMetric::Precision), report.macro_precision.value));
            prop_assert!(close(counted.metric(EstimateMetric::Recall), report.macro_recall.value));
            let scores: BTreeMap<String, Vec<f64>> =
                (0..3).map(|c| (NAMES[c].to_string(), rows.iter().map(|r| r.2[c]).collect())).collect();
            let ovr = performance::one_vs_rest(&scores, &labels);
            prop_assert!(close(counted.metric(EstimateMetric::RocAuc), ovr.macro_roc_auc.value));
            // Specificity of a class is the recall of the rest.
            let specificity: f64 = (0..3u32)
                .map(|c| {
                    let negatives: Vec<&(u32, u32, [f64; 3])> = rows.iter().filter(|r| r.1 != c).collect();
                    negatives.iter().filter(|r| r.0 != c).count() as f64 / negatives.len().max(1) as f64
                })
                .sum::<f64>()
                / 3.0;
            prop_assert!(close(counted.metric(EstimateMetric::Specificity), Some(specificity)));
        }

        /// Regression errors are those of the whole-file metrics.
        #[test]
        fn regression_values_are_the_file_metrics(
            pairs in prop::collection::vec((0.0f64..100.0, 0.0f64..100.0), 1..60)
        ) {
            let rows = ValueRows {
                predicted: pairs.iter().map(|p| Some(p.0)).collect(),
                targets: pairs.iter().map(|p| Some(p.1)).collect(),
            };
            let errors = Errors::of(&rows, 0..pairs.len());
            let (p, t): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
            let whole = performance::regression(&p, &t);
            let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                _ => false,
            };
            prop_assert!(close(errors.metric(EstimateMetric::Mae), whole.mae.value));
            prop_assert!(close(errors.metric(EstimateMetric::Mse), whole.mse.value));
            prop_assert!(close(errors.metric(EstimateMetric::Rmse), whole.rmse.value));
            prop_assert!(close(errors.metric(EstimateMetric::Mape), whole.mape.value));
            let msle = pairs.iter().map(|(p, t)| (t.ln_1p() - p.ln_1p()).powi(2)).sum::<f64>() / pairs.len() as f64;
            prop_assert!(close(errors.metric(EstimateMetric::Msle), Some(msle)));
            prop_assert!(close(errors.metric(EstimateMetric::Rmsle), Some(msle.sqrt())));
        }
    }

    #[test]
    fn absent_classes_count_zero_and_leave_roc_auc_undefined() {
        // Class c is never predicted nor the label: its precision, recall and F1 are 0, its
        // specificity 1, and its one-vs-rest ROC AUC undefined.
        let rows = [(0, 0, [0.8, 0.1, 0.1]), (1, 1, [0.2, 0.7, 0.1]), (0, 1, [0.6, 0.3, 0.1])];
        let counted = Counted::of(&class_rows(&rows), 0..3);
        assert_eq!(counted.metric(EstimateMetric::Recall), Some((1.0 + 0.5 + 0.0) / 3.0));
        assert_eq!(counted.metric(EstimateMetric::Specificity), Some((0.5 + 1.0 + 1.0) / 3.0));
        assert_eq!(counted.metric(EstimateMetric::RocAuc), None);
    }

    #[test]
    fn rows_without_a_prediction_label_or_score_are_left_out() {
        let mut p = class_rows(&[(0, 0, [0.8, 0.1, 0.1]), (1, 1, [0.2, 0.7, 0.1]), (2, 2, [0.1, 0.1, 0.8])]);
        p.scores[2][1] = Some(f64::NAN);
        p.labels[0] = None;
        assert_eq!(Counted::of(&p, 0..3).rows, 1);
        let values =
            ValueRows { predicted: vec![Some(1.0), None, Some(-0.5)], targets: vec![Some(2.0), Some(1.0), Some(0.0)] };
        let errors = Errors::of(&values, 0..3);
        assert_eq!(errors.rows, 2);
        assert_eq!(errors.metric(EstimateMetric::Mae), Some(0.75));
        assert_eq!(errors.metric(EstimateMetric::Msle), None, "no logarithmic error of a negative value");
    }

    #[test]
    fn a_regression_chunk_alerts_above_a_constant_error() {
        let values = ValueRows {
            predicted: (0..20).map(|i| Some(i as f64)).collect(),
            targets: (0..20).map(|i| Some(i as f64 + if i >= 10 { 5.0 } else { 0.5 })).collect(),
        };
        let outcomes = Outcomes::Regression(values);
        let spans = chunk::split(20, None, crate::chunk::Chunking::Number(2)).unwrap();
        let e = realized(&outcomes, &spans, &outcomes, &spans, &[EstimateMetric::Mae], ChunkThreshold::Constant(1.0))
            .unwrap();
        let alerts: Vec<bool> = e.chunks.iter().map(|c| c.metrics[&EstimateMetric::Mae].alert).collect();
        assert_eq!(alerts, [false, true, false, true]);
        assert_eq!(e.alerting_chunks, 1);
        let mae = &e.chunks[3].metrics[&EstimateMetric::Mae];
        assert_eq!((mae.upper_threshold, mae.lower_threshold), (Some(1.0), None));
    }

    #[test]
    fn mismatched_metrics_are_refused_by_name() {
        let values = Outcomes::Regression(ValueRows { predicted: vec![Some(1.0)], targets: vec![Some(1.0)] });
        let spans = chunk::split(1, None, crate::chunk::Chunking::Number(1)).unwrap();
        let e =
            realized(&values, &spans, &values, &spans, &[EstimateMetric::F1], ChunkThreshold::default()).unwrap_err();
        assert!(e.to_string().starts_with("metrics: f1 is a classifier's metric"), "{e}");
        let mut classes = class_rows(&[(0, 0, [0.8, 0.1, 0.1]), (1, 1, [0.2, 0.7, 0.1])]);
        classes.scores.clear();
        let classes = Outcomes::Multiclass(classes);
        let spans = chunk::split(2, None, crate::chunk::Chunking::Number(1)).unwrap();
        let e = realized(&classes, &spans, &classes, &spans, &[EstimateMetric::RocAuc], ChunkThreshold::default())
            .unwrap_err();
        assert!(e.to_string().starts_with("class_scores: ROC AUC needs"), "{e}");
        let e =
            realized(&classes, &spans, &values, &spans, &[EstimateMetric::F1], ChunkThreshold::default()).unwrap_err();
        assert!(e.to_string().starts_with("task:"), "{e}");
    }
}
