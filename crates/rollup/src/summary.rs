//! The summary of one metric path over one bucket, and how summaries merge.
//!
//! Numbers: count, sum, min, max, m2 (sum of squared deviations from the mean, updated with
//! Welford's method and merged with Chan et al.'s formula, the numerically stable form of the
//! sum of squares) and a KLL sketch. Strings and booleans: counts per value, of which the top K
//! are kept and the rest added to an "other" count.
//!
//! The mean is always derived as sum / count, never carried, so a summary read back from the
//! store merges exactly as the one that was written: rollups of rollups and the same sums
//! computed in memory agree to the last bit.

use std::collections::BTreeMap;

use driftline_store::rollups::RollupRow;

use crate::sketch::Sketch;
use crate::Error;

/// Settings of every summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryOptions {
    /// KLL parameter k.
    pub k: u16,
    /// Categorical values kept per bucket; the rest are counted as "other".
    pub top_k: usize,
}

impl Default for SummaryOptions {
    /// k = 200, top 100.
    fn default() -> Self {
        SummaryOptions { k: crate::sketch::DEFAULT_K, top_k: 100 }
    }
}

/// Longest categorical value kept, in bytes; longer ones are cut at a character boundary and
/// marked with `…`.
pub const MAX_VALUE_BYTES: usize = 200;

/// The categorical value that numbers too large to sum (or not finite) are counted as.
pub const OUT_OF_RANGE: &str = "out of range";

/// Numbers further from zero than this are counted as the categorical value [`OUT_OF_RANGE`]:
/// their squares would overflow the sums.
pub const MAX_MAGNITUDE: f64 = 1e150;

/// Numeric part of a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Numeric {
    /// Values seen.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// Their quantile sketch.
    pub sketch: Sketch,
}

impl Numeric {
    fn new(k: u16) -> Result<Self, Error> {
        Ok(Numeric { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY, m2: 0.0, sketch: Sketch::new(k)? })
    }

    fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    fn push(&mut self, x: f64) {
        let delta = x - self.mean();
        self.count += 1;
        self.sum += x;
        self.m2 += delta * (x - self.mean());
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.sketch.update(x);
    }

    fn merge(&mut self, other: &Numeric) -> Result<(), Error> {
        if other.count == 0 {
            return Ok(());
        }
        if self.count > 0 {
            let (na, nb) = (self.count as f64, other.count as f64);
            let delta = other.mean() - self.mean();
            self.m2 += other.m2 + delta * delta * na * nb / (na + nb);
        } else {
            self.m2 = other.m2;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sketch.merge(&other.sketch)
    }

    /// The mean, `None` without values.
    pub fn mean_value(&self) -> Option<f64> {
        (self.count > 0).then(|| self.mean())
    }

    /// The sample standard deviation (n − 1 in the denominator, as pandas), `None` below two
    /// values.
    pub fn stddev(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2.max(0.0) / (self.count - 1) as f64).sqrt())
    }
}

/// Everything known of one path over one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Numeric values, if any were seen.
    pub numeric: Option<Numeric>,
    /// Counts per categorical value (all of them until [`Summary::to_row`] keeps the top K).
    pub counts: BTreeMap<String, u64>,
    /// Categorical values counted but not kept.
    pub other: u64,
    options: SummaryOptions,
}

impl Summary {
    /// An empty summary.
    pub fn new(options: SummaryOptions) -> Self {
        Summary { numeric: None, counts: BTreeMap::new(), other: 0, options }
    }

    /// Adds a number.
    pub fn push_number(&mut self, x: f64) -> Result<(), Error> {
        if !x.is_finite() || x.abs() > MAX_MAGNITUDE {
            self.push_category(OUT_OF_RANGE);
            return Ok(());
        }
        match &mut self.numeric {
            Some(n) => n.push(x),
            None => {
                let mut n = Numeric::new(self.options.k)?;
                n.push(x);
                self.numeric = Some(n);
            }
        }
        Ok(())
    }

    /// Adds a categorical value (a string, or `true` / `false`).
    pub fn push_category(&mut self, value: &str) {
        let value = clip(value);
        match self.counts.get_mut(value.as_ref()) {
            Some(c) => *c += 1,
            None => {
                self.counts.insert(value.into_owned(), 1);
            }
        }
    }

    /// Categorical values seen, kept or not.
    pub fn categorical_count(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.other
    }

    /// Values seen, numeric and categorical.
    pub fn count(&self) -> u64 {
        self.numeric.as_ref().map_or(0, |n| n.count) + self.categorical_count()
    }

    /// Adds everything `other` has seen.
    pub fn merge(&mut self, other: &Summary) -> Result<(), Error> {
        if let Some(theirs) = &other.numeric {
            match &mut self.numeric {
                Some(ours) => ours.merge(theirs)?,
                None => {
                    let mut n = Numeric::new(self.options.k)?;
                    n.merge(theirs)?;
                    self.numeric = Some(n);
                }
            }
        }
        for (value, count) in &other.counts {
            *self.counts.entry(value.clone()).or_insert(0) += count;
        }
        self.other += other.other;
        Ok(())
    }

    /// Keeps the `top_k` most frequent values (ties by value), adding the rest to "other".
    pub fn keep_top(&mut self) {
        if self.counts.len() <= self.options.top_k {
            return;
        }
        let mut ranked: Vec<(String, u64)> = std::mem::take(&mut self.counts).into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (i, (value, count)) in ranked.into_iter().enumerate() {
            if i < self.options.top_k {
                self.counts.insert(value, count);
            } else {
                self.other += count;
            }
        }
    }

    /// The stored row of this summary (top K kept).
    pub fn to_row(&self, deployment: &str, path: &str, bucket_start_ms: i64) -> RollupRow {
        let mut kept = self.clone();
        kept.keep_top();
        let n = kept.numeric.as_ref();
        RollupRow {
            model_deployment_crn: deployment.to_owned(),
            path: path.to_owned(),
            bucket_start_ms,
            n_numeric: n.map_or(0, |n| n.count as i64),
            sum: n.map_or(0.0, |n| n.sum),
            min: n.map(|n| n.min),
            max: n.map(|n| n.max),
            m2: n.map_or(0.0, |n| n.m2),
            sketch: n.map(|n| n.sketch.to_bytes()),
            n_categorical: kept.categorical_count() as i64,
            value_counts: (!kept.counts.is_empty())
                .then(|| serde_json::to_string(&kept.counts).expect("a map of strings to integers serializes")),
            other_count: kept.other as i64,
        }
    }

    /// The summary a stored row holds.
    pub fn from_row(row: &RollupRow, options: SummaryOptions) -> Result<Self, Error> {
        let numeric = match (&row.sketch, row.n_numeric) {
            (_, 0) => None,
            (Some(bytes), count) => Some(Numeric {
                count: count as u64,
                sum: row.sum,
                min: row.min.unwrap_or(f64::INFINITY),
                max: row.max.unwrap_or(f64::NEG_INFINITY),
                m2: row.m2,
                sketch: Sketch::from_bytes(bytes)?,
            }),
            (None, _) => return Err(Error::Stored(format!("rollup of {} has numbers but no sketch", row.path))),
        };
        let counts = match &row.value_counts {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| Error::Stored(format!("value counts of {}: {e}", row.path)))?
            }
            None => BTreeMap::new(),
        };
        Ok(Summary { numeric, counts, other: row.other_count as u64, options })
    }
}

/// The value as kept: at most [`MAX_VALUE_BYTES`], cut at a character boundary.
fn clip(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_VALUE_BYTES {
        return value.into();
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn summary_of(values: &[f64]) -> Summary {
        let mut s = Summary::new(SummaryOptions::default());
        for &v in values {
            s.push_number(v).unwrap();
        }
        s
    }

    #[test]
    fn sample_stddev_matches_the_two_pass_formula() {
        let values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let n = summary_of(&values).numeric.unwrap();
        let mean = values.iter().sum::<f64>() / 8.0;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 7.0;
        assert_eq!(n.mean_value(), Some(5.0));
        assert!((n.stddev().unwrap() - var.sqrt()).abs() < 1e-12);
        assert_eq!(summary_of(&[3.0]).numeric.unwrap().stddev(), None);
    }

    #[test]
    fn the_top_k_are_kept_and_the_rest_counted_as_other() {
        let mut s = Summary::new(SummaryOptions { k: 200, top_k: 2 });
        for v in ["a", "b", "b", "c", "c", "c", "d"] {
            s.push_category(v);
        }
        let row = s.to_row("d", "p", 0);
        assert_eq!(row.value_counts.as_deref(), Some(r#"{"b":2,"c":3}"#));
        assert_eq!((row.n_categorical, row.other_count), (7, 2));
        let back = Summary::from_row(&row, SummaryOptions { k: 200, top_k: 2 }).unwrap();
        assert_eq!(back.count(), 7);
    }

    #[test]
    fn long_values_are_cut_and_huge_numbers_are_not_summed() {
        let mut s = Summary::new(SummaryOptions::default());
        s.push_category(&"é".repeat(300));
        s.push_number(1e200).unwrap();
        let key = s.counts.keys().find(|k| k.ends_with('…')).unwrap();
        assert!(key.len() <= MAX_VALUE_BYTES + 3);
        assert_eq!(s.counts.get("out of range"), Some(&1));
        assert!(s.numeric.is_none());
    }

    proptest! {
        /// Merge law: the merge of the summaries of two parts equals the summary of the whole
        /// (counts, min and max exactly; sums and m2 to rounding), and a summary survives its
        /// stored row unchanged.
        #[test]
        fn merging_parts_is_the_summary_of_the_whole(
            values in proptest::collection::vec(-1e9f64..1e9, 1..300),
            cut in 0usize..300,
        ) {
            let cut = cut.min(values.len());
            let whole = summary_of(&values);
            let mut left = summary_of(&values[..cut]);
            left.merge(&summary_of(&values[cut..])).unwrap();
            let (w, l) = (whole.numeric.as_ref().unwrap(), left.numeric.as_ref().unwrap());
            prop_assert_eq!(w.count, l.count);
            prop_assert_eq!(w.min, l.min);
            prop_assert_eq!(w.max, l.max);
            let scale = values.iter().map(|v| v.abs()).fold(1.0, f64::max);
            prop_assert!((w.sum - l.sum).abs() <= 1e-9 * scale * values.len() as f64);
            prop_assert!((w.m2 - l.m2).abs() <= 1e-7 * (w.m2.abs() + scale * scale));
            let row = left.to_row("d", "p", 0);
            let back = Summary::from_row(&row, SummaryOptions::default()).unwrap();
            prop_assert_eq!(back.to_row("d", "p", 0), row);
        }
    }
}
