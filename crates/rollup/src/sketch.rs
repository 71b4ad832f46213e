//! Quantile sketches: Apache DataSketches' KLL sketch of doubles, stored in its standard
//! serialization so that the DataSketches libraries for Python (`kll_doubles_sketch`), Java and
//! C++ read the same bytes.
//!
//! A KLL sketch with parameter k answers rank queries within a normalized rank error of about
//! 1.33 % at k = 200 (99 % confidence, one-sided; DataSketches' `normalized_rank_error(false)`),
//! whatever the number of values, in a few kilobytes. Sketches merge: the merge of two sketches
//! has the same guarantee for the union of their streams.

use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};

use crate::Error;

/// The default k: DataSketches' own default, about 1.3 % rank error.
pub const DEFAULT_K: u16 = 200;

/// A KLL sketch of doubles.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch(KllSketch<KllFloat<f64>>);

impl Sketch {
    /// An empty sketch with parameter `k` (8 to 65,535).
    pub fn new(k: u16) -> Result<Self, Error> {
        KllSketch::new(k).map(Sketch).map_err(|e| Error::Sketch(format!("k = {k}: {e}")))
    }

    /// Adds a value; NaN is ignored (JSON has none, so stored metrics never hold one).
    pub fn update(&mut self, value: f64) {
        if let Ok(v) = KllFloat::<f64>::new(value) {
            self.0.update(v);
        }
    }

    /// Adds every value `other` has seen.
    pub fn merge(&mut self, other: &Sketch) -> Result<(), Error> {
        self.0.merge(&other.0).map_err(|e| Error::Sketch(e.to_string()))
    }

    /// Values seen.
    pub fn n(&self) -> u64 {
        self.0.n()
    }

    /// The parameter k.
    pub fn k(&self) -> u16 {
        self.0.k()
    }

    /// Values the sketch keeps.
    pub fn retained(&self) -> usize {
        self.0.num_retained()
    }

    /// The value at normalized rank `rank` (0 to 1, inclusive search as in DataSketches'
    /// default); `None` when the sketch is empty.
    pub fn quantile(&self, rank: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&rank) {
            return None;
        }
        self.0.quantile(rank, SearchCriteria::Inclusive).ok().flatten().map(KllFloat::into_inner)
    }

    /// The normalized rank of `value`: the fraction of values at or below it.
    pub fn rank(&self, value: f64) -> Option<f64> {
        let v = KllFloat::<f64>::new(value).ok()?;
        self.0.rank(&v, SearchCriteria::Inclusive)
    }

    /// The sketch's normalized rank error for single-rank queries (99 % confidence).
    pub fn rank_error(&self) -> f64 {
        self.0.normalized_rank_error()
    }

    /// The standard DataSketches serialization (compact form).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.serialize()
    }

    /// Reads the standard DataSketches serialization of a KLL sketch of doubles.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        KllSketch::deserialize(bytes).map(Sketch).map_err(|e| Error::Sketch(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact_rank(sorted: &[f64], q: f64) -> f64 {
        sorted.partition_point(|&x| x <= q) as f64 / sorted.len() as f64
    }

    #[test]
    fn quantiles_are_within_the_rank_error_bound_on_random_data() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (n, spread) in [(1_000usize, 1.0f64), (50_000, 1e6), (300_000, 1e-3)] {
            let mut sketch = Sketch::new(DEFAULT_K).unwrap();
            let mut values: Vec<f64> = (0..n)
                .map(|_| {
                    let u: f64 = rng.random();
                    // A skewed distribution: exponential-ish with a heavy tail.
                    -u.max(1e-12).ln() * spread
                })
                .collect();
            for &v in &values {
                sketch.update(v);
            }
            values.sort_by(f64::total_cmp);
            let bound = sketch.rank_error();
            assert!(bound <= 0.02, "k = 200 promises at most 2 %, got {bound}");
            for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
                let estimate = sketch.quantile(q).unwrap();
                let rank = exact_rank(&values, estimate);
                assert!(
                    (rank - q).abs() <= bound,
                    "n = {n}, q = {q}: the estimate has exact rank {rank}, off by more than {bound}"
                );
            }
        }
    }

    #[test]
    fn bytes_round_trip_and_bad_bytes_are_refused() {
        let mut s = Sketch::new(DEFAULT_K).unwrap();
        for i in 0..10_000 {
            s.update(f64::from(i));
        }
        let back = Sketch::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back.n(), 10_000);
        assert_eq!(back.quantile(0.5), s.quantile(0.5));
        assert!(Sketch::from_bytes(&[1, 2, 3]).is_err());
        assert!(Sketch::new(2).is_err());
        assert_eq!(Sketch::new(DEFAULT_K).unwrap().quantile(0.5), None);
    }

    proptest! {
        /// Merge law: merging sketches of parts equals one sketch of the whole while both are
        /// exact (fewer values than k), and keeps n, min and max whatever the size.
        #[test]
        fn merging_parts_is_the_sketch_of_the_whole(values in proptest::collection::vec(-1e6f64..1e6, 0..180), cut in 0usize..180) {
            let cut = cut.min(values.len());
            let (mut whole, mut left, mut right) = (Sketch::new(DEFAULT_K).unwrap(), Sketch::new(DEFAULT_K).unwrap(), Sketch::new(DEFAULT_K).unwrap());
            for &v in &values { whole.update(v); }
            for &v in &values[..cut] { left.update(v); }
            for &v in &values[cut..] { right.update(v); }
            left.merge(&right).unwrap();
            prop_assert_eq!(left.n(), whole.n());
            for q in [0.0, 0.1, 0.5, 0.9, 1.0] {
                prop_assert_eq!(left.quantile(q), whole.quantile(q));
            }
        }
    }
}
