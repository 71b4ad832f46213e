//! Drift statistics between a reference and a current sample: the numbers SciPy gives for the
//! same data (two-sample Kolmogorov–Smirnov, chi-square, Jensen–Shannon distance, Wasserstein
//! distance) and the population stability index.

use super::kolmogorov;
use super::sample::Sample;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};
use std::collections::BTreeMap;

/// Default number of reference-quantile bins for PSI and the Jensen–Shannon distance.
pub const DEFAULT_BINS: usize = 10;

/// A bin share below this is raised to it in PSI, so an empty bin adds a large but finite
/// term instead of an infinite one (the value other drift tools use).
pub const PSI_EPSILON: f64 = 1e-4;

/// Which distribution gave the Kolmogorov–Smirnov p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    Exact,
    Asymptotic,
}

/// The two-sided two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ks {
    pub statistic: f64,
    pub p_value: f64,
    pub method: KsMethod,
}

/// The two-sample Kolmogorov–Smirnov test, as `scipy.stats.ks_2samp(a, b)` (two-sided,
/// `method="auto"`): exact when both samples hold at most 10,000 values, asymptotic otherwise.
/// `None` when either sample is empty.
pub fn ks_two_sample(a: &Sample, b: &Sample) -> Option<Ks> {
    let d = ks_statistic(a, b)?;
    let (n1, n2) = (a.len(), b.len());
    if n1.max(n2) <= kolmogorov::EXACT_MAX_N {
        let (d, p) = kolmogorov::two_sample_exact(n1, n2, d);
        return Some(Ks { statistic: d, p_value: p, method: KsMethod::Exact });
    }
    Some(Ks { statistic: d, p_value: ks_asymptotic_p(n1, n2, d), method: KsMethod::Asymptotic })
}

/// The two-sample Kolmogorov–Smirnov statistic D alone (no p-value); `None` when either
/// sample is empty.
pub fn ks_statistic(a: &Sample, b: &Sample) -> Option<f64> {
    let (x, y) = (a.sorted(), b.sorted());
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Largest gap between the two empirical CDFs, evaluated after each distinct value. Large
    // samples are split at a value into two halves merged on two threads.
    let (max_up, max_down) = if n1 + n2 < (1 << 20) {
        gaps(x, y, (0, n1), (0, n2), (n1, n2))
    } else {
        let pivot = x[n1 / 2];
        let (i0, j0) = (x.partition_point(|v| *v < pivot), y.partition_point(|v| *v < pivot));
        let (low, high) = std::thread::scope(|scope| {
            let low = scope.spawn(|| gaps(x, y, (0, i0), (0, j0), (n1, n2)));
            let high = gaps(x, y, (i0, n1), (j0, n2), (n1, n2));
            (low.join().expect("no panic"), high)
        });
        (low.0.max(high.0), low.1.max(high.1))
    };
    Some(max_up.max(max_down).clamp(0.0, 1.0))
}

/// The asymptotic two-sided p-value of the two-sample KS statistic `d` of samples of `n1` and
/// `n2` values (SciPy's `ks_2samp` with `method="asymp"`).
pub fn ks_asymptotic_p(n1: usize, n2: usize, d: f64) -> f64 {
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let effective = kolmogorov::round_half_even(m * n / (m + n)) as u64;
    kolmogorov::one_sample_sf(effective, d)
}

/// The largest `F1 − F2` and `F2 − F1` over the values of `x[xs.0..xs.1]` and `y[ys.0..ys.1]`,
/// counts taken over the whole samples of sizes `n`. Every value below the range is below every
/// value in it, and every value above it above: the gap is evaluated only once the next value
/// differs, which the range's end always does. The merge step compiles to selects, not branches.
fn gaps(x: &[f64], y: &[f64], xs: (usize, usize), ys: (usize, usize), n: (usize, usize)) -> (f64, f64) {
    let (mut i, mut j) = (xs.0, ys.0);
    let (n1, n2) = (n.0 as f64, n.1 as f64);
    let (mut up, mut down) = (0.0f64, 0.0f64);
    // The gap after the previous element and that element's value; it counts once the value
    // changes.
    let (mut pending, mut last) = (0.0f64, f64::NEG_INFINITY);
    let mut step = |v: f64, i: usize, j: usize, pending: &mut f64, last: &mut f64| {
        let settled = v != *last;
        up = if settled { up.max(*pending) } else { up };
        down = if settled { down.max(-*pending) } else { down };
        *pending = i as f64 / n1 - j as f64 / n2;
        *last = v;
    };
    while i < xs.1 && j < ys.1 {
        let (a, b) = (x[i], y[j]);
        let take_x = a <= b;
        let v = if take_x { a } else { b };
        i += usize::from(take_x);
        j += usize::from(!take_x);
        step(v, i, j, &mut pending, &mut last);
    }
    while i < xs.1 {
        i += 1;
        step(x[i - 1], i, j, &mut pending, &mut last);
    }
    while j < ys.1 {
        j += 1;
        step(y[j - 1], i, j, &mut pending, &mut last);
    }
    step(f64::INFINITY, i, j, &mut pending, &mut last);
    (up, down)
}

/// The first Wasserstein distance between the two empirical distributions
/// (`scipy.stats.wasserstein_distance(a, b)`): the area between their CDFs.
pub fn wasserstein(a: &Sample, b: &Sample) -> Option<f64> {
    let (x, y) = (a.sorted(), b.sorted());
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (mut i, mut j) = (0usize, 0usize);
    let mut area = 0.0f64;
    let mut previous = x[0].min(y[0]);
    while i < n1 || j < n2 {
        let v = match (x.get(i), y.get(j)) {
            (Some(p), Some(q)) => p.min(*q),
            (Some(p), None) => *p,
            (None, Some(q)) => *q,
            (None, None) => break,
        };
        let gap = (i as f64 / n1 as f64 - j as f64 / n2 as f64).abs();
        area += gap * (v - previous);
        previous = v;
        while i < n1 && x[i] <= v {
            i += 1;
        }
        while j < n2 && y[j] <= v {
            j += 1;
        }
    }
    Some(area)
}

/// Inner bin edges at the reference's quantiles `1/bins, …, (bins−1)/bins` (linear
/// interpolation, NumPy's default), duplicates removed. Bin `k` holds `edges[k−1] <= v <
/// edges[k]`; the outer bins are open.
pub fn quantile_edges(reference: &Sample, bins: usize) -> Vec<f64> {
    let x = reference.sorted();
    if x.is_empty() || bins < 2 {
        return Vec::new();
    }
    let step = 1.0 / bins as f64;
    let mut edges: Vec<f64> = (1..bins).map(|k| quantile_linear(x, k as f64 * step)).collect();
    edges.dedup();
    edges
}

/// NumPy's `quantile(x, q, method="linear")` on sorted `x`, with its index arithmetic and
/// its two-sided interpolation, so edges match to the last bit.
fn quantile_linear(x: &[f64], q: f64) -> f64 {
    let n = x.len() as f64;
    let virtual_index = (n - 1.0) * q;
    let lower = virtual_index.floor().clamp(0.0, n - 1.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let t = virtual_index - virtual_index.floor();
    let (a, b) = (x[lower as usize], x[upper as usize]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Counts of `sample` per bin of `edges` (`edges.len() + 1` bins).
pub fn bin_counts(sample: &Sample, edges: &[f64]) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len() + 1];
    // Both are sorted: one merge pass.
    let mut bin = 0;
    for v in sample.sorted() {
        while bin < edges.len() && *v >= edges[bin] {
            bin += 1;
        }
        counts[bin] += 1;
    }
    counts
}

/// The population stability index `Σ (c − r)·ln(c / r)` over bin (or category) shares, each
/// share raised to at least [`PSI_EPSILON`]. Also returns each bin's term.
pub fn psi(reference: &[u64], current: &[u64]) -> (f64, Vec<f64>) {
    let rt: u64 = reference.iter().sum();
    let ct: u64 = current.iter().sum();
    let terms: Vec<f64> = reference
        .iter()
        .zip(current)
        .map(|(r, c)| {
            let r = (*r as f64 / rt as f64).max(PSI_EPSILON);
            let c = (*c as f64 / ct as f64).max(PSI_EPSILON);
            (c - r) * (c / r).ln()
        })
        .collect();
    (terms.iter().sum(), terms)
}

/// The Jensen–Shannon distance between two frequency vectors, natural log, as
/// `scipy.spatial.distance.jensenshannon(p, q)`: the square root of the divergence.
pub fn jensen_shannon(reference: &[u64], current: &[u64]) -> f64 {
    let rt: u64 = reference.iter().sum();
    let ct: u64 = current.iter().sum();
    let mut divergence = 0.0;
    for (r, c) in reference.iter().zip(current) {
        let p = *r as f64 / rt as f64;
        let q = *c as f64 / ct as f64;
        let m = (p + q) / 2.0;
        if p > 0.0 {
            divergence += p * (p / m).ln();
        }
        if q > 0.0 {
            divergence += q * (q / m).ln();
        }
    }
    (divergence / 2.0).max(0.0).sqrt()
}

/// Whether the chi-square test corrects for continuity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chi2Correction {
    /// Pearson's statistic as it is (`correction=False` in SciPy).
    #[default]
    None,
    /// Yates's correction when there is one degree of freedom (two categories): each count is
    /// moved half a unit toward its expected value, as `chi2_contingency(table)` does by
    /// default, and as NannyML's chi-square on two categories is defined.
    Yates,
}

impl Chi2Correction {
    pub fn name(self) -> &'static str {
        match self {
            Chi2Correction::None => "none",
            Chi2Correction::Yates => "yates",
        }
    }
}

impl std::str::FromStr for Chi2Correction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Chi2Correction::None),
            "yates" => Ok(Chi2Correction::Yates),
            other => Err(format!("unknown chi-square correction `{other}`; use none or yates")),
        }
    }
}

/// Pearson's chi-square test of homogeneity on the 2 × k table of reference and current counts
/// per category (`scipy.stats.chi2_contingency(table, correction=…)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquare {
    pub statistic: f64,
    pub p_value: f64,
    pub degrees_of_freedom: usize,
    /// Whether Yates's correction was applied (asked for, and one degree of freedom).
    #[serde(default)]
    pub corrected: bool,
}

/// The chi-square test without correction.
pub fn chi_square(reference: &[u64], current: &[u64]) -> Option<ChiSquare> {
    chi_square_with(reference, current, Chi2Correction::None)
}

/// The chi-square test with `correction`.
pub fn chi_square_with(reference: &[u64], current: &[u64], correction: Chi2Correction) -> Option<ChiSquare> {
    let rt: u64 = reference.iter().sum();
    let ct: u64 = current.iter().sum();
    if rt == 0 || ct == 0 {
        return None;
    }
    let total = (rt + ct) as f64;
    let categories = reference.iter().zip(current).filter(|(r, c)| **r + **c > 0).count();
    let dof = categories.saturating_sub(1);
    if dof == 0 {
        return Some(ChiSquare { statistic: 0.0, p_value: 1.0, degrees_of_freedom: 0, corrected: false });
    }
    let corrected = correction == Chi2Correction::Yates && dof == 1;
    let mut statistic = 0.0;
    for (r, c) in reference.iter().zip(current) {
        let column = (r + c) as f64;
        if column == 0.0 {
            continue;
        }
        for (observed, row) in [(*r as f64, rt as f64), (*c as f64, ct as f64)] {
            let expected = row * column / total;
            let mut gap = (observed - expected).abs();
            if corrected {
                gap -= gap.min(0.5);
            }
            statistic += gap * gap / expected;
        }
    }
    let p_value = ChiSquared::new(dof as f64).map(|d| d.sf(statistic)).unwrap_or(f64::NAN);
    Some(ChiSquare { statistic, p_value, degrees_of_freedom: dof, corrected })
}

/// Counts per category of a reference and a current sample, over the union of categories
/// (sorted), so categories seen on one side only are compared too.
pub fn category_counts<'a>(
    reference: impl IntoIterator<Item = &'a str>,
    current: impl IntoIterator<Item = &'a str>,
) -> (Vec<String>, Vec<u64>, Vec<u64>) {
    let mut table: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for v in reference {
        table.entry(v).or_default().0 += 1;
    }
    for v in current {
        table.entry(v).or_default().1 += 1;
    }
    let names = table.keys().map(|k| k.to_string()).collect();
    let r = table.values().map(|v| v.0).collect();
    let c = table.values().map(|v| v.1).collect();
    (names, r, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_merge_finds_the_same_gap_with_ties() {
        // Heavy ties around the split value, sizes above the two-thread threshold.
        let x: Vec<f64> = (0..700_000u64).map(|i| ((i * 7_919) % 1_000) as f64).collect();
        let y: Vec<f64> = (0..650_000u64).map(|i| ((i * 104_729) % 1_013) as f64 * 0.99).collect();
        let (a, b) = Sample::pair_from_finite(&x, &y);
        let whole = gaps(a.sorted(), b.sorted(), (0, a.len()), (0, b.len()), (a.len(), b.len()));
        let ks = ks_two_sample(&a, &b).unwrap();
        assert_eq!(ks.statistic, whole.0.max(whole.1));
        assert!(ks.statistic > 0.0);
    }

    #[test]
    fn empty_samples_have_no_test() {
        let empty = Sample::default();
        let one = Sample::from_finite(vec![1.0]);
        assert!(ks_two_sample(&empty, &one).is_none());
        assert!(wasserstein(&one, &empty).is_none());
        assert!(chi_square(&[0, 0], &[1, 2]).is_none());
    }

    #[test]
    fn bins_put_edge_values_in_the_upper_bin() {
        let s = Sample::from_finite(vec![1.0, 2.0, 3.0]);
        assert_eq!(bin_counts(&s, &[2.0]), vec![1, 2]);
    }
}
