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

/// Rows from which, without a curve, the walk is cut in two at a key and the halves walked on
/// two threads.
const SPLIT_WALK_ROWS: usize = 1_000_000;

/// Walks the sorted runs of each class (ascending order keys, see
/// [`super::sample::order_key`]) from the highest score down, one distinct score at a time.
///
/// Without a curve and with many rows, the keys are cut at the middle key of the longest run:
/// the walk below it starts from the counts above it (found by binary search in each run), so
/// the two halves are walked at once. The area is a sum of halves of whole numbers, exact in
/// any order; average precision may differ from one walk in its last bits.
pub(crate) fn rank(positive: &[&[u64]], negative: &[&[u64]], curve: bool) -> Ranked {
    let positives: usize = positive.iter().map(|run| run.len()).sum();
    let negatives: usize = negative.iter().map(|run| run.len()).sum();
    let longest = positive.iter().chain(negative).max_by_key(|run| run.len()).filter(|run| !run.is_empty());
    let (Some(longest), false, true) = (longest, curve, positives + negatives >= SPLIT_WALK_ROWS) else {
        return walk(positive, negative, curve, (0, 0), positives, negatives);
    };
    let pivot = longest[longest.len() / 2];
    /// Each run cut into its keys at or below `pivot` and those above.
    fn cut<'a>(runs: &[&'a [u64]], pivot: u64) -> (Vec<&'a [u64]>, Vec<&'a [u64]>) {
        runs.iter().map(|run| run.split_at(run.partition_point(|k| *k <= pivot))).unzip()
    }
    let ((positive_low, positive_high), (negative_low, negative_high)) = (cut(positive, pivot), cut(negative, pivot));
    let rows_above = |runs: &Vec<&[u64]>| runs.iter().map(|run| run.len() as u64).sum::<u64>();
    let start = (rows_above(&positive_high), rows_above(&negative_high));
    let (high, low) = std::thread::scope(|scope| {
        let high = scope.spawn(|| walk(&positive_high, &negative_high, false, (0, 0), positives, negatives));
        let low = walk(&positive_low, &negative_low, false, start, positives, negatives);
        (high.join().expect("a ranking walk does not panic"), low)
    });
    Ranked {
        area: high.area + low.area,
        average_precision: high.average_precision + low.average_precision,
        curve: vec![],
    }
}

/// The walk of [`rank`] over keys below those already counted: `(tp, fp)` positives and
/// negatives above them, of `positives` and `negatives` in all.
fn walk(
    positive: &[&[u64]],
    negative: &[&[u64]],
    curve: bool,
    (mut tp, mut fp): (u64, u64),
    positives: usize,
    negatives: usize,
) -> Ranked {
    let with_curve = curve && positives > 0 && negatives > 0;
    let mut ranked = Ranked::default();
    if with_curve {
        ranked.curve.push(RocPoint { false_positive_rate: 0.0, true_positive_rate: 0.0, threshold: None });
    }
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

    #[test]
    fn a_walk_on_two_threads_gives_the_area_of_one() {
        // Enough rows for the split, with ties (scores of three decimals) and two runs a class.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut positive, mut negative) = (vec![Vec::new(), Vec::new()], vec![Vec::new(), Vec::new()]);
        for i in 0..SPLIT_WALK_ROWS + 1_000 {
            let score = (next() % 1_000) as f64 / 1_000.0;
            let class = if next() % 1_000 < (score * 1_000.0) as u64 { &mut positive } else { &mut negative };
            class[i % 2].push(crate::stats::sample::order_key(score));
        }
        for run in positive.iter_mut().chain(negative.iter_mut()) {
            run.sort_unstable();
        }
        fn slices(runs: &[Vec<u64>]) -> Vec<&[u64]> {
            runs.iter().map(Vec::as_slice).collect()
        }
        let (p, n) = (slices(&positive), slices(&negative));
        let (positives, negatives) = (p.iter().map(|r| r.len()).sum(), n.iter().map(|r| r.len()).sum());
        let split = rank(&p, &n, false);
        let one = walk(&p, &n, false, (0, 0), positives, negatives);
        assert_eq!(split.area, one.area);
        assert!((split.average_precision - one.average_precision).abs() <= 1e-12);
        assert_eq!(rank(&p, &n, true).area, one.area, "with a curve, one walk");
    }

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
            // Walked in two halves from a cut at any key: the same area, and the same average
            // precision up to rounding.
            let whole = rank(&[&whole_positive], &[&whole_negative], false);
            let all = whole_positive.iter().chain(&whole_negative).copied().collect::<Vec<u64>>();
            if let Some(&pivot) = all.get(cuts.first().copied().unwrap_or(0) % all.len().max(1)) {
                fn split(run: &[u64], pivot: u64) -> (&[u64], &[u64]) {
                    run.split_at(run.partition_point(|k| *k <= pivot))
                }
                let ((pl, ph), (nl, nh)) = (split(&whole_positive, pivot), split(&whole_negative, pivot));
                let high = walk(&[ph], &[nh], false, (0, 0), positive.len(), negative.len());
                let low = walk(&[pl], &[nl], false, (ph.len() as u64, nh.len() as u64), positive.len(), negative.len());
                proptest::prop_assert_eq!(high.area + low.area, whole.area);
                let ap = high.average_precision + low.average_precision;
                proptest::prop_assert!((ap - whole.average_precision).abs() <= 1e-12, "{} against {}", ap, whole.average_precision);
            }
            // Every key once, from the highest down, with all its rows.
            proptest::prop_assert!(one.windows(2).all(|w| w[0].0 > w[1].0));
            let counted: u64 = one.iter().map(|(_, p, n)| p + n).sum();
            proptest::prop_assert_eq!(counted as usize, positive.len() + negative.len());
        }
    }
}
