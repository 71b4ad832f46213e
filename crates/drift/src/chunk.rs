//! Chunks: a table's rows cut into consecutive parts, each compared with the reference, as
//! NannyML cuts them (its `SizeBasedChunker`, `CountBasedChunker` and `PeriodBasedChunker`
//! with their default `incomplete='keep'`).
//!
//! - By size: rows `[0, n)`, `[n, 2n)`, …; a remainder is one more, smaller, last chunk.
//! - By number: size `rows / k` (floor), then as by size, so a remainder makes `k + 1` chunks.
//! - By period: one chunk per calendar hour, day, week (Monday to Sunday) or month that holds
//!   rows, in time order; periods without rows make no chunk.
//!
//! With a timestamp column the rows are first ordered by time (a stable sort: rows with equal
//! times keep their file order), and chunks are cut in that order; indices are positions in it.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;

/// How rows are cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chunking {
    /// Chunks of this many consecutive rows.
    Size(usize),
    /// This many chunks of equal size (plus one for a remainder).
    Number(usize),
    /// One chunk per calendar period (UTC).
    Period(Period),
}

/// A calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
}

impl Period {
    /// The period in words: `hour`, `day`, `week` (Monday to Sunday) or `month`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week (Monday to Sunday)",
            Period::Month => "month",
        }
    }
}

impl std::str::FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1h" | "h" | "hour" => Ok(Period::Hour),
            "1d" | "d" | "day" => Ok(Period::Day),
            "1w" | "w" | "week" => Ok(Period::Week),
            "1mo" | "m" | "month" => Ok(Period::Month),
            other => Err(format!("`{other}` is not a chunk period; use 1h, 1d, 1w or 1mo")),
        }
    }
}

/// One chunk: rows `start..end` of the (time-ordered) table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// `[start:end]` (end inclusive) for size and number chunks, the period's name otherwise
    /// (`2018-10`, `2018-01-01/2018-01-07`, `2018-01-01`, `2018-01-01 13:00`).
    pub key: String,
    pub start: usize,
    /// One past the last row.
    pub end: usize,
    /// The first and last time of the chunk: the rows' for size and number chunks, the
    /// period's bounds (its first and last millisecond) for period chunks.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

/// A chunk as results describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    pub key: String,
    /// `reference` or `analysis`.
    pub period: String,
    /// First and last row (inclusive), positions in the period's time-ordered rows.
    pub start_index: usize,
    pub end_index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp_ms: Option<i64>,
    pub size: usize,
}

impl ChunkInfo {
    pub fn is_reference(&self) -> bool {
        self.period == "reference"
    }
}

/// The chunks of both periods as results list them: the reference's, then the analysis's.
pub fn describe(reference: &[Span], analysis: &[Span]) -> Vec<ChunkInfo> {
    reference
        .iter()
        .map(|s| (s, "reference"))
        .chain(analysis.iter().map(|s| (s, "analysis")))
        .map(|(s, period)| ChunkInfo {
            key: s.key.clone(),
            period: period.into(),
            start_index: s.start,
            end_index: s.end.saturating_sub(1),
            start_timestamp_ms: s.start_ms,
            end_timestamp_ms: s.end_ms,
            size: s.end - s.start,
        })
        .collect()
}

/// The order rows are read in: by time, stably, when there are times; file order otherwise.
/// Rows without a time are refused.
pub fn order(times: Option<&[Option<i64>]>, column: &str) -> Result<Vec<usize>, Error> {
    let Some(times) = times else { return Ok(Vec::new()) };
    if let Some(row) = times.iter().position(Option::is_none) {
        return Err(Error::Column {
            column: column.into(),
            message: format!("row {} has no time; every row needs one to be put in a chunk", row + 1),
        });
    }
    let mut rows: Vec<usize> = (0..times.len()).collect();
    rows.sort_by_key(|&i| times[i]);
    Ok(rows)
}

/// Cuts `rows` rows, whose times (in chunk order) are `times` if known, into chunks.
pub fn split(rows: usize, times: Option<&[i64]>, chunking: Chunking) -> Result<Vec<Span>, Error> {
    let invalid = |field: &str, message: String| Error::Invalid { field: field.into(), message };
    let by_size = |size: usize| -> Vec<Span> {
        (0..rows)
            .step_by(size)
            .map(|start| {
                let end = (start + size).min(rows);
                Span {
                    key: format!("[{start}:{}]", end - 1),
                    start,
                    end,
                    start_ms: times.map(|t| t[start]),
                    end_ms: times.map(|t| t[end - 1]),
                }
            })
            .collect()
    };
    match chunking {
        Chunking::Size(0) => Err(invalid("chunk_size", "must be at least 1".into())),
        Chunking::Size(size) => Ok(by_size(size)),
        Chunking::Number(0) => Err(invalid("chunk_number", "must be at least 1".into())),
        Chunking::Number(k) if k > rows => {
            Err(invalid("chunk_number", format!("{k} chunks need at least {k} rows, and there are {rows}")))
        }
        Chunking::Number(k) => Ok(by_size(rows / k)),
        Chunking::Period(period) => {
            let times = times
                .ok_or_else(|| invalid("chunk_period", "chunks by period need a timestamp column; name it".into()))?;
            let mut spans: Vec<Span> = Vec::new();
            let mut start = 0;
            while start < rows {
                let (from, to) = bounds(times[start], period);
                let end = start + times[start..].partition_point(|t| *t < to);
                spans.push(Span {
                    key: name(from, to, period),
                    start,
                    end,
                    start_ms: Some(from),
                    end_ms: Some(to - 1),
                });
                start = end;
            }
            Ok(spans)
        }
    }
}

/// The period holding `ms`: its first millisecond and the first one after it.
fn bounds(ms: i64, period: Period) -> (i64, i64) {
    let at = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let day = at.date_naive();
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")).timestamp_millis();
    match period {
        Period::Hour => {
            let from = midnight(day) + i64::from(at.hour()) * 3_600_000;
            (from, from + 3_600_000)
        }
        Period::Day => (midnight(day), midnight(day) + 86_400_000),
        Period::Week => {
            let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
            (midnight(monday), midnight(monday) + 7 * 86_400_000)
        }
        Period::Month => {
            let first = NaiveDate::from_ymd_opt(day.year(), day.month(), 1).expect("a month's first day");
            let next = if day.month() == 12 {
                NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
            }
            .expect("the next month's first day");
            (midnight(first), midnight(next))
        }
    }
}

/// A period's name, as pandas names periods.
fn name(from: i64, to: i64, period: Period) -> String {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    match period {
        Period::Hour => at(from).format("%Y-%m-%d %H:00").to_string(),
        Period::Day => at(from).format("%Y-%m-%d").to_string(),
        Period::Week => format!("{}/{}", at(from).format("%Y-%m-%d"), at(to - 1).format("%Y-%m-%d")),
        Period::Month => at(from).format("%Y-%m").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_keep_the_remainder_as_a_last_chunk() {
        let spans = split(10, None, Chunking::Size(4)).unwrap();
        let cuts: Vec<(usize, usize, &str)> = spans.iter().map(|s| (s.start, s.end, s.key.as_str())).collect();
        assert_eq!(cuts, [(0, 4, "[0:3]"), (4, 8, "[4:7]"), (8, 10, "[8:9]")]);
        // 50,000 rows in 7: 7 chunks of 7,142 and one of 6, as NannyML cuts them.
        let spans = split(50_000, None, Chunking::Number(7)).unwrap();
        assert_eq!(spans.len(), 8);
        assert_eq!((spans[6].end - spans[6].start, spans[7].end - spans[7].start), (7_142, 6));
        assert!(split(3, None, Chunking::Number(4)).unwrap_err().to_string().contains("chunk_number"));
        assert!(split(3, None, Chunking::Size(0)).is_err());
    }

    #[test]
    fn periods_are_calendar_periods_with_rows() {
        // 2018-01-31 23:00, 2018-02-01 00:30, 2018-04-02 (no row in March).
        let t = [1_517_439_600_000, 1_517_445_000_000, 1_522_627_200_000];
        let months = split(3, Some(&t), Chunking::Period(Period::Month)).unwrap();
        let keys: Vec<&str> = months.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["2018-01", "2018-02", "2018-04"]);
        assert_eq!(months[1].start_ms, Some(1_517_443_200_000), "February's first millisecond");
        assert_eq!(months[1].end_ms, Some(1_519_862_400_000 - 1), "its last");
        let weeks = split(3, Some(&t), Chunking::Period(Period::Week)).unwrap();
        assert_eq!(weeks[0].key, "2018-01-29/2018-02-04");
        assert_eq!((weeks[0].start, weeks[0].end), (0, 2), "Wednesday and Thursday of one week");
        let hours = split(3, Some(&t), Chunking::Period(Period::Hour)).unwrap();
        assert_eq!(hours[0].key, "2018-01-31 23:00");
        assert!(split(3, None, Chunking::Period(Period::Day)).unwrap_err().to_string().contains("timestamp"));
    }

    #[test]
    fn rows_are_ordered_by_time_stably() {
        let times = [Some(30), Some(10), Some(30), Some(20)];
        assert_eq!(order(Some(&times), "ts").unwrap(), [1, 3, 0, 2]);
        let err = order(Some(&[Some(1), None]), "ts").unwrap_err().to_string();
        assert!(err.contains("`ts`") && err.contains("row 2"), "{err}");
    }
}
