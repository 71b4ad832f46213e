//! The scheduler inside `driftline serve`: runs each job when its schedule comes due, never two
//! runs of one job at once, and after a restart catches up the runs it missed (at most
//! `catch_up` per job, newest first kept; 0 runs only the latest missed one).

use crate::job::JobSpec;
use crate::runner::run_job;
use crate::schedule::Schedule;
use crate::Error;
use driftline_core::time::now_ms;
use driftline_store::{Store, StoredJob};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A run still marked running after this long lost its process.
pub const STALE_RUN_MS: i64 = 3_600_000;

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often due jobs are looked for.
    pub tick: Duration,
    /// Most missed runs of one job caught up after downtime.
    pub catch_up: usize,
    /// Where each run's reports are also written as files (`<job>-run<id>.json` / `.html`).
    pub reports_dir: Option<std::path::PathBuf>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { tick: Duration::from_secs(15), catch_up: 24, reports_dir: None }
    }
}

/// Parses a stored job's settings.
pub fn spec_of(job: &StoredJob) -> Result<JobSpec, Error> {
    serde_json::from_str(&job.spec).map_err(|e| Error::Invalid {
        field: "job".into(),
        message: format!("stored settings of `{}` do not parse ({e}); delete and create the job again", job.name),
    })
}

/// The scheduled times due for a job now: after its newest run (or its creation), at most
/// `catch_up` of them (at least one).
pub async fn due_runs(
    store: &dyn Store,
    job: &StoredJob,
    schedule: &Schedule,
    now: i64,
    catch_up: usize,
) -> Result<Vec<i64>, Error> {
    let last = store.runs(&job.name, 1).await?.first().map(|r| r.scheduled_ms).unwrap_or(job.created_at_ms);
    Ok(schedule.between(last, now, catch_up.max(1)))
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
        let spec = match spec_of(&job) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = %job.name, error = %e, "skipping a drift job");
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
        let due = due_runs(store.as_ref(), &job, &schedule, now, config.catch_up).await?;
        if due.is_empty() {
            continue;
        }
        running.lock().expect("not poisoned").insert(job.name.clone());
        let (store, running, reports_dir) = (store.clone(), running.clone(), config.reports_dir.clone());
        tokio::spawn(async move {
            for scheduled in due {
                match run_job(store.as_ref(), &spec, scheduled).await {
                    Ok(done) => {
                        let status = done.run.status.as_str();
                        tracing::info!(job = %spec.name, run = done.run.id, status, "drift run finished");
                        if let Some(dir) = &reports_dir {
                            if let Err(e) = write_reports(store.as_ref(), &done.run, dir).await {
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

/// Writes a run's stored reports as `<job>-run<id>.json` and `.html` into `dir`; `None` when the
/// run has no reports (it failed).
pub async fn write_reports(
    store: &dyn Store,
    run: &driftline_store::StoredRun,
    dir: &std::path::Path,
) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>, Error> {
    let Some((Some(json), Some(html))) = store.run_reports(&run.job, run.id).await? else { return Ok(None) };
    let failed = |path: &std::path::Path, e: std::io::Error| Error::Invalid {
        field: "reports directory".into(),
        message: format!("cannot write {}: {e}", path.display()),
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let base = dir.join(format!("{}-run{}", run.job, run.id));
    let (json_path, html_path) = (base.with_extension("json"), base.with_extension("html"));
    std::fs::write(&json_path, json).map_err(|e| failed(&json_path, e))?;
    std::fs::write(&html_path, html).map_err(|e| failed(&html_path, e))?;
    Ok(Some((json_path, html_path)))
}

/// Runs a job for every scheduled time in `[from_ms, to_ms]`, oldest first, calling
/// `progress(done, total, run)` after each.
pub async fn backfill(
    store: &dyn Store,
    spec: &JobSpec,
    from_ms: i64,
    to_ms: i64,
    mut progress: impl FnMut(usize, usize, &crate::runner::Finished),
) -> Result<Vec<crate::runner::Finished>, Error> {
    let schedule = spec.validate()?;
    if from_ms > to_ms {
        return Err(Error::Invalid { field: "--from".into(), message: "is after --to".into() });
    }
    let times = schedule.between(from_ms - 1, to_ms, usize::MAX);
    let mut out = Vec::with_capacity(times.len());
    for (i, t) in times.iter().enumerate() {
        let finished = run_job(store, spec, *t).await?;
        progress(i + 1, times.len(), &finished);
        out.push(finished);
    }
    Ok(out)
}
