//! Comparing columns when one side (or both) is known only from the rollups, because retention
//! removed its raw values: numbers as a KLL sketch with their count and spread, strings and
//! booleans as value counts. The tests, thresholds and verdicts are the raw comparison's
//! ([`crate::compare`]); each result carries an [`Approximation`] that says what it is within.
//!
//! - Strings and booleans, and numbers with at most five distinct values (named as JSON prints
//!   them), are compared by the raw code on the counts. Values that were not among a rollup
//!   bucket's top K were counted there only as a number: they are compared as "other".
//! - Other numbers: the KS statistic and the Wasserstein distance from the sketches' CDFs,
//!   within the bounds [`crate::stats::sketched`] gives; the KS p-value is the asymptotic one of
//!   that statistic; PSI, Jensen–Shannon and chi-square on bins at the reference sketch's
//!   quantiles, each bin's share within the sketches' rank error. The Wasserstein distance is
//!   divided by the reference's standard deviation, which the rollups hold exactly.
//!
//! A raw side compared with a summarised one is sketched the same way first.

use crate::compare::{self, Approximation, ColumnDrift, Kind, Method, Options, SideCounts};
use crate::format::category_name;
use crate::stats::categories::Categories;
use crate::stats::column::ColumnData;
use crate::stats::drift as stats;
use crate::stats::sample::Sample;
use crate::stats::sketched::{self, GRID};
use crate::Error;
use driftline_rollup::summary::OUT_OF_RANGE;
use driftline_rollup::{Sketch, Summary};

/// One side of a column: raw values, or their rollup summary.
#[derive(Debug, Clone, Copy)]
pub enum Side<'a> {
    Raw(&'a ColumnData),
    Summary(&'a Summary),
}

/// A side's numbers as the continuous tests take them.
struct Numbers {
    sketch: Sketch,
    /// Population standard deviation (as the raw comparison scales Wasserstein by).
    std: f64,
    counts: SideCounts,
}

impl Numbers {
    /// The side's numbers, `None` when it holds categories.
    fn of(side: Side<'_>) -> Result<Option<Numbers>, Error> {
        match side {
            Side::Raw(ColumnData::Categorical(_)) => Ok(None),
            Side::Raw(ColumnData::Numeric(values)) => {
                let sample = Sample::new(values.iter().copied());
                let mut sketch = Sketch::new(driftline_rollup::sketch::DEFAULT_K).map_err(sketch_error)?;
                for &x in sample.sorted() {
                    sketch.update(x);
                }
                let std = if sample.is_empty() { 0.0 } else { sample.mean_std().1 };
                Ok(Some(Numbers {
                    sketch,
                    std,
                    counts: SideCounts { values: sample.len(), excluded: sample.excluded },
                }))
            }
            Side::Summary(s) => {
                if categorical_count(s) > 0 {
                    return Ok(None);
                }
                let excluded = out_of_range(s) as usize;
                Ok(Some(match &s.numeric {
                    Some(n) => Numbers {
                        sketch: n.sketch.clone(),
                        std: if n.count > 0 { (n.m2.max(0.0) / n.count as f64).sqrt() } else { 0.0 },
                        counts: SideCounts { values: n.count as usize, excluded },
                    },
                    None => Numbers {
                        sketch: Sketch::new(driftline_rollup::sketch::DEFAULT_K).map_err(sketch_error)?,
                        std: 0.0,
                        counts: SideCounts { values: 0, excluded },
                    },
                }))
            }
        }
    }

    /// Distinct values among the sketch's percentiles: at most the distinct values of the
    /// stream, and all of them when there are few.
    fn distinct(&self) -> usize {
        let mut values: Vec<f64> = (0..=100).filter_map(|i| self.sketch.quantile(f64::from(i) / 100.0)).collect();
        values.dedup();
        values.len()
    }
}

fn sketch_error(e: driftline_rollup::Error) -> Error {
    Error::Internal { what: "a sketch".into(), message: e.to_string() }
}

fn out_of_range(s: &Summary) -> u64 {
    s.counts.get(OUT_OF_RANGE).copied().unwrap_or(0)
}

/// Strings and booleans of a summary (numbers too large to sum are left out, as raw
/// comparisons leave out non-finite ones).
fn categorical_count(s: &Summary) -> u64 {
    s.categorical_count() - out_of_range(s)
}

/// A side as category counts: raw categories as they are; a summary's value counts, its
/// "other" count, and its numbers named by value with counts from the sketch's ranks.
fn categories(side: Side<'_>) -> Categories {
    match side {
        Side::Raw(column) => column.categories().into_owned(),
        Side::Summary(s) => {
            let mut c = Categories::default();
            for (value, count) in &s.counts {
                if value != OUT_OF_RANGE {
                    c.add_many(value, *count);
                }
            }
            c.add_untracked(s.other);
            for _ in 0..out_of_range(s) {
                c.add_missing();
            }
            if let Some(n) = &s.numeric {
                let mut values: Vec<f64> =
                    (0..=GRID).filter_map(|i| n.sketch.quantile(i as f64 / GRID as f64)).collect();
                values.dedup();
                let mut below = 0u64;
                for v in values {
                    let upto =
                        ((n.sketch.rank(v).unwrap_or(1.0) * n.count as f64).round() as u64).clamp(below, n.count);
                    if upto > below {
                        c.add_many(&category_name(v), upto - below);
                    }
                    below = upto;
                }
            }
            c
        }
    }
}

/// Compares one column whose sides may be summaries.
pub fn compare_column(
    name: &str,
    reference: Side<'_>,
    current: Side<'_>,
    options: &Options,
) -> Result<ColumnDrift, Error> {
    options.validate()?;
    let numbers = match (Numbers::of(reference)?, Numbers::of(current)?) {
        (Some(r), Some(c)) => Some((r, c)),
        _ => None,
    };
    let continuous = match (&numbers, options.method) {
        (None, _) => false,
        (Some((r, _)), Method::Auto) => r.distinct() > compare::MAX_DISCRETE_DISTINCT,
        (Some(_), _) => true,
    };
    if !continuous {
        let (r, c) = (categories(reference), categories(current));
        let mut drift =
            compare::compare_column(name, &ColumnData::Categorical(r), &ColumnData::Categorical(c), options)?;
        let from_sketch = [reference, current].iter().any(|s| matches!(s, Side::Summary(s) if s.numeric.is_some()));
        drift.approximate = Some(Approximation {
            from: "value counts".into(),
            rank_error: None,
            error_bound: None,
            note: Some(
                if from_sketch {
                    "numbers with few distinct values counted from their sketch; values outside a bucket's top K \
                     compared as other"
                } else {
                    "values outside a rollup bucket's top K compared as other"
                }
                .into(),
            ),
        });
        return Ok(drift);
    }
    let (r, c) = numbers.expect("continuous columns are numbers");
    let method = match options.method {
        Method::Auto if r.counts.values <= compare::SMALL_REFERENCE => Method::Ks,
        Method::Auto => Method::Wasserstein,
        m => m,
    };
    let threshold = options.threshold.unwrap_or(method.default_threshold());
    let rank_error = r.sketch.rank_error() + c.sketch.rank_error();
    let edges = sketched::quantile_edges(&r.sketch, options.bins);
    let (rb, cb) = (sketched::bin_counts(&r.sketch, &edges), sketched::bin_counts(&c.sketch, &edges));
    let (mut statistic, mut p_value, mut psi_terms, mut reason, mut error_bound) = (None, None, None, None, None);
    let (mut variant, mut raw_wasserstein) = (None, None);
    if r.counts.values == 0 || c.counts.values == 0 {
        reason = Some(compare::empty_reason(r.counts.values == 0, c.counts.values == 0));
    } else {
        match method {
            Method::Ks => {
                let ks = sketched::ks_statistic(&r.sketch, &c.sketch).expect("both sketches hold values");
                statistic = Some(ks.value);
                p_value = Some(stats::ks_asymptotic_p(r.counts.values, c.counts.values, ks.value));
                error_bound = Some(ks.error_bound);
                variant = Some("asymptotic");
            }
            Method::Wasserstein => {
                let w = sketched::wasserstein(&r.sketch, &c.sketch).expect("both sketches hold values");
                raw_wasserstein = Some(w.value);
                variant = Some(compare::NORMALIZED);
                if r.std > 0.0 {
                    statistic = Some(w.value / r.std);
                    error_bound = Some(w.error_bound / r.std);
                } else {
                    reason = Some(format!(
                        "the reference is constant, so the distance ({}) cannot be scaled by its spread",
                        w.value
                    ));
                }
            }
            m @ (Method::Psi | Method::Js | Method::Chi2) => {
                (statistic, p_value, psi_terms, variant) = compare::on_counts(m, &rb, &cb, options.chi2_correction);
            }
            Method::Auto => unreachable!("auto resolved above"),
        }
    }
    let drifted = method.drifted(statistic, p_value, threshold);
    Ok(ColumnDrift {
        column: name.to_string(),
        kind: Kind::Numeric,
        method,
        statistic,
        variant: variant.map(str::to_owned),
        wasserstein: raw_wasserstein,
        wasserstein_normalized: raw_wasserstein.and(statistic),
        p_value,
        threshold,
        drifted,
        reason,
        reference: r.counts,
        current: c.counts,
        histogram: compare::numeric_histogram(&edges, &rb, &cb),
        psi_terms,
        approximate: Some(Approximation {
            from: "kll sketches".into(),
            rank_error: Some(rank_error),
            error_bound,
            note: (method == Method::Ks).then(|| "the p-value is the asymptotic one of the estimated statistic".into()),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftline_rollup::SummaryOptions;
    use rand::{Rng, SeedableRng};

    fn summary(values: &[f64]) -> Summary {
        let mut s = Summary::new(SummaryOptions::default());
        for &x in values {
            s.push_number(x).unwrap();
        }
        s
    }

    fn normal(rng: &mut impl Rng, n: usize, mean: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                mean + (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    #[test]
    fn summarised_numbers_give_the_raw_verdict_within_the_stated_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let reference = normal(&mut rng, 50_000, 0.0);
        for (shift, method) in [(0.0, Method::Wasserstein), (0.4, Method::Wasserstein), (0.05, Method::Ks)] {
            let current = normal(&mut rng, 40_000, shift);
            let options = Options { method, ..Options::default() };
            let raw = |v: &[f64]| ColumnData::Numeric(v.iter().copied().map(Some).collect());
            let exact = compare::compare_column("x", &raw(&reference), &raw(&current), &options).unwrap();
            let (rs, cs) = (summary(&reference), summary(&current));
            let cur_raw = raw(&current);
            // Both summarised, and a summarised reference against a raw window.
            for current_side in [Side::Summary(&cs), Side::Raw(&cur_raw)] {
                let got = compare_column("x", Side::Summary(&rs), current_side, &options).unwrap();
                let approx = got.approximate.clone().expect("marked approximate");
                let bound = approx.error_bound.expect("a bound for KS and Wasserstein");
                let (a, e) = (got.statistic.unwrap(), exact.statistic.unwrap());
                assert!((a - e).abs() <= bound, "{method} shift {shift}: {a} vs exact {e} (bound {bound})");
                // KS: the rank errors added; Wasserstein: times the range over the spread (about
                // nine standard deviations for 50,000 normal values).
                let most = if method == Method::Ks { 0.03 } else { 0.3 };
                assert!(bound < most, "{method}: {bound}");
                assert_eq!(got.drifted, exact.drifted, "{method} shift {shift}: {a} vs {e}");
                assert_eq!((got.reference.values, got.current.values), (50_000, 40_000));
                assert!(approx.rank_error.unwrap() < 0.03);
            }
        }
    }

    #[test]
    fn summarised_categories_compare_their_counts_and_fold_the_rest_into_other() {
        let options = SummaryOptions { top_k: 2, ..SummaryOptions::default() };
        let mut r = Summary::new(options);
        let mut c = Summary::new(options);
        for (value, n_ref, n_cur) in [("basic", 500, 200), ("pro", 300, 300), ("team", 150, 400), ("edu", 50, 100)] {
            for _ in 0..n_ref {
                r.push_category(value);
            }
            for _ in 0..n_cur {
                c.push_category(value);
            }
        }
        let exact = compare::compare_column(
            "plan",
            &ColumnData::Categorical(categories(Side::Summary(&r))),
            &ColumnData::Categorical(categories(Side::Summary(&c))),
            &Options::default(),
        )
        .unwrap();
        let got = compare_column("plan", Side::Summary(&r), Side::Summary(&c), &Options::default()).unwrap();
        assert_eq!((got.kind, got.method, got.statistic), (Kind::Categorical, Method::Chi2, exact.statistic));
        assert!(got.drifted);
        assert_eq!(got.approximate.unwrap().from, "value counts");
        // Kept top 2 per side as a rollup keeps them: the rest is compared as "other".
        r.keep_top();
        c.keep_top();
        let folded = compare_column("plan", Side::Summary(&r), Side::Summary(&c), &Options::default()).unwrap();
        assert_eq!((folded.reference.values, folded.current.values), (1000, 1000));
        assert!(folded.histogram.labels.last().unwrap().starts_with("other"), "{:?}", folded.histogram.labels);
    }

    #[test]
    fn few_distinct_numbers_are_counted_by_value_from_the_sketch() {
        let r = summary(&(0..5000).map(|i| f64::from(i % 3)).collect::<Vec<_>>());
        let c = summary(&(0..5000).map(|i| f64::from(i % 4)).collect::<Vec<_>>());
        let got = compare_column("clicks", Side::Summary(&r), Side::Summary(&c), &Options::default()).unwrap();
        // As raw numbers with few distinct values are: compared as categories.
        assert_eq!((got.kind, got.method), (Kind::Categorical, Method::Js));
        assert_eq!(got.histogram.labels, ["0", "1", "2", "3"]);
        assert!(got.drifted, "{:?}", got.statistic);
    }

    #[test]
    fn a_side_without_values_gives_a_reason() {
        let r = summary(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        let empty = Summary::new(SummaryOptions::default());
        let got = compare_column("x", Side::Summary(&r), Side::Summary(&empty), &Options::default()).unwrap();
        assert!(!got.drifted && got.statistic.is_none());
        assert!(got.reason.unwrap().contains("current sample is empty"));
    }
}
