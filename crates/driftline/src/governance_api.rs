//! The governance API: `POST /api/v1/governance/events` appends to the governance log (a
//! `govern` or `admin` key), `GET /api/v1/models` and `GET /api/v1/models/{crn}` read the
//! inventory folded from it, `GET /api/v1/lineage?table=T` the builds and deployments that use
//! a table. A primary takes remote clusters' events at `POST /api/v1/governance/sync` and
//! shows how far behind each is at `GET /api/v1/governance/clusters`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use driftline_core::time::now_ms;
use driftline_govern::event::check_name;
use driftline_govern::event::{Kind, Payload};
use driftline_govern::inventory::Inventory;
use driftline_govern::lineage;
use driftline_govern::log::{check_new, read_log};
use driftline_govern::sync::{SyncRequest, SyncResponse, MAX_SYNC_EVENTS};
use driftline_govern::template::Template;
use driftline_govern::Error;
use driftline_store::{Appended, GovernanceEvent, NewGovernanceEvent, RemoteSync};
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
    /// Held from reading the log to appending, so that two requests are not both checked
    /// against a log without the other's events (two registrations of one model).
    pub(crate) appending: Arc<tokio::sync::Mutex<()>>,
}

impl Default for GovernanceSettings {
    fn default() -> Self {
        GovernanceSettings {
            cluster: "local".into(),
            template: None,
            data_dir: PathBuf::from("./driftline-data"),
            appending: Arc::default(),
        }
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
        .route("/api/v1/lineage", get(table_lineage))
        .route("/api/v1/governance/sync", post(post_sync))
        .route("/api/v1/governance/clusters", get(clusters))
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

/// The log as the events of one request meet it: its inventory, advanced by each event
/// admitted, and the ids it holds already. Read under `GovernanceSettings::appending`.
struct Admission {
    inventory: Inventory,
    stored: HashSet<uuid::Uuid>,
    seq: i64,
}

impl Admission {
    async fn read(state: &AppState, template: Option<&Template>) -> Result<Admission, Problem> {
        let log = read_log(&*state.store).await?;
        let stored = log.iter().map(|e| e.event.id).collect();
        let inventory = Inventory::build(&log, &[], template)?;
        Ok(Admission { inventory, stored, seq: log.last().map_or(0, |e| e.seq) })
    }

    /// Whether the log holds an event of this id already.
    fn holds(&self, event: &NewGovernanceEvent) -> bool {
        self.stored.contains(&event.id)
    }

    /// Folds a new event into the inventory, as the log will hold it.
    fn fold(&mut self, event: &NewGovernanceEvent) -> Result<(), Error> {
        self.seq += 1;
        let pending = GovernanceEvent {
            seq: self.seq,
            cluster_seq: 0,
            event: event.clone(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        self.inventory.apply(&pending)?;
        self.stored.insert(event.id);
        Ok(())
    }
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
    let _appending = state.governance.appending.lock().await;
    let mut admission = Admission::read(&state, template.as_ref()).await?;
    let mut events = Vec::with_capacity(posted.events.len());
    for (i, posted) in posted.events.into_iter().enumerate() {
        let at = |e: Error| Problem::from(e).prefixed(&format!("events[{i}]: "));
        let event = new_event(posted, &principal, &state.governance.cluster).map_err(at)?;
        // A resent event (a client retrying) is stored already: the store answers it as a
        // duplicate without checking it again. Later events of the request are checked
        // against the earlier ones.
        if !admission.holds(&event) {
            check_new(&event, &admission.inventory, template.as_ref()).map_err(at)?;
            admission.fold(&event).map_err(at)?;
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
    if let Some(other) = posted.cluster.as_deref().filter(|c| *c != cluster) {
        return Err(Error::Invalid {
            field: "cluster".into(),
            message: format!(
                "is `{other}`, not this server's cluster `{cluster}`; another cluster's events arrive by `driftline sync`"
            ),
        });
    }
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineageQuery {
    table: Option<String>,
}

/// The builds that name a table in their lineage or training data, with the deployments that
/// serve them.
async fn table_lineage(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    axum::extract::Query(query): axum::extract::Query<LineageQuery>,
) -> Result<Json<Value>, Problem> {
    let Some(table) = query.table.filter(|t| !t.trim().is_empty()) else {
        return Err(Problem::bad_request("table: name the table, GET /api/v1/lineage?table=warehouse.customers"));
    };
    let inventory = inventory(&state).await?;
    // A key limited to a deployment sees its own model's builds only.
    let uses: Vec<_> = lineage::uses_of(&inventory, &table)
        .into_iter()
        .filter(|u| {
            principal
                .deployment
                .as_ref()
                .is_none_or(|own| inventory.models.get(&u.model).is_some_and(|m| m.deployments.contains_key(own)))
        })
        .collect();
    Ok(Json(json!({ "table": table, "uses": uses })))
}

/// A remote cluster's batch: its own events, stored as they happened there (each once, by id),
/// not held to this server's template and registration rules (they are facts of the remote's)
/// but refused when one would not fold into this log's inventory; and what it said of its
/// progress, recorded for `GET /api/v1/governance/clusters`.
async fn post_sync(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Govern>,
    RequestBody(bytes): RequestBody,
) -> Result<Json<SyncResponse>, Problem> {
    if principal.is_scoped() {
        return Err(Problem::forbidden(
            "a sync carries a cluster's governance events; use a govern or admin key without a deployment",
        ));
    }
    let request: SyncRequest = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request(format!(
            "the body is not a sync batch: {e}; `driftline sync` sends {{\"cluster\", \"through_seq\", \"pending\", \"events\"}}"
        ))
    })?;
    check_name("cluster", &request.cluster)?;
    if request.cluster == state.governance.cluster {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "cluster: `{}` is this server's own cluster; sync a remote under its own name (--cluster)",
                request.cluster
            ),
        ));
    }
    if request.events.len() > MAX_SYNC_EVENTS {
        return Err(Problem::bad_request(format!(
            "events: at most {MAX_SYNC_EVENTS} events per request, not {}; `driftline sync` sends longer batches in parts",
            request.events.len()
        )));
    }
    // Each event must fold into this log's inventory (a retirement of a deployment it cannot
    // place would leave the log unreadable), checked under the lock the other appends take.
    let _appending = state.governance.appending.lock().await;
    let mut admission = Admission::read(&state, None).await?;
    let mut events = Vec::with_capacity(request.events.len());
    for (i, synced) in request.events.into_iter().enumerate() {
        let event =
            synced_event(synced, &request.cluster).map_err(|e| Problem::from(e).prefixed(&format!("events[{i}].")))?;
        if !admission.holds(&event) {
            admission.fold(&event).map_err(|e| {
                let detail = match e {
                    Error::Corrupt { detail, .. } => detail,
                    other => other.to_string(),
                };
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Unprocessable Entity",
                    format!("events[{i}]: {detail}; nothing of the batch was stored"),
                )
            })?;
        }
        events.push(event);
    }
    let outcomes = if events.is_empty() { Vec::new() } else { state.store.append_governance(&events).await? };
    let stored = outcomes.iter().filter(|o| matches!(o, Appended::New { .. })).count() as u64;
    state
        .store
        .record_remote(&RemoteSync {
            cluster: request.cluster.clone(),
            remote_seq: request.through_seq,
            pending: i64::try_from(request.pending).unwrap_or(i64::MAX),
            oldest_pending_ms: request.oldest_pending_ms,
            last_event_ms: events.iter().map(|e| e.time_ms).max(),
            contacted_at_ms: now_ms(),
        })
        .await?;
    if stored > 0 {
        tracing::info!(cluster = %request.cluster, stored, through_seq = request.through_seq, "synced governance events");
    }
    Ok(Json(SyncResponse { stored, duplicates: outcomes.len() as u64 - stored, through_seq: request.through_seq }))
}

/// A synced event, checked: of the batch's cluster, a known kind with a valid payload, names
/// that fit. Its payload is kept as the remote stored it.
fn synced_event(synced: NewGovernanceEvent, cluster: &str) -> Result<NewGovernanceEvent, Error> {
    if synced.cluster != cluster {
        return Err(Error::Invalid {
            field: "cluster".into(),
            message: format!("is `{}`; a batch carries events of its own cluster `{cluster}` only", synced.cluster),
        });
    }
    check_name("subject", &synced.subject)?;
    check_name("actor", &synced.actor)?;
    let kind = Kind::parse(&synced.kind)?;
    Payload::parse(kind, &synced.payload)?;
    Ok(synced)
}

/// Each remote cluster that syncs here: how far its syncs have got, what it still has to send,
/// how long ago its oldest unsent event happened (its lag) and when it was last heard from.
async fn clusters(State(state): State<AppState>, Auth(..): Auth<Read>) -> Result<Json<Value>, Problem> {
    let now = now_ms();
    let remotes = state.store.remotes().await?;
    Ok(Json(json!({
        "cluster": state.governance.cluster,
        "remotes": remotes.iter().map(|r| remote_json(r, now)).collect::<Vec<_>>(),
    })))
}

/// A remote as the clusters answer shows it.
pub(crate) fn remote_json(r: &RemoteSync, now: i64) -> Value {
    json!({
        "cluster": r.cluster,
        "synced_through_seq": r.remote_seq,
        "pending_events": r.pending,
        "lag_seconds": if r.pending > 0 { r.oldest_pending_ms.map_or(0, |t| (now - t).max(0) / 1_000) } else { 0 },
        "last_event_ms": r.last_event_ms,
        "last_contact_ms": r.contacted_at_ms,
        "seconds_since_contact": (now - r.contacted_at_ms).max(0) / 1_000,
    })
}
