//! Reads: windows of predictions, aggregate metrics, counts, health and metrics.
//!
//! Windows and aggregates stream in chunks. A read that fails half-way is logged with its
//! request id and the chunked answer is aborted, so the client sees a broken transfer (never a
//! short answer that looks complete); an NDJSON reader first gets a last line `{"error": …}`.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use driftline_ingest::IngestMetrics;
use driftline_query::window::{encode_window, read_window};
use driftline_query::{encode_aggregates, Encoding, WindowParams};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use super::guard::RequestId;
use super::AppState;
use crate::auth::{Admin, Auth, Read};
use crate::problem::Problem;

pub(crate) fn prometheus_text(metrics: &IngestMetrics) -> Response {
    let mut response = metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// `GET /metrics`: a read key, unless `--public-metrics` (the guard lets it through then).
pub(crate) async fn metrics(
    State(state): State<AppState>,
    principal: Option<Extension<crate::auth::Principal>>,
) -> Result<Response, Problem> {
    if !state.http.public_metrics {
        let Extension(principal) = principal.ok_or_else(|| Problem::unauthorized("/metrics needs a read key"))?;
        principal.require(driftline_store::Scope::Read)?;
    }
    Ok(prometheus_text(&state.metrics))
}

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: whether the store answers, over a connection of its own (so a busy read pool
/// does not make the server look down).
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(5), state.store.ping()).await;
    match ping {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(Problem::unavailable(format!("the store does not answer: {e}"))),
        Err(_) => Err(Problem::unavailable("the store does not answer within 5 s")),
    }
}

/// How long a failed stream waits before it is cut, so that its last chunk can be sent.
pub(crate) const CUT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A streamed answer; a failure mid-stream is logged with the request id, then aborts the body.
fn streamed<E: std::fmt::Display + Send + 'static>(
    chunks: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    encoding: Encoding,
    request: RequestId,
) -> Response {
    let chunks = chunks.then(move |chunk| {
        let request = request.clone();
        async move {
            match chunk {
                Ok(bytes) => Ok(bytes),
                Err(e) => {
                    let e = e.to_string();
                    tracing::error!(request = %request.0, error = %e, "a read failed while its answer was being sent; the answer is cut off");
                    // A moment for what was sent before (an NDJSON error line) to leave, then
                    // the cut: the connection closes without the end of the chunked body.
                    tokio::time::sleep(CUT_GRACE).await;
                    Err(std::io::Error::other(e))
                }
            }
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    response
}

pub(crate) async fn read_metrics(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    Extension(id): Extension<RequestId>,
    params: Result<Query<WindowParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let read = params.into_read()?;
    if principal.is_scoped() {
        match &read.selection {
            driftline_store::Selection::Deployment(crn) => principal.check_deployment(crn)?,
            _ => {
                return Err(Problem::forbidden("this key is limited to one deployment; select by model_deployment_crn"))
            }
        }
    }
    // Through the SQL layer's plan over the same provider as SQL's `labelled_predictions`.
    let batches = read_window(state.store.clone(), principal.deployment.clone(), &read).await?;
    Ok(streamed(encode_window(batches, read.encoding), read.encoding, id))
}

pub(crate) async fn get_aggregate_metrics(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    Extension(id): Extension<RequestId>,
    params: Result<Query<WindowParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let deployment = params.deployment()?;
    principal.check_deployment(&deployment)?;
    let window = params.window()?;
    let encoding = params.encoding()?;
    if encoding == Encoding::Arrow {
        return Err(Problem::bad_request(
            "format: aggregate metrics come as json or ndjson; arrow is for read_metrics",
        ));
    }
    let aggregates = state.store.aggregate_window(&deployment, window);
    Ok(streamed(encode_aggregates(aggregates, encoding), encoding, id))
}

pub(crate) async fn stats(State(state): State<AppState>, _: Auth<Admin>) -> Result<Json<Value>, Problem> {
    let counts = state.store.counts().await?;
    Ok(Json(json!(counts)))
}
