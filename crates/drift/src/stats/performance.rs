//! Model performance against ground truth: the numbers scikit-learn gives for the same data.
//!
//! Inputs are plain slices; rows whose score or label is missing, NaN or infinite are left out
//! by the caller and counted there (the file commands in [`crate::table::files`], the drift jobs).

use super::ranking::rank;
pub use super::ranking::RocPoint;
use super::sample::order_key;
use super::value::Stat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Binary classification metrics at one decision threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binary {
    /// Rows used.
    pub rows: usize,
    /// Rows whose label is 1.
    pub positives: usize,
    /// A score at or above it predicts class 1; `null` when the predicted classes were given
    /// (a prediction column).
    pub threshold: Option<f64>,
    pub roc_auc: Stat,
    pub average_precision: Stat,
    pub accuracy: Stat,
    pub precision: Stat,
    pub recall: Stat,
    pub f1: Stat,
    pub log_loss: Stat,
    pub brier: Stat,
    pub confusion: Confusion,
}

/// Counts of the confusion matrix at the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confusion {
    pub true_negatives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_positives: u64,
}

/// Multiclass metrics from predicted and true class names, as scikit-learn's
/// `classification_report` gives them, and one-vs-rest ROC AUC when each class has a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Multiclass {
    pub rows: usize,
    /// Classes seen in the labels or the predictions.
    pub classes: usize,
    pub accuracy: Stat,
    pub macro_f1: Stat,
    pub macro_precision: Stat,
    pub macro_recall: Stat,
    /// Averages weighted by each class's support (rows labelled with it).
    pub weighted_precision: Stat,
    pub weighted_recall: Stat,
    pub weighted_f1: Stat,
    /// Precision, recall, F1 and support per class; a ratio with a zero denominator is 0, as
    /// scikit-learn's `zero_division` default answers (with a warning).
    pub per_class: BTreeMap<String, ClassReport>,
    /// One-vs-rest ROC AUC per class and averaged, when the classes' scores were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_vs_rest: Option<OneVsRest>,
}

/// One class's line of a classification report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows labelled with the class.
    pub support: u64,
}

/// One-vs-rest ROC AUC: each class's score against all other classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneVsRest {
    /// Per class; `null` for a class no row (or every row) is labelled with.
    pub per_class: BTreeMap<String, Option<f64>>,
    /// The mean over the classes (scikit-learn's `roc_auc_score(multi_class="ovr")`).
    pub macro_roc_auc: Stat,
    /// The mean weighted by each class's support (`average="weighted"`).
    pub weighted_roc_auc: Stat,
}

/// Regression errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub rows: usize,
    pub mse: Stat,
    pub rmse: Stat,
    pub mae: Stat,
    pub r2: Stat,
    pub mape: Stat,
}

/// What kind of model produced the scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Binary,
    Multiclass,
    Regression,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
            Task::Regression => "regression",
        }
    }

    /// The names of the task's metrics, as written in summaries and alerts.
    pub fn metric_names(self) -> &'static [&'static str] {
        match self {
            Task::Binary => {
                &["roc_auc", "average_precision", "accuracy", "precision", "recall", "f1", "log_loss", "brier"]
            }
            Task::Multiclass => &[
                "accuracy",
                "macro_f1",
                "macro_precision",
                "macro_recall",
                "weighted_precision",
                "weighted_recall",
                "weighted_f1",
                "macro_roc_auc",
                "weighted_roc_auc",
            ],
            Task::Regression => &["mse", "rmse", "mae", "r2", "mape"],
        }
    }

    /// The metric a report charts over time when no other is named.
    pub fn headline_metric(self) -> &'static str {
        match self {
            Task::Binary => "roc_auc",
            Task::Multiclass => "accuracy",
            Task::Regression => "rmse",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "binary" => Ok(Task::Binary),
            "multiclass" => Ok(Task::Multiclass),
            "regression" => Ok(Task::Regression),
            other => Err(format!("unknown task `{other}`; use binary, multiclass or regression")),
        }
    }
}

/// The metrics of one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Metrics {
    Binary(Binary),
    Multiclass(Multiclass),
    Regression(Regression),
}

impl Metrics {
    /// The task's metrics as a flat JSON object of numbers (`null` where undefined; the
    /// one-vs-rest ROC AUCs of a multiclass task without class scores too).
    pub fn values(&self, task: Task) -> serde_json::Map<String, serde_json::Value> {
        let value = serde_json::to_value(self).expect("metrics serialize");
        task.metric_names()
            .iter()
            .map(|name| {
                let stat = value.get(*name).or_else(|| value.get("one_vs_rest")?.get(*name));
                let v = stat.and_then(|s| s.get("value")).cloned().unwrap_or(serde_json::Value::Null);
                (name.to_string(), v)
            })
            .collect()
    }
}

const EMPTY: &str = "no rows with both a score and a label";
const ONE_CLASS: &str = "the labels hold one class only; it needs both 0 and 1";

/// Binary metrics of `scores` (probabilities of class 1) against `labels` (`true` = 1).
pub fn binary(scores: &[f64], labels: &[bool], threshold: f64) -> Binary {
    binary_classes(scores, Classes::Threshold(threshold), labels)
}

/// Where a binary model's predicted classes come from.
#[derive(Debug, Clone, Copy)]
pub enum Classes<'a> {
    /// A score at or above the threshold predicts class 1.
    Threshold(f64),
    /// Given, one per score (a model's own decision, as NannyML and Evidently take it).
    Predicted(&'a [bool]),
}

/// Binary metrics with the predicted classes from `classes`: accuracy, precision, recall, F1
/// and the confusion matrix count those; the ranking metrics and losses use the scores.
pub fn binary_classes(scores: &[f64], classes: Classes<'_>, labels: &[bool]) -> Binary {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    if let Classes::Predicted(p) = classes {
        assert_eq!(p.len(), labels.len(), "one predicted class per score");
    }
    let threshold = match classes {
        Classes::Threshold(t) => Some(t),
        Classes::Predicted(_) => None,
    };
    let part_of = |rows: std::ops::Range<usize>| {
        let positives = labels[rows.clone()].iter().filter(|l| **l).count();
        let mut part = BinaryPart::with_capacity(positives, rows.len() - positives);
        for i in rows {
            let predicted = match classes {
                Classes::Threshold(t) => scores[i] >= t,
                Classes::Predicted(p) => p[i],
            };
            part.push(scores[i], labels[i], predicted);
        }
        part
    };
    let n = scores.len();
    // Many rows: one part per thread, each read (keys, losses) on its own.
    let parts = if n >= PARALLEL_SORT_ROWS {
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(n);
        let bounds: Vec<usize> = (0..=threads).map(|t| t * n / threads).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = bounds.windows(2).map(|w| scope.spawn(|| part_of(w[0]..w[1]))).collect();
            handles.into_iter().map(|h| h.join().expect("reading a part does not panic")).collect()
        })
    } else {
        vec![part_of(0..n)]
    };
    binary_of_parts(parts, threshold, false).0
}

/// A binary task's rows as they are read, in one part per thread: each class's scores as
/// order keys, sorted when the parts are scored ([`binary_of_parts`]), and the sums and
/// counts of the other metrics, so that no row is kept twice and no metric needs a second
/// pass over the rows.
#[derive(Debug, Default)]
pub struct BinaryPart {
    positive: Vec<u64>,
    negative: Vec<u64>,
    log_sum: f64,
    squared_sum: f64,
    confusion: Confusion,
}

impl BinaryPart {
    /// A part with room for this many rows of each class.
    pub fn with_capacity(positives: usize, negatives: usize) -> BinaryPart {
        BinaryPart {
            positive: Vec::with_capacity(positives),
            negative: Vec::with_capacity(negatives),
            ..Default::default()
        }
    }

    /// One row: its finite score, its label (`true` = 1) and the class predicted for it. The
    /// log loss clips the score to [ε, 1 − ε], as scikit-learn does.
    #[inline]
    pub fn push(&mut self, score: f64, label: bool, predicted: bool) {
        let p = score.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
        let c = &mut self.confusion;
        if label {
            self.positive.push(order_key(score));
            self.log_sum += -p.ln();
            self.squared_sum += (score - 1.0).powi(2);
            if predicted {
                c.true_positives += 1
            } else {
                c.false_negatives += 1
            }
        } else {
            self.negative.push(order_key(score));
            self.log_sum += -(1.0 - p).ln();
            self.squared_sum += score.powi(2);
            if predicted {
                c.false_positives += 1
            } else {
                c.true_negatives += 1
            }
        }
    }

    /// Rows pushed.
    pub fn rows(&self) -> usize {
        self.positive.len() + self.negative.len()
    }
}

/// The binary metrics of rows read in parts (see [`BinaryPart`]), and the ROC curve when
/// `curve` (empty unless both classes are present). Each part's keys are sorted on a thread of
/// their own (one part alone: its two classes on two), then one walk merges the parts' runs.
/// `threshold` is the one that predicted the classes, if one did.
pub fn binary_of_parts(mut parts: Vec<BinaryPart>, threshold: Option<f64>, curve: bool) -> (Binary, Vec<RocPoint>) {
    let n: usize = parts.iter().map(BinaryPart::rows).sum();
    if n < PARALLEL_SORT_ROWS {
        for part in &mut parts {
            part.positive.sort_unstable();
            part.negative.sort_unstable();
        }
    } else if let [part] = parts.as_mut_slice() {
        let BinaryPart { positive, negative, .. } = part;
        std::thread::scope(|scope| {
            scope.spawn(|| positive.sort_unstable());
            negative.sort_unstable();
        });
    } else {
        std::thread::scope(|scope| {
            for part in &mut parts {
                scope.spawn(|| {
                    part.positive.sort_unstable();
                    part.negative.sort_unstable();
                });
            }
        });
    }
    let positive_runs: Vec<&[u64]> = parts.iter().map(|p| p.positive.as_slice()).collect();
    let negative_runs: Vec<&[u64]> = parts.iter().map(|p| p.negative.as_slice()).collect();
    let ranked = rank(&positive_runs, &negative_runs, curve);

    let positives = positive_runs.iter().map(|run| run.len()).sum::<usize>();
    let negatives = n - positives;
    let both = positives > 0 && negatives > 0;
    let mut confusion = Confusion::default();
    let (mut log_sum, mut squared_sum) = (0.0f64, 0.0f64);
    for part in &parts {
        log_sum += part.log_sum;
        squared_sum += part.squared_sum;
        confusion.true_negatives += part.confusion.true_negatives;
        confusion.false_positives += part.confusion.false_positives;
        confusion.false_negatives += part.confusion.false_negatives;
        confusion.true_positives += part.confusion.true_positives;
    }
    let Confusion { true_negatives: tn, false_positives: fp, false_negatives: fn_, true_positives: tp } = confusion;
    let (tn, fp, fn_, tp) = (tn as f64, fp as f64, fn_ as f64, tp as f64);

    let roc_auc = if both {
        Stat::of(ranked.area / (positives as f64 * negatives as f64))
    } else if n == 0 {
        Stat::undefined(EMPTY)
    } else {
        Stat::undefined(ONE_CLASS)
    };
    let average_precision = if positives > 0 {
        Stat::of(ranked.average_precision)
    } else if n == 0 {
        Stat::undefined(EMPTY)
    } else {
        Stat::undefined("no positive labels; average precision needs at least one")
    };
    let log_loss = if n == 0 {
        Stat::undefined(EMPTY)
    } else if !both {
        Stat::undefined(ONE_CLASS)
    } else {
        Stat::of(log_sum / n as f64)
    };
    let brier = Stat::when(n > 0, || squared_sum / n as f64, EMPTY);

    let binary = Binary {
        rows: n,
        positives,
        threshold,
        roc_auc,
        average_precision,
        accuracy: Stat::when(n > 0, || (tp + tn) / n as f64, EMPTY),
        precision: Stat::when(tp + fp > 0.0, || tp / (tp + fp), "nothing was predicted positive"),
        recall: Stat::when(tp + fn_ > 0.0, || tp / (tp + fn_), "no positive labels; recall needs at least one"),
        f1: Stat::when(
            tp + fp + fn_ > 0.0,
            || 2.0 * tp / (2.0 * tp + fp + fn_),
            "no positive labels and no positive predictions",
        ),
        log_loss,
        brier,
        confusion,
    };
    (binary, ranked.curve)
}

/// ROC AUC as scikit-learn's `roc_auc_score` gives it; `None` unless both classes are present.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let positives = labels.iter().filter(|l| **l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let (positive, negative) = sorted_class_keys(scores, labels, positives);
    Some(rank(&[&positive], &[&negative], false).area / (positives as f64 * negatives as f64))
}

/// Each class's scores as sorted order keys (positives first), the two classes sorted on two
/// threads when there are many rows.
fn sorted_class_keys(scores: &[f64], labels: &[bool], positives: usize) -> (Vec<u64>, Vec<u64>) {
    let (mut positive, mut negative) = (Vec::with_capacity(positives), Vec::with_capacity(labels.len() - positives));
    for (s, l) in scores.iter().zip(labels) {
        if *l {
            positive.push(order_key(*s));
        } else {
            negative.push(order_key(*s));
        }
    }
    if scores.len() >= PARALLEL_SORT_ROWS {
        std::thread::scope(|scope| {
            scope.spawn(|| positive.sort_unstable());
            negative.sort_unstable();
        });
    } else {
        positive.sort_unstable();
        negative.sort_unstable();
    }
    (positive, negative)
}

/// The ROC curve at every distinct score, from `(0, 0)` to `(1, 1)`; empty unless both
/// classes are present.
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<RocPoint> {
    let positives = labels.iter().filter(|l| **l).count();
    let (positive, negative) = sorted_class_keys(scores, labels, positives);
    rank(&[&positive], &[&negative], true).curve
}

/// Rows from which the two classes' scores are sorted on two threads.
const PARALLEL_SORT_ROWS: usize = 100_000;

/// The classification report of predicted against true class names.
pub fn multiclass(predicted: &[&str], labels: &[&str]) -> Multiclass {
    assert_eq!(predicted.len(), labels.len(), "one label per prediction");
    let n = labels.len();
    // (true positives, false positives, false negatives) per class
    let mut counts: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    let mut correct = 0u64;
    for (p, l) in predicted.iter().zip(labels) {
        if p == l {
            correct += 1;
            counts.entry(p).or_default().0 += 1;
        } else {
            counts.entry(p).or_default().1 += 1;
            counts.entry(l).or_default().2 += 1;
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: BTreeMap<String, ClassReport> = counts
        .iter()
        .map(|(class, &(tp, fp, fn_))| {
            let report = ClassReport {
                precision: ratio(tp, tp + fp),
                recall: ratio(tp, tp + fn_),
                f1: ratio(2 * tp, 2 * tp + fp + fn_),
                support: tp + fn_,
            };
            (class.to_string(), report)
        })
        .collect();
    let classes = per_class.len();
    let mean = |pick: fn(&ClassReport) -> f64| {
        Stat::when(classes > 0, || per_class.values().map(pick).sum::<f64>() / classes as f64, EMPTY)
    };
    let weighted = |pick: fn(&ClassReport) -> f64| {
        Stat::when(n > 0, || per_class.values().map(|c| pick(c) * c.support as f64).sum::<f64>() / n as f64, EMPTY)
    };
    Multiclass {
        rows: n,
        classes,
        accuracy: Stat::when(n > 0, || correct as f64 / n as f64, EMPTY),
        macro_f1: mean(|c| c.f1),
        macro_precision: mean(|c| c.precision),
        macro_recall: mean(|c| c.recall),
        weighted_precision: weighted(|c| c.precision),
        weighted_recall: weighted(|c| c.recall),
        weighted_f1: weighted(|c| c.f1),
        per_class,
        one_vs_rest: None,
    }
}

/// One-vs-rest ROC AUC of `scores` (per class, one score per row) against the true class
/// names `labels`.
pub fn one_vs_rest(scores: &BTreeMap<String, Vec<f64>>, labels: &[&str]) -> OneVsRest {
    let per_class: BTreeMap<String, Option<f64>> = scores
        .iter()
        .map(|(class, s)| {
            let is_class: Vec<bool> = labels.iter().map(|l| *l == class).collect();
            (class.clone(), roc_auc(s, &is_class))
        })
        .collect();
    let undefined = "ROC AUC needs every class to be the label of some rows but not of all";
    let all: Option<Vec<f64>> = per_class.values().copied().collect();
    let support = |class: &str| labels.iter().filter(|l| **l == class).count() as f64;
    OneVsRest {
        macro_roc_auc: match &all {
            Some(v) if !v.is_empty() => Stat::of(v.iter().sum::<f64>() / v.len() as f64),
            _ => Stat::undefined(undefined),
        },
        weighted_roc_auc: match &all {
            Some(v) if !v.is_empty() => Stat::of(
                per_class.iter().map(|(c, a)| a.unwrap_or_default() * support(c)).sum::<f64>() / labels.len() as f64,
            ),
            _ => Stat::undefined(undefined),
        },
        per_class,
    }
}

/// Regression errors of `predicted` against `targets`.
pub fn regression(predicted: &[f64], targets: &[f64]) -> Regression {
    assert_eq!(predicted.len(), targets.len(), "one target per prediction");
    let n = targets.len();
    if n == 0 {
        let none = || Stat::undefined(EMPTY);
        return Regression { rows: 0, mse: none(), rmse: none(), mae: none(), r2: none(), mape: none() };
    }
    let nf = n as f64;
    let mut squared = 0.0;
    let mut absolute = 0.0;
    let mut percentage = 0.0;
    for (p, y) in predicted.iter().zip(targets) {
        let e = y - p;
        squared += e * e;
        absolute += e.abs();
        percentage += e.abs() / y.abs().max(f64::EPSILON);
    }
    let mean = targets.iter().sum::<f64>() / nf;
    let total: f64 = targets.iter().map(|y| (y - mean).powi(2)).sum();
    let r2 = if n < 2 {
        Stat::undefined("R² needs at least two rows")
    } else if total == 0.0 {
        Stat::undefined("the target is constant, so R² is undefined")
    } else {
        Stat::of(1.0 - squared / total)
    };
    Regression {
        rows: n,
        mse: Stat::of(squared / nf),
        rmse: Stat::of((squared / nf).sqrt()),
        mae: Stat::of(absolute / nf),
        r2,
        mape: Stat::of(percentage / nf),
    }
}

/// Asserts two binary results equal: every count and ratio exactly, the loss sums (added in
/// another order when the rows were read in other parts) to 1e-12 relative.
#[cfg(test)]
pub(crate) fn assert_same_binary(a: &Binary, b: &Binary) {
    assert_eq!((a.rows, a.positives, a.threshold, a.confusion), (b.rows, b.positives, b.threshold, b.confusion));
    for (x, y) in [(&a.roc_auc, &b.roc_auc), (&a.average_precision, &b.average_precision), (&a.accuracy, &b.accuracy)]
        .into_iter()
        .chain([(&a.precision, &b.precision), (&a.recall, &b.recall), (&a.f1, &b.f1)])
    {
        assert_eq!(x, y);
    }
    for (x, y) in [(&a.log_loss, &b.log_loss), (&a.brier, &b.brier)] {
        match (x.value, y.value) {
            (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-12 * y.abs().max(1e-300), "{x} against {y}"),
            _ => assert_eq!(x, y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_curve_runs_from_origin_to_one_one() {
        let curve = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert_eq!(curve.first().map(|p| (p.false_positive_rate, p.true_positive_rate)), Some((0.0, 0.0)));
        assert_eq!(curve.last().map(|p| (p.false_positive_rate, p.true_positive_rate)), Some((1.0, 1.0)));
        assert_eq!(curve.len(), 5);
        assert!(roc_curve(&[0.3], &[true]).is_empty());
    }

    /// The groups of the sorted keys' walk: distinct scores from the highest down.
    fn ranked_counts(scores: &[f64], labels: &[bool]) -> Vec<(f64, u64, u64)> {
        let positives = labels.iter().filter(|l| **l).count();
        let (positive, negative) = sorted_class_keys(scores, labels, positives);
        crate::stats::ranking::descending_groups(&[&positive], &[&negative])
            .map(|(key, p, n)| (crate::stats::sample::from_order_key(key), p, n))
            .collect()
    }

    /// The groups as a comparison sort makes them: distinct scores from the highest down.
    fn groups_by_sorting(scores: &[f64], labels: &[bool]) -> Vec<(f64, u64, u64)> {
        let mut rows: Vec<(f64, bool)> = scores.iter().map(|s| s + 0.0).zip(labels.iter().copied()).collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut out: Vec<(f64, u64, u64)> = Vec::new();
        for (score, label) in rows {
            if out.last().is_none_or(|g| g.0 != score) {
                out.push((score, 0, 0));
            }
            let g = out.last_mut().expect("pushed");
            if label {
                g.1 += 1;
            } else {
                g.2 += 1;
            }
        }
        out
    }

    /// ROC area and average precision from the groups of a comparison sort, step by step.
    fn ranking_by_groups(scores: &[f64], labels: &[bool]) -> (f64, f64) {
        let positives = labels.iter().filter(|l| **l).count() as f64;
        let (mut tp, mut fp, mut area, mut ap) = (0u64, 0u64, 0.0f64, 0.0f64);
        for (_, gp, gn) in groups_by_sorting(scores, labels) {
            area += gn as f64 * (tp as f64 + gp as f64 / 2.0);
            tp += gp;
            fp += gn;
            if gp > 0 {
                ap += gp as f64 / positives * (tp as f64 / (tp + fp) as f64);
            }
        }
        (area, ap)
    }

    proptest::proptest! {
        #[test]
        fn ranking_sums_are_those_of_the_sorted_groups(
            rows in proptest::collection::vec((-3i32..40, proptest::bool::ANY), 0..300),
        ) {
            let scores: Vec<f64> = rows.iter().map(|(v, _)| if *v == 0 { -0.0 } else { f64::from(*v) / 7.0 }).collect();
            let labels: Vec<bool> = rows.iter().map(|(_, l)| *l).collect();
            let positives = labels.iter().filter(|l| **l).count();
            let (positive, negative) = sorted_class_keys(&scores, &labels, positives);
            let ranked = rank(&[&positive], &[&negative], false);
            proptest::prop_assert_eq!((ranked.area, ranked.average_precision), ranking_by_groups(&scores, &labels));
            let b = binary(&scores, &labels, 0.5);
            let negatives = labels.len() - positives;
            if positives > 0 && negatives > 0 {
                let area = ranking_by_groups(&scores, &labels).0 / (positives * negatives) as f64;
                proptest::prop_assert_eq!(b.roc_auc.value, Some(area));
                proptest::prop_assert_eq!(roc_auc(&scores, &labels), Some(area));
            }
        }

        #[test]
        fn ranked_groups_are_those_of_a_comparison_sort(
            rows in proptest::collection::vec((-3i32..40, proptest::bool::ANY), 0..300),
            scale in proptest::prop_oneof![proptest::strategy::Just(1.0), proptest::strategy::Just(1e-3), proptest::strategy::Just(-7.5)],
        ) {
            // Few distinct values: ties, negative scores and a zero of either sign.
            let scores: Vec<f64> = rows.iter().map(|(v, _)| if *v == 0 { -0.0 } else { f64::from(*v) * scale }).collect();
            let labels: Vec<bool> = rows.iter().map(|(_, l)| *l).collect();
            proptest::prop_assert_eq!(ranked_counts(&scores, &labels), groups_by_sorting(&scores, &labels));
        }
    }

    #[test]
    fn many_rows_sorted_on_two_threads_give_the_same_groups() {
        let n = PARALLEL_SORT_ROWS + 1_001;
        let scores: Vec<f64> = (0..n).map(|i| ((i * 7_919) % 5_003) as f64 / 5_003.0).collect();
        let labels: Vec<bool> = (0..n).map(|i| (i * 31) % 7 < 3).collect();
        assert_eq!(ranked_counts(&scores, &labels), groups_by_sorting(&scores, &labels));
    }

    /// Many rows are read in one part per thread; the metrics are those of one part read in
    /// order (sums may differ in their last bits: they are added part by part).
    #[test]
    fn many_rows_read_in_parts_score_as_one_part() {
        let n = PARALLEL_SORT_ROWS * 3 + 17;
        let scores: Vec<f64> = (0..n).map(|i| ((i * 7_919) % 10_007) as f64 / 10_007.0).collect();
        let labels: Vec<bool> = (0..n).map(|i| (i * 31) % 7 < 3 || scores[i] > 0.8).collect();
        let mut one = BinaryPart::default();
        for (s, l) in scores.iter().zip(&labels) {
            one.push(*s, *l, *s >= 0.4);
        }
        let (whole, curve) = binary_of_parts(vec![one], Some(0.4), true);
        // Uneven parts, one of them empty.
        let mut parts: Vec<BinaryPart> = (0..4).map(|_| BinaryPart::default()).collect();
        for (i, (s, l)) in scores.iter().zip(&labels).enumerate() {
            parts[[0, 1, 1, 3, 3, 3][i % 6]].push(*s, *l, *s >= 0.4);
        }
        let (split, split_curve) = binary_of_parts(parts, Some(0.4), true);
        let threaded = binary(&scores, &labels, 0.4);
        assert_same_binary(&split, &whole);
        assert_same_binary(&threaded, &whole);
        assert_eq!(split_curve, curve);
        assert_eq!(curve, roc_curve(&scores, &labels));
        assert_eq!(whole.roc_auc.value, roc_auc(&scores, &labels));
        let area = ranking_by_groups(&scores, &labels).0 / (whole.positives * (n - whole.positives)) as f64;
        assert_eq!(whole.roc_auc.value, Some(area));
    }
}
