//! When a job runs: a cron expression in a time zone, or a shorthand.
//!
//! Shorthands (hour and minute in the schedule's time zone, `HH` or `HH:MM`):
//! - `daily@06:00`
//! - `weekly:mon@06:00` — every week on that day (`mon` … `sun`)
//! - `monthly:first-mon@06:00` — the first given weekday of each month
//! - `hourly` — on the hour
//!
//! Anything else is read as a cron expression: five fields (`minute hour day month weekday`)
//! or six with seconds first; `MON#1` means the first Monday of the month.

use crate::Error;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A schedule as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// A cron expression or a shorthand.
    pub expression: String,
    /// IANA time zone name, e.g. `Europe/Berlin`; `UTC` by default.
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    spec: ScheduleSpec,
}

impl Schedule {
    /// Parses and checks a schedule; errors name the field and show valid forms.
    pub fn parse(spec: &ScheduleSpec) -> Result<Self, Error> {
        let tz: Tz = spec.timezone.parse().map_err(|_| Error::Invalid {
            field: "schedule.timezone".into(),
            message: format!("`{}` is not an IANA time zone; use a name such as UTC or Europe/Berlin", spec.timezone),
        })?;
        let pattern = expand(spec.expression.trim())?;
        let cron = Cron::from_str(&pattern).map_err(|e| Error::Invalid {
            field: "schedule.expression".into(),
            message: format!(
                "`{}` is not a schedule ({e}); use daily@HH:MM, weekly:mon@HH:MM, monthly:first-mon@HH:MM, hourly, \
                 or a cron expression such as `0 6 * * *`",
                spec.expression
            ),
        })?;
        Ok(Schedule { cron, tz, spec: spec.clone() })
    }

    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The first scheduled time strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // Schedules have whole seconds; the search keeps the start's fraction of a second, so
        // start from the whole second at or before `after_ms`.
        let second = after_ms.div_euclid(1000) * 1000;
        let at = Utc.timestamp_millis_opt(second).single()?.with_timezone(&self.tz);
        let next: DateTime<Tz> = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(next.timestamp_millis().div_euclid(1000) * 1000)
    }

    /// The last scheduled time at or before `at_ms`.
    pub fn last_at_or_before(&self, at_ms: i64) -> Option<i64> {
        let second = at_ms.div_euclid(1000) * 1000;
        let at = Utc.timestamp_millis_opt(second).single()?.with_timezone(&self.tz);
        let previous: DateTime<Tz> = self.cron.find_previous_occurrence(&at, true).ok()?;
        Some(previous.timestamp_millis().div_euclid(1000) * 1000)
    }

    /// Scheduled times in `(after_ms, until_ms]`, oldest first: the newest `limit` of them. The
    /// work is in proportion to `limit`, not to the length of the period: the search steps back
    /// from `until_ms` to the oldest time it will return, then lists forward from there.
    pub fn between(&self, after_ms: i64, until_ms: i64, limit: usize) -> Vec<i64> {
        if limit == 0 {
            return Vec::new();
        }
        let mut from = after_ms;
        let (mut t, mut found) = (until_ms, 0);
        while found < limit {
            match self.last_at_or_before(t) {
                Some(previous) if previous > after_ms => {
                    found += 1;
                    from = previous - 1;
                    t = previous - 1;
                }
                _ => break,
            }
        }
        let mut out = std::collections::VecDeque::new();
        let mut t = from.max(after_ms);
        while let Some(next) = self.next_after(t) {
            if next > until_ms {
                break;
            }
            out.push_back(next);
            if out.len() > limit {
                out.pop_front();
            }
            t = next;
        }
        out.into()
    }
}

/// Turns a shorthand into a cron pattern; other text is returned as it is.
fn expand(expression: &str) -> Result<String, Error> {
    let invalid = |message: String| Error::Invalid { field: "schedule.expression".into(), message };
    let lower = expression.to_ascii_lowercase();
    if lower == "hourly" {
        return Ok("0 * * * *".into());
    }
    let Some((kind, at)) = lower.split_once('@') else { return Ok(expression.to_string()) };
    let (hour, minute) = parse_time(at).ok_or_else(|| {
        invalid(format!("`{at}` in `{expression}` is not a time of day; write HH or HH:MM, e.g. 06:00"))
    })?;
    if kind == "daily" {
        return Ok(format!("{minute} {hour} * * *"));
    }
    if let Some(day) = kind.strip_prefix("weekly:") {
        let day = weekday(day)
            .ok_or_else(|| invalid(format!("`{day}` is not a weekday; use mon, tue, wed, thu, fri, sat or sun")))?;
        return Ok(format!("{minute} {hour} * * {day}"));
    }
    if let Some(day) = kind.strip_prefix("monthly:first-") {
        let day = weekday(day)
            .ok_or_else(|| invalid(format!("`{day}` is not a weekday; use mon, tue, wed, thu, fri, sat or sun")))?;
        return Ok(format!("{minute} {hour} * * {day}#1"));
    }
    Err(invalid(format!(
        "`{expression}` is not a shorthand; use daily@HH:MM, weekly:mon@HH:MM, monthly:first-mon@HH:MM or hourly"
    )))
}

fn parse_time(at: &str) -> Option<(u32, u32)> {
    let (h, m) = at.split_once(':').unwrap_or((at, "0"));
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

fn weekday(day: &str) -> Option<&'static str> {
    Some(match day {
        "mon" | "monday" => "MON",
        "tue" | "tuesday" => "TUE",
        "wed" | "wednesday" => "WED",
        "thu" | "thursday" => "THU",
        "fri" | "friday" => "FRI",
        "sat" | "saturday" => "SAT",
        "sun" | "sunday" => "SUN",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn schedule(expression: &str, timezone: &str) -> Schedule {
        Schedule::parse(&ScheduleSpec { expression: expression.into(), timezone: timezone.into() }).unwrap()
    }

    #[test]
    fn daily_in_a_time_zone_follows_daylight_saving() {
        let s = schedule("daily@06:00", "Europe/Berlin");
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(s.next_after(at("2026-01-10T12:00:00Z")), Some(at("2026-01-11T05:00:00Z")));
        assert_eq!(s.next_after(at("2026-07-10T12:00:00Z")), Some(at("2026-07-11T04:00:00Z")));
    }

    #[test]
    fn weekly_and_first_weekday_of_month() {
        let s = schedule("weekly:mon@9", "UTC");
        // 2026-11-22 is a Sunday.
        assert_eq!(s.next_after(at("2026-11-22T00:00:00Z")), Some(at("2026-11-23T09:00:00Z")));
        let s = schedule("monthly:first-mon@07:30", "UTC");
        assert_eq!(s.next_after(at("2026-11-22T00:00:00Z")), Some(at("2026-12-07T07:30:00Z")));
        assert_eq!(s.next_after(at("2026-12-07T07:30:00Z")), Some(at("2027-01-04T07:30:00Z")));
    }

    #[test]
    fn times_between_fractions_of_a_second_land_on_whole_seconds() {
        let s = schedule("daily@00:00", "UTC");
        let from = at("2026-11-03T00:00:00Z");
        let to = at("2026-11-05T00:00:00Z");
        assert_eq!(s.between(from - 1, to, usize::MAX), vec![from, from + 86_400_000, to]);
        assert_eq!(s.next_after(from + 1), Some(from + 86_400_000));
    }

    #[test]
    fn cron_expressions_and_missed_runs() {
        let s = schedule("0 */6 * * *", "UTC");
        let runs = s.between(at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"), 100);
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[0], at("2026-11-20T06:00:00Z"));
        // Only the newest `limit` are kept.
        let newest = s.between(at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"), 2);
        assert_eq!(newest, vec![at("2026-11-20T18:00:00Z"), at("2026-11-21T00:00:00Z")]);
    }

    #[test]
    fn the_newest_times_of_a_long_period_come_without_listing_it() {
        // Every second for 90 years: listing them all would take hours.
        let s = schedule("* * * * * *", "UTC");
        let (from, to) = (at("2001-01-01T00:00:00Z"), at("2091-01-01T00:00:00Z"));
        assert_eq!(s.between(from, to, 3), vec![to - 2000, to - 1000, to]);
        assert_eq!(s.between(from, from + 2500, 10), vec![from + 1000, from + 2000]);
        assert_eq!(s.last_at_or_before(to + 999), Some(to));
        assert!(s.between(from, to, 0).is_empty());
    }

    #[test]
    fn stepping_back_agrees_with_stepping_forward_across_daylight_saving() {
        // Berlin leaves daylight saving on 2026-10-25 (02:00-03:00 twice) and enters it on
        // 2026-03-29 (02:00-03:00 skipped).
        for expression in ["hourly", "30 * * * *", "daily@02:30", "*/20 * * * *"] {
            let s = schedule(expression, "Europe/Berlin");
            for (from, to) in [
                (at("2026-10-24T00:00:00Z"), at("2026-10-26T00:00:00Z")),
                (at("2026-03-28T00:00:00Z"), at("2026-03-30T00:00:00Z")),
            ] {
                let mut forward = Vec::new();
                let mut t = from;
                while let Some(next) = s.next_after(t).filter(|n| *n <= to) {
                    forward.push(next);
                    t = next;
                }
                for limit in [1, 5, forward.len(), usize::MAX] {
                    let want = &forward[forward.len().saturating_sub(limit)..];
                    assert_eq!(s.between(from, to, limit), want, "{expression} {limit}");
                }
            }
        }
    }

    #[test]
    fn bad_schedules_name_the_field_and_the_forms() {
        let bad = |e: &str, tz: &str| {
            Schedule::parse(&ScheduleSpec { expression: e.into(), timezone: tz.into() }).unwrap_err().to_string()
        };
        assert!(bad("daily@25:00", "UTC").contains("schedule.expression"));
        assert!(bad("weekly:funday@06", "UTC").contains("not a weekday"));
        assert!(bad("every tuesday", "UTC").contains("daily@HH:MM"));
        assert!(bad("daily@06", "Mars/Olympus").contains("schedule.timezone"));
    }
}
