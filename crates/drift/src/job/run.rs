//! One run of a drift job, in three steps: load the current window from the store with its
//! late ground truth joined on, and the reference (`load`); judge drift and performance
//! (`judge`); write the results back as an aggregate metrics event and store the run with its
//! reports ([`super::persist`]).

use super::spec::{check_time, JobSpec};
use super::{judge, load, persist};
use crate::report::run::RunReport;
use crate::table::references::ReferenceFiles;
use crate::Error;
use driftline_core::time::now_ms;
use driftline_store::{NewRun, Store, StoredRun, Window};

/// A finished run.
#[derive(Debug, Clone)]
pub struct Finished {
    pub run: StoredRun,
    /// The report, unless the run failed.
    pub report: Option<RunReport>,
}

/// Runs `spec` for the window ending at `scheduled_ms`, reading a file reference only from
/// `references`. Fails with [`Error::Busy`] when the job is running already (here or in another
/// process), and with [`Error::Invalid`] for settings or a time out of range; any failure after
/// the run started is recorded as a failed run, with the error as its summary.
pub async fn run_job(
    store: &dyn Store,
    references: &ReferenceFiles,
    spec: &JobSpec,
    scheduled_ms: i64,
) -> Result<Finished, Error> {
    spec.validate()?;
    check_time(scheduled_ms, "time")?;
    let window = spec.window_ending(scheduled_ms);
    let id = store
        .begin_run(&NewRun {
            job: &spec.name,
            scheduled_ms,
            window_start_ms: window.start_ms,
            window_end_ms: window.end_ms,
            started_at_ms: now_ms(),
        })
        .await?
        .ok_or_else(|| Error::Busy { job: spec.name.clone() })?;
    let (outcome, report) = match execute(store, references, spec, id, window).await {
        Ok((report, html)) => (persist::finished(&report, html), Some(report)),
        Err(e) => {
            if matches!(e, Error::Internal { .. }) {
                tracing::error!(job = %spec.name, run = id, error = %e, "drift run failed");
            } else {
                tracing::warn!(job = %spec.name, run = id, error = %e, "drift run failed");
            }
            (persist::failed(&e), None)
        }
    };
    store.finish_run(id, &outcome).await?;
    // The run is gone only when its job was deleted while it ran.
    let run = store.run(&spec.name, id).await?.ok_or_else(|| Error::NoJob { job: spec.name.clone() })?;
    Ok(Finished { run, report })
}

async fn execute(
    store: &dyn Store,
    references: &ReferenceFiles,
    spec: &JobSpec,
    id: i64,
    window: Window,
) -> Result<(RunReport, String), Error> {
    let current = load::current(store, spec, window).await?;
    let reference = load::reference(store, references, spec, window).await?;
    let from_rollups: Vec<_> = reference.from_rollups.clone().into_iter().chain(current.from_rollups.clone()).collect();
    let reference_info = reference.info.clone();
    let judged = judge::judge(spec, window, current, reference).await?;
    persist::write_aggregate(store, spec, window, &judged.aggregate).await?;
    let report = RunReport {
        job: spec.name.clone(),
        run_id: id,
        deployment: spec.deployment.clone(),
        status: judged.status,
        window_start_ms: window.start_ms,
        window_end_ms: window.end_ms,
        reference: reference_info,
        rows: judged.rows,
        labelled: judged.labelled,
        unlabelled: judged.unlabelled,
        invalid: judged.invalid,
        drift: judged.drift,
        performance: Some(judged.performance),
        performance_approximate: judged.performance_approximate,
        from_rollups,
        roc_curve: judged.roc_curve,
        alert: judged.alert,
        estimate: judged.estimate,
        chunks: judged.chunks,
        aggregate: judged.aggregate,
    };
    let html = persist::render(store, spec, &report).await?;
    Ok((report, html))
}
