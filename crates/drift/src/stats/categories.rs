//! Category counts in bounded memory, and the table of two samples' counts that chi-square,
//! Jensen–Shannon and PSI compare.
//!
//! - A category is a value's text. A value longer than [`MAX_VALUE_BYTES`] (256 bytes) counts
//!   by its first 253 bytes at most (cut on a character boundary) followed by `…`, so a long
//!   free-text value costs at most 256 bytes however long it is.
//! - One sample counts at most [`MAX_NAMES`] (10,000) distinct categories by name. Values first
//!   seen after that are counted together, as untracked. The counts are exact whenever a
//!   column has at most 10,000 distinct values in a sample.
//! - Two samples are compared over the union of their categories. When it holds more than
//!   `keep` categories (50 by default, [`DEFAULT_KEEP`]), or values were untracked, the `keep`
//!   categories with the largest combined share (reference share plus current share; ties by
//!   name) keep their names and all the others, untracked values included, are summed into one
//!   last category, "other". The tests then treat "other" as one more category: mass moving
//!   into or out of the tail shows in chi-square, Jensen–Shannon and PSI, mass moving within
//!   the tail does not.

use std::collections::{BTreeMap, HashMap};

/// Longest category name, in bytes; longer values are cut (see the module's rules).
pub const MAX_VALUE_BYTES: usize = 256;
/// Most distinct categories one sample counts by name.
pub const MAX_NAMES: usize = 10_000;
/// Categories kept by name when two samples are compared, unless told otherwise.
pub const DEFAULT_KEEP: usize = 50;

/// The category a value counts as: the value itself, or its first bytes and `…` when it is
/// longer than [`MAX_VALUE_BYTES`].
pub fn category_of(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_VALUE_BYTES {
        return value.into();
    }
    let mut end = MAX_VALUE_BYTES - '…'.len_utf8();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end]).into()
}

/// The counts of one sample's categories, with its missing values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categories {
    counts: HashMap<String, u64>,
    /// Values first seen after [`MAX_NAMES`] categories were counted.
    untracked: u64,
    missing: usize,
}

impl Categories {
    /// Counts `values`; `None` is a missing value.
    pub fn of<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut categories = Categories::default();
        for value in values {
            match value {
                Some(v) => categories.add(v),
                None => categories.add_missing(),
            }
        }
        categories
    }

    /// Counts one value as its category.
    pub fn add(&mut self, value: &str) {
        let name = category_of(value);
        if let Some(count) = self.counts.get_mut(&*name) {
            *count += 1;
        } else if self.counts.len() < MAX_NAMES {
            self.counts.insert(name.into_owned(), 1);
        } else {
            self.untracked += 1;
        }
    }

    /// Counts `n` values of one category at once (a rollup's count of a value).
    pub fn add_many(&mut self, value: &str, n: u64) {
        let name = category_of(value);
        if let Some(count) = self.counts.get_mut(&*name) {
            *count += n;
        } else if self.counts.len() < MAX_NAMES {
            self.counts.insert(name.into_owned(), n);
        } else {
            self.untracked += n;
        }
    }

    /// Counts `n` values whose categories are not known by name (a rollup's "other" count):
    /// they are compared as part of "other".
    pub fn add_untracked(&mut self, n: u64) {
        self.untracked += n;
    }

    /// Counts a missing value.
    pub fn add_missing(&mut self) {
        self.missing += 1;
    }

    /// Values counted (all but the missing ones).
    pub fn values(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.untracked
    }

    /// Missing values.
    pub fn missing(&self) -> usize {
        self.missing
    }

    /// Values first seen after [`MAX_NAMES`] distinct ones, counted together.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Distinct categories counted by name.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Whether every value counted by name was seen once.
    pub fn all_distinct(&self) -> bool {
        self.counts.values().all(|c| *c == 1)
    }

    /// The count of one category.
    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}

/// Two samples' counts over their categories, in the same order on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryTable {
    /// Category names, sorted; when `other` is set the last one is the "other" category.
    pub names: Vec<String>,
    /// The reference sample's count of each category.
    pub reference: Vec<u64>,
    /// The current sample's count of each category.
    pub current: Vec<u64>,
    /// How many named categories were summed into "other", when categories were folded.
    pub other: Option<usize>,
}

impl CategoryTable {
    /// The table of `reference` and `current`, keeping `keep` categories by name (see the
    /// module's rules).
    pub fn of(reference: &Categories, current: &Categories, keep: usize) -> Self {
        let mut union: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (name, count) in &reference.counts {
            union.entry(name.as_str()).or_default().0 += count;
        }
        for (name, count) in &current.counts {
            union.entry(name.as_str()).or_default().1 += count;
        }
        let untracked = reference.untracked > 0 || current.untracked > 0;
        if union.len() <= keep && !untracked {
            let names = union.keys().map(|k| k.to_string()).collect();
            let (reference, current) = union.values().copied().unzip();
            return CategoryTable { names, reference, current, other: None };
        }
        let (rt, ct) = (reference.values() as f64, current.values() as f64);
        let share = |count: u64, total: f64| if total > 0.0 { count as f64 / total } else { 0.0 };
        let mut ranked: Vec<(&str, (u64, u64))> = union.into_iter().collect();
        // Largest combined share first; the sort is stable, so equal shares stay in name order.
        ranked.sort_by(|a, b| {
            let (sa, sb) = (share(a.1 .0, rt) + share(a.1 .1, ct), share(b.1 .0, rt) + share(b.1 .1, ct));
            sb.total_cmp(&sa)
        });
        let folded = ranked.split_off(keep.min(ranked.len()));
        ranked.sort_by(|a, b| a.0.cmp(b.0));
        let mut names: Vec<String> = ranked.iter().map(|(n, _)| n.to_string()).collect();
        let mut r: Vec<u64> = ranked.iter().map(|(_, c)| c.0).collect();
        let mut c: Vec<u64> = ranked.iter().map(|(_, c)| c.1).collect();
        let more = if untracked { "+" } else { "" };
        names.push(format!("other ({}{more} categories)", folded.len()));
        r.push(folded.iter().map(|(_, c)| c.0).sum::<u64>() + reference.untracked);
        c.push(folded.iter().map(|(_, c)| c.1).sum::<u64>() + current.untracked);
        CategoryTable { names, reference: r, current: c, other: Some(folded.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let short = "a".repeat(MAX_VALUE_BYTES);
        assert_eq!(category_of(&short), short.as_str());
        let long = "é".repeat(600); // two bytes each
        let cut = category_of(&long);
        assert!(cut.len() <= MAX_VALUE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…') && cut.starts_with("éé"));
        // Values that differ only after the cut are one category.
        let mut categories = Categories::default();
        categories.add(&format!("{long}x"));
        categories.add(&format!("{long}y"));
        assert_eq!((categories.distinct(), categories.count(&cut)), (1, 2));
    }

    #[test]
    fn names_are_counted_up_to_the_limit_and_the_rest_together() {
        let values: Vec<String> = (0..MAX_NAMES + 500).map(|i| format!("v{i}")).collect();
        let mut categories = Categories::of(values.iter().map(|v| Some(v.as_str())));
        categories.add("v0");
        categories.add_missing();
        assert_eq!(categories.distinct(), MAX_NAMES);
        assert_eq!(categories.untracked(), 500);
        assert_eq!(categories.count("v0"), 2, "a tracked name keeps counting");
        assert_eq!(categories.values(), (MAX_NAMES + 501) as u64);
        assert_eq!(categories.missing(), 1);
    }

    #[test]
    fn few_categories_are_compared_as_they_are() {
        let r = Categories::of(["a", "b", "b"].map(Some));
        let c = Categories::of(["c", "b"].map(Some));
        let t = CategoryTable::of(&r, &c, DEFAULT_KEEP);
        assert_eq!(t.names, ["a", "b", "c"]);
        assert_eq!((t.reference, t.current, t.other), (vec![1, 2, 0], vec![0, 1, 1], None));
    }

    #[test]
    fn many_categories_fold_into_other_by_combined_share() {
        // 1,000 categories: `c0000` … `c0999`; the first ones are the most frequent.
        let names: Vec<String> = (0..1000).map(|i| format!("c{i:04}")).collect();
        let mut r = Categories::default();
        let mut c = Categories::default();
        for (i, name) in names.iter().enumerate() {
            for _ in 0..(1000 - i) {
                r.add(name);
            }
            // The current sample favours the tail: c0999 is its most frequent category.
            for _ in 0..(1 + i / 10) {
                c.add(name);
            }
        }
        let t = CategoryTable::of(&r, &c, 5);
        assert_eq!(t.names.len(), 6);
        assert_eq!(t.other, Some(995));
        assert_eq!(t.names[5], "other (995 categories)");
        assert!(t.names[..5].windows(2).all(|w| w[0] < w[1]), "kept names in order: {:?}", t.names);
        assert_eq!(t.reference.iter().sum::<u64>(), r.values());
        assert_eq!(t.current.iter().sum::<u64>(), c.values());
        assert!(t.names.contains(&"c0000".to_string()));
    }

    #[test]
    fn untracked_values_go_to_other() {
        let values: Vec<String> = (0..MAX_NAMES + 10).map(|i| format!("v{i}")).collect();
        let r = Categories::of(values.iter().map(|v| Some(v.as_str())));
        let c = Categories::of(["v1", "v2"].map(Some));
        let t = CategoryTable::of(&r, &c, DEFAULT_KEEP);
        assert_eq!(t.names.len(), DEFAULT_KEEP + 1);
        assert!(t.names.last().unwrap().contains('+'), "{:?}", t.names.last());
        assert_eq!(t.reference.iter().sum::<u64>(), (MAX_NAMES + 10) as u64);
    }
}
