//! Retention: raw events, fine rollups and dead letters are kept for a while, then removed,
//! never before what covers them is durable.
//!
//! Raw predictions and delayed metrics go first (default after 14 days), but only before the
//! watermark (every minute holding them is rolled and committed) and before the earliest minute
//! the invalidation log names (a late event is re-rolled before its minute's raw rows go). The
//! store records the cut before it deletes anything, so a crash half-way leaves raw rows that
//! are simply not used again. Minute rollups go after 90 days and only once their hour is
//! rolled; hour rollups after 2 years and only once their day is; day rollups are kept. Fine
//! rollups that a re-roll would merge again (those of hours and days holding minutes whose raw
//! rows are kept, or a logged minute) stay whatever their age. Dead letters (30 days) are kept
//! at least as long as raw events, since a re-rolled minute counts its refused events again.

use std::time::Duration;

use driftline_store::rollups::Removed;
use driftline_store::{Resolution, Store};

use crate::Error;

/// How long each kind of data is kept; `None` keeps it for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Raw predictions and delayed metrics.
    pub raw: Option<Duration>,
    /// 1-minute rollups.
    pub minute: Option<Duration>,
    /// 1-hour rollups.
    pub hour: Option<Duration>,
    /// Dead letters.
    pub dead_letters: Option<Duration>,
}

const DAY: u64 = 86_400;

impl Default for Retention {
    /// Raw 14 days, minutes 90 days, hours 2 years (730 days), dead letters 30 days.
    fn default() -> Self {
        Retention {
            raw: Some(Duration::from_secs(14 * DAY)),
            minute: Some(Duration::from_secs(90 * DAY)),
            hour: Some(Duration::from_secs(730 * DAY)),
            dead_letters: Some(Duration::from_secs(30 * DAY)),
        }
    }
}

impl Retention {
    /// Checks that each resolution outlives what it is rolled from: raw ≤ minutes ≤ hours.
    pub fn check(&self) -> Result<(), String> {
        let longer = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a <= b,
        };
        if !longer(self.raw, self.minute) {
            return Err("--retain-1m must be at least --retain-raw: minutes are re-rolled from raw rows".into());
        }
        if !longer(self.minute, self.hour) {
            return Err("--retain-1h must be at least --retain-1m: hours are merged from minutes".into());
        }
        if !longer(self.raw, self.dead_letters) {
            return Err(
                "--retain-dead-letters must be at least --retain-raw: re-rolled minutes count their refused events again"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Parses a retention such as `14d`, `90d`, `2y`, `12h`, `30m`; `forever` (or `off`) keeps
/// for ever.
pub fn parse_retention(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if matches!(text, "forever" | "off" | "never") {
        return Ok(None);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 =
        number.parse().map_err(|_| format!("`{text}` is not a retention; write e.g. 14d, 90d, 2y or forever"))?;
    let seconds = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => DAY,
        "w" => 7 * DAY,
        "y" => 365 * DAY,
        _ => return Err(format!("`{text}`: the unit must be m, h, d, w or y (e.g. 14d), or write forever")),
    };
    if n == 0 {
        return Err(format!("`{text}` would remove everything at once; write forever to keep everything"));
    }
    Ok(Some(Duration::from_secs(n.saturating_mul(seconds))))
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Retained {
    /// Raw events removed.
    pub raw: Removed,
    /// Where raw events now start (everything before was removed), if anything was.
    pub raw_before_ms: Option<i64>,
    /// 1-minute rollups removed.
    pub minute_rollups: u64,
    /// 1-hour rollups removed.
    pub hour_rollups: u64,
    /// Dead letters removed.
    pub dead_letters: u64,
}

fn cutoff(now_ms: i64, keep: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

/// Applies `retention` as of `now_ms`.
pub async fn apply(store: &dyn Store, retention: &Retention, now_ms: i64) -> Result<Retained, Error> {
    retention.check().map_err(Error::Query)?;
    let mut done = Retained::default();
    let state = store.rollup_state().await?;
    let Some(rolled_to) = state.rolled_to_ms else { return Ok(done) };
    // Nothing a re-roll may still need goes: not before the watermark, not from the earliest
    // logged minute on.
    let mut keep_from = rolled_to;
    if let Some(dirty) = store.oldest_dirty_minute().await? {
        keep_from = keep_from.min(dirty);
    }
    if let Some(keep) = retention.raw {
        let before = cutoff(now_ms, keep).min(keep_from);
        store.mark_raw_removed(before).await?;
        done.raw = store.remove_raw(before).await?;
        done.raw_before_ms = Some(before.max(state.raw_kept_from_ms.unwrap_or(i64::MIN)));
        keep_from = keep_from.min(before);
        if let Some(keep) = retention.dead_letters {
            done.dead_letters = store.remove_dead_letters(cutoff(now_ms, keep).min(before)).await?;
        }
    }
    // A re-roll of a minute merges its hour again from the stored minutes, and its day from the
    // stored hours: those of minutes whose raw rows are kept stay.
    if let Some(keep) = retention.minute {
        let before = cutoff(now_ms, keep).min(Resolution::Hour.floor(keep_from));
        done.minute_rollups = store.remove_rollups(Resolution::Minute, before).await?;
    }
    if let Some(keep) = retention.hour {
        let before = cutoff(now_ms, keep).min(Resolution::Day.floor(keep_from));
        done.hour_rollups = store.remove_rollups(Resolution::Hour, before).await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_parse_with_units_and_forever() {
        assert_eq!(parse_retention("14d"), Ok(Some(Duration::from_secs(14 * DAY))));
        assert_eq!(parse_retention("2y"), Ok(Some(Duration::from_secs(730 * DAY))));
        assert_eq!(parse_retention("90m"), Ok(Some(Duration::from_secs(5_400))));
        assert_eq!(parse_retention("forever"), Ok(None));
        assert!(parse_retention("14").unwrap_err().contains("unit"));
        assert!(parse_retention("fortnight").unwrap_err().contains("14d"));
        assert!(parse_retention("0d").unwrap_err().contains("forever"));
    }

    #[test]
    fn finer_data_may_not_outlive_what_it_is_rolled_into() {
        assert!(Retention::default().check().is_ok());
        let r = Retention { raw: Some(Duration::from_secs(100 * DAY)), ..Retention::default() };
        assert!(r.check().unwrap_err().contains("--retain-1m"));
        let r = Retention { raw: None, ..Retention::default() };
        assert!(r.check().is_err(), "raw kept for ever but minutes not");
        let r = Retention { raw: None, minute: None, hour: None, dead_letters: None };
        assert!(r.check().is_ok());
        let r = Retention { dead_letters: Some(Duration::from_secs(DAY)), ..Retention::default() };
        assert!(r.check().unwrap_err().contains("--retain-dead-letters"));
    }
}
