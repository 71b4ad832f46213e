//! The drift jobs API: `/api/v1/drift/jobs…`.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use driftline_core::time::now_ms;
use driftline_drift::job::run::run_job;
use driftline_drift::job::spec::{parse_time, JobSpec};
use driftline_drift::table::references::ReferenceFiles;
use driftline_drift::Error;
use driftline_store::StoredJob;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Admin, Auth, Principal, Read};
use crate::problem::Problem;
use crate::server::{AppState, RequestBody};

/// What the drift jobs API needs besides the store.
#[derive(Debug, Clone)]
pub(crate) struct DriftSettings {
    /// The only place `file:` references may be read from.
    pub(crate) references: ReferenceFiles,
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/drift/jobs", get(list_jobs).post(create_job))
        .route("/api/v1/drift/jobs/{name}", get(show_job).delete(delete_job))
        .route("/api/v1/drift/jobs/{name}/runs", get(list_runs).post(run_now))
        .route("/api/v1/drift/jobs/{name}/runs/{id}", get(show_run))
        .route("/api/v1/drift/jobs/{name}/runs/{id}/report", get(report))
}

/// Drift errors as HTTP answers: the caller's input 400, a job that does not exist 404, a run
/// in progress 409, a failure of this server 500, of its store 503.
impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e.into(),
            Error::Busy { .. } => Problem::new(StatusCode::CONFLICT, "Conflict", e.to_string()),
            Error::NoJob { .. } => Problem::not_found(format!("{e}; GET /api/v1/drift/jobs lists them")),
            Error::Internal { .. } | Error::Io { .. } => {
                tracing::error!(error = %e, "drift request failed inside the server");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", e.to_string())
            }
            Error::Reference { .. } => Problem::bad_request(format!(
                "{e} (the server's references directory is set with --references-dir or DRIFTLINE_REFERENCES_DIR, \
                 <data-dir>/references by default)"
            )),
            Error::Invalid { .. } | Error::Read { .. } | Error::MissingColumn { .. } | Error::Column { .. } => {
                Problem::bad_request(e.to_string())
            }
        }
    }
}

fn job_json(job: &StoredJob) -> Result<Value, Problem> {
    let spec: Value = serde_json::from_str(&job.spec).map_err(|e| {
        Problem::from(Error::Internal {
            what: format!("the stored settings of drift job `{}`", job.name),
            message: format!("{e}; delete the job and create it again"),
        })
    })?;
    Ok(
        json!({ "name": job.name, "spec": spec, "created_at_ms": job.created_at_ms, "updated_at_ms": job.updated_at_ms }),
    )
}

async fn find(state: &AppState, name: &str) -> Result<StoredJob, Problem> {
    state
        .store
        .job(name)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no drift job `{name}`; GET /api/v1/drift/jobs lists them")))
}

/// A deployment-scoped key sees and runs only its deployment's jobs.
fn check(principal: &Principal, job: &StoredJob) -> Result<JobSpec, Problem> {
    let spec = JobSpec::from_stored(job)?;
    principal.check_deployment(&spec.deployment)?;
    Ok(spec)
}

/// The job of that name, for a caller whose key may read it.
async fn readable(state: &AppState, principal: &Principal, name: &str) -> Result<StoredJob, Problem> {
    let job = find(state, name).await?;
    check(principal, &job)?;
    Ok(job)
}

async fn list_jobs(State(state): State<AppState>, Auth(principal, ..): Auth<Read>) -> Result<Json<Value>, Problem> {
    let mut jobs = Vec::new();
    for job in state.store.jobs().await? {
        // A job whose settings no longer parse is left out here; reading it answers 500.
        let visible = JobSpec::from_stored(&job).is_ok_and(|spec| principal.check_deployment(&spec.deployment).is_ok());
        if visible {
            jobs.push(job_json(&job)?);
        }
    }
    Ok(Json(json!({ "jobs": jobs })))
}

async fn create_job(
    State(state): State<AppState>,
    _: Auth<Admin>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, Problem> {
    let spec: JobSpec = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("the job is not valid: {e}; see the README's drift job fields")))?;
    spec.validate()?;
    spec.check_reference(&state.drift.references)?;
    let job = spec.stored(now_ms());
    if !state.store.create_job(&job).await? {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("a drift job named `{}` exists; delete it first or choose another name", job.name),
        ));
    }
    Ok((StatusCode::CREATED, Json(job_json(&job)?)).into_response())
}

async fn show_job(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    let job = readable(&state, &principal, &name).await?;
    let runs = state.store.runs(&name, 10).await?;
    let mut out = job_json(&job)?;
    out["runs"] = json!(runs);
    Ok(Json(out))
}

async fn delete_job(
    State(state): State<AppState>,
    _: Auth<Admin>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    if !state.store.delete_job(&name).await? {
        return Err(Problem::not_found(format!("no drift job `{name}`")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct RunsParams {
    limit: Option<u32>,
}

async fn list_runs(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    Path(name): Path<String>,
    Query(params): Query<RunsParams>,
) -> Result<Json<Value>, Problem> {
    readable(&state, &principal, &name).await?;
    let runs = state.store.runs(&name, params.limit.unwrap_or(50).min(1000)).await?;
    Ok(Json(json!({ "runs": runs })))
}

#[derive(Debug, Deserialize)]
struct RunNowParams {
    /// End of the window: ms since the epoch or RFC 3339; now by default.
    at: Option<String>,
}

async fn run_now(
    State(state): State<AppState>,
    _: Auth<Admin>,
    Path(name): Path<String>,
    Query(params): Query<RunNowParams>,
) -> Result<Response, Problem> {
    let spec = JobSpec::from_stored(&find(&state, &name).await?)?;
    let at = match params.at.as_deref() {
        Some(t) => parse_time(t, "parameter `at`")?,
        None => now_ms(),
    };
    let finished = run_job(state.store.as_ref(), &state.drift.references, &spec, at).await?;
    Ok((StatusCode::CREATED, Json(json!(finished.run))).into_response())
}

async fn show_run(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    Path((name, id)): Path<(String, i64)>,
) -> Result<Json<Value>, Problem> {
    readable(&state, &principal, &name).await?;
    let run =
        state.store.run(&name, id).await?.ok_or_else(|| Problem::not_found(format!("no run {id} of `{name}`")))?;
    Ok(Json(json!(run)))
}

#[derive(Debug, Deserialize)]
struct ReportParams {
    /// `html` (default) or `json`.
    format: Option<String>,
}

async fn report(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    Path((name, id)): Path<(String, i64)>,
    Query(params): Query<ReportParams>,
) -> Result<Response, Problem> {
    readable(&state, &principal, &name).await?;
    let (json_report, html) = state
        .store
        .run_reports(&name, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no run {id} of `{name}`")))?;
    let missing = || Problem::not_found(format!("run {id} of `{name}` has no report (it failed or is still running)"));
    let (body, content_type) = match params.format.as_deref().unwrap_or("html") {
        "html" => (html.ok_or_else(missing)?, "text/html; charset=utf-8"),
        "json" => (json_report.ok_or_else(missing)?, "application/json"),
        other => return Err(Problem::bad_request(format!("parameter `format`: `{other}` is not html or json"))),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: Error) -> StatusCode {
        Problem::from(e).into_response().status()
    }

    #[test]
    fn drift_errors_map_to_what_went_wrong() {
        let invalid = Error::Invalid { field: "at".into(), message: "out of range".into() };
        assert_eq!(status(invalid), StatusCode::BAD_REQUEST);
        assert_eq!(status(Error::Reference { path: "/etc/passwd".into() }), StatusCode::BAD_REQUEST);
        assert_eq!(status(Error::NoJob { job: "x".into() }), StatusCode::NOT_FOUND);
        assert_eq!(status(Error::Busy { job: "x".into() }), StatusCode::CONFLICT);
        let panicked = Error::Internal { what: "the drift computation".into(), message: "task panicked".into() };
        assert_eq!(status(panicked), StatusCode::INTERNAL_SERVER_ERROR);
        let disk = Error::Io { path: "/reports/x.json".into(), source: std::io::Error::other("disk full") };
        assert_eq!(status(disk), StatusCode::INTERNAL_SERVER_ERROR);
        let store = driftline_store::Error::Database { operation: "list drift runs", cause: sqlx::Error::PoolTimedOut };
        assert_eq!(status(Error::Store(store)), StatusCode::SERVICE_UNAVAILABLE);
    }
}
