//! A job's realised performance per chunk: with chunk thresholds, each chunk of the window gets
//! the task's metrics from its labelled predictions, judged against the mean ± k·σ of the
//! reference chunks' values, as `drift performance` with a reference does for files
//! ([`crate::estimate`] with [`Basis::Realized`] for a binary classifier, whose predicted
//! class is its score at or above 0.5, as the job's own performance counts it;
//! [`crate::realized`] for the others).

use super::load::RowOutcomes;
use crate::chunk::Span;
use crate::chunked::ChunkThreshold;
use crate::estimate::{self, Basis, Calibrate, Estimate, EstimateMetric, EstimateOptions, Predictions};
use crate::realized::{self, ClassRows, Outcomes, ValueRows};
use crate::stats::performance::Task;
use crate::Error;
use std::collections::BTreeMap;

/// The realised performance of every chunk of `reference` and `current`, cut by their spans.
/// `class_scores` are the job's classes with scores (multiclass); without them a multiclass
/// job has no ROC AUC. The thresholds are k standard deviations from the reference chunks'
/// mean: the job's k, or 3 when the job sets its drift thresholds as a constant (a constant
/// distance says nothing of a metric).
pub(crate) fn chunk_performance(
    task: Task,
    class_scores: &[String],
    (reference, reference_spans): (RowOutcomes, &[Span]),
    (current, current_spans): (RowOutcomes, &[Span]),
    threshold: ChunkThreshold,
) -> Result<Estimate, Error> {
    let k = match threshold {
        ChunkThreshold::StandardDeviations(k) => k,
        ChunkThreshold::Constant(_) => 3.0,
    };
    let threshold = ChunkThreshold::StandardDeviations(k);
    match (reference, current) {
        (RowOutcomes::Binary { scores: rs, labels: rl }, RowOutcomes::Binary { scores: cs, labels: cl }) => {
            let predictions = |scores: Vec<Option<f64>>, labels| Predictions {
                predicted: scores.iter().map(|s| s.map(|s| s >= 0.5)).collect(),
                scores,
                labels,
            };
            let options = EstimateOptions {
                metrics: EstimateMetric::CLASSIFICATION.to_vec(),
                calibrate: Calibrate::Never,
                threshold,
                basis: Basis::Realized,
            };
            estimate::estimate(&predictions(rs, rl), reference_spans, &predictions(cs, cl), current_spans, &options)
        }
        (RowOutcomes::Regression { predicted: rp, targets: rt }, RowOutcomes::Regression { predicted, targets }) => {
            let reference = Outcomes::Regression(ValueRows { predicted: rp, targets: rt });
            let current = Outcomes::Regression(ValueRows { predicted, targets });
            realized::realized(
                &reference,
                reference_spans,
                &current,
                current_spans,
                &EstimateMetric::REGRESSION,
                threshold,
            )
        }
        (reference @ RowOutcomes::Multiclass { .. }, current @ RowOutcomes::Multiclass { .. }) => {
            let classes = class_list(class_scores, [&reference, &current]);
            let (reference, current) = (class_rows(reference, &classes), class_rows(current, &classes));
            let metrics: Vec<EstimateMetric> = EstimateMetric::CLASSIFICATION
                .into_iter()
                .filter(|m| *m != EstimateMetric::RocAuc || !class_scores.is_empty())
                .collect();
            realized::realized(
                &Outcomes::Multiclass(reference),
                reference_spans,
                &Outcomes::Multiclass(current),
                current_spans,
                &metrics,
                threshold,
            )
        }
        _ => Err(Error::Internal {
            what: "performance per chunk".into(),
            message: format!(
                "the reference and the window were read for different tasks (the job's is {})",
                task.name()
            ),
        }),
    }
}

/// The classes of a multiclass job: those with scores, or every class named in either window,
/// in name order.
fn class_list(class_scores: &[String], windows: [&RowOutcomes; 2]) -> Vec<String> {
    if !class_scores.is_empty() {
        return class_scores.to_vec();
    }
    let mut all: Vec<String> = windows
        .into_iter()
        .flat_map(|w| match w {
            RowOutcomes::Multiclass { names, .. } => names.clone(),
            _ => Vec::new(),
        })
        .collect();
    all.sort();
    all.dedup();
    all
}

/// A window's multiclass rows with class ids into `classes`: a class outside them (one
/// without scores) leaves its row out, as the job's own performance counts it.
fn class_rows(outcomes: RowOutcomes, classes: &[String]) -> ClassRows {
    let RowOutcomes::Multiclass { names, predicted, labels, scores, .. } = outcomes else {
        return ClassRows { classes: classes.to_vec(), ..ClassRows::default() };
    };
    let index: BTreeMap<&str, u32> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as u32)).collect();
    let global: Vec<Option<u32>> = names.iter().map(|n| index.get(n.as_str()).copied()).collect();
    let remap = |ids: Vec<Option<u32>>| -> Vec<Option<u32>> {
        ids.into_iter().map(|id| id.and_then(|id| global[id as usize])).collect()
    };
    ClassRows { classes: classes.to_vec(), scores, predicted: remap(predicted), labels: remap(labels) }
}
