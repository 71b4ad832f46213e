//! Comparing a current sample of columns against a reference: one test per column, chosen by
//! rule or by the caller, a verdict per column and one for the whole dataset.
//!
//! Rules of `auto` (the ones users know from data-drift tools):
//!
//! | column | reference rows ≤ 1,000 | reference rows > 1,000 |
//! |---|---|---|
//! | numeric with more than 5 distinct values | KS, drift when p < 0.05 | Wasserstein distance ÷ reference std, drift when ≥ 0.1 |
//! | categorical, boolean, or numeric with ≤ 5 distinct values | chi-square, drift when p < 0.05 | Jensen–Shannon distance, drift when ≥ 0.1 |
//!
//! PSI drifts when ≥ 0.1. The dataset drifts when at least half of its columns drift.
//!
//! Variants, stated per column in `variant`: the KS p-value is `exact` (both samples of at most
//! 10,000 values) or `asymptotic`, as SciPy's `method="auto"` chooses; the Jensen–Shannon
//! distance uses the `natural_log` (so it is at most √ln 2 ≈ 0.8326), as SciPy's does by
//! default; chi-square has `no_correction` unless Yates's is asked for and there are two
//! categories (`yates`); Wasserstein's statistic is `normalized_by_reference_std` (the
//! population standard deviation), and the column also carries SciPy's raw distance.
//!
//! Categorical columns are compared over at most `max_categories` categories (50 by default)
//! plus one "other" category for the rest ([`crate::stats::categories`] has the rules), so a
//! column with tens of thousands of distinct values gives a bounded table and report.

use crate::format;
use crate::stats::categories::{CategoryTable, DEFAULT_KEEP, MAX_NAMES};
use crate::stats::column::ColumnData;
use crate::stats::drift::{self as stats, Chi2Correction};
use crate::stats::sample::Sample;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A test, or `auto` to choose one per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Auto,
    Psi,
    Ks,
    Chi2,
    Js,
    Wasserstein,
}

impl Method {
    pub const ALL: [Method; 6] = [Method::Auto, Method::Psi, Method::Ks, Method::Chi2, Method::Js, Method::Wasserstein];

    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Psi => "psi",
            Method::Ks => "ks",
            Method::Chi2 => "chi2",
            Method::Js => "js",
            Method::Wasserstein => "wasserstein",
        }
    }

    /// The default drift threshold and whether a value above (distance) or below (p-value)
    /// it means drift.
    pub fn default_threshold(self) -> f64 {
        match self {
            Method::Ks | Method::Chi2 => 0.05,
            Method::Psi | Method::Js | Method::Wasserstein | Method::Auto => 0.1,
        }
    }

    fn drift_when_below(self) -> bool {
        matches!(self, Method::Ks | Method::Chi2)
    }

    /// Whether a column drifted: a p-value below the threshold (KS, chi-square) or a distance
    /// at or above it.
    pub(crate) fn drifted(self, statistic: Option<f64>, p_value: Option<f64>, threshold: f64) -> bool {
        if self.drift_when_below() {
            p_value.is_some_and(|p| p < threshold)
        } else {
            statistic.is_some_and(|s| s >= threshold)
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown method `{s}`; use one of {}", Method::ALL.map(Method::name).join(", ")))
    }
}

/// Settings of a comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    pub method: Method,
    /// Overrides the method's default threshold.
    pub threshold: Option<f64>,
    /// Reference-quantile bins for PSI, Jensen–Shannon on numbers and the histograms.
    pub bins: usize,
    /// Share of drifted columns at which the dataset counts as drifted.
    pub drift_share: f64,
    /// Categories of a categorical column kept by name; the others are compared as one,
    /// "other".
    #[serde(default = "default_max_categories")]
    pub max_categories: usize,
    /// Continuity correction of the chi-square test.
    #[serde(default)]
    pub chi2_correction: Chi2Correction,
}

fn default_max_categories() -> usize {
    DEFAULT_KEEP
}

/// Most reference-quantile bins.
pub const MAX_BINS: usize = 1_000;

impl Default for Options {
    fn default() -> Self {
        Options {
            method: Method::Auto,
            threshold: None,
            bins: stats::DEFAULT_BINS,
            drift_share: 0.5,
            max_categories: DEFAULT_KEEP,
            chi2_correction: Chi2Correction::None,
        }
    }
}

impl Options {
    /// Checks the settings; the error names the field (`bins`, `drift_share`, `threshold`,
    /// `max_categories`) and what to do.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let invalid = |field: &str, message: String| crate::Error::Invalid { field: field.into(), message };
        if !(2..=MAX_BINS).contains(&self.bins) {
            return Err(invalid("bins", format!("{} is not between 2 and {MAX_BINS}", self.bins)));
        }
        if !(0.0..=1.0).contains(&self.drift_share) {
            return Err(invalid("drift_share", format!("{} is not between 0 and 1", self.drift_share)));
        }
        if let Some(t) = self.threshold {
            if !t.is_finite() || t < 0.0 {
                return Err(invalid("threshold", format!("{t} is not a non-negative number")));
            }
        }
        if !(1..=MAX_NAMES).contains(&self.max_categories) {
            return Err(invalid("max_categories", format!("{} is not between 1 and {MAX_NAMES}", self.max_categories)));
        }
        Ok(())
    }
}

/// How a column was treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Numeric,
    Categorical,
}

/// Counts of one side of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideCounts {
    /// Values used.
    pub values: usize,
    /// Values left out: missing, NaN or infinite.
    pub excluded: usize,
}

/// Shares per bin or category, for the report's histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin labels (`[a, b)`) or category names.
    pub labels: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
    /// When categories were folded: how many the last label, "other", stands for (besides
    /// values past the count limit, shown as `+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_categories: Option<usize>,
}

/// The verdict on one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub column: String,
    pub kind: Kind,
    /// The test used (never `auto`).
    pub method: Method,
    /// The test's statistic: KS D, chi-square, PSI, JS distance or normalised Wasserstein
    /// distance. `null` when it could not be computed (see `reason`).
    pub statistic: Option<f64>,
    /// Which form of the test gave it: `exact` or `asymptotic` (KS), `natural_log`
    /// (Jensen–Shannon), `no_correction` or `yates` (chi-square), `normalized_by_reference_std`
    /// (Wasserstein). PSI has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// With Wasserstein: SciPy's distance, in the column's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    /// With Wasserstein: the distance divided by the reference's standard deviation; the
    /// statistic, which the threshold applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasserstein_normalized: Option<f64>,
    /// For KS and chi-square.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub reference: SideCounts,
    pub current: SideCounts,
    pub histogram: Histogram,
    /// With PSI: each bin's or category's term `(c − r)·ln(c / r)`, in the histogram's order;
    /// they add up to the statistic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi_terms: Option<Vec<f64>>,
    /// Set when the column was compared from rollups (sketches and value counts) because raw
    /// values of a window are gone: what the figures are within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate: Option<Approximation>,
}

/// How far a comparison from rollups may be from the one raw values would give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approximation {
    /// What the figures were computed from: `kll sketches` or `value counts`.
    pub from: String,
    /// The sketches' normalized rank errors added (99 % confidence): each bin's share, and each
    /// point of either CDF, is within it. `null` for value counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_error: Option<f64>,
    /// The statistic is within this of the exact one (99 % confidence), where a bound is known:
    /// the KS statistic and the (normalised) Wasserstein distance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_bound: Option<f64>,
    /// What else to know, e.g. that categories beyond the rollups' top K were counted as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The verdict on a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub method: Method,
    pub columns: Vec<ColumnDrift>,
    pub drifted_columns: usize,
    pub share_drifted: f64,
    pub drift_share: f64,
    pub dataset_drift: bool,
}

/// Compares each `(name, reference, current)` column.
pub fn compare(columns: &[(String, ColumnData, ColumnData)], options: &Options) -> Result<Comparison, crate::Error> {
    let mut out = Vec::with_capacity(columns.len());
    for (name, reference, current) in columns {
        out.push(compare_column(name, reference, current, options)?);
    }
    Ok(Comparison::of(out, options))
}

impl Comparison {
    /// The dataset's verdict from its columns' verdicts.
    pub fn of(columns: Vec<ColumnDrift>, options: &Options) -> Self {
        let drifted = columns.iter().filter(|c| c.drifted).count();
        let share = if columns.is_empty() { 0.0 } else { drifted as f64 / columns.len() as f64 };
        Comparison {
            method: options.method,
            drifted_columns: drifted,
            share_drifted: share,
            drift_share: options.drift_share,
            dataset_drift: !columns.is_empty() && share >= options.drift_share,
            columns,
        }
    }
}

/// Above this many distinct reference values a numeric column is treated as continuous.
pub(crate) const MAX_DISCRETE_DISTINCT: usize = 5;
/// Up to this many reference rows, `auto` uses the tests with p-values.
pub(crate) const SMALL_REFERENCE: usize = 1_000;

/// Compares one column.
pub fn compare_column(
    name: &str,
    reference: &ColumnData,
    current: &ColumnData,
    options: &Options,
) -> Result<ColumnDrift, crate::Error> {
    options.validate()?;
    let numeric = match (reference, current) {
        (ColumnData::Numeric(r), ColumnData::Numeric(c)) => {
            Some((Sample::new(r.iter().copied()), Sample::new(c.iter().copied())))
        }
        _ => None,
    };
    let method = match (options.method, &numeric) {
        (Method::Auto, Some((r, _))) if r.distinct() > MAX_DISCRETE_DISTINCT => {
            if r.len() <= SMALL_REFERENCE {
                Method::Ks
            } else {
                Method::Wasserstein
            }
        }
        (Method::Auto, _) => {
            let rows = reference.len();
            if rows <= SMALL_REFERENCE {
                Method::Chi2
            } else {
                Method::Js
            }
        }
        (m, _) => m,
    };
    let continuous =
        numeric.is_some() && (options.method != Method::Auto || matches!(method, Method::Ks | Method::Wasserstein));
    let threshold = options.threshold.unwrap_or(method.default_threshold());
    let column = |what: &str| crate::Error::Column { column: name.to_string(), message: what.to_string() };

    let mut statistic = None;
    let mut p_value = None;
    let mut psi_terms = None;
    let mut reason = None;
    let mut variant = None;
    let mut raw_wasserstein = None;
    let (kind, ref_counts, cur_counts, histogram);
    if continuous {
        let (r, c) = numeric.as_ref().expect("numeric columns");
        kind = Kind::Numeric;
        ref_counts = SideCounts { values: r.len(), excluded: r.excluded };
        cur_counts = SideCounts { values: c.len(), excluded: c.excluded };
        let edges = stats::quantile_edges(r, options.bins);
        let (rb, cb) = (stats::bin_counts(r, &edges), stats::bin_counts(c, &edges));
        histogram = numeric_histogram(&edges, &rb, &cb);
        if r.is_empty() || c.is_empty() {
            reason = Some(empty_reason(r.is_empty(), c.is_empty()));
        } else {
            match method {
                Method::Ks => {
                    let ks = stats::ks_two_sample(r, c).expect("both samples hold values");
                    statistic = Some(ks.statistic);
                    p_value = Some(ks.p_value);
                    variant = Some(match ks.method {
                        stats::KsMethod::Exact => "exact",
                        stats::KsMethod::Asymptotic => "asymptotic",
                    });
                }
                Method::Wasserstein => {
                    let distance = stats::wasserstein(r, c).expect("both samples hold values");
                    let (_, std) = r.mean_std();
                    raw_wasserstein = Some(distance);
                    variant = Some(NORMALIZED);
                    if std > 0.0 {
                        statistic = Some(distance / std);
                    } else {
                        reason = Some(format!(
                            "the reference is constant, so the distance ({distance}) cannot be scaled by its spread"
                        ));
                        statistic = None;
                    }
                }
                m @ (Method::Psi | Method::Js | Method::Chi2) => {
                    (statistic, p_value, psi_terms, variant) = on_counts(m, &rb, &cb, options.chi2_correction)
                }
                Method::Auto => unreachable!("auto resolved above"),
            }
        }
    } else {
        if method == Method::Ks || method == Method::Wasserstein {
            return Err(column(&format!(
                "{method} needs numbers on both sides, and this column holds categories; use the chi2, js or psi method for it"
            )));
        }
        kind = Kind::Categorical;
        let (r, c) = (reference.categories(), current.categories());
        ref_counts = SideCounts { values: r.values() as usize, excluded: r.missing() };
        cur_counts = SideCounts { values: c.values() as usize, excluded: c.missing() };
        let table = CategoryTable::of(&r, &c, options.max_categories);
        let (rc, cc) = (table.reference, table.current);
        histogram = Histogram {
            labels: table.names,
            reference: shares(&rc),
            current: shares(&cc),
            other_categories: table.other,
        };
        if ref_counts.values == 0 || cur_counts.values == 0 {
            reason = Some(empty_reason(ref_counts.values == 0, cur_counts.values == 0));
        } else {
            match method {
                m @ (Method::Psi | Method::Js | Method::Chi2) => {
                    (statistic, p_value, psi_terms, variant) = on_counts(m, &rc, &cc, options.chi2_correction)
                }
                _ => unreachable!("numeric-only methods refused above"),
            }
        }
    }
    let drifted = method.drifted(statistic, p_value, threshold);
    Ok(ColumnDrift {
        column: name.to_string(),
        kind,
        method,
        statistic,
        variant: variant.map(str::to_owned),
        wasserstein: raw_wasserstein,
        wasserstein_normalized: raw_wasserstein.and(statistic),
        p_value,
        threshold,
        drifted,
        reason,
        reference: ref_counts,
        current: cur_counts,
        histogram,
        psi_terms,
        approximate: None,
    })
}

/// The variant of a Wasserstein statistic.
pub(crate) const NORMALIZED: &str = "normalized_by_reference_std";

/// What [`on_counts`] gives: the statistic, the p-value (chi-square), each bin's PSI term
/// (PSI) and the test's variant.
pub(crate) type OnCounts = (Option<f64>, Option<f64>, Option<Vec<f64>>, Option<&'static str>);

/// PSI, Jensen–Shannon or chi-square on two samples' counts per bin or category (both holding
/// values).
pub(crate) fn on_counts(method: Method, reference: &[u64], current: &[u64], correction: Chi2Correction) -> OnCounts {
    match method {
        Method::Psi => {
            let (total, terms) = stats::psi(reference, current);
            (Some(total), None, Some(terms), None)
        }
        Method::Chi2 => {
            let chi = stats::chi_square_with(reference, current, correction).expect("both samples hold values");
            let variant = if chi.corrected { "yates" } else { "no_correction" };
            (Some(chi.statistic), Some(chi.p_value), None, Some(variant))
        }
        _ => (Some(stats::jensen_shannon(reference, current)), None, None, Some("natural_log")),
    }
}

pub(crate) fn empty_reason(reference: bool, current: bool) -> String {
    match (reference, current) {
        (true, true) => "both samples are empty (after leaving out missing, NaN and infinite values)".into(),
        (true, false) => "the reference sample is empty (after leaving out missing, NaN and infinite values)".into(),
        _ => "the current sample is empty (after leaving out missing, NaN and infinite values)".into(),
    }
}

pub(crate) fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts.iter().map(|c| if total == 0 { 0.0 } else { *c as f64 / total as f64 }).collect()
}

pub(crate) fn numeric_histogram(edges: &[f64], reference: &[u64], current: &[u64]) -> Histogram {
    let mut labels = Vec::with_capacity(edges.len() + 1);
    for k in 0..=edges.len() {
        let lo = if k == 0 { "-∞".to_string() } else { format::bin_edge(edges[k - 1]) };
        let hi = if k == edges.len() { "∞".to_string() } else { format::bin_edge(edges[k]) };
        labels.push(format!("[{lo}, {hi})"));
    }
    Histogram { labels, reference: shares(reference), current: shares(current), other_categories: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::categories::Categories;

    fn numbers(values: impl IntoIterator<Item = f64>) -> ColumnData {
        ColumnData::Numeric(values.into_iter().map(Some).collect())
    }

    fn categories<'a>(values: impl IntoIterator<Item = &'a str>) -> ColumnData {
        ColumnData::Categorical(Categories::of(values.into_iter().map(Some)))
    }

    #[test]
    fn auto_picks_by_type_cardinality_and_size() {
        let options = Options::default();
        let small = numbers((0..500).map(|i| i as f64));
        let large = numbers((0..5000).map(|i| i as f64));
        let discrete = numbers((0..5000).map(|i| (i % 3) as f64));
        let words: Vec<String> = (0..50).map(|i| format!("c{}", i % 4)).collect();
        let words = categories(words.iter().map(String::as_str));
        let method = |c: &ColumnData| compare_column("x", c, c, &options).unwrap().method;
        assert_eq!(method(&small), Method::Ks);
        assert_eq!(method(&large), Method::Wasserstein);
        assert_eq!(method(&discrete), Method::Js);
        assert_eq!(method(&words), Method::Chi2);
    }

    #[test]
    fn shifted_column_drifts_and_identical_does_not() {
        let reference = numbers((0..2000).map(|i| (i as f64 * 0.37).sin()));
        let shifted = numbers((0..2000).map(|i| (i as f64 * 0.37).sin() + 0.5));
        let comparison = compare(
            &[("same".into(), reference.clone(), reference.clone()), ("moved".into(), reference, shifted)],
            &Options::default(),
        )
        .unwrap();
        assert!(!comparison.columns[0].drifted);
        assert!(comparison.columns[1].drifted);
        assert_eq!(comparison.drifted_columns, 1);
        assert!(comparison.dataset_drift, "half the columns drifted");
    }

    #[test]
    fn categories_refuse_numeric_only_tests() {
        let words = categories(["a"]);
        let options = Options { method: Method::Ks, ..Options::default() };
        let err = compare_column("plan", &words, &words, &options).unwrap_err().to_string();
        assert!(err.contains("plan") && err.contains("chi2"), "{err}");
    }

    #[test]
    fn empty_side_gives_a_reason_not_a_verdict() {
        let r = numbers([1.0, 2.0, 3.0]);
        let c = ColumnData::Numeric(vec![None, Some(f64::NAN)]);
        let d = compare_column("x", &r, &c, &Options { method: Method::Ks, ..Options::default() }).unwrap();
        assert_eq!(d.statistic, None);
        assert!(!d.drifted);
        assert_eq!(d.current.excluded, 2);
        assert!(d.reason.unwrap().contains("current sample is empty"));
    }

    #[test]
    fn psi_reports_the_term_of_each_category() {
        let r = categories(["a", "a", "b", "b"]);
        let c = categories(["a", "b", "c", "c"]);
        let d = compare_column("plan", &r, &c, &Options { method: Method::Psi, ..Options::default() }).unwrap();
        assert_eq!(d.histogram.labels, ["a", "b", "c"]);
        let terms = d.psi_terms.unwrap();
        assert_eq!(terms.len(), 3);
        assert!((terms.iter().sum::<f64>() - d.statistic.unwrap()).abs() < 1e-12);
        assert!(terms[2] > terms[0], "the unseen category carries the most");
    }

    #[test]
    fn many_categories_are_compared_as_the_top_ones_and_other() {
        // 60,000 categories on each side: the reference puts a quarter of its values on 100 of
        // them, the current side spreads evenly.
        let names: Vec<String> = (0..60_000).map(|i| format!("sku-{i:05}")).collect();
        let mut r = Categories::default();
        let mut c = Categories::default();
        for (i, name) in names.iter().enumerate() {
            r.add(name);
            c.add(name);
            if i < 100 {
                for _ in 0..200 {
                    r.add(name);
                }
            }
        }
        let (r, c) = (ColumnData::Categorical(r), ColumnData::Categorical(c));
        for method in [Method::Chi2, Method::Js, Method::Psi] {
            let d = compare_column("sku", &r, &c, &Options { method, ..Options::default() }).unwrap();
            assert_eq!(d.histogram.labels.len(), DEFAULT_KEEP + 1, "{method}");
            // 10,000 names are counted per side; the 50,000 values seen after them are in "other"
            // too, shown as `+`.
            assert_eq!(d.histogram.other_categories, Some(9_950));
            assert_eq!(d.histogram.labels.last().unwrap(), "other (9950+ categories)");
            assert!(d.drifted, "{method}: {:?}", d.statistic);
            assert_eq!((d.reference.values, d.current.values), (80_000, 60_000));
            if let Some(terms) = &d.psi_terms {
                assert_eq!(terms.len(), DEFAULT_KEEP + 1);
            }
        }
        let few = compare_column("sku", &r, &c, &Options { max_categories: 3, ..Options::default() }).unwrap();
        assert_eq!(few.histogram.labels.len(), 4);
        let err = Options { max_categories: 0, ..Options::default() }.validate().unwrap_err().to_string();
        assert!(err.starts_with("max_categories:"), "{err}");
    }

    #[test]
    fn each_column_states_its_variant_and_wasserstein_both_distances() {
        let reference = numbers((0..3000).map(|i| (i as f64 * 0.37).sin() * 4.0));
        let current = numbers((0..2500).map(|i| (i as f64 * 0.41).sin() * 4.0 + 0.3));
        let with =
            |method| compare_column("x", &reference, &current, &Options { method, ..Options::default() }).unwrap();
        let w = with(Method::Wasserstein);
        let (r, c) = match (&reference, &current) {
            (ColumnData::Numeric(r), ColumnData::Numeric(c)) => {
                (Sample::new(r.iter().copied()), Sample::new(c.iter().copied()))
            }
            _ => unreachable!(),
        };
        let raw = stats::wasserstein(&r, &c).unwrap();
        assert_eq!(w.wasserstein, Some(raw));
        assert_eq!(w.wasserstein_normalized, Some(raw / r.mean_std().1));
        assert_eq!(w.statistic, w.wasserstein_normalized, "the threshold applies to the normalised distance");
        assert_eq!(w.variant.as_deref(), Some(NORMALIZED));
        assert_eq!(with(Method::Ks).variant.as_deref(), Some("exact"));
        assert_eq!(with(Method::Js).variant.as_deref(), Some("natural_log"));
        assert_eq!(with(Method::Chi2).variant.as_deref(), Some("no_correction"));
        assert_eq!(with(Method::Psi).variant, None);
        assert_eq!((with(Method::Ks).wasserstein, with(Method::Ks).wasserstein_normalized), (None, None));
        let large = numbers((0..12_000).map(|i| (i as f64 * 0.37).sin()));
        let ks = compare_column("x", &large, &current, &Options { method: Method::Ks, ..Options::default() }).unwrap();
        assert_eq!(ks.variant.as_deref(), Some("asymptotic"));
        // A constant reference: the raw distance, no statistic, a reason.
        let flat = numbers((0..100).map(|_| 2.0));
        let w = compare_column("x", &flat, &current, &Options { method: Method::Wasserstein, ..Options::default() })
            .unwrap();
        assert!(w.wasserstein.is_some() && w.wasserstein_normalized.is_none() && w.reason.is_some());
    }

    #[test]
    fn yates_correction_applies_to_two_categories_only() {
        let two_r = categories((0..100).map(|i| if i < 30 { "yes" } else { "no" }));
        let two_c = categories((0..100).map(|i| if i < 45 { "yes" } else { "no" }));
        let yates = Options { method: Method::Chi2, chi2_correction: Chi2Correction::Yates, ..Options::default() };
        let plain = Options { method: Method::Chi2, ..Options::default() };
        let corrected = compare_column("x", &two_r, &two_c, &yates).unwrap();
        let uncorrected = compare_column("x", &two_r, &two_c, &plain).unwrap();
        assert_eq!(corrected.variant.as_deref(), Some("yates"));
        assert!(corrected.statistic.unwrap() < uncorrected.statistic.unwrap());
        let three_r = categories((0..90).map(|i| ["a", "b", "c"][i % 3]));
        let three_c = categories((0..90).map(|i| ["a", "b", "c", "c"][i % 4]));
        let three = compare_column("x", &three_r, &three_c, &yates).unwrap();
        assert_eq!(three.variant.as_deref(), Some("no_correction"));
        assert_eq!(three.statistic, compare_column("x", &three_r, &three_c, &plain).unwrap().statistic);
    }

    #[test]
    fn method_names_parse() {
        assert_eq!("js".parse::<Method>(), Ok(Method::Js));
        assert!("kl".parse::<Method>().unwrap_err().contains("psi, ks"));
    }
}
