//! A window of one deployment summarised whole, per metric path, from the rollups: what a
//! drift job reads for a window whose raw rows retention has removed.
//!
//! Each part of the window is read at the finest resolution retention still keeps there: days
//! before the first whole day of kept hours, hours before the first whole hour of kept minutes,
//! minutes (and the raw tail the worker has not rolled, as a series read takes it) from there
//! on. Buckets are whole, so the summaries cover the window rounded out to the buckets read.

use driftline_store::rollups::RollupState;
use driftline_store::{Resolution, Store, Window};

use crate::leaves::PREDICTIONS;
use crate::rows::StoreRows;
use crate::series::{bucket_summaries, Readers, Source};
use crate::summary::{Summary, SummaryOptions};
use crate::Error;

/// The summaries of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSummary {
    /// The time the summaries cover: the window rounded out to whole buckets.
    pub covered: Window,
    /// The parts read, in time order, each with its resolution.
    pub parts: Vec<(Resolution, Window)>,
    /// Predictions in the covered time.
    pub predictions: u64,
    /// One summary per asked path, in the asked order.
    pub summaries: Vec<Summary>,
}

impl WindowSummary {
    /// The resolutions read, in time order, as `1d + 1h + 1m`.
    pub fn resolutions(&self) -> String {
        self.parts.iter().map(|(r, _)| r.name()).collect::<Vec<_>>().join(" + ")
    }
}

fn ceil(resolution: Resolution, t: i64) -> i64 {
    resolution.floor(t - 1) + resolution.ms()
}

/// The parts of `window` and the resolution each is read at, given what retention kept.
pub fn plan(window: Window, state: &RollupState) -> Vec<(Resolution, Window)> {
    // From these times on each finer resolution is complete, in whole coarser buckets.
    let hours_from = state.hour_kept_from_ms.map(|t| ceil(Resolution::Day, t));
    let minutes_from = state.minute_kept_from_ms.map(|t| ceil(Resolution::Hour, t));
    let mut parts = Vec::new();
    let mut at = window.start_ms;
    for (resolution, until) in [(Resolution::Day, hours_from), (Resolution::Hour, minutes_from)] {
        match until {
            Some(until) if at < until && at < window.end_ms => {
                let end = until.min(ceil(resolution, window.end_ms));
                parts.push((resolution, Window { start_ms: resolution.floor(at), end_ms: end }));
                at = end;
            }
            _ => {}
        }
    }
    if at < window.end_ms {
        let minute = Resolution::Minute;
        parts.push((minute, Window { start_ms: minute.floor(at), end_ms: ceil(minute, window.end_ms) }));
    }
    parts
}

/// Summarises `paths` of `deployment` over `window` (which must not be empty).
pub async fn summarise(
    store: &dyn Store,
    deployment: &str,
    paths: &[String],
    window: Window,
    options: SummaryOptions,
) -> Result<WindowSummary, Error> {
    if window.end_ms <= window.start_ms {
        return Err(Error::Query(format!("the window {} .. {} is empty", window.start_ms, window.end_ms)));
    }
    let parts = plan(window, &store.rollup_state().await?);
    let mut summaries = vec![Summary::new(options); paths.len()];
    let mut predictions = Summary::new(options);
    for (resolution, part) in &parts {
        let range = (part.start_ms, part.end_ms);
        let wanted = paths.iter().map(String::as_str).zip(summaries.iter_mut());
        for (path, summary) in wanted.chain(std::iter::once((PREDICTIONS, &mut predictions))) {
            for bucket in bucket_summaries(
                Readers { store, rows: &StoreRows(store) },
                deployment,
                path,
                range,
                *resolution,
                Source::Auto,
                options,
            )
            .await?
            .values()
            {
                summary.merge(bucket)?;
            }
        }
    }
    let covered = Window {
        start_ms: parts.first().map_or(window.start_ms, |(_, w)| w.start_ms),
        end_ms: parts.last().map_or(window.end_ms, |(_, w)| w.end_ms),
    };
    Ok(WindowSummary { covered, parts, predictions: predictions.numeric.as_ref().map_or(0, |n| n.count), summaries })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;

    fn state(minutes: Option<i64>, hours: Option<i64>) -> RollupState {
        RollupState { minute_kept_from_ms: minutes, hour_kept_from_ms: hours, ..RollupState::default() }
    }

    #[test]
    fn each_part_is_read_at_the_finest_resolution_kept_in_whole_buckets() {
        let w = |a: i64, b: i64| Window { start_ms: a, end_ms: b };
        // Nothing removed: minutes throughout, rounded out to whole minutes.
        assert_eq!(
            plan(w(10 * D + 30_001, 11 * D + 1), &state(None, None)),
            [(Resolution::Minute, w(10 * D, 11 * D + 60_000))]
        );
        // Minutes kept from day 20 at 05:10, hours from day 8 at 13:00: a window from day 5
        // at 12:00 to day 21 reads days up to day 9, hours up to day 20 06:00, minutes after.
        let kept = state(Some(20 * D + 5 * H + 600_000), Some(8 * D + 13 * H));
        assert_eq!(
            plan(w(5 * D + 12 * H, 21 * D), &kept),
            [
                (Resolution::Day, w(5 * D, 9 * D)),
                (Resolution::Hour, w(9 * D, 20 * D + 6 * H)),
                (Resolution::Minute, w(20 * D + 6 * H, 21 * D)),
            ]
        );
        // A window inside the kept hours reads hours, then minutes.
        assert_eq!(
            plan(w(15 * D + 90_000, 20 * D + 7 * H), &kept),
            [(Resolution::Hour, w(15 * D, 20 * D + 6 * H)), (Resolution::Minute, w(20 * D + 6 * H, 20 * D + 7 * H)),]
        );
        // A window ending before the kept minutes reads no minutes: its last hour is whole.
        assert_eq!(plan(w(15 * D, 16 * D + 1), &kept), [(Resolution::Hour, w(15 * D, 16 * D + H))]);
        // Hours and minutes cut on the same day: the day is read whole, then minutes.
        let same_day = state(Some(8 * D + 14 * H), Some(8 * D + 13 * H));
        assert_eq!(
            plan(w(7 * D, 10 * D), &same_day),
            [(Resolution::Day, w(7 * D, 9 * D)), (Resolution::Minute, w(9 * D, 10 * D)),]
        );
    }
}
