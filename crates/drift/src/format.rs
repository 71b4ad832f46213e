//! How the drift engine writes numbers, times and text for people: in tables, reports, bin
//! labels and category names. The one place for these rules, so a number reads the same in a
//! terminal table, an HTML report and a histogram label.

/// A statistic or metric: six significant digits, scientific notation for magnitudes below
/// 1e-4 or from 1e7 on.
pub fn number(x: f64) -> String {
    significant(x, 6, -4..7)
}

/// A histogram bin edge: four significant digits, scientific notation below 1e-3 or from 1e6 on.
pub fn bin_edge(x: f64) -> String {
    significant(x, 4, -3..6)
}

/// A number used as a category name (a numeric column compared by category, a class of a
/// multiclass model): as JSON would print it, integers without a fraction.
pub fn category_name(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A time as `YYYY-MM-DD HH:MM UTC`; the milliseconds themselves when out of chrono's range.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// At most `n` characters of `s`, the last one `…` when something was cut.
pub fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n.saturating_sub(1)).collect::<String>())
    }
}

/// `x` to `digits` significant digits without trailing zeros, in plain notation when its
/// decimal magnitude (the exponent of its leading digit) is in `plain`, else scientific.
fn significant(x: f64, digits: i32, plain: std::ops::Range<i32>) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    if !plain.contains(&magnitude) {
        return format!("{x:.3e}");
    }
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_readable() {
        assert_eq!(number(0.123456789), "0.123457");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(3e-9), "3.000e-9");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn bin_edges_have_four_digits() {
        assert_eq!(bin_edge(12.3456), "12.35");
        assert_eq!(bin_edge(-0.5), "-0.5");
        assert_eq!(bin_edge(2e6), "2.000e6");
    }

    #[test]
    fn numbers_as_categories_print_like_json() {
        assert_eq!(category_name(3.0), "3");
        assert_eq!(category_name(-2.5), "-2.5");
    }

    #[test]
    fn times_and_text() {
        assert_eq!(time(1_793_491_200_000), "2026-11-01 00:00 UTC");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
