//! Intake: `POST /api/v1/events` and the one-call forms `/api/v1/delayed_metrics` and
//! `/api/v1/aggregate_metrics`.
//!
//! Scoped keys: a deployment-scoped key may write only its deployment's predictions and
//! aggregates, and delayed metrics only for its deployment's predictions. Delayed metrics for a
//! UUID not stored yet are kept with the key's deployment and joined to the prediction only if
//! the prediction turns out to be of that deployment, so a key of one deployment cannot label
//! another's predictions in advance. The source `drift:…` is reserved for drift jobs: only admin
//! keys may send it.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use driftline_core::time::now_ms;
use driftline_core::{check_event_size, parse_event_value, Event};
use driftline_ingest::{decode_body, intake, BodyFormat, Decoded, IntakeReport};
use driftline_store::Scope;
use serde_json::{json, Value};

use super::guard::{body_error, RequestId};
use super::AppState;
use crate::auth::{Auth, Principal, Write};
use crate::problem::Problem;

/// A request body, read within the request limits (413, 408, 400 otherwise).
pub(crate) struct RequestBody(pub(crate) Bytes);

impl FromRequest<AppState> for RequestBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Problem> {
        let limit = state.limits.max_request_bytes;
        match axum::body::to_bytes(request.into_body(), limit).await {
            Ok(bytes) => Ok(RequestBody(bytes)),
            Err(e) => Err(body_error(&e, limit, state.http.body_timeout)),
        }
    }
}

/// Refuses a batch that the key may not write: any event for another deployment (scoped keys),
/// delayed metrics for a stored prediction of another deployment (scoped keys), or the reserved
/// source `drift:…` (keys other than admin). Returns the deployment to keep delayed metrics
/// with, for a scoped key.
async fn check_scope(state: &AppState, principal: &Principal, decoded: &Decoded) -> Result<Option<String>, Problem> {
    if principal.scope != Scope::Admin {
        if let Some((_, Event::AggregateMetrics(a), _)) = decoded
            .events
            .iter()
            .find(|(_, e, _)| matches!(e, Event::AggregateMetrics(a) if a.source.starts_with("drift:")))
        {
            return Err(Problem::forbidden(format!(
                "source `{}` is reserved for drift jobs; send \"source\": \"user\" (or omit it), or use an admin key",
                a.source.chars().take(80).collect::<String>()
            )));
        }
    }
    if !principal.is_scoped() {
        return Ok(None);
    }
    let mut delayed = Vec::new();
    for (_, event, _) in &decoded.events {
        match event {
            Event::Prediction(p) => principal.check_deployment(&p.model_deployment_crn)?,
            Event::AggregateMetrics(a) => principal.check_deployment(&a.model_deployment_crn)?,
            Event::ReplicaStats(r) => principal.check_deployment(&r.model_deployment_crn)?,
            Event::DelayedMetrics(d) => delayed.push(d.uuid),
        }
    }
    if !delayed.is_empty() {
        for (_, deployment) in state.store.deployments_of(&delayed).await? {
            principal.check_deployment(&deployment)?;
        }
    }
    Ok(principal.deployment.clone())
}

pub(crate) async fn post_events(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Write>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    RequestBody(bytes): RequestBody,
) -> Result<Response, Problem> {
    let format = BodyFormat::from_content_type(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()));
    let decoded = decode_body(bytes, format, &state.limits)?;
    let scope = check_scope(&state, &principal, &decoded).await?;
    let report = record_intake(&state, decoded, &id.0, scope).await?;
    tracing::debug!(request = %id.0, accepted = report.accepted, rejected = report.rejected, "events");
    Ok(Json(report).into_response())
}

/// Writes a decoded request and counts it in the HTTP intake metrics.
async fn record_intake(
    state: &AppState,
    decoded: Decoded,
    id: &str,
    delayed_scope: Option<String>,
) -> Result<IntakeReport, Problem> {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = &state.metrics.http;
    counters.consumed.fetch_add(decoded.total() as u64, Relaxed);
    let started = std::time::Instant::now();
    match intake(&*state.store, decoded, &format!("http:{id}"), now_ms(), delayed_scope).await {
        Ok(outcome) => {
            state.metrics.observe_write(started.elapsed());
            counters.record(outcome.report.accepted, outcome.report.duplicates, outcome.report.rejected);
            state.metrics.store_refused.fetch_add(outcome.store_refused, Relaxed);
            state.metrics.dead_letters_unkept.fetch_add(outcome.unkept, Relaxed);
            Ok(outcome.report)
        }
        Err(e) => {
            counters.write_errors.fetch_add(1, Relaxed);
            Err(e.into())
        }
    }
}

/// Stores one event built by a one-call endpoint from its JSON body, as `POST /api/v1/events`
/// would: a refused one is kept as a dead letter and answered with 400 naming the field.
async fn post_one(
    state: &AppState,
    principal: &Principal,
    id: &str,
    raw: Bytes,
    event: Value,
    rename: &[(&str, &str)],
) -> Result<Response, Problem> {
    let mut decoded = Decoded::default();
    match parse_event_value(event, &state.limits) {
        Ok(event) => decoded.events.push((0, event, raw)),
        Err(mut rejection) => {
            if let Some((_, public)) = rename.iter().find(|(wire, _)| *wire == rejection.field) {
                rejection.field = (*public).to_owned();
            }
            decoded.rejected.push((0, rejection, raw));
        }
    }
    let scope = check_scope(state, principal, &decoded).await?;
    let report = record_intake(state, decoded, id, scope).await?;
    if let Some(error) = report.errors.first() {
        return Err(Problem::bad_request(format!("{} (kept as a dead letter, request {id})", error.reason)));
    }
    Ok(Json(report).into_response())
}

/// The body of a one-call endpoint as a JSON object, within the event size limit.
fn json_object(state: &AppState, bytes: &Bytes, fields: &str) -> Result<serde_json::Map<String, Value>, Problem> {
    if let Err(rejection) = check_event_size(bytes.len(), &state.limits) {
        return Err(Problem::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            rejection.to_string(),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(Problem::bad_request(format!("this endpoint takes a JSON object with {fields}"))),
        Err(e) => Err(Problem::bad_request(format!(
            "the request body is not valid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))),
    }
}

pub(crate) async fn post_delayed_metrics(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Write>,
    Extension(id): Extension<RequestId>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, Problem> {
    let mut obj = json_object(&state, &bytes, "prediction_uuid and metrics (timestamp_ms optional)")?;
    if let Some(unknown) = obj.keys().find(|k| !["prediction_uuid", "metrics", "timestamp_ms"].contains(&k.as_str())) {
        return Err(Problem::bad_request(format!(
            "field `{}`: is not a field here; send prediction_uuid, metrics and optionally timestamp_ms",
            unknown.chars().take(64).collect::<String>().escape_default()
        )));
    }
    let event = json!({
        "v": 1,
        "type": "delayed_metrics",
        "uuid": obj.remove("prediction_uuid").unwrap_or(Value::Null),
        "timestamp_ms": obj.remove("timestamp_ms").unwrap_or_else(|| json!(now_ms())),
        "metrics": obj.remove("metrics").unwrap_or(Value::Null),
    });
    post_one(&state, &principal, &id.0, bytes, event, &[("uuid", "prediction_uuid")]).await
}

pub(crate) async fn post_aggregate_metrics(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Write>,
    Extension(id): Extension<RequestId>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, Problem> {
    let mut obj =
        json_object(&state, &bytes, "model_deployment_crn, start_timestamp_ms, end_timestamp_ms and metrics")?;
    obj.insert("v".into(), json!(1));
    obj.insert("type".into(), json!("aggregate_metrics"));
    post_one(&state, &principal, &id.0, bytes, Value::Object(obj), &[]).await
}
