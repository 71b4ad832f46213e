//! The HTTP API: intake, reads, health, wired to the store.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use driftline_core::time::now_ms;
use driftline_core::{parse_event_value, Event, Limits};
use driftline_ingest::{decode_body, intake, BodyFormat, Decoded, IngestMetrics, IntakeReport};
use driftline_query::{encode, WindowParams};
use driftline_store::{Scope, Store};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::auth::{authorize, Principal};
use crate::problem::Problem;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) limits: Limits,
    /// SHA-256 of the bootstrap admin key, if one was given.
    pub(crate) admin_key_hash: Option<String>,
    /// Intake counters, served at `/metrics`.
    pub(crate) metrics: Arc<IngestMetrics>,
    /// What the drift jobs API needs: where reference files may be read.
    pub(crate) drift: crate::drift_api::DriftSettings,
}

impl AppState {
    pub(crate) async fn authorize(&self, headers: &HeaderMap, needed: Scope) -> Result<Principal, Problem> {
        authorize(&*self.store, self.admin_key_hash.as_deref(), headers, needed).await
    }
}

/// The API's routes.
pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_request_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/delayed_metrics", post(post_delayed_metrics))
        .route("/api/v1/aggregate_metrics", post(post_aggregate_metrics).get(get_aggregate_metrics))
        .route("/api/v1/read_metrics", get(read_metrics))
        .route("/api/v1/stats", get(stats))
        .merge(crate::drift_api::routes())
        .fallback(|| async { Problem::not_found("no such endpoint; see the README for the API") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves until `shutdown` resolves; requests in flight finish first, so every event that was
/// acknowledged is committed.
pub(crate) async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// The routes of `driftline ingest --metrics-listen`: `/metrics` and `/healthz`.
pub(crate) fn metrics_router(metrics: Arc<IngestMetrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(move || std::future::ready(prometheus_text(&metrics))))
}

fn prometheus_text(metrics: &IngestMetrics) -> Response {
    let mut response = metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    prometheus_text(&state.metrics)
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    state.store.ping().await.map_err(|e| Problem::unavailable(format!("the store does not answer: {e}")))?;
    Ok(Json(json!({"status": "ready"})))
}

fn body(bytes: Result<Bytes, BytesRejection>, limits: &Limits) -> Result<Bytes, Problem> {
    bytes.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(limits.max_request_bytes)
        } else {
            Problem::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// A write call: its key checked for the `write` scope before the body is read, then the body
/// within the request limit.
struct WriteRequest {
    principal: Principal,
    headers: HeaderMap,
    bytes: Bytes,
}

impl FromRequest<AppState> for WriteRequest {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Problem> {
        let principal = state.authorize(request.headers(), Scope::Write).await?;
        let headers = request.headers().clone();
        let bytes = body(Bytes::from_request(request, state).await, &state.limits)?;
        Ok(WriteRequest { principal, headers, bytes })
    }
}

/// A request id for dead-letter sources and the `x-request-id` answer header.
fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn with_request_id(report: IntakeReport, id: &str) -> Response {
    let mut response = Json(report).into_response();
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Refuses a batch that a deployment-scoped key may not write: any event for another deployment,
/// or delayed metrics for a stored prediction of another deployment.
async fn check_scope(state: &AppState, principal: &Principal, decoded: &Decoded) -> Result<(), Problem> {
    if !principal.is_scoped() {
        return Ok(());
    }
    let mut delayed = Vec::new();
    for (_, event) in &decoded.events {
        match event {
            Event::Prediction(p) => principal.check_deployment(&p.model_deployment_crn)?,
            Event::AggregateMetrics(a) => principal.check_deployment(&a.model_deployment_crn)?,
            Event::DelayedMetrics(d) => delayed.push(d.uuid),
        }
    }
    if !delayed.is_empty() {
        for (_, deployment) in state.store.deployments_of(&delayed).await? {
            principal.check_deployment(&deployment)?;
        }
    }
    Ok(())
}

async fn post_events(
    State(state): State<AppState>,
    WriteRequest { principal, headers, bytes }: WriteRequest,
) -> Result<Response, Problem> {
    let format = BodyFormat::from_content_type(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()));
    let decoded = decode_body(&bytes, format, &state.limits)?;
    check_scope(&state, &principal, &decoded).await?;
    let id = request_id();
    let report = record_intake(&state, decoded, &id).await?;
    tracing::debug!(request = %id, accepted = report.accepted, rejected = report.rejected, "events");
    Ok(with_request_id(report, &id))
}

/// Writes a decoded request and counts it in the HTTP intake metrics.
async fn record_intake(state: &AppState, decoded: Decoded, id: &str) -> Result<IntakeReport, Problem> {
    let counters = &state.metrics.http;
    counters.consumed.fetch_add(decoded.total() as u64, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::Instant::now();
    match intake(&*state.store, decoded, &format!("http:{id}"), now_ms()).await {
        Ok(report) => {
            state.metrics.observe_write(started.elapsed());
            counters.record(report.accepted, report.duplicates, report.rejected);
            Ok(report)
        }
        Err(e) => {
            counters.write_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(e.into())
        }
    }
}

/// Stores one event built by a one-call endpoint from its JSON body, as `POST /api/v1/events`
/// would: a refused one is kept as a dead letter and answered with 400 naming the field.
async fn post_one(
    state: &AppState,
    principal: &Principal,
    raw: &Bytes,
    event: Value,
    rename: &[(&str, &str)],
) -> Result<Response, Problem> {
    let id = request_id();
    let mut decoded = Decoded::default();
    match parse_event_value(event, &state.limits) {
        Ok(event) => decoded.events.push((0, event)),
        Err(mut rejection) => {
            if let Some((_, public)) = rename.iter().find(|(wire, _)| *wire == rejection.field) {
                rejection.field = (*public).to_owned();
            }
            decoded.rejected.push((0, rejection, raw.to_vec()));
        }
    }
    check_scope(state, principal, &decoded).await?;
    let report = record_intake(state, decoded, &id).await?;
    if let Some(error) = report.errors.first() {
        return Err(Problem::bad_request(format!("{} (kept as a dead letter, request {id})", error.reason)));
    }
    Ok(with_request_id(report, &id))
}

fn json_object(bytes: &Bytes, endpoint: &str, fields: &str) -> Result<serde_json::Map<String, Value>, Problem> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(Problem::bad_request(format!("{endpoint} takes a JSON object with {fields}"))),
        Err(e) => Err(Problem::bad_request(format!(
            "the request body is not valid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))),
    }
}

async fn post_delayed_metrics(
    State(state): State<AppState>,
    WriteRequest { principal, bytes, .. }: WriteRequest,
) -> Result<Response, Problem> {
    let mut obj = json_object(&bytes, "this endpoint", "prediction_uuid and metrics (timestamp_ms optional)")?;
    if let Some(unknown) = obj.keys().find(|k| !["prediction_uuid", "metrics", "timestamp_ms"].contains(&k.as_str())) {
        return Err(Problem::bad_request(format!(
            "field `{unknown}`: is not a field here; send prediction_uuid, metrics and optionally timestamp_ms"
        )));
    }
    let event = json!({
        "v": 1,
        "type": "delayed_metrics",
        "uuid": obj.remove("prediction_uuid").unwrap_or(Value::Null),
        "timestamp_ms": obj.remove("timestamp_ms").unwrap_or_else(|| json!(now_ms())),
        "metrics": obj.remove("metrics").unwrap_or(Value::Null),
    });
    post_one(&state, &principal, &bytes, event, &[("uuid", "prediction_uuid")]).await
}

async fn post_aggregate_metrics(
    State(state): State<AppState>,
    WriteRequest { principal, bytes, .. }: WriteRequest,
) -> Result<Response, Problem> {
    let mut obj =
        json_object(&bytes, "this endpoint", "model_deployment_crn, start_timestamp_ms, end_timestamp_ms and metrics")?;
    obj.insert("v".into(), json!(1));
    obj.insert("type".into(), json!("aggregate_metrics"));
    post_one(&state, &principal, &bytes, Value::Object(obj), &[]).await
}

async fn read_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<WindowParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let principal = state.authorize(&headers, Scope::Read).await?;
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
    let records = state.store.read_window(read.selection, read.window);
    let mut response = Body::from_stream(encode(records, read.encoding)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(read.encoding.content_type()));
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct AggregateParams {
    #[serde(flatten)]
    window: WindowParams,
}

async fn get_aggregate_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<AggregateParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let principal = state.authorize(&headers, Scope::Read).await?;
    let Query(AggregateParams { window: params }) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let deployment =
        params.model_deployment_crn.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
            Problem::bad_request("parameter `model_deployment_crn`: is required; name the deployment")
        })?;
    principal.check_deployment(&deployment)?;
    let window = params.window()?;
    let rows = state.store.aggregate_metrics(&deployment, window).await?;
    let metrics: Vec<Value> = rows
        .into_iter()
        .map(|a| {
            json!({
                "modelDeploymentCrn": a.model_deployment_crn,
                "startTimeStampMs": a.start_timestamp_ms,
                "endTimeStampMs": a.end_timestamp_ms,
                "metrics": a.metrics,
                "source": a.source,
            })
        })
        .collect();
    Ok(Json(json!({ "metrics": metrics })).into_response())
}

async fn stats(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    state.authorize(&headers, Scope::Admin).await?;
    let counts = state.store.counts().await?;
    Ok(Json(json!(counts)))
}
