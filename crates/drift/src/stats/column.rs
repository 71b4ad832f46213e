//! One column of a sample as the comparisons take it: numbers, or counts of categories.

use super::categories::Categories;
use crate::format::category_name;
use std::borrow::Cow;

/// Fewest values for [`ColumnData::unique_per_row`] to call a column an id.
pub const UNIQUE_MIN_VALUES: usize = 100;

/// One column's values: numbers, or categories (strings and booleans) counted.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// One value per row; `None` for a missing value.
    Numeric(Vec<Option<f64>>),
    /// Counts per category, and the missing values.
    Categorical(Categories),
}

impl ColumnData {
    /// Rows, missing values included.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Numeric(v) => v.len(),
            ColumnData::Categorical(c) => c.values() as usize + c.missing(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the column looks like an id or a timestamp: at least [`UNIQUE_MIN_VALUES`]
    /// values, all different, and text or whole numbers (a measured quantity with decimals is
    /// often different in every row without being an id).
    pub fn unique_per_row(&self) -> bool {
        match self {
            ColumnData::Categorical(c) => c.values() >= UNIQUE_MIN_VALUES as u64 && c.all_distinct(),
            ColumnData::Numeric(v) => {
                let mut whole: Vec<f64> = Vec::with_capacity(v.len());
                for x in v.iter().flatten() {
                    if !x.is_finite() || x.fract() != 0.0 {
                        return false;
                    }
                    whole.push(*x);
                }
                whole.sort_unstable_by(f64::total_cmp);
                whole.len() >= UNIQUE_MIN_VALUES && whole.windows(2).all(|w| w[0] != w[1])
            }
        }
    }

    /// The values as categories: numbers are named as JSON prints them; missing, NaN and
    /// infinite numbers are missing.
    pub fn categories(&self) -> Cow<'_, Categories> {
        match self {
            ColumnData::Categorical(c) => Cow::Borrowed(c),
            ColumnData::Numeric(v) => {
                let mut categories = Categories::default();
                for x in v {
                    match x.filter(|x| x.is_finite()) {
                        Some(x) => categories.add(&category_name(x)),
                        None => categories.add_missing(),
                    }
                }
                Cow::Owned(categories)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_count_as_categories_by_their_json_text() {
        let column = ColumnData::Numeric(vec![Some(1.0), Some(1.0), Some(2.5), None, Some(f64::NAN)]);
        let categories = column.categories();
        assert_eq!((categories.count("1"), categories.count("2.5"), categories.missing()), (2, 1, 2));
        assert_eq!(column.len(), 5);
    }

    #[test]
    fn ids_and_timestamps_are_unique_per_row_and_measurements_are_not() {
        let ids = ColumnData::Numeric((0..200).map(|i| Some(1_793_491_200_000.0 + i as f64 * 7.0)).collect());
        assert!(ids.unique_per_row());
        let names: Vec<String> = (0..150).map(|i| format!("customer-{i}")).collect();
        assert!(ColumnData::Categorical(Categories::of(names.iter().map(|n| Some(n.as_str())))).unique_per_row());
        // Decimals, a repeat, too few values: not called an id.
        assert!(!ColumnData::Numeric((0..200).map(|i| Some(i as f64 + 0.25)).collect()).unique_per_row());
        let mut repeated: Vec<Option<f64>> = (0..200).map(|i| Some(i as f64)).collect();
        repeated[199] = Some(3.0);
        assert!(!ColumnData::Numeric(repeated).unique_per_row());
        assert!(!ColumnData::Numeric((0..99).map(|i| Some(i as f64)).collect()).unique_per_row());
    }
}
