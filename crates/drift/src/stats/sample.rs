//! A numeric sample as the statistics take it: the finite values, sorted, and how many were
//! left out. Sorting goes through order-preserving integer keys ([`order_key`]), so the sort
//! compares integers with no NaN case; large samples are sorted on two threads.

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

    /// Two samples from values already known to be finite, sorted at once on two threads.
    pub fn pair_from_finite(a: &[f64], b: &[f64]) -> (Sample, Sample) {
        debug_assert!(a.iter().chain(b).all(|v| v.is_finite()));
        let (a, b) = std::thread::scope(|scope| {
            let left = scope.spawn(move || sorted_copy(a));
            let right = sorted_copy(b);
            (left.join().expect("sorting does not panic"), right)
        });
        (Sample { sorted: a, excluded: 0 }, Sample { sorted: b, excluded: 0 })
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

/// A sorted copy, made through the order-preserving keys (the key vector becomes the result,
/// no second allocation).
fn sorted_copy(values: &[f64]) -> Vec<f64> {
    let mut keys: Vec<u64> = values.iter().map(|v| order_key(*v)).collect();
    keys.sort_unstable();
    keys.into_iter().map(from_order_key).collect()
}

/// Sorts finite floats in place. Large inputs are sorted in two halves on two threads and
/// merged, which matters for tens of millions of values.
fn sort_floats(values: &mut [f64]) {
    const PARALLEL_FROM: usize = 1 << 20;
    if values.len() < PARALLEL_FROM {
        let sorted = sorted_copy(values);
        values.copy_from_slice(&sorted);
        return;
    }
    let (left, right) = values.split_at(values.len() / 2);
    let (left, right) = std::thread::scope(|scope| {
        let left = scope.spawn(|| sorted_copy(left));
        let right = sorted_copy(right);
        (left.join().expect("sorting does not panic"), right)
    });
    let (mut i, mut j) = (0, 0);
    for out in values.iter_mut() {
        // The copies hold no -0.0 (keys fold it into 0.0), so float order is key order.
        if j == right.len() || (i < left.len() && left[i] <= right[j]) {
            *out = left[i];
            i += 1;
        } else {
            *out = right[j];
            j += 1;
        }
    }
}

/// Maps a finite float to an unsigned integer with the same order.
pub(crate) fn order_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits(); // -0.0 and 0.0 become one key
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

pub(crate) fn from_order_key(key: u64) -> f64 {
    if key >> 63 == 1 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_negative_and_positive_floats_small_and_large() {
        let values: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 10_007) as f64 - 5_000.5).collect();
        let mut expected = values.clone();
        expected.sort_by(|a, b| a.total_cmp(b));
        let s = Sample::from_finite(values);
        assert_eq!(s.sorted(), expected.as_slice());
        // Above the size sorted on two threads.
        let values: Vec<f64> =
            (0..(1u64 << 20) + 3).map(|i| ((i * 2_654_435_761) % 1_000_003) as f64 * -0.5 + 7.0).collect();
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
    fn order_key_keeps_order_and_round_trips() {
        let xs = [-1e300, -2.5, -0.0, 0.0, 1e-300, 0.5, 3.0, f64::MAX];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) <= order_key(w[1]), "{w:?}");
        }
        for x in xs {
            assert_eq!(from_order_key(order_key(x)), x + 0.0);
        }
    }
}
