//! The governance API: `POST /api/v1/governance/events` appends to the governance log (a
//! `govern` or `admin` key), `GET /api/v1/models` and `GET /api/v1/models/{crn}` read the
//! inventory folded from it.

use std::collections::HashSet;
use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use driftline_core::time::now_ms;
use driftline_govern::event::{Kind, Payload};
use driftline_govern::inventory::Inventory;
use driftline_govern::log::{check_new, read_log};
use driftline_govern::template::Template;
use driftline_govern::Error;
use driftline_store::{Appended, GovernanceEvent, NewGovernanceEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Auth, Govern, Principal, Read};
use crate::problem::Problem;
use crate::server::{AppState, RequestBody};

/// Most events in one request.
const MAX_EVENTS: usize = 1_000;

/// What the governance API needs besides the store.
#[derive(Debug, Clone)]
pub(crate) struct GovernanceSettings {
    /// This server's cluster: the chain an event joins when it names none.
    pub(crate) cluster: String,
    /// The template given with --governance-template, if one was.
    pub(crate) template: Option<PathBuf>,
    /// Where `governance.yaml` is looked for otherwise.
    pub(crate) data_dir: PathBuf,
}

impl Default for GovernanceSettings {
    fn default() -> Self {
        GovernanceSettings { cluster: "local".into(), template: None, data_dir: PathBuf::from("./driftline-data") }
    }
}

impl GovernanceSettings {
    /// The template, read for each request so that a changed template applies at once; a
    /// template that does not read is this server's fault (500), named.
    fn template(&self) -> Result<Option<Template>, Problem> {
        let path = match &self.template {
            Some(path) => path.clone(),
            None => {
                let path = self.data_dir.join("governance.yaml");
                if !path.exists() {
                    return Ok(None);
                }
                path
            }
        };
        Template::load(&path).map(Some).map_err(|e| {
            tracing::error!(error = %e, "the governance template does not read");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", format!("the server's {e}"))
        })
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/governance/events", post(post_events))
        .route("/api/v1/models", get(list_models))
        .route("/api/v1/models/{*crn}", get(show_model))
}

/// Governance errors as HTTP answers.
impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e.into(),
            Error::Conflict { .. } => Problem::new(StatusCode::CONFLICT, "Conflict", e.to_string()),
            Error::Corrupt { .. } => {
                tracing::error!(error = %e, "the governance log holds an event this server cannot read");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", e.to_string())
            }
            Error::Invalid { .. } | Error::Template { .. } => Problem::bad_request(e.to_string()),
        }
    }
}

/// One event as posted; what it leaves out is filled in (a new id, the key's name, this
/// server's cluster, now).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedEvent {
    id: Option<uuid::Uuid>,
    kind: String,
    subject: String,
    actor: Option<String>,
    cluster: Option<String>,
    time_ms: Option<i64>,
    payload: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted {
    events: Vec<PostedEvent>,
}

async fn post_events(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Govern>,
    RequestBody(bytes): RequestBody,
) -> Result<Json<Value>, Problem> {
    if principal.is_scoped() {
        return Err(Problem::forbidden(
            "governance events are about models, not one deployment; use a govern or admin key without a deployment",
        ));
    }
    let posted: Posted = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request(format!(
            "the body is not valid: {e}; send {{\"events\": [{{\"kind\": …, \"subject\": …, \"payload\": {{…}}}}]}}"
        ))
    })?;
    if posted.events.is_empty() || posted.events.len() > MAX_EVENTS {
        return Err(Problem::bad_request(format!(
            "events: send from 1 to {MAX_EVENTS} events, not {}",
            posted.events.len()
        )));
    }
    let template = state.governance.template()?;
    let mut log = read_log(&*state.store).await?;
    let stored: HashSet<uuid::Uuid> = log.iter().map(|e| e.event.id).collect();
    let mut events = Vec::with_capacity(posted.events.len());
    for (i, posted) in posted.events.into_iter().enumerate() {
        let event = new_event(posted, &principal, &state.governance.cluster)
            .map_err(|e| Problem::from(e).prefixed(&format!("events[{i}]: ")))?;
        // A resent event (a sync retrying) is stored already: the store answers it as a
        // duplicate without checking it again.
        if !stored.contains(&event.id) {
            let inventory = Inventory::build(&log, &[], template.as_ref())?;
            check_new(&event, &inventory, template.as_ref())
                .map_err(|e| Problem::from(e).prefixed(&format!("events[{i}]: ")))?;
            // Later events of the request are checked against the earlier ones.
            let seq = log.last().map_or(0, |e| e.seq) + 1;
            log.push(GovernanceEvent {
                seq,
                cluster_seq: 0,
                event: event.clone(),
                prev_hash: String::new(),
                hash: String::new(),
            });
        }
        events.push(event);
    }
    let outcomes = state.store.append_governance(&events).await?;
    let results: Vec<Value> = events
        .iter()
        .zip(outcomes)
        .map(|(e, outcome)| match outcome {
            Appended::New { seq } => json!({ "id": e.id, "seq": seq, "cluster": e.cluster }),
            Appended::Duplicate => json!({ "id": e.id, "duplicate": true }),
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// A posted event with its gaps filled and its payload in its stored form (its kind's fields
/// only, so a misspelt field is refused, not kept).
fn new_event(posted: PostedEvent, principal: &Principal, cluster: &str) -> Result<NewGovernanceEvent, Error> {
    let kind = Kind::parse(&posted.kind)?;
    if !posted.payload.is_object() {
        return Err(Error::Invalid { field: "payload".into(), message: "must be a JSON object".into() });
    }
    let payload = Payload::parse(kind, &posted.payload.to_string())?;
    Ok(NewGovernanceEvent {
        id: posted.id.unwrap_or_else(uuid::Uuid::new_v4),
        kind: kind.name().to_string(),
        subject: posted.subject,
        actor: posted.actor.unwrap_or_else(|| principal.name.clone()),
        cluster: posted.cluster.unwrap_or_else(|| cluster.to_string()),
        time_ms: posted.time_ms.unwrap_or_else(now_ms),
        payload: payload.to_json(),
    })
}

/// The inventory: the log folded with the deployments seen in predictions.
async fn inventory(state: &AppState) -> Result<Inventory, Problem> {
    let template = state.governance.template()?;
    let log = read_log(&*state.store).await?;
    let seen = state.store.seen_deployments().await?;
    Ok(Inventory::build(&log, &seen, template.as_ref())?)
}

async fn list_models(State(state): State<AppState>, Auth(principal, ..): Auth<Read>) -> Result<Json<Value>, Problem> {
    let inventory = inventory(&state).await?;
    // A key limited to a deployment sees the models of that deployment only.
    let models: Vec<_> = inventory
        .models
        .values()
        .filter(|m| principal.deployment.as_ref().is_none_or(|own| m.deployments.contains_key(own)))
        .map(|m| m.summary())
        .collect();
    Ok(Json(json!({ "models": models })))
}

async fn show_model(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    Path(crn): Path<String>,
) -> Result<Json<Value>, Problem> {
    let inventory = inventory(&state).await?;
    let model = inventory
        .models
        .get(&crn)
        .filter(|m| principal.deployment.as_ref().is_none_or(|own| m.deployments.contains_key(own)))
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no model {crn} is registered or seen in predictions; GET /api/v1/models lists them"
            ))
        })?;
    Ok(Json(serde_json::to_value(model).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            format!("the model does not serialise: {e}"),
        )
    })?))
}
