//! Time helpers: driftline counts time in milliseconds since the Unix epoch, in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The UTC day (days since 1970-01-01) that holds `ms`.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The civil date (year, month, day) of a day number counted from 1970-01-01, proleptic
/// Gregorian calendar.
pub fn civil_date(day: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a 400-year era.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let d = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let m = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let y = year_of_era + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD` for the UTC day holding `ms`.
pub fn date_string(ms: i64) -> String {
    let (y, m, d) = civil_date(day_of(ms));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(10_957), (2000, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_675), (2023, 11, 14));
        assert_eq!(date_string(1_700_000_000_000), "2023-11-14");
        assert_eq!(date_string(4_102_444_800_000), "2100-01-01");
    }

    #[test]
    fn day_of_floors_negative_times() {
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
    }
}
