//! Drift statistics from rollups, for windows whose raw values are gone: from two KLL sketches
//! (numbers) or two sets of value counts (categories). They are approximations, each with the
//! bound it keeps, for reports that mark them `approximate`.
//!
//! A KLL sketch answers the rank of any value within its normalized rank error ε (about 1.3 %
//! at k = 200, DataSketches' `normalized_rank_error`) with 99 % confidence. So:
//! - the Kolmogorov–Smirnov statistic, the largest gap between the two CDFs, is within
//!   ε_ref + ε_cur of the exact one (plus the 1/`GRID` spacing of the ranks it is looked at);
//! - the Wasserstein distance, the area between the CDFs, is within (ε_ref + ε_cur) times the
//!   range of the values;
//! - PSI uses the reference's sketched deciles as bin edges and bin shares each within ε of
//!   the exact shares of those bins.
//!
//! Chi-square on value counts is exact when every category is among the kept top K; the
//! "other" counts of both sides are compared as one more category.

use std::collections::BTreeMap;

use driftline_rollup::Sketch;

use super::drift::{chi_square, psi, ChiSquare, DEFAULT_BINS};

/// Ranks at which the sketches' CDFs are compared: the retained values of a sketch of k = 200
/// are a few hundred, so a grid of this many ranks meets each of them within 1/`GRID`.
pub const GRID: usize = 4_000;

/// A statistic from sketches with the bound it is known within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Approximate {
    /// The estimate.
    pub value: f64,
    /// The estimate is within this of the exact statistic (99 % confidence).
    pub error_bound: f64,
}

/// The values the sketches' CDFs change at (as seen on the rank grid), sorted and distinct.
fn points(a: &Sketch, b: &Sketch) -> Vec<f64> {
    let mut out: Vec<f64> = (0..=GRID)
        .flat_map(|i| {
            let rank = i as f64 / GRID as f64;
            [a.quantile(rank), b.quantile(rank)]
        })
        .flatten()
        .collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

fn cdf(s: &Sketch, x: f64) -> f64 {
    s.rank(x).unwrap_or(0.0)
}

/// The two-sample Kolmogorov–Smirnov statistic between the streams of two sketches; `None`
/// when either is empty.
pub fn ks_statistic(reference: &Sketch, current: &Sketch) -> Option<Approximate> {
    if reference.n() == 0 || current.n() == 0 {
        return None;
    }
    let value =
        points(reference, current).into_iter().map(|x| (cdf(reference, x) - cdf(current, x)).abs()).fold(0.0, f64::max);
    Some(Approximate { value, error_bound: reference.rank_error() + current.rank_error() + 1.0 / GRID as f64 })
}

/// The first Wasserstein distance (area between the CDFs) between the streams of two sketches.
pub fn wasserstein(reference: &Sketch, current: &Sketch) -> Option<Approximate> {
    if reference.n() == 0 || current.n() == 0 {
        return None;
    }
    let xs = points(reference, current);
    let area: f64 = xs.windows(2).map(|w| (cdf(reference, w[0]) - cdf(current, w[0])).abs() * (w[1] - w[0])).sum();
    let range = xs.last().copied().unwrap_or(0.0) - xs.first().copied().unwrap_or(0.0);
    Some(Approximate { value: area, error_bound: (reference.rank_error() + current.rank_error()) * range })
}

/// Inner bin edges at the reference sketch's quantiles `1/bins, …, (bins−1)/bins`, duplicates
/// removed, as [`super::drift::quantile_edges`] cuts raw values.
pub fn quantile_edges(reference: &Sketch, bins: usize) -> Vec<f64> {
    if bins < 2 {
        return Vec::new();
    }
    let mut edges: Vec<f64> = (1..bins).filter_map(|i| reference.quantile(i as f64 / bins as f64)).collect();
    edges.dedup();
    edges
}

/// The estimated count of the sketch's values per bin of `edges` (`edges.len() + 1` bins; bin
/// `k` holds `edges[k−1] <= v < edges[k]`): its share of the stream, within the rank error,
/// times the count, rounded. The counts add up to the sketch's count.
pub fn bin_counts(sketch: &Sketch, edges: &[f64]) -> Vec<u64> {
    let n = sketch.n();
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut below = 0u64;
    for &edge in edges {
        // A value at an edge belongs to the bin above it: what lies below the edge is the rank
        // of the largest value before it.
        let rank = sketch.rank(edge.next_down()).unwrap_or(0.0);
        let up_to = ((rank * n as f64).round() as u64).clamp(below, n);
        out.push(up_to - below);
        below = up_to;
    }
    out.push(n - below);
    out
}

/// PSI over `DEFAULT_BINS` bins at the reference sketch's deciles.
pub fn population_stability(reference: &Sketch, current: &Sketch) -> Option<f64> {
    if reference.n() == 0 || current.n() == 0 {
        return None;
    }
    let edges = quantile_edges(reference, DEFAULT_BINS);
    Some(psi(&bin_counts(reference, &edges), &bin_counts(current, &edges)).0)
}

/// ROC AUC from the score sketches of the two classes: the chance that a positive scores above
/// a negative, ties counted half (`sklearn.metrics.roc_auc_score` on the raw scores). Both
/// CDFs are within their rank errors at every point, and the AUC is the area one sweeps over
/// the other, so it is within the two errors added (and the grid's spacing).
pub fn roc_auc(positive: &Sketch, negative: &Sketch) -> Option<Approximate> {
    if positive.n() == 0 || negative.n() == 0 {
        return None;
    }
    let (mut auc, mut below_pos, mut below_neg) = (0.0, 0.0, 0.0);
    for x in points(positive, negative) {
        let (p, n) = (cdf(positive, x), cdf(negative, x));
        // The positives at x beat the negatives below x and tie with those at x.
        auc += (p - below_pos) * (below_neg + n) / 2.0;
        (below_pos, below_neg) = (p, n);
    }
    Some(Approximate {
        value: auc.clamp(0.0, 1.0),
        error_bound: positive.rank_error() + negative.rank_error() + 1.0 / GRID as f64,
    })
}

/// Chi-square between two sets of value counts (top K kept per side, the rest as `other`).
pub fn chi_square_of_counts(
    reference: &BTreeMap<String, u64>,
    reference_other: u64,
    current: &BTreeMap<String, u64>,
    current_other: u64,
) -> Option<ChiSquare> {
    let mut categories: Vec<&String> = reference.keys().chain(current.keys()).collect();
    categories.sort();
    categories.dedup();
    let mut r: Vec<u64> = categories.iter().map(|c| reference.get(*c).copied().unwrap_or(0)).collect();
    let mut c: Vec<u64> = categories.iter().map(|k| current.get(*k).copied().unwrap_or(0)).collect();
    if reference_other + current_other > 0 {
        r.push(reference_other);
        c.push(current_other);
    }
    chi_square(&r, &c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::drift;
    use crate::stats::sample::Sample;
    use rand::{Rng, SeedableRng};

    fn normal(rng: &mut impl Rng, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                // Box–Muller.
                let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    fn sketch(values: &[f64]) -> Sketch {
        let mut s = Sketch::new(200).unwrap();
        for &v in values {
            s.update(v);
        }
        s
    }

    #[test]
    fn ks_and_wasserstein_from_sketches_are_within_their_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for (shift, n) in [(0.0, 20_000), (0.3, 50_000), (1.5, 100_000)] {
            let a = normal(&mut rng, n, 10.0, 2.0);
            let b = normal(&mut rng, n, 10.0 + shift, 2.0);
            let exact_ks =
                drift::ks_two_sample(&Sample::from_finite(a.clone()), &Sample::from_finite(b.clone())).unwrap();
            let exact_w = drift::wasserstein(&Sample::from_finite(a.clone()), &Sample::from_finite(b.clone())).unwrap();
            let (sa, sb) = (sketch(&a), sketch(&b));
            let ks = ks_statistic(&sa, &sb).unwrap();
            assert!(
                (ks.value - exact_ks.statistic).abs() <= ks.error_bound,
                "shift {shift}: KS {} vs exact {} (bound {})",
                ks.value,
                exact_ks.statistic,
                ks.error_bound
            );
            let w = wasserstein(&sa, &sb).unwrap();
            assert!(
                (w.value - exact_w).abs() <= w.error_bound,
                "shift {shift}: W {} vs {exact_w} (bound {})",
                w.value,
                w.error_bound
            );
            // The bounds are not vacuous: well under the statistics they bound once there is drift.
            assert!(ks.error_bound < 0.03 && w.error_bound < 0.03 * 30.0);
        }
    }

    #[test]
    fn psi_from_sketches_tracks_the_exact_psi() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let a = normal(&mut rng, 60_000, 0.0, 1.0);
        for shift in [0.0, 0.2, 0.5, 1.0] {
            let b = normal(&mut rng, 60_000, shift, 1.0);
            let edges = drift::quantile_edges(&Sample::from_finite(a.clone()), DEFAULT_BINS);
            let exact = drift::psi(
                &drift::bin_counts(&Sample::from_finite(a.clone()), &edges),
                &drift::bin_counts(&Sample::from_finite(b.clone()), &edges),
            )
            .0;
            let approx = population_stability(&sketch(&a), &sketch(&b)).unwrap();
            assert!((approx - exact).abs() <= 0.02 + 0.1 * exact, "shift {shift}: PSI {approx} vs exact {exact}");
        }
    }

    #[test]
    fn roc_auc_from_class_sketches_is_within_its_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for (separation, n_pos, n_neg) in [(0.0, 5_000, 20_000), (0.8, 40_000, 60_000), (2.5, 100_000, 30_000)] {
            let pos = normal(&mut rng, n_pos, separation, 1.0);
            // Scores rounded to two places: many ties, as calibrated scores often have.
            let neg: Vec<f64> = normal(&mut rng, n_neg, 0.0, 1.0).iter().map(|x| (x * 100.0).round() / 100.0).collect();
            let scores: Vec<f64> = pos.iter().chain(&neg).copied().collect();
            let labels: Vec<bool> = (0..scores.len()).map(|i| i < n_pos).collect();
            let exact = crate::stats::performance::binary(&scores, &labels, 0.5).roc_auc.value.unwrap();
            let got = roc_auc(&sketch(&pos), &sketch(&neg)).unwrap();
            assert!(
                (got.value - exact).abs() <= got.error_bound,
                "separation {separation}: AUC {} vs exact {exact} (bound {})",
                got.value,
                got.error_bound
            );
            assert!(got.error_bound < 0.03);
        }
        assert_eq!(roc_auc(&sketch(&[0.1]), &sketch(&[])), None);
    }

    #[test]
    fn bin_counts_from_a_sketch_add_up_and_follow_the_edges() {
        let values: Vec<f64> = (0..150).map(f64::from).collect();
        let s = sketch(&values);
        let edges = quantile_edges(&s, 4);
        assert_eq!(edges.len(), 3);
        let counts = bin_counts(&s, &edges);
        assert_eq!(counts.iter().sum::<u64>(), 150);
        // Up to k values the sketch holds them all: the counts are exact.
        let exact = drift::bin_counts(&Sample::from_finite(values), &edges);
        assert_eq!(counts, exact);
    }

    #[test]
    fn chi_square_of_counts_compares_every_category_and_the_rest() {
        let r: BTreeMap<String, u64> = [("a".to_owned(), 50), ("b".to_owned(), 30)].into();
        let c: BTreeMap<String, u64> = [("a".to_owned(), 20), ("c".to_owned(), 40)].into();
        let got = chi_square_of_counts(&r, 20, &c, 40).unwrap();
        let exact = chi_square(&[50, 30, 0, 20], &[20, 0, 40, 40]).unwrap();
        assert_eq!(got, exact);
        assert_eq!(got.degrees_of_freedom, 3);
    }
}
