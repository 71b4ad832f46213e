//! The rollup worker: rolls complete minutes of raw predictions into `rollups_1m`, merges each
//! completed hour into `rollups_1h` and each completed day into `rollups_1d`, and re-rolls the
//! minutes the invalidation log names.
//!
//! Every step is one store transaction that also moves the watermark (or clears the log
//! entries it handled), so a crash at any point leaves the rollups as they were before the step
//! or after it: never counted twice, never skipped. Steps replace whole buckets, so repeating
//! one changes nothing. A minute is rolled once its end is older than the lateness; events that
//! come later for it are caught by the invalidation log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use driftline_store::rollups::{RollupCommit, RollupState};
use driftline_store::{Resolution, Store, Window};

use crate::leaves::ClassScores;
use crate::roll::{class_scores, merge_up, roll_minutes, sort, Bucketed, PathGuard, Paths};
use crate::rows::StoreRows;
use crate::summary::SummaryOptions;
use crate::Error;

/// How the worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerOptions {
    /// A minute is rolled once its end is this much in the past.
    pub lateness: Duration,
    /// Sketch and top-K settings.
    pub summary: SummaryOptions,
    /// Metric paths rolled up per deployment (technical `@` paths not counted).
    pub max_paths: usize,
    /// Invalidation log entries handled per step.
    pub dirty_batch: u32,
    /// Pause between rounds once caught up.
    pub poll: Duration,
    /// What is removed, and when.
    pub retention: crate::retention::Retention,
    /// How often [`Worker::run`] applies the retention.
    pub retention_every: Duration,
}

impl Default for WorkerOptions {
    /// 5 minutes lateness, k = 200, top 100, 1,000 paths, 1,000 log entries per step, a round
    /// every 10 s, the default retention applied every hour.
    fn default() -> Self {
        WorkerOptions {
            lateness: Duration::from_secs(300),
            summary: SummaryOptions::default(),
            max_paths: 1_000,
            dirty_batch: 1_000,
            poll: Duration::from_secs(10),
            retention: crate::retention::Retention::default(),
            retention_every: Duration::from_secs(3_600),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Rolled the predictions starting in the window.
    Rolled {
        /// What was rolled; the watermark is now its end.
        window: Window,
        /// Predictions read.
        predictions: u64,
        /// Rollup rows written (all resolutions).
        rows: usize,
    },
    /// Re-rolled minutes named by the invalidation log.
    Rerolled {
        /// Minutes re-rolled.
        minutes: usize,
        /// Predictions read.
        predictions: u64,
        /// Rollup rows written.
        rows: usize,
        /// Log entries for minutes whose raw events retention had already removed: their
        /// rollups stay as they were.
        beyond_retention: usize,
    },
    /// Another worker committed first; nothing was written. Plan again.
    Retry,
    /// Nothing to do: every complete minute is rolled and the log is empty.
    Idle,
}

/// Totals over many steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// Steps committed.
    pub steps: u64,
    /// Predictions read.
    pub predictions: u64,
    /// Minutes re-rolled for late events.
    pub minutes_rerolled: u64,
    /// Rollup rows written.
    pub rows: u64,
    /// Log entries for minutes beyond raw retention.
    pub beyond_retention: u64,
    /// The watermark at the end.
    pub rolled_to_ms: Option<i64>,
}

/// The rollup worker.
pub struct Worker {
    store: Arc<dyn Store>,
    options: WorkerOptions,
    guard: PathGuard,
    /// Class scores kept per deployment, read from the drift jobs at each step.
    classes: HashMap<String, Vec<ClassScores>>,
}

impl Worker {
    /// A worker on `store`.
    pub fn new(store: Arc<dyn Store>, options: WorkerOptions) -> Self {
        Worker { guard: PathGuard::new(options.max_paths), store, options, classes: HashMap::new() }
    }

    /// Rolls the predictions of deployment `d` in `window` into minute summaries of its admitted
    /// paths and its binary jobs' class scores.
    async fn roll(&mut self, d: &str, window: Window) -> Result<(Vec<Bucketed>, u64), Error> {
        self.guard.load(self.store.as_ref(), d).await?;
        let classes = self.classes.get(d).map_or(&[][..], Vec::as_slice);
        roll_minutes(
            &StoreRows(self.store.as_ref()),
            d,
            window,
            self.options.summary,
            Paths::Guarded(&mut self.guard, classes),
        )
        .await
    }

    /// Does one step of work, as of `now_ms`: the invalidation log first, then the next range
    /// of complete minutes.
    pub async fn step(&mut self, now_ms: i64) -> Result<Step, Error> {
        let state = self.store.rollup_state().await?;
        self.classes = class_scores(self.store.as_ref()).await?;
        let result = match self.reroll(&state).await {
            Ok(Some(step)) => Ok(step),
            Ok(None) => self.roll_next(&state, now_ms).await,
            Err(e) => Err(e),
        };
        match result {
            Err(Error::Store(driftline_store::Error::RollupMoved { .. })) => {
                self.guard.reset();
                Ok(Step::Retry)
            }
            Err(e) => {
                self.guard.reset();
                Err(e)
            }
            ok => ok,
        }
    }

    /// Steps until there is nothing left to do as of `now_ms`, calling `on_step` after each.
    pub async fn catch_up(&mut self, now_ms: i64, mut on_step: impl FnMut(&Step)) -> Result<Progress, Error> {
        let mut progress = Progress::default();
        loop {
            let step = self.step(now_ms).await?;
            on_step(&step);
            match step {
                Step::Idle => break,
                Step::Retry => {}
                Step::Rolled { predictions, rows, .. } => {
                    progress.steps += 1;
                    progress.predictions += predictions;
                    progress.rows += rows as u64;
                }
                Step::Rerolled { minutes, predictions, rows, beyond_retention } => {
                    progress.steps += 1;
                    progress.predictions += predictions;
                    progress.minutes_rerolled += minutes as u64;
                    progress.rows += rows as u64;
                    progress.beyond_retention += beyond_retention as u64;
                }
            }
        }
        progress.rolled_to_ms = self.store.rollup_state().await?.rolled_to_ms;
        Ok(progress)
    }

    /// Runs until `shutdown` resolves: catches up, applies the retention when it is due, waits
    /// `poll`, again. Failures are logged and retried after the same pause; nothing is lost by a
    /// failed step.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut retained_at: Option<std::time::Instant> = None;
        loop {
            let round = self.catch_up(driftline_core::time::now_ms(), |_| {});
            let outcome = tokio::select! {
                biased;
                _ = &mut shutdown => return,
                outcome = round => outcome,
            };
            match outcome {
                Ok(p) if p.steps > 0 => tracing::debug!(steps = p.steps, predictions = p.predictions, "rolled up"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "rollup step failed; retrying after the pause"),
            }
            if retained_at.is_none_or(|at| at.elapsed() >= self.options.retention_every) {
                let pass = crate::retention::apply(
                    self.store.as_ref(),
                    &self.options.retention,
                    driftline_core::time::now_ms(),
                );
                let outcome = tokio::select! {
                    biased;
                    _ = &mut shutdown => return,
                    outcome = pass => outcome,
                };
                match outcome {
                    Ok(done) => {
                        retained_at = Some(std::time::Instant::now());
                        tracing::info!(?done, "retention applied");
                    }
                    Err(e) => tracing::warn!(error = %e, "retention failed; trying again after the pause"),
                }
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.options.poll) => {}
            }
        }
    }

    /// Rolls the next range of complete minutes; `Idle` when there is none.
    async fn roll_next(&mut self, state: &RollupState, now_ms: i64) -> Result<Step, Error> {
        let lateness = i64::try_from(self.options.lateness.as_millis()).unwrap_or(i64::MAX);
        let target = Resolution::Minute.floor(now_ms.saturating_sub(lateness));
        let a = match state.rolled_to_ms {
            Some(a) => a,
            None => {
                // Nothing rolled yet: announce first, so that whatever is written from now on
                // before the target is logged, then find where the events begin.
                self.store.announce_rolling(target).await?;
                let deployments = self.store.deployments().await?;
                match self.next_start(&deployments, i64::MIN).await? {
                    Some(first) => Resolution::Minute.floor(first),
                    None => return Ok(Step::Idle),
                }
            }
        };
        if a >= target {
            return Ok(Step::Idle);
        }
        let b = self.range_end(&self.store.deployments().await?, a, target).await?;
        self.store.announce_rolling(b).await?;
        // Read after the announcement: a deployment whose first events were written meanwhile
        // is in the list.
        let deployments = self.store.deployments().await?;
        let window = Window { start_ms: a, end_ms: b };

        let mut minutes = Vec::new();
        let mut predictions = 0;
        for d in &deployments {
            let (rolled, read) = self.roll(d, window).await?;
            minutes.extend(rolled);
            predictions += read;
        }

        // Hours ending in (a, b], merged from the minutes rolled before (in the DB) and now.
        let (hour_from, hour_to) = (Resolution::Hour.floor(a), Resolution::Hour.floor(b));
        let mut hours = Vec::new();
        if hour_from < hour_to {
            let mut parts = self.stored(Resolution::Minute, &deployments, hour_from, a).await?;
            parts.extend(minutes.iter().filter(|m| m.start_ms < hour_to).cloned());
            sort(&mut parts);
            hours = merge_up(&parts, Resolution::Hour, self.options.summary)?;
        }
        let (day_from, day_to) = (Resolution::Day.floor(a), Resolution::Day.floor(b));
        let mut days = Vec::new();
        if day_from < day_to {
            let mut parts = self.stored(Resolution::Hour, &deployments, day_from, hour_from).await?;
            parts.extend(hours.iter().filter(|h| h.start_ms < day_to).cloned());
            sort(&mut parts);
            days = merge_up(&parts, Resolution::Day, self.options.summary)?;
        }

        let mut commit = RollupCommit {
            generation: state.generation,
            replace_ranges: vec![(Resolution::Minute, window)],
            rolled_to_ms: Some(b),
            paths: self.guard.take_pending(),
            ..RollupCommit::default()
        };
        if hour_from < hour_to {
            commit.replace_ranges.push((Resolution::Hour, Window { start_ms: hour_from, end_ms: hour_to }));
        }
        if day_from < day_to {
            commit.replace_ranges.push((Resolution::Day, Window { start_ms: day_from, end_ms: day_to }));
        }
        push_rows(&mut commit, Resolution::Minute, &minutes);
        push_rows(&mut commit, Resolution::Hour, &hours);
        push_rows(&mut commit, Resolution::Day, &days);
        let rows = commit.rows.len();
        self.store.commit_rollup(&commit).await?;
        Ok(Step::Rolled { window, predictions, rows })
    }

    /// Where a range starting at `a` ends: the next hour, or, over a stretch with no
    /// predictions, the next prediction's hour (stopping at the end of the current day, whose
    /// day rollup is made there), never past `target`.
    async fn range_end(&self, deployments: &[String], a: i64, target: i64) -> Result<i64, Error> {
        let hour = Resolution::Hour;
        let mut b = target.min(hour.floor(a) + hour.ms());
        if hour.floor(a) == a {
            let next = self.next_start(deployments, a).await?;
            let jump_to = next.map_or(i64::MAX, |n| hour.floor(n));
            if jump_to > a {
                let day = Resolution::Day;
                let day_end = if day.floor(a) == a { i64::MAX } else { day.floor(a) + day.ms() };
                b = target.min(jump_to).min(day_end);
            }
        }
        Ok(b)
    }

    /// The earliest prediction start at or after `from_ms` over `deployments`.
    async fn next_start(&self, deployments: &[String], from_ms: i64) -> Result<Option<i64>, Error> {
        let mut first: Option<i64> = None;
        for d in deployments {
            if let Some(s) = self.store.next_start_ms(d, from_ms).await? {
                first = Some(first.map_or(s, |f| f.min(s)));
            }
        }
        Ok(first)
    }

    /// Stored buckets of every deployment starting in `[from, to)`.
    async fn stored(
        &self,
        resolution: Resolution,
        deployments: &[String],
        from: i64,
        to: i64,
    ) -> Result<Vec<Bucketed>, Error> {
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for d in deployments {
            for row in self.store.rollup_rows(resolution, d, None, Window { start_ms: from, end_ms: to }).await? {
                out.push(Bucketed::from_row(&row, self.options.summary)?);
            }
        }
        Ok(out)
    }

    /// Re-rolls the minutes named by the oldest invalidation log entries; `None` when the log
    /// is empty.
    async fn reroll(&mut self, state: &RollupState) -> Result<Option<Step>, Error> {
        let entries = self.store.dirty(self.options.dirty_batch).await?;
        if entries.is_empty() {
            return Ok(None);
        }
        // Writes in flight (a late prediction and its label in two transactions, neither seeing
        // the other) commit before the raw rows are read.
        self.store.pass_barrier().await?;
        let known: BTreeSet<String> = self.store.deployments().await?.into_iter().collect();
        let rolled_to = state.rolled_to_ms.unwrap_or(i64::MIN);
        let raw_from = state.raw_kept_from_ms.unwrap_or(i64::MIN);
        let mut targets: BTreeSet<(String, i64)> = BTreeSet::new();
        let mut beyond_retention = 0;
        for e in &entries {
            // A minute at or past the watermark is rolled in its turn, late event included; a
            // deployment that sent nothing but refused events has no rollups.
            if e.bucket_start_ms >= rolled_to || !known.contains(&e.model_deployment_crn) {
                continue;
            }
            if e.bucket_start_ms < raw_from {
                beyond_retention += 1;
                continue;
            }
            targets.insert((e.model_deployment_crn.clone(), e.bucket_start_ms));
        }
        if beyond_retention > 0 {
            tracing::warn!(
                entries = beyond_retention,
                "late events for minutes whose raw events retention removed; their rollups stay as they were"
            );
        }

        let mut minutes = Vec::new();
        let mut predictions = 0;
        // Values of refused paths were counted when their minutes were first rolled.
        self.guard.count_refused(false);
        for (d, m) in &targets {
            let window = Window { start_ms: *m, end_ms: m + Resolution::Minute.ms() };
            let (rolled, read) = self.roll(d, window).await?;
            minutes.extend(rolled);
            predictions += read;
        }
        self.guard.count_refused(true);
        sort(&mut minutes);

        let hours_of = coarser_buckets(&targets, Resolution::Hour, rolled_to);
        let hours = self.remerge(Resolution::Minute, &hours_of, &targets, &minutes).await?;
        let days_of = coarser_buckets(&hours_of, Resolution::Day, rolled_to);
        let days = self.remerge(Resolution::Hour, &days_of, &hours_of, &hours).await?;

        let mut commit = RollupCommit {
            generation: state.generation,
            cleared: entries.iter().map(|e| e.id).collect(),
            paths: self.guard.take_pending(),
            ..RollupCommit::default()
        };
        for (resolution, set) in
            [(Resolution::Minute, &targets), (Resolution::Hour, &hours_of), (Resolution::Day, &days_of)]
        {
            commit.replace_buckets.extend(set.iter().map(|(d, s)| (resolution, d.clone(), *s)));
        }
        push_rows(&mut commit, Resolution::Minute, &minutes);
        push_rows(&mut commit, Resolution::Hour, &hours);
        push_rows(&mut commit, Resolution::Day, &days);
        let rows = commit.rows.len();
        self.store.commit_rollup(&commit).await?;
        Ok(Some(Step::Rerolled { minutes: targets.len(), predictions, rows, beyond_retention }))
    }

    /// Merges again the coarser buckets `coarse` (deployment, start) of `finer`'s resolution's
    /// next: from the stored finer buckets, except `replaced` ones, whose new contents are
    /// `fresh`.
    async fn remerge(
        &self,
        finer: Resolution,
        coarse: &BTreeSet<(String, i64)>,
        replaced: &BTreeSet<(String, i64)>,
        fresh: &[Bucketed],
    ) -> Result<Vec<Bucketed>, Error> {
        let coarser = finer.coarser().expect("minutes and hours have a coarser resolution");
        let mut parts = Vec::new();
        for (d, start) in coarse {
            let window = Window { start_ms: *start, end_ms: start + coarser.ms() };
            for row in self.store.rollup_rows(finer, d, None, window).await? {
                if !replaced.contains(&(d.clone(), row.bucket_start_ms)) {
                    parts.push(Bucketed::from_row(&row, self.options.summary)?);
                }
            }
            parts.extend(fresh.iter().filter(|b| &b.deployment == d && coarser.floor(b.start_ms) == *start).cloned());
        }
        sort(&mut parts);
        merge_up(&parts, coarser, self.options.summary)
    }
}

/// The complete (ending at or before `rolled_to`) coarser buckets holding `finer` ones.
fn coarser_buckets(finer: &BTreeSet<(String, i64)>, coarser: Resolution, rolled_to: i64) -> BTreeSet<(String, i64)> {
    finer.iter().map(|(d, s)| (d.clone(), coarser.floor(*s))).filter(|(_, s)| s + coarser.ms() <= rolled_to).collect()
}

fn push_rows(commit: &mut RollupCommit, resolution: Resolution, buckets: &[Bucketed]) {
    commit.rows.extend(buckets.iter().map(|b| (resolution, b.to_row())));
}

/// Rollup rows grouped by bucket start, for tests and tools that compare whole rollups.
pub fn by_bucket(
    rows: Vec<driftline_store::rollups::RollupRow>,
) -> BTreeMap<(String, String, i64), driftline_store::rollups::RollupRow> {
    rows.into_iter().map(|r| ((r.model_deployment_crn.clone(), r.path.clone(), r.bucket_start_ms), r)).collect()
}
