//! One column of a sample as the comparisons take it: numbers, or counts of categories.

use super::categories::Categories;
use crate::format::category_name;
use std::borrow::Cow;

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
}
