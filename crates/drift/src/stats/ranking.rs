//! Ranking metrics from sorted score keys: ROC AUC (with scikit-learn's handling of tied
//! scores), average precision and the ROC curve, computed in one walk from the highest score
//! down. Each class's scores come as one or more runs of sorted order keys (one run per part
//! of the rows that was sorted on its own thread); the walk merges the runs as it goes, so
//! the parts never need to be merged into one sorted vector.

use super::sample::from_order_key;
use serde::{Deserialize, Serialize};

/// A point of the ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    pub false_positive_rate: f64,
    pub true_positive_rate: f64,
    /// Scores at or above it count as positive; none for the curve's origin.
    pub threshold: Option<f64>,
}

/// What one walk over the sorted keys gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Ranked {
    /// Each negative adds the positives scored above it and half those tied with it, as
    /// scikit-learn's trapezoids do; divide by positives × negatives for ROC AUC.
    pub(crate) area: f64,
    /// `Σ (R_k − R_{k−1}) · P_k` over the distinct thresholds, scikit-learn's definition.
    pub(crate) average_precision: f64,
    /// The ROC curve at every distinct score, from `(0, 0)` to `(1, 1)`, when asked for and
    /// both classes are present.
    pub(crate) curve: Vec<RocPoint>,
}

/// Walks the sorted runs of each class (ascending order keys, see
/// [`super::sample::order_key`]) from the highest score down, one distinct score at a time.
pub(crate) fn rank(positive: &[&[u64]], negative: &[&[u64]], curve: bool) -> Ranked {
    let positives: usize = positive.iter().map(|run| run.len()).sum();
    let negatives: usize = negative.iter().map(|run| run.len()).sum();
    let with_curve = curve && positives > 0 && negatives > 0;
    let mut ranked = Ranked::default();
    if with_curve {
        ranked.curve.push(RocPoint { false_positive_rate: 0.0, true_positive_rate: 0.0, threshold: None });
    }
    let (mut tp, mut fp) = (0u64, 0u64);
    for (key, group_positives, group_negatives) in descending_groups(positive, negative) {
        ranked.area += group_negatives as f64 * (tp as f64 + group_positives as f64 / 2.0);
        tp += group_positives;
        fp += group_negatives;
        if group_positives > 0 {
            let precision = tp as f64 / (tp + fp) as f64;
            ranked.average_precision += group_positives as f64 / positives as f64 * precision;
        }
        if with_curve {
            ranked.curve.push(RocPoint {
                false_positive_rate: fp as f64 / negatives as f64,
                true_positive_rate: tp as f64 / positives as f64,
                threshold: Some(from_order_key(key)),
            });
        }
    }
    ranked
}

/// Each distinct key of the classes' sorted runs, from the highest down, with how many
/// positives and negatives hold it.
pub(crate) fn descending_groups<'a>(
    positive: &[&'a [u64]],
    negative: &[&'a [u64]],
) -> impl Iterator<Item = (u64, u64, u64)> + 'a {
    // Each run shrinks from its end as its highest keys are counted.
    let mut positive: Vec<&'a [u64]> = positive.iter().copied().filter(|run| !run.is_empty()).collect();
    let mut negative: Vec<&'a [u64]> = negative.iter().copied().filter(|run| !run.is_empty()).collect();
    std::iter::from_fn(move || {
        let key = positive.iter().chain(&negative).filter_map(|run| run.last()).max().copied()?;
        let group_positives = take_key(&mut positive, key);
        let group_negatives = take_key(&mut negative, key);
        Some((key, group_positives, group_negatives))
    })
}

/// Removes `key` (each run's highest, where it is) from the ends of the runs; how many there were.
fn take_key(runs: &mut Vec<&[u64]>, key: u64) -> u64 {
    let mut taken = 0;
    for run in runs.iter_mut() {
        let kept = run.iter().rposition(|k| *k != key).map_or(0, |i| i + 1);
        taken += (run.len() - kept) as u64;
        *run = &run[..kept];
    }
    runs.retain(|run| !run.is_empty());
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Cutting each class's keys into several sorted runs gives the groups of one run.
        #[test]
        fn runs_give_the_groups_of_one_sorted_vector(
            positive in proptest::collection::vec(-5i32..30, 0..200),
            negative in proptest::collection::vec(-5i32..30, 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..4),
        ) {
            // Scores with ties, negative ones and zero, as their order keys.
            let key = |v: &i32| crate::stats::sample::order_key(f64::from(*v) / 4.0);
            let positive: Vec<u64> = positive.iter().map(key).collect();
            let negative: Vec<u64> = negative.iter().map(key).collect();
            let runs_of = |keys: &[u64]| -> Vec<Vec<u64>> {
                let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (keys.len() + 1)).collect();
                bounds.push(0);
                bounds.push(keys.len());
                bounds.sort_unstable();
                bounds.windows(2).map(|w| { let mut run = keys[w[0]..w[1]].to_vec(); run.sort_unstable(); run }).collect()
            };
            let (mut whole_positive, mut whole_negative) = (positive.clone(), negative.clone());
            whole_positive.sort_unstable();
            whole_negative.sort_unstable();
            let (positive_runs, negative_runs) = (runs_of(&positive), runs_of(&negative));
            fn slices(runs: &[Vec<u64>]) -> Vec<&[u64]> {
                runs.iter().map(Vec::as_slice).collect()
            }
            let one: Vec<_> = descending_groups(&[&whole_positive], &[&whole_negative]).collect();
            let many: Vec<_> = descending_groups(&slices(&positive_runs), &slices(&negative_runs)).collect();
            proptest::prop_assert_eq!(&many, &one);
            proptest::prop_assert_eq!(
                rank(&slices(&positive_runs), &slices(&negative_runs), true),
                rank(&[&whole_positive], &[&whole_negative], true)
            );
            // Every key once, from the highest down, with all its rows.
            proptest::prop_assert!(one.windows(2).all(|w| w[0].0 > w[1].0));
            let counted: u64 = one.iter().map(|(_, p, n)| p + n).sum();
            proptest::prop_assert_eq!(counted as usize, positive.len() + negative.len());
        }
    }
}
