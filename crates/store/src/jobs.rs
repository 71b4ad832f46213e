//! Drift jobs and their runs: one implementation for both backends (both accept `$N`
//! placeholders). A job's settings are an opaque JSON document here; driftline-drift owns its
//! shape.

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// A prediction as a drift job reads it: what the job needs and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub uuid: Uuid,
    /// Start, ms since the epoch.
    pub start_timestamp_ms: i64,
    /// The prediction's metrics (a JSON object).
    pub metrics: String,
    /// Its delayed metrics, oldest first (a JSON array of objects), if any.
    pub delayed: Option<String>,
}

/// A stream of a window's predictions for a job.
pub type JobRowStream = Pin<Box<dyn Stream<Item = Result<JobRow, Error>> + Send>>;

/// A stored drift job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredJob {
    /// Unique name.
    pub name: String,
    /// The job's settings, JSON.
    pub spec: String,
    /// When it was created, ms since the epoch.
    pub created_at_ms: i64,
    /// When its settings last changed.
    pub updated_at_ms: i64,
}

/// How a run ended (or that it is still running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// In progress.
    Running,
    /// Nothing drifted, performance within thresholds.
    Ok,
    /// Some columns drifted or a metric crossed its threshold, but not the dataset.
    Warning,
    /// The dataset drifted.
    Drift,
    /// The window held no predictions.
    NoData,
    /// The run failed; the summary says why.
    Failed,
}

impl RunStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Warning => "warning",
            RunStatus::Drift => "drift",
            RunStatus::NoData => "no_data",
            RunStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "running" => RunStatus::Running,
            "ok" => RunStatus::Ok,
            "warning" => RunStatus::Warning,
            "drift" => RunStatus::Drift,
            "no_data" => RunStatus::NoData,
            "failed" => RunStatus::Failed,
            other => return Err(Error::Corrupt { what: "run status", detail: other.to_string() }),
        })
    }
}

/// A run as stored, without its reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRun {
    /// Run id, increasing.
    pub id: i64,
    /// The job's name.
    pub job: String,
    /// The time the schedule set for it (the end of its window).
    pub scheduled_ms: i64,
    /// Start of the current window.
    pub window_start_ms: i64,
    /// End of the current window (exclusive).
    pub window_end_ms: i64,
    /// When it started.
    pub started_at_ms: i64,
    /// When it finished.
    pub finished_at_ms: Option<i64>,
    /// How it ended.
    pub status: RunStatus,
    /// A short JSON summary: the metrics written, or the failure.
    pub summary: Option<String>,
}

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub job: &'a str,
    pub scheduled_ms: i64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub started_at_ms: i64,
}

/// How a run ended, with its reports.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub finished_at_ms: i64,
    pub summary: String,
    pub report_json: Option<String>,
    pub report_html: Option<String>,
}

const RUN_COLUMNS: &str =
    "id, job, scheduled_ms, window_start_ms, window_end_ms, started_at_ms, finished_at_ms, status, summary";

pub(crate) type RunRow = (i64, String, i64, i64, i64, i64, Option<i64>, String, Option<String>);

fn run_from_row(r: RunRow) -> Result<StoredRun, Error> {
    Ok(StoredRun {
        id: r.0,
        job: r.1,
        scheduled_ms: r.2,
        window_start_ms: r.3,
        window_end_ms: r.4,
        started_at_ms: r.5,
        finished_at_ms: r.6,
        status: RunStatus::parse(&r.7)?,
        summary: r.8,
    })
}

/// The statements, one implementation for both backends (both take `$N` placeholders).
pub(crate) mod sql {
    use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

    use crate::sql::Sql;

    use super::*;

    pub(crate) type JobRow = (String, String, i64, i64);
    pub(crate) type ReportRow = (Option<String>, Option<String>);

    impl<DB> Sql<'_, DB>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (String,): FromRow<'r, DB::Row>,
        for<'r> (i64,): FromRow<'r, DB::Row>,
        for<'r> JobRow: FromRow<'r, DB::Row>,
        for<'r> RunRow: FromRow<'r, DB::Row>,
        for<'r> ReportRow: FromRow<'r, DB::Row>,
    {
        /// Stores a new job; `false` when one of that name exists.
        pub(crate) async fn create_job(&self, job: &StoredJob) -> Result<bool, Error> {
            let created = sqlx::query_scalar::<DB, String>(
                "INSERT INTO drift_jobs (name, spec, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING RETURNING name",
            )
            .bind(job.name.as_str())
            .bind(job.spec.as_str())
            .bind(job.created_at_ms)
            .bind(job.updated_at_ms)
            .fetch_optional(self.0)
            .await
            .map_err(Error::db("create drift job"))?;
            Ok(created.is_some())
        }

        pub(crate) async fn job(&self, name: &str) -> Result<Option<StoredJob>, Error> {
            let row = sqlx::query_as::<DB, JobRow>(
                "SELECT name, spec, created_at_ms, updated_at_ms FROM drift_jobs WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(self.0)
            .await
            .map_err(Error::db("read drift job"))?;
            Ok(row.map(|(name, spec, created_at_ms, updated_at_ms)| StoredJob {
                name,
                spec,
                created_at_ms,
                updated_at_ms,
            }))
        }

        pub(crate) async fn jobs(&self) -> Result<Vec<StoredJob>, Error> {
            let rows = sqlx::query_as::<DB, JobRow>(
                "SELECT name, spec, created_at_ms, updated_at_ms FROM drift_jobs ORDER BY name",
            )
            .fetch_all(self.0)
            .await
            .map_err(Error::db("list drift jobs"))?;
            Ok(rows
                .into_iter()
                .map(|(name, spec, created_at_ms, updated_at_ms)| StoredJob {
                    name,
                    spec,
                    created_at_ms,
                    updated_at_ms,
                })
                .collect())
        }

        /// Deletes a job and its runs; `false` when there was none.
        pub(crate) async fn delete_job(&self, name: &str) -> Result<bool, Error> {
            sqlx::query::<DB>("DELETE FROM drift_runs WHERE job = $1")
                .bind(name)
                .execute(self.0)
                .await
                .map_err(Error::db("delete drift runs"))?;
            let deleted = sqlx::query_scalar::<DB, String>("DELETE FROM drift_jobs WHERE name = $1 RETURNING name")
                .bind(name)
                .fetch_optional(self.0)
                .await
                .map_err(Error::db("delete drift job"))?;
            Ok(deleted.is_some())
        }

        /// Records a run as running; `None` when the job already has a running run (the unique index
        /// on running runs decides, so two processes cannot both start one).
        pub(crate) async fn begin_run(&self, run: &NewRun<'_>) -> Result<Option<i64>, Error> {
            let id = sqlx::query_scalar::<DB, i64>(
                "INSERT INTO drift_runs (job, scheduled_ms, window_start_ms, window_end_ms, started_at_ms, status) \
                 VALUES ($1, $2, $3, $4, $5, 'running') ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(run.job)
            .bind(run.scheduled_ms)
            .bind(run.window_start_ms)
            .bind(run.window_end_ms)
            .bind(run.started_at_ms)
            .fetch_optional(self.0)
            .await
            .map_err(Error::db("begin drift run"))?;
            Ok(id)
        }

        pub(crate) async fn finish_run(&self, id: i64, outcome: &RunOutcome) -> Result<(), Error> {
            sqlx::query::<DB>(
                "UPDATE drift_runs SET status = $1, finished_at_ms = $2, summary = $3, report_json = $4, report_html = $5 \
                 WHERE id = $6",
            )
            .bind(outcome.status.as_str())
            .bind(outcome.finished_at_ms)
            .bind(outcome.summary.as_str())
            .bind(outcome.report_json.as_deref())
            .bind(outcome.report_html.as_deref())
            .bind(id)
            .execute(self.0)
            .await
            .map_err(Error::db("finish drift run"))?;
            Ok(())
        }

        /// The newest `limit` runs of a job, newest first.
        pub(crate) async fn runs(&self, job: &str, limit: i64) -> Result<Vec<StoredRun>, Error> {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM drift_runs WHERE job = $1 ORDER BY scheduled_ms DESC, id DESC LIMIT $2"
            );
            let rows = sqlx::query_as::<DB, RunRow>(&sql)
                .bind(job)
                .bind(limit)
                .fetch_all(self.0)
                .await
                .map_err(Error::db("list drift runs"))?;
            rows.into_iter().map(run_from_row).collect()
        }

        pub(crate) async fn run(&self, job: &str, id: i64) -> Result<Option<StoredRun>, Error> {
            let sql = format!("SELECT {RUN_COLUMNS} FROM drift_runs WHERE job = $1 AND id = $2");
            let row = sqlx::query_as::<DB, RunRow>(&sql)
                .bind(job)
                .bind(id)
                .fetch_optional(self.0)
                .await
                .map_err(Error::db("read drift run"))?;
            row.map(run_from_row).transpose()
        }

        /// The JSON and HTML reports of a run, when it wrote them.
        pub(crate) async fn run_reports(&self, job: &str, id: i64) -> Result<Option<ReportRow>, Error> {
            sqlx::query_as::<DB, ReportRow>(
                "SELECT report_json, report_html FROM drift_runs WHERE job = $1 AND id = $2",
            )
            .bind(job)
            .bind(id)
            .fetch_optional(self.0)
            .await
            .map_err(Error::db("read drift report"))
        }

        /// Marks runs still `running` that started before `before_ms` as failed: their process died.
        pub(crate) async fn abandon_runs(&self, before_ms: i64, now_ms: i64) -> Result<u64, Error> {
            let abandoned = sqlx::query_scalar::<DB, i64>(
                "UPDATE drift_runs SET status = 'failed', finished_at_ms = $1, \
                 summary = '{\"error\":\"the process running it stopped before it finished\"}' \
                 WHERE status = 'running' AND started_at_ms < $2 RETURNING id",
            )
            .bind(now_ms)
            .bind(before_ms)
            .fetch_all(self.0)
            .await
            .map_err(Error::db("abandon drift runs"))?;
            Ok(abandoned.len() as u64)
        }
    }
}
