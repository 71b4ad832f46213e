//! The scheduler inside `driftline serve`: runs each job when its schedule comes due, never two
//! runs of one job at once, and after downtime makes up for the runs it missed: by default only
//! the latest one, with `backfill` every one of them, oldest first, but never more than
//! [`MAX_BACKFILL_RUNS`] (the newest) per job. Also backfills a period on request.
//!
//! A job's schedule continues from its newest run at or before now, or from its creation when
//! that is later. Runs made by hand for other times (an earlier day, or a window in the future)
//! therefore neither queue the scheduled times before them nor stop the schedule.

use super::run::{run_job, Finished};
use super::schedule::Schedule;
use super::spec::{check_time, JobSpec};
use crate::table::references::ReferenceFiles;
use crate::Error;
use driftline_core::time::now_ms;
use driftline_store::{Store, StoredJob};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A run still marked running after this long lost its process.
pub const STALE_RUN_MS: i64 = 3_600_000;
/// Most runs of one job made up after downtime with backfill, and most runs of one backfill.
pub const MAX_BACKFILL_RUNS: usize = 1_000;
/// Recent runs of a job read to find its newest run at or before now.
const RECENT_RUNS: u32 = 100;

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often due jobs are looked for.
    pub tick: Duration,
    /// After downtime, make up every missed run (at most [`MAX_BACKFILL_RUNS`]), not only the
    /// latest.
    pub backfill: bool,
    /// Where each run's reports are also written as files (`<job>-run<id>.json` / `.html`).
    pub reports_dir: Option<PathBuf>,
    /// Where the reference files of jobs are.
    pub references: ReferenceFiles,
}

impl SchedulerConfig {
    /// Ticks every 15 seconds, makes up only the latest missed run, writes no report files.
    pub fn new(references: ReferenceFiles) -> Self {
        SchedulerConfig { tick: Duration::from_secs(15), backfill: false, reports_dir: None, references }
    }
}

/// The scheduled times due for a job at `now`: after its newest run at or before `now` (or its
/// creation, when later), the latest one only, or with `backfill` the newest
/// [`MAX_BACKFILL_RUNS`] of them, oldest first.
pub async fn due_runs(
    store: &dyn Store,
    job: &StoredJob,
    schedule: &Schedule,
    now: i64,
    backfill: bool,
) -> Result<Vec<i64>, Error> {
    let recent = store.runs(&job.name, RECENT_RUNS).await?;
    let last = recent.iter().map(|r| r.scheduled_ms).find(|t| *t <= now).unwrap_or(i64::MIN).max(job.created_at_ms);
    Ok(schedule.between(last, now, if backfill { MAX_BACKFILL_RUNS } else { 1 }))
}

/// Runs the scheduler until `shutdown` resolves.
pub async fn run(store: Arc<dyn Store>, config: SchedulerConfig, shutdown: impl std::future::Future<Output = ()>) {
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(config.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    match store.abandon_runs(now_ms() - STALE_RUN_MS).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(runs = n, "marked drift runs left running by a stopped process as failed"),
        Err(e) => tracing::warn!(error = %e, "could not check for abandoned drift runs"),
    }
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        if let Err(e) = tick(&store, &config, &running).await {
            tracing::warn!(error = %e, "drift scheduler could not read the jobs; retrying at the next tick");
        }
    }
}

async fn tick(
    store: &Arc<dyn Store>,
    config: &SchedulerConfig,
    running: &Arc<Mutex<HashSet<String>>>,
) -> Result<(), Error> {
    let now = now_ms();
    for job in store.jobs().await? {
        if running.lock().expect("not poisoned").contains(&job.name) {
            continue;
        }
        let spec = match JobSpec::from_stored(&job) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(job = %job.name, error = %e, "skipping a drift job");
                continue;
            }
        };
        let schedule = match spec.validate() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = %job.name, error = %e, "skipping a drift job with invalid settings");
                continue;
            }
        };
        let due = due_runs(store.as_ref(), &job, &schedule, now, config.backfill).await?;
        if due.is_empty() {
            continue;
        }
        running.lock().expect("not poisoned").insert(job.name.clone());
        let (store, running, config) = (store.clone(), running.clone(), config.clone());
        tokio::spawn(async move {
            for scheduled in due {
                match run_job(store.as_ref(), &config.references, &spec, scheduled).await {
                    Ok(done) => {
                        let status = done.run.status.as_str();
                        tracing::info!(job = %spec.name, run = done.run.id, status, "drift run finished");
                        if let Some(dir) = &config.reports_dir {
                            if let Err(e) = super::persist::write_reports(store.as_ref(), &done.run, dir).await {
                                tracing::warn!(job = %spec.name, error = %e, "could not write the run's report files");
                            }
                        }
                    }
                    Err(Error::Busy { .. }) => break,
                    Err(e) => {
                        tracing::warn!(job = %spec.name, error = %e, "drift run could not start");
                        break;
                    }
                }
            }
            running.lock().expect("not poisoned").remove(&spec.name);
        });
    }
    Ok(())
}

/// Runs a job for every scheduled time in `[from_ms, to_ms]`, oldest first, calling
/// `progress(done, total, run)` after each. A period with more than [`MAX_BACKFILL_RUNS`]
/// scheduled times is refused: backfill it in parts.
pub async fn backfill(
    store: &dyn Store,
    references: &ReferenceFiles,
    spec: &JobSpec,
    from_ms: i64,
    to_ms: i64,
    mut progress: impl FnMut(usize, usize, &Finished),
) -> Result<Vec<Finished>, Error> {
    let schedule = spec.validate()?;
    check_time(from_ms, "from")?;
    check_time(to_ms, "to")?;
    if from_ms > to_ms {
        return Err(Error::Invalid { field: "from".into(), message: "is after the end of the period".into() });
    }
    let times = schedule.between(from_ms - 1, to_ms, MAX_BACKFILL_RUNS + 1);
    if times.len() > MAX_BACKFILL_RUNS {
        return Err(Error::Invalid {
            field: "period".into(),
            message: format!(
                "the period holds more than {MAX_BACKFILL_RUNS} scheduled runs of `{}`; backfill it in shorter parts",
                spec.name
            ),
        });
    }
    let mut out = Vec::with_capacity(times.len());
    for (i, t) in times.iter().enumerate() {
        let finished = run_job(store, references, spec, *t).await?;
        progress(i + 1, times.len(), &finished);
        out.push(finished);
    }
    Ok(out)
}
