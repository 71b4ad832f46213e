//! Drift statistics between a reference and a current sample: the numbers SciPy gives for the
//! same data (two-sample Kolmogorov–Smirnov, chi-square, Jensen–Shannon distance, Wasserstein
//! distance) and the population stability index.

use crate::kolmogorov;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};
use std::collections::BTreeMap;

/// Default number of reference-quantile bins for PSI and the Jensen–Shannon distance.
pub const DEFAULT_BINS: usize = 10;

/// A bin share below this is raised to it in PSI, so an empty bin adds a large but finite
/// term instead of an infinite one (the value other drift tools use).
pub const PSI_EPSILON: f64 = 1e-4;

/// The finite values of a numeric column, sorted, and how many were left out.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    sorted: Vec<f64>,
    /// Values left out because they were missing, NaN or infinite.
    pub excluded: usize,
}

impl Sample {
    /// Keeps the finite values of `values` (missing ones are `None`), sorted.
    pub fn new(values: impl IntoIterator<Item = Option<f64>>) -> Self {
        let mut excluded = 0;
        let mut sorted: Vec<f64> = values
            .into_iter()
            .filter_map(|v| match v {
                Some(x) if x.is_finite() => Some(x + 0.0),
                _ => {
                    excluded += 1;
                    None
                }
            })
            .collect();
        sort_floats(&mut sorted);
        Sample { sorted, excluded }
    }

    /// From values already known to be finite.
    pub fn from_finite(mut values: Vec<f64>) -> Self {
        debug_assert!(values.iter().all(|v| v.is_finite()));
        sort_floats(&mut values);
        Sample { sorted: values, excluded: 0 }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    /// Number of distinct values.
    pub fn distinct(&self) -> usize {
        if self.sorted.is_empty() {
            return 0;
        }
        1 + self.sorted.windows(2).filter(|w| w[0] != w[1]).count()
    }

    /// Mean and population standard deviation.
    pub fn mean_std(&self) -> (f64, f64) {
        let n = self.sorted.len() as f64;
        let mean = self.sorted.iter().sum::<f64>() / n;
        let var = self.sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }
}

/// Sorts finite floats. Radix sort on the order-preserving bit patterns: linear time, which
/// matters for tens of millions of values.
fn sort_floats(values: &mut [f64]) {
    if values.len() < 4096 {
        values.sort_unstable_by(|a, b| a.total_cmp(b));
        return;
    }
    let mut keys: Vec<u64> = values.iter().map(|v| crate::performance::order_key(*v)).collect();
    radix_sort(&mut keys);
    for (v, k) in values.iter_mut().zip(keys) {
        *v = crate::performance::from_order_key(k);
    }
}

/// Least-significant-digit radix sort, 16 bits per pass; passes where every key has the same
/// digit are skipped.
pub(crate) fn radix_sort(keys: &mut Vec<u64>) {
    let mut scratch = vec![0u64; keys.len()];
    for pass in 0..4 {
        let shift = pass * 16;
        let mut counts = vec![0usize; 1 << 16];
        for k in keys.iter() {
            counts[((k >> shift) & 0xffff) as usize] += 1;
        }
        if counts.iter().any(|c| *c == keys.len()) {
            continue;
        }
        let mut offset = 0;
        for c in counts.iter_mut() {
            let here = *c;
            *c = offset;
            offset += here;
        }
        for k in keys.iter() {
            let digit = ((k >> shift) & 0xffff) as usize;
            scratch[counts[digit]] = *k;
            counts[digit] += 1;
        }
        std::mem::swap(keys, &mut scratch);
    }
}

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
    let (x, y) = (a.sorted(), b.sorted());
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Largest gap between the two empirical CDFs, evaluated after each distinct value.
    let (mut i, mut j) = (0usize, 0usize);
    let (mut max_up, mut max_down) = (0.0f64, 0.0f64);
    while i < n1 && j < n2 {
        let v = x[i].min(y[j]);
        while i < n1 && x[i] <= v {
            i += 1;
        }
        while j < n2 && y[j] <= v {
            j += 1;
        }
        let diff = i as f64 / n1 as f64 - j as f64 / n2 as f64;
        max_up = max_up.max(diff);
        max_down = max_down.max(-diff);
    }
    let d = max_up.max(max_down).clamp(0.0, 1.0);
    if n1.max(n2) <= kolmogorov::EXACT_MAX_N {
        let (d, p) = kolmogorov::two_sample_exact(n1, n2, d);
        return Some(Ks { statistic: d, p_value: p, method: KsMethod::Exact });
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let effective = kolmogorov::round_half_even(m * n / (m + n)) as u64;
    Some(Ks { statistic: d, p_value: kolmogorov::one_sample_sf(effective, d), method: KsMethod::Asymptotic })
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

/// Pearson's chi-square test of homogeneity on the 2 × k table of reference and current counts
/// per category (`scipy.stats.chi2_contingency(table, correction=False)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquare {
    pub statistic: f64,
    pub p_value: f64,
    pub degrees_of_freedom: usize,
}

pub fn chi_square(reference: &[u64], current: &[u64]) -> Option<ChiSquare> {
    let rt: u64 = reference.iter().sum();
    let ct: u64 = current.iter().sum();
    if rt == 0 || ct == 0 {
        return None;
    }
    let total = (rt + ct) as f64;
    let mut statistic = 0.0;
    let mut categories = 0usize;
    for (r, c) in reference.iter().zip(current) {
        let column = (r + c) as f64;
        if column == 0.0 {
            continue;
        }
        categories += 1;
        for (observed, row) in [(*r as f64, rt as f64), (*c as f64, ct as f64)] {
            let expected = row * column / total;
            statistic += (observed - expected).powi(2) / expected;
        }
    }
    let dof = categories.saturating_sub(1);
    if dof == 0 {
        return Some(ChiSquare { statistic: 0.0, p_value: 1.0, degrees_of_freedom: 0 });
    }
    let p_value = ChiSquared::new(dof as f64).map(|d| d.sf(statistic)).unwrap_or(f64::NAN);
    Some(ChiSquare { statistic, p_value, degrees_of_freedom: dof })
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
    fn radix_sort_sorts_negative_and_positive_floats() {
        let values: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 10_007) as f64 - 5_000.5).collect();
        let mut expected = values.clone();
        expected.sort_by(|a, b| a.total_cmp(b));
        let s = Sample::from_finite(values);
        assert_eq!(s.sorted(), expected.as_slice());
    }

    #[test]
    fn excluded_values_are_counted() {
        let s = Sample::new([Some(1.0), None, Some(f64::NAN), Some(f64::INFINITY), Some(-2.0)]);
        assert_eq!(s.sorted(), &[-2.0, 1.0]);
        assert_eq!(s.excluded, 3);
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
