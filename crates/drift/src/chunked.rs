//! Drift per chunk, as NannyML's univariate drift calculator computes it: every chunk of the
//! reference and of the analysis data is compared with the whole reference, and a chunk alerts
//! when its statistic is above the mean plus three standard deviations of the statistic over
//! the reference's own chunks.
//!
//! The statistics are NannyML's (its `nannyml/drift/univariate/methods.py`), which differ from
//! the whole-window comparison's in [`crate::compare`]:
//!
//! | method | value |
//! |---|---|
//! | `kolmogorov_smirnov` | the D statistic; with 10,000 reference values or more, from both CDFs at 10,000 equal-width bins over the reference's range |
//! | `jensen_shannon` | the distance, log base 2 (at most 1), over NumPy's `doane` bins of the reference (numbers) or its categories; values outside them as one more bin |
//! | `hellinger` | over the same bins as `jensen_shannon` |
//! | `wasserstein` | the raw distance; with 10,000 reference values or more, from the binned CDFs with the tails outside the reference's range added exactly |
//! | `l_infinity` | the largest difference of a category's share (categories) |
//! | `chi2` | the statistic (Yates's correction with two categories); alerts when its p-value is below 0.05, no thresholds |
//!
//! Thresholds come from the reference chunks' values: mean + k·σ (population σ, k = 3 by
//! default; no lower threshold; Kolmogorov–Smirnov's is at most 1), or a constant. A value
//! strictly above the upper threshold alerts. Missing and non-finite values are left out.
//!
//! Data quality, as NannyML's data-quality calculators give it, in the same results:
//! `missing_values`, the share of a chunk's rows with no value (null, or NaN), with thresholds
//! mean ± k·σ of the reference chunks' shares kept within [0, 1] (a column never missing in
//! the reference alerts on the first missing value); and `unseen_values` (categories), the
//! share of a chunk's rows holding a value the reference never had (a missing value is seen
//! when the reference has missing values too), which alerts above 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chunk::{self, ChunkInfo, Span};
use crate::stats::drift::{self as stats, Chi2Correction};
use crate::stats::sample::Sample;
use crate::Error;

/// A statistic computed per chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkMethod {
    KolmogorovSmirnov,
    JensenShannon,
    Wasserstein,
    Hellinger,
    LInfinity,
    Chi2,
    MissingValues,
    UnseenValues,
}

impl ChunkMethod {
    pub const ALL: [ChunkMethod; 8] = [
        ChunkMethod::KolmogorovSmirnov,
        ChunkMethod::JensenShannon,
        ChunkMethod::Wasserstein,
        ChunkMethod::Hellinger,
        ChunkMethod::LInfinity,
        ChunkMethod::Chi2,
        ChunkMethod::MissingValues,
        ChunkMethod::UnseenValues,
    ];

    /// The drift statistics, without the data-quality measures.
    pub const DRIFT: &[ChunkMethod] = ChunkMethod::ALL.split_at(6).0;

    pub fn name(self) -> &'static str {
        match self {
            ChunkMethod::KolmogorovSmirnov => "kolmogorov_smirnov",
            ChunkMethod::JensenShannon => "jensen_shannon",
            ChunkMethod::Wasserstein => "wasserstein",
            ChunkMethod::Hellinger => "hellinger",
            ChunkMethod::LInfinity => "l_infinity",
            ChunkMethod::Chi2 => "chi2",
            ChunkMethod::MissingValues => "missing_values",
            ChunkMethod::UnseenValues => "unseen_values",
        }
    }

    /// Whether it compares numbers (otherwise categories); Jensen–Shannon and Hellinger do both.
    fn takes(self, numeric: bool) -> bool {
        match self {
            ChunkMethod::KolmogorovSmirnov | ChunkMethod::Wasserstein => numeric,
            ChunkMethod::LInfinity | ChunkMethod::Chi2 | ChunkMethod::UnseenValues => !numeric,
            ChunkMethod::JensenShannon | ChunkMethod::Hellinger | ChunkMethod::MissingValues => true,
        }
    }
}

impl std::fmt::Display for ChunkMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ChunkMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let alias = match s {
            "ks" => "kolmogorov_smirnov",
            "js" => "jensen_shannon",
            other => other,
        };
        ChunkMethod::ALL.into_iter().find(|m| m.name() == alias).ok_or_else(|| {
            format!("unknown chunk method `{s}`; use one of {}", ChunkMethod::ALL.map(ChunkMethod::name).join(", "))
        })
    }
}

/// How a chunk's upper threshold is set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkThreshold {
    /// Mean plus this many standard deviations of the reference chunks' values.
    StandardDeviations(f64),
    /// This value.
    Constant(f64),
}

impl Default for ChunkThreshold {
    fn default() -> Self {
        ChunkThreshold::StandardDeviations(3.0)
    }
}

/// One column's values in chunk order.
#[derive(Debug, Clone)]
pub enum Values {
    /// Numbers; missing ones `None`.
    Numbers(Vec<Option<f64>>),
    /// Categories, each row a code into `names`; missing ones `None`.
    Categories { names: Vec<String>, codes: Vec<Option<u32>> },
}

impl Values {
    /// Categories from each row's name (`None` when missing), each distinct name kept once.
    pub fn categories<'a>(rows: impl IntoIterator<Item = Option<&'a str>>) -> Values {
        let mut index: std::collections::HashMap<&'a str, u32> = std::collections::HashMap::new();
        let mut names = Vec::new();
        let codes = rows
            .into_iter()
            .map(|row| {
                row.map(|name| {
                    *index.entry(name).or_insert_with(|| {
                        names.push(name.to_string());
                        (names.len() - 1) as u32
                    })
                })
            })
            .collect();
        Values::Categories { names, codes }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Values::Numbers(v) => v.len(),
            Values::Categories { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A column to compare, its reference and analysis values in chunk order.
#[derive(Debug, Clone)]
pub struct ChunkColumn {
    pub name: String,
    pub reference: Values,
    pub analysis: Values,
}

/// One statistic of one column in one chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkValue {
    /// `null` when the chunk holds no value of the column.
    pub value: Option<f64>,
    /// With chi-square: the p-value that decides the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    pub upper_threshold: Option<f64>,
    pub lower_threshold: Option<f64>,
    pub alert: bool,
}

/// A chunk and its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkResult {
    #[serde(flatten)]
    pub chunk: ChunkInfo,
    /// By column, then by method.
    pub results: ChunkResults,
}

/// A chunk's values by column, then by method.
pub type ChunkResults = BTreeMap<String, BTreeMap<ChunkMethod, ChunkValue>>;

/// Drift per chunk of a reference and an analysis table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkedDrift {
    pub threshold: ChunkThreshold,
    /// The methods of each column, in the columns' order.
    pub columns: Vec<(String, Vec<ChunkMethod>)>,
    /// Reference chunks first, then analysis chunks, each in time order.
    pub chunks: Vec<ChunkResult>,
    /// Analysis chunks with at least one alert.
    pub alerting_chunks: usize,
}

/// Computes `methods` (those that apply to each column's type) for every chunk of `columns`,
/// the reference cut by `reference_spans` and the analysis by `analysis_spans`. Columns are
/// computed in parallel.
pub fn chunked_drift(
    columns: &[ChunkColumn],
    reference_spans: &[Span],
    analysis_spans: &[Span],
    methods: &[ChunkMethod],
    threshold: ChunkThreshold,
) -> Result<ChunkedDrift, Error> {
    let (ChunkThreshold::StandardDeviations(k) | ChunkThreshold::Constant(k)) = threshold;
    if !k.is_finite() || k < 0.0 {
        return Err(Error::Invalid { field: "threshold".into(), message: format!("{k} is not a non-negative number") });
    }
    let per_column: Vec<ColumnOutcome> =
        in_parallel(columns, |c| column_results(c, reference_spans, analysis_spans, methods, threshold));
    let mut chunks: Vec<ChunkResult> = chunk::describe(reference_spans, analysis_spans)
        .into_iter()
        .map(|chunk| ChunkResult { chunk, results: BTreeMap::new() })
        .collect();
    let mut described = Vec::with_capacity(columns.len());
    for (column, outcome) in columns.iter().zip(per_column) {
        let outcome = outcome?;
        described.push((column.name.clone(), outcome.iter().map(|(m, _)| *m).collect()));
        for (method, values) in outcome {
            for (chunk, value) in chunks.iter_mut().zip(values) {
                chunk.results.entry(column.name.clone()).or_default().insert(method, value);
            }
        }
    }
    let alerting_chunks = chunks
        .iter()
        .filter(|c| !c.chunk.is_reference() && c.results.values().flat_map(|m| m.values()).any(|v| v.alert))
        .count();
    Ok(ChunkedDrift { threshold, columns: described, chunks, alerting_chunks })
}

/// Per method, the values of every reference chunk then every analysis chunk.
type ColumnOutcome = Result<Vec<(ChunkMethod, Vec<ChunkValue>)>, Error>;

fn column_results(
    column: &ChunkColumn,
    reference_spans: &[Span],
    analysis_spans: &[Span],
    methods: &[ChunkMethod],
    threshold: ChunkThreshold,
) -> ColumnOutcome {
    let numeric = match (&column.reference, &column.analysis) {
        (Values::Numbers(_), Values::Numbers(_)) => true,
        (Values::Categories { .. }, Values::Categories { .. }) => false,
        _ => {
            return Err(Error::Column {
                column: column.name.clone(),
                message: "holds numbers in one file and text in the other".into(),
            })
        }
    };
    let mut out = Vec::new();
    for &method in methods.iter().filter(|m| m.takes(numeric)) {
        if matches!(method, ChunkMethod::MissingValues | ChunkMethod::UnseenValues) {
            out.push((method, quality(method, column, reference_spans, analysis_spans, threshold)));
            continue;
        }
        let fitted = Fitted::fit(method, &column.reference);
        let measure = |values: &Values, span: &Span| fitted.measure(slice(values, span));
        let reference: Vec<(Option<f64>, Option<f64>)> =
            reference_spans.iter().map(|s| measure(&column.reference, s)).collect();
        let analysis: Vec<(Option<f64>, Option<f64>)> =
            analysis_spans.iter().map(|s| measure(&column.analysis, s)).collect();
        let upper = match (method, threshold) {
            (ChunkMethod::Chi2, _) => None,
            (_, ChunkThreshold::Constant(c)) => Some(c),
            (_, ChunkThreshold::StandardDeviations(k)) => {
                let seen: Vec<f64> = reference.iter().filter_map(|(v, _)| *v).collect();
                mean_sd(&seen).map(|(mean, sd)| {
                    let upper = mean + sd * k;
                    if method == ChunkMethod::KolmogorovSmirnov && upper >= 1.0 {
                        1.0
                    } else {
                        upper
                    }
                })
            }
        };
        let values = reference
            .into_iter()
            .chain(analysis)
            .map(|(value, p_value)| ChunkValue {
                value,
                p_value,
                upper_threshold: upper,
                lower_threshold: None,
                alert: match method {
                    ChunkMethod::Chi2 => p_value.is_some_and(|p| p < 0.05),
                    _ => matches!((value, upper), (Some(v), Some(u)) if v > u),
                },
            })
            .collect();
        out.push((method, values));
    }
    if out.is_empty() {
        return Err(Error::Column {
            column: column.name.clone(),
            message: format!(
                "none of the chosen methods compares {}; add one that does",
                if numeric { "numbers" } else { "categories" }
            ),
        });
    }
    Ok(out)
}

/// The missing or unseen values' share per chunk, with thresholds and alerts.
fn quality(
    method: ChunkMethod,
    column: &ChunkColumn,
    reference_spans: &[Span],
    analysis_spans: &[Span],
    threshold: ChunkThreshold,
) -> Vec<ChunkValue> {
    let absent = |v: &Option<f64>| v.is_none_or(f64::is_nan);
    // The reference's values (a missing value among them when it has one).
    let seen: Option<std::collections::HashSet<Option<&str>>> = match &column.reference {
        Values::Categories { names, codes } if method == ChunkMethod::UnseenValues => {
            let mut used = vec![false; names.len()];
            let mut missing = false;
            for code in codes {
                match code {
                    Some(c) => used[*c as usize] = true,
                    None => missing = true,
                }
            }
            let present = names.iter().zip(used).filter(|(_, u)| *u).map(|(n, _)| Some(n.as_str()));
            Some(present.chain(missing.then_some(None)).collect())
        }
        _ => None,
    };
    let share = |values: &Values, span: &Span| -> Option<f64> {
        let n = span.end - span.start;
        let hits = match (values, &seen) {
            (Values::Numbers(v), _) => v[span.start..span.end].iter().filter(|x| absent(x)).count(),
            (Values::Categories { codes, .. }, None) => {
                codes[span.start..span.end].iter().filter(|x| x.is_none()).count()
            }
            (Values::Categories { names, codes }, Some(seen)) => {
                // Whether each of this side's names was seen, once per name, not per row.
                let known: Vec<bool> = names.iter().map(|n| seen.contains(&Some(n.as_str()))).collect();
                let missing_seen = seen.contains(&None);
                codes[span.start..span.end]
                    .iter()
                    .filter(|x| match x {
                        Some(c) => !known[*c as usize],
                        None => !missing_seen,
                    })
                    .count()
            }
        };
        (n > 0).then(|| hits as f64 / n as f64)
    };
    let reference: Vec<Option<f64>> = reference_spans.iter().map(|s| share(&column.reference, s)).collect();
    let analysis: Vec<Option<f64>> = analysis_spans.iter().map(|s| share(&column.analysis, s)).collect();
    let (lower, upper) = if method == ChunkMethod::UnseenValues {
        (None, Some(0.0))
    } else {
        let k = match threshold {
            ChunkThreshold::StandardDeviations(k) => k,
            ChunkThreshold::Constant(_) => 3.0,
        };
        share_band(&reference, k)
    };
    reference
        .into_iter()
        .chain(analysis)
        .map(|value| ChunkValue {
            value,
            p_value: None,
            upper_threshold: upper,
            lower_threshold: lower,
            alert: value.is_some_and(|v| upper.is_some_and(|u| v > u) || lower.is_some_and(|l| v < l)),
        })
        .collect()
}

/// Thresholds for a share or a rate from its reference chunks' values: mean ± k·σ, kept within
/// [0, 1] (a bound at or beyond a limit becomes the limit); none without a value.
pub(crate) fn share_band(reference: &[Option<f64>], k: f64) -> (Option<f64>, Option<f64>) {
    band_within(reference, k, (0.0, 1.0))
}

/// Thresholds from reference chunks' values: mean ± k·σ, a bound at or beyond a limit becoming
/// the limit (none for an infinite one); none without a value.
pub(crate) fn band_within(
    reference: &[Option<f64>],
    k: f64,
    (floor, ceiling): (f64, f64),
) -> (Option<f64>, Option<f64>) {
    let seen: Vec<f64> = reference.iter().flatten().copied().filter(|v| !v.is_nan()).collect();
    match mean_sd(&seen) {
        None => (None, None),
        Some((mean, sd)) => {
            let (lower, upper) = (mean - sd * k, mean + sd * k);
            let upper = if upper >= ceiling { ceiling.is_finite().then_some(ceiling) } else { Some(upper) };
            (Some(if lower <= floor { floor } else { lower }), upper)
        }
    }
}

/// `f` of every item, computed on as many threads as there are cores, in the items' order.
pub(crate) fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len()).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    items
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % workers == w)
                        .map(|(i, x)| (i, f(x)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, R)> =
            handles.into_iter().flat_map(|h| h.join().expect("a chunk worker does not panic")).collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    })
}

/// The mean and population standard deviation of the reference chunks' values, if any.
fn mean_sd(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    Some((mean, sd))
}

/// The present values of a chunk.
enum Chunk<'a> {
    Numbers(Vec<f64>),
    Categories(Vec<&'a str>),
}

fn slice<'a>(values: &'a Values, span: &Span) -> Chunk<'a> {
    match values {
        Values::Numbers(v) => {
            Chunk::Numbers(v[span.start..span.end].iter().flatten().copied().filter(|x| x.is_finite()).collect())
        }
        Values::Categories { names, codes } => Chunk::Categories(
            codes[span.start..span.end].iter().flatten().map(|c| names[*c as usize].as_str()).collect(),
        ),
    }
}

/// Reference values at or above which KS and Wasserstein use 10,000 bins, as NannyML does.
const BINNED_FROM: usize = 10_000;
const BINS: usize = 10_000;

/// A method fitted on the whole reference.
enum Fitted {
    /// Nothing in the reference: every value is missing.
    Empty,
    KsExact(Sample),
    KsBinned(BinnedCdf),
    WassersteinExact(Sample),
    WassersteinBinned(BinnedCdf),
    /// Jensen–Shannon or Hellinger over numeric bins.
    Bins {
        method: ChunkMethod,
        edges: Vec<f64>,
        shares: Vec<f64>,
    },
    /// Jensen–Shannon or Hellinger over the reference's categories (sorted).
    Categories {
        method: ChunkMethod,
        names: Vec<String>,
        shares: Vec<f64>,
    },
    LInfinity {
        shares: BTreeMap<String, f64>,
    },
    Chi2 {
        counts: Vec<(String, u64)>,
    },
}

impl Fitted {
    fn fit(method: ChunkMethod, reference: &Values) -> Fitted {
        let everything = Span { key: String::new(), start: 0, end: reference.len(), start_ms: None, end_ms: None };
        match (method, slice(reference, &everything)) {
            (_, Chunk::Numbers(v)) if v.is_empty() => Fitted::Empty,
            (_, Chunk::Categories(v)) if v.is_empty() => Fitted::Empty,
            (ChunkMethod::KolmogorovSmirnov, Chunk::Numbers(v)) if v.len() >= BINNED_FROM => {
                Fitted::KsBinned(BinnedCdf::of(&v))
            }
            (ChunkMethod::KolmogorovSmirnov, Chunk::Numbers(v)) => Fitted::KsExact(Sample::from_finite(v)),
            (ChunkMethod::Wasserstein, Chunk::Numbers(v)) if v.len() >= BINNED_FROM => {
                Fitted::WassersteinBinned(BinnedCdf::of(&v))
            }
            (ChunkMethod::Wasserstein, Chunk::Numbers(v)) => Fitted::WassersteinExact(Sample::from_finite(v)),
            (method, Chunk::Numbers(v)) => {
                let edges = doane_edges(&v);
                let shares = histogram(&v, &edges).iter().map(|c| *c as f64 / v.len() as f64).collect();
                Fitted::Bins { method, edges, shares }
            }
            (ChunkMethod::LInfinity, Chunk::Categories(v)) => {
                let counts = count(&v);
                let n = v.len() as f64;
                Fitted::LInfinity { shares: counts.into_iter().map(|(k, c)| (k.to_owned(), c as f64 / n)).collect() }
            }
            (ChunkMethod::Chi2, Chunk::Categories(v)) => {
                let mut counts: Vec<(String, u64)> = count(&v).into_iter().map(|(k, c)| (k.to_owned(), c)).collect();
                // NannyML's order (value counts, most frequent first) only changes the order of a sum.
                counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                Fitted::Chi2 { counts }
            }
            (method, Chunk::Categories(v)) => {
                let counts = count(&v);
                let n = v.len() as f64;
                let names = counts.keys().map(|k| k.to_string()).collect();
                Fitted::Categories { method, names, shares: counts.values().map(|c| *c as f64 / n).collect() }
            }
        }
    }

    /// The value of a chunk, and its p-value (chi-square).
    fn measure(&self, chunk: Chunk<'_>) -> (Option<f64>, Option<f64>) {
        let n = match &chunk {
            Chunk::Numbers(v) => v.len(),
            Chunk::Categories(v) => v.len(),
        };
        if n == 0 {
            return (None, None);
        }
        match (self, chunk) {
            (Fitted::Empty, _) => (None, None),
            (Fitted::KsExact(r), Chunk::Numbers(v)) => (stats::ks_statistic(r, &Sample::from_finite(v)), None),
            (Fitted::KsBinned(BinnedCdf { edges, cdf }), Chunk::Numbers(v)) => {
                let below = v.iter().filter(|x| **x < edges[0]).count() as f64 / n as f64;
                let mut acc = 0.0;
                let mut d = 0.0f64;
                for (c, r) in histogram(&v, edges).iter().zip(cdf) {
                    acc += *c as f64 / n as f64;
                    d = d.max((r - (below + acc)).abs());
                }
                (Some(d), None)
            }
            (Fitted::WassersteinExact(r), Chunk::Numbers(v)) => (stats::wasserstein(r, &Sample::from_finite(v)), None),
            (Fitted::WassersteinBinned(binned), Chunk::Numbers(v)) => (Some(binned_wasserstein(binned, &v)), None),
            (Fitted::Bins { method, edges, shares }, Chunk::Numbers(v)) => {
                let q: Vec<f64> = histogram(&v, edges).iter().map(|c| *c as f64 / n as f64).collect();
                (Some(distance(*method, shares, q)), None)
            }
            (Fitted::Categories { method, names, shares }, Chunk::Categories(v)) => {
                let counts = count(&v);
                let q: Vec<f64> =
                    names.iter().map(|k| counts.get(k.as_str()).copied().unwrap_or(0) as f64 / n as f64).collect();
                (Some(distance(*method, shares, q)), None)
            }
            (Fitted::LInfinity { shares }, Chunk::Categories(v)) => {
                let counts = count(&v);
                let mut d = 0.0f64;
                for (k, r) in shares {
                    d = d.max((r - counts.get(k.as_str()).copied().unwrap_or(0) as f64 / n as f64).abs());
                }
                for (k, c) in &counts {
                    if !shares.contains_key(*k) {
                        d = d.max(*c as f64 / n as f64);
                    }
                }
                (Some(d), None)
            }
            (Fitted::Chi2 { counts }, Chunk::Categories(v)) => {
                let mut chunk_counts = count(&v);
                let mut r: Vec<u64> = Vec::with_capacity(counts.len());
                let mut c: Vec<u64> = Vec::with_capacity(counts.len());
                for (k, n) in counts {
                    r.push(*n);
                    c.push(chunk_counts.remove(k.as_str()).unwrap_or(0));
                }
                let mut only: Vec<(&str, u64)> = chunk_counts.into_iter().collect();
                only.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                for (_, n) in only {
                    r.push(0);
                    c.push(n);
                }
                match stats::chi_square_with(&r, &c, Chi2Correction::Yates) {
                    Some(chi) => (Some(chi.statistic), Some(chi.p_value)),
                    None => (None, None),
                }
            }
            _ => (None, None),
        }
    }
}

fn count<'a>(values: &[&'a str]) -> BTreeMap<&'a str, u64> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(*v).or_insert(0) += 1;
    }
    counts
}

/// NumPy's `linspace(first, last, num)`.
fn linspace(first: f64, last: f64, num: usize) -> Vec<f64> {
    let step = (last - first) / (num - 1) as f64;
    let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + first).collect();
    out[num - 1] = last;
    out
}

/// The range of `values` as NumPy widens an empty one.
fn range(values: &[f64]) -> (f64, f64) {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// A reference's cumulative shares at [`BINS`] equal-width bins over its range.
struct BinnedCdf {
    edges: Vec<f64>,
    cdf: Vec<f64>,
}

impl BinnedCdf {
    fn of(values: &[f64]) -> Self {
        let (lo, hi) = range(values);
        let edges = linspace(lo, hi, BINS + 1);
        let cdf = cumulative(&histogram(values, &edges), values.len());
        BinnedCdf { edges, cdf }
    }
}

/// NumPy's `histogram_bin_edges(values, bins="doane")`.
fn doane_edges(values: &[f64]) -> Vec<f64> {
    let n = values.len();
    let (lo, hi) = range(values);
    let mut width = 0.0;
    if n > 2 {
        let nf = n as f64;
        let sg1 = (6.0 * (nf - 2.0) / ((nf + 1.0) * (nf + 3.0))).sqrt();
        let mean = values.iter().sum::<f64>() / nf;
        let sigma = (values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / nf).sqrt();
        if sigma > 0.0 {
            let g1 = values.iter().map(|x| ((x - mean) / sigma).powi(3)).sum::<f64>() / nf;
            width = (hi - lo) / (1.0 + nf.log2() + (1.0 + g1.abs() / sg1).log2());
        }
    }
    let bins = if width > 0.0 { ((hi - lo) / width).ceil() as usize } else { 1 };
    linspace(lo, hi, bins + 1)
}

/// Counts per bin of `edges`: `edges[i] <= x < edges[i + 1]`, the last bin closed; values
/// outside the edges are not counted.
fn histogram(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len() - 1];
    let (lo, hi) = (edges[0], edges[edges.len() - 1]);
    for x in values {
        if *x < lo || *x > hi {
            continue;
        }
        let bin = edges.partition_point(|e| e <= x).saturating_sub(1).min(counts.len() - 1);
        counts[bin] += 1;
    }
    counts
}

/// Running sums of the shares `counts / n`.
fn cumulative(counts: &[u64], n: usize) -> Vec<f64> {
    let mut acc = 0.0;
    counts
        .iter()
        .map(|c| {
            acc += *c as f64 / n as f64;
            acc
        })
        .collect()
}

/// NannyML's Wasserstein distance between a reference binned at `edges` (cumulative shares
/// `cdf`) and `values`: the binned CDFs' area, plus the exact areas of values below and above
/// the reference's range.
fn binned_wasserstein(BinnedCdf { edges, cdf }: &BinnedCdf, values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let (lo, hi) = (edges[0], edges[edges.len() - 1]);
    let below: Vec<f64> = values.iter().copied().filter(|x| *x < lo).collect();
    let above: Vec<f64> = values.iter().copied().filter(|x| *x > hi).collect();
    let (mut small_term, mut small_share, mut big_term) = (0.0, 0.0, 0.0);
    if !below.is_empty() {
        small_share = (below.len() + 1) as f64 / n;
        let mut v = below;
        v.push(lo);
        small_term = tail_area(v, false) * small_share;
    }
    if !above.is_empty() {
        let share = (above.len() + 1) as f64 / n;
        let mut v = above;
        v.push(hi);
        big_term = tail_area(v, true) * share;
    }
    let width = edges[1] - edges[0];
    let mut acc = 0.0;
    let mut within = 0.0;
    for (c, r) in histogram(values, edges).iter().zip(cdf) {
        acc += *c as f64 / n;
        within += (r - (acc + small_share)).abs() * width;
    }
    within + small_term + big_term
}

/// `Σ F(u_i)·(u_{i+1} − u_i)` over the distinct values `u` of `v` and their empirical CDF
/// `F` (`1 − F` with `upper`).
fn tail_area(mut v: Vec<f64>, upper: bool) -> f64 {
    v.sort_by(f64::total_cmp);
    let total = v.len() as f64;
    let mut area = 0.0;
    let mut seen = 0usize;
    let mut i = 0;
    while i < v.len() {
        let u = v[i];
        while i < v.len() && v[i] == u {
            i += 1;
            seen += 1;
        }
        if i < v.len() {
            let f = seen as f64 / total;
            area += if upper { 1.0 - f } else { f } * (v[i] - u);
        }
    }
    area
}

/// Jensen–Shannon (log base 2) or Hellinger distance of reference shares `p` and chunk shares
/// `q`; a chunk's share outside the reference's bins or categories counts as one more bin.
fn distance(method: ChunkMethod, p: &[f64], mut q: Vec<f64>) -> f64 {
    let mut p = p.to_vec();
    let leftover = 1.0 - q.iter().sum::<f64>();
    if leftover > 0.0 {
        q.push(leftover);
        p.push(0.0);
    }
    if method == ChunkMethod::Hellinger {
        let sum: f64 = p.iter().zip(&q).map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2)).sum();
        return sum.sqrt() / std::f64::consts::SQRT_2;
    }
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let mut js = 0.0;
    for (a, b) in p.iter().zip(&q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        if a > 0.0 {
            js += a * (a / m).ln();
        }
        if b > 0.0 {
            js += b * (b / m).ln();
        }
    }
    (js / std::f64::consts::LN_2 / 2.0).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_as_numpy_does() {
        let edges = linspace(0.0, 1.0, 5);
        assert_eq!(edges, [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(histogram(&[-0.1, 0.0, 0.25, 0.9, 1.0, 1.5], &edges), [1, 1, 0, 2]);
    }

    #[test]
    fn tails_outside_the_reference_add_their_exact_area() {
        // Reference on [0, 1]; the chunk has half its values at 3: their distance to the
        // reference's top is 2, weighed by their share.
        let reference: Vec<f64> = (0..20_000).map(|i| i as f64 / 19_999.0).collect();
        let chunk: Vec<f64> = (0..1000).map(|i| if i % 2 == 0 { 3.0 } else { i as f64 / 999.0 }).collect();
        let binned = binned_wasserstein(&BinnedCdf::of(&reference), &chunk);
        let exact = stats::wasserstein(&Sample::from_finite(reference), &Sample::from_finite(chunk)).unwrap();
        assert!((binned - exact).abs() < 2e-3, "{binned} {exact}");
    }

    #[test]
    fn distances_are_zero_for_equal_shares_and_bounded() {
        for method in [ChunkMethod::JensenShannon, ChunkMethod::Hellinger] {
            assert_eq!(distance(method, &[0.5, 0.5], vec![0.5, 0.5]), 0.0);
            let far = distance(method, &[1.0, 0.0], vec![0.0, 1.0]);
            assert!((far - 1.0).abs() < 1e-12, "{method}: {far}");
        }
    }
}
