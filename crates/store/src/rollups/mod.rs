//! Rollup tables: what the rollup worker reads and writes, and the invalidation log that event
//! writes add to. The summaries themselves (sketches, merging) belong to driftline-rollup; here
//! they are rows.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

use crate::batch::WriteBatch;
use crate::{Error, Window};

pub(crate) mod sql;

/// A rollup resolution: the length of its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolution {
    /// One minute: rolled from raw events.
    Minute,
    /// One hour: merged from minutes.
    Hour,
    /// One day (UTC): merged from hours.
    Day,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// Bucket length in milliseconds.
    pub const fn ms(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
            Resolution::Day => 86_400_000,
        }
    }

    /// The start of the bucket holding `t`.
    pub const fn floor(self, t: i64) -> i64 {
        t.div_euclid(self.ms()) * self.ms()
    }

    /// `1m`, `1h` or `1d`.
    pub const fn name(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
            Resolution::Day => "1d",
        }
    }

    /// The table holding this resolution's buckets.
    pub(crate) const fn table(self) -> &'static str {
        match self {
            Resolution::Minute => "rollups_1m",
            Resolution::Hour => "rollups_1h",
            Resolution::Day => "rollups_1d",
        }
    }

    /// The next coarser resolution, whose buckets are merged from this one's.
    pub const fn coarser(self) -> Option<Resolution> {
        match self {
            Resolution::Minute => Some(Resolution::Hour),
            Resolution::Hour => Some(Resolution::Day),
            Resolution::Day => None,
        }
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1m" => Ok(Resolution::Minute),
            "1h" => Ok(Resolution::Hour),
            "1d" => Ok(Resolution::Day),
            other => Err(format!("`{other}` is not a rollup step; use 1m, 1h or 1d")),
        }
    }
}

/// One stored summary of one metric path of one deployment over one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    /// The deployment.
    pub model_deployment_crn: String,
    /// The metric's dotted path (`input.tenure`, `label`, `@latency_ms`).
    pub path: String,
    /// Start of the bucket, ms since the epoch.
    pub bucket_start_ms: i64,
    /// Numeric values seen.
    pub n_numeric: i64,
    /// Their sum.
    pub sum: f64,
    /// Their minimum (`None` when there were none).
    pub min: Option<f64>,
    /// Their maximum.
    pub max: Option<f64>,
    /// Sum of squared deviations from their mean.
    pub m2: f64,
    /// Their DataSketches KLL sketch, standard serialization.
    pub sketch: Option<Vec<u8>>,
    /// String and boolean values seen.
    pub n_categorical: i64,
    /// Counts of the most frequent values, a JSON object.
    pub value_counts: Option<String>,
    /// Values counted but not among the kept ones.
    pub other_count: i64,
}

/// Where the worker stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupState {
    /// The worker announced it is rolling predictions that start before this.
    pub rolling_to_ms: Option<i64>,
    /// Every prediction starting before this is rolled (or its minute is in the dirty log).
    pub rolled_to_ms: Option<i64>,
    /// Retention removed raw events starting before this.
    pub raw_kept_from_ms: Option<i64>,
    /// Retention removed the 1-minute rollups of buckets starting before this.
    pub minute_kept_from_ms: Option<i64>,
    /// Retention removed the 1-hour rollups of buckets starting before this.
    pub hour_kept_from_ms: Option<i64>,
    /// Grows with every commit of the worker.
    pub generation: i64,
}

/// One entry of the invalidation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyEntry {
    /// Its id, by which it is cleared.
    pub id: i64,
    /// The deployment.
    pub model_deployment_crn: String,
    /// The stale minute's start.
    pub bucket_start_ms: i64,
}

/// A prediction as the worker reads it: its stored metrics and delayed metrics as JSON text.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SourceRow {
    /// The deployment.
    pub model_deployment_crn: String,
    /// The prediction's UUID as text.
    pub uuid: String,
    /// The model's CRN.
    pub model_crn: String,
    /// The build's CRN.
    pub model_build_crn: String,
    /// Start, ms since the epoch.
    pub start_timestamp_ms: i64,
    /// End, ms since the epoch.
    pub end_timestamp_ms: i64,
    /// The prediction's metrics (a JSON object).
    pub metrics: String,
    /// Its delayed metrics, oldest first (a JSON array of objects), if any.
    pub delayed: Option<String>,
}

/// A stream of source rows.
pub type SourceStream = Pin<Box<dyn Stream<Item = Result<SourceRow, Error>> + Send>>;

/// A metric path's standing under the per-deployment cardinality guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEntry {
    /// The deployment.
    pub model_deployment_crn: String,
    /// The path.
    pub path: String,
    /// Whether it is rolled up; false when the deployment had reached its path limit.
    pub admitted: bool,
    /// Values of a refused path that were not rolled up.
    pub refused_values: i64,
}

/// One atomic step of the worker: rollup rows replaced, the dirty entries this clears, and the
/// new watermark, all in one transaction, so a crash anywhere leaves either all or none of it.
#[derive(Debug, Clone, Default)]
pub struct RollupCommit {
    /// The state the step was planned on; the commit fails with [`Error::RollupMoved`] when the
    /// stored generation is no longer this.
    pub generation: i64,
    /// Buckets replaced whole, of every deployment: resolution and `[start, end)`.
    pub replace_ranges: Vec<(Resolution, Window)>,
    /// Buckets replaced whole, of one deployment: resolution, deployment, bucket start.
    pub replace_buckets: Vec<(Resolution, String, i64)>,
    /// The new rows.
    pub rows: Vec<(Resolution, RollupRow)>,
    /// The new `rolled_to_ms`, when the step moves it.
    pub rolled_to_ms: Option<i64>,
    /// Invalidation log entries this step has re-rolled.
    pub cleared: Vec<i64>,
    /// Paths newly admitted or refused, and values added to refused paths' counts.
    pub paths: Vec<PathEntry>,
}

/// What the rollup worker needs of the store.
#[async_trait]
pub trait RollupStore: Send + Sync + 'static {
    /// The worker's progress.
    async fn rollup_state(&self) -> Result<RollupState, Error>;

    /// Every deployment that has sent a prediction.
    async fn deployments(&self) -> Result<Vec<String>, Error>;

    /// The earliest time at or after `from_ms` of anything `deployment` rolls up from: a
    /// prediction's start, replica figures, a dead letter naming it.
    async fn next_start_ms(&self, deployment: &str, from_ms: i64) -> Result<Option<i64>, Error>;

    /// Announces that predictions starting before `to_ms` are about to be rolled. When it
    /// returns, every event write that began before has committed, and every later one marks
    /// the minutes it adds to before `to_ms` dirty; a read of the source from then on misses
    /// nothing that is not in the dirty log.
    async fn announce_rolling(&self, to_ms: i64) -> Result<(), Error>;

    /// The predictions of `deployment` starting in `window`, by start time then UUID, each
    /// with its delayed metrics, as stored text: what the rollup worker reads, and drift jobs,
    /// which decode only the paths they need.
    fn rollup_source(&self, deployment: &str, window: Window) -> SourceStream;

    /// The replica figures of `deployment` taken in `window`, by time then replica.
    async fn replica_source(&self, deployment: &str, window: Window) -> Result<Vec<ReplicaRow>, Error>;

    /// The receive times of the dead letters naming `deployment` received in `window`.
    async fn rejected_source(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error>;

    /// Returns once every event write in flight when it was called has committed (or failed):
    /// what the worker passes before it re-rolls logged minutes from raw rows.
    async fn pass_barrier(&self) -> Result<(), Error>;

    /// The oldest `limit` entries of the invalidation log.
    async fn dirty(&self, limit: u32) -> Result<Vec<DirtyEntry>, Error>;

    /// The earliest minute named by the invalidation log, if any.
    async fn oldest_dirty_minute(&self) -> Result<Option<i64>, Error>;

    /// The minutes of `deployment` in `window` with pending invalidation entries.
    async fn dirty_minutes(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error>;

    /// Rollup rows of one resolution whose bucket starts in `window`: of one deployment (and
    /// one path when given), ordered by path then bucket.
    async fn rollup_rows(
        &self,
        resolution: Resolution,
        deployment: &str,
        path: Option<&str>,
        window: Window,
    ) -> Result<Vec<RollupRow>, Error>;

    /// The paths known for a deployment under the cardinality guard.
    async fn rollup_paths(&self, deployment: &str) -> Result<Vec<PathEntry>, Error>;

    /// Commits one step of the worker in one transaction.
    async fn commit_rollup(&self, commit: &RollupCommit) -> Result<(), Error>;

    /// Forgets the rollups whose bucket starts at or after `from_ms` (all of them when `None`)
    /// and the whole invalidation log, and moves the watermark back to `from_ms` (to nothing
    /// rolled when `None`, which also forgets the path admissions), in one transaction: the
    /// start of a replay.
    async fn reset_rollups(&self, from_ms: Option<i64>) -> Result<(), Error>;

    /// How many stored predictions start at or after `from_ms`.
    async fn count_predictions_from(&self, from_ms: i64) -> Result<u64, Error>;

    /// Records that raw events starting before `before_ms` are being removed: from then on no
    /// minute before it is re-rolled from raw rows (they may be partly gone). Never moves back.
    async fn mark_raw_removed(&self, before_ms: i64) -> Result<(), Error>;

    /// Removes the predictions starting and received before `before_ms` with their delayed
    /// metrics, delayed metrics from and received before it whose prediction is gone or never
    /// came, and replica figures likewise. (A backfill of old events is kept until it too was
    /// received long enough ago.) Postgres drops whole day partitions; what remains is deleted
    /// in bounded chunks, each its own transaction. Call [`RollupStore::mark_raw_removed`] first.
    async fn remove_raw(&self, before_ms: i64) -> Result<Removed, Error>;

    /// Removes the rollups of `resolution` whose bucket starts before `before_ms`, in bounded
    /// chunks, having first recorded in the state that they start from there; returns how many.
    async fn remove_rollups(&self, resolution: Resolution, before_ms: i64) -> Result<u64, Error>;

    /// Removes dead letters received before `before_ms`, in bounded chunks; returns how many.
    async fn remove_dead_letters(&self, before_ms: i64) -> Result<u64, Error>;
}

/// What a removal of raw events removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// Predictions.
    pub predictions: u64,
    /// Delayed metrics.
    pub delayed_metrics: u64,
    /// Replica figures.
    pub replica_stats: u64,
    /// Day partitions dropped whole (Postgres).
    pub partitions: u64,
}

/// Rows deleted per statement by retention.
pub(crate) const REMOVE_CHUNK: i64 = 5_000;

/// The distinct deployments of the predictions a write keeps and of its replica figures, by
/// name.
pub(crate) fn new_deployments<'a>(batch: &'a WriteBatch, keep: &[bool]) -> Vec<&'a str> {
    let mut out: Vec<&str> = batch
        .predictions
        .iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(p, _)| p.model_deployment_crn.as_str())
        .chain(batch.replica_stats.iter().map(|r| r.model_deployment_crn.as_str()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The distinct `(deployment, build, model)` triples of the predictions a write keeps, in order.
pub(crate) fn new_lineage<'a>(batch: &'a WriteBatch, keep: &[bool]) -> Vec<(&'a str, &'a str, &'a str)> {
    let mut out: Vec<(&str, &str, &str)> = batch
        .predictions
        .iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(p, _)| (p.model_deployment_crn.as_str(), p.model_build_crn.as_str(), p.model_crn.as_str()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The `(deployment, minute)` pairs a write adds to that are not predictions: replica figures
/// by their time, dead letters naming a deployment by their receive time.
pub(crate) fn other_minutes(batch: &WriteBatch, rolling_to_ms: i64) -> Vec<(String, i64)> {
    let named: Vec<(String, i64)> =
        batch.dead_letters.iter().filter_map(|d| Some((d.named_deployment()?, d.received_at_ms))).collect();
    dirty_minutes_of(
        batch
            .replica_stats
            .iter()
            .map(|r| (r.model_deployment_crn.as_str(), r.timestamp_ms))
            .chain(named.iter().map(|(d, t)| (d.as_str(), *t))),
        rolling_to_ms,
    )
}

/// A replica's figures as the worker reads them.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReplicaRow {
    /// The replica.
    pub replica_id: String,
    /// When.
    pub timestamp_ms: i64,
    /// CPU, percent of one core.
    pub cpu_percent: f64,
    /// Resident bytes.
    pub memory_bytes: i64,
}

/// The minute buckets of `(deployment, start)` pairs, distinct, for the invalidation log.
pub(crate) fn dirty_minutes_of<'a>(
    events: impl IntoIterator<Item = (&'a str, i64)>,
    rolling_to_ms: i64,
) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = events
        .into_iter()
        .filter(|&(_, start)| start < rolling_to_ms)
        .map(|(d, start)| (d.to_owned(), Resolution::Minute.floor(start)))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_towards_minus_infinity() {
        assert_eq!(Resolution::Minute.floor(119_999), 60_000);
        assert_eq!(Resolution::Minute.floor(-1), -60_000);
        assert_eq!(Resolution::Day.floor(86_400_000 * 3 + 5), 86_400_000 * 3);
        assert_eq!("1h".parse::<Resolution>(), Ok(Resolution::Hour));
        assert!("5m".parse::<Resolution>().unwrap_err().contains("1m, 1h or 1d"));
    }

    #[test]
    fn only_minutes_before_the_announced_mark_are_dirty() {
        let got = dirty_minutes_of([("a", 61_000), ("a", 65_000), ("b", 1_000), ("a", 200_000)], 180_000);
        assert_eq!(got, vec![("a".to_owned(), 60_000), ("b".to_owned(), 0)]);
    }
}
