//! `POST /api/v1/sql`: one read-only SQL statement over the store, answered as a streamed JSON
//! array of row objects, NDJSON (`?format=ndjson`), CSV (`?format=csv`) or an Arrow IPC stream
//! (`Accept: application/vnd.apache.arrow.stream`). A deployment-scoped key queries its
//! deployment's rows only.

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use driftline_query::sql::output::{Encoder, Format};
use driftline_query::sql::{self, SqlError};
use futures::StreamExt;
use serde::Deserialize;

use super::guard::RequestId;
use super::AppState;
use crate::auth::{Auth, Read};
use crate::problem::Problem;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlBody {
    sql: String,
}

/// The query string.
#[derive(Debug, Deserialize)]
pub(crate) struct SqlParams {
    format: Option<String>,
}

const ARROW: &str = "application/vnd.apache.arrow.stream";

fn problem(e: SqlError) -> Problem {
    match e {
        SqlError::Query(m) => Problem::bad_request(format!("sql: {m}")),
        SqlError::Limit(m) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Query over its limits", m),
        SqlError::Failed(m) => Problem::unavailable(format!("the query failed: {m}")),
    }
}

pub(crate) async fn post_sql(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    params: Result<Query<SqlParams>, QueryRejection>,
    body: Result<Json<SqlBody>, JsonRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let Json(body) =
        body.map_err(|e| Problem::bad_request(format!("{}; send {{\"sql\": \"SELECT …\"}}", e.body_text())))?;
    let wants_arrow = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains(ARROW));
    let format = match (params.format.as_deref(), wants_arrow) {
        (None, true) | (Some("arrow"), _) => Format::Arrow,
        (None, false) | (Some("json"), _) => Format::Json,
        (Some("ndjson"), _) => Format::Ndjson,
        (Some("csv"), _) => Format::Csv,
        (Some(other), _) => {
            return Err(Problem::bad_request(format!(
                "format: `{other}` is not an answer format here; use json (default), ndjson, csv, or arrow (or send Accept: {ARROW})"
            )))
        }
    };
    let Ok(permit) = state.sql_permits.clone().try_acquire_owned() else {
        return Err(Problem::busy("as many SQL queries as the server runs at once are running; retry in a moment"));
    };
    let limits = state.sql;
    let ctx = sql::session(state.store.clone(), principal.deployment.clone(), &limits).map_err(problem)?;
    let mut answer = sql::run(&ctx, &body.sql, &limits).await.map_err(problem)?;
    // The first batch is awaited before the answer starts, so what fails early (most failures)
    // gets a status of its own; a failure later cuts the answer off (NDJSON ends with an error
    // line first).
    let first = answer.batches.next().await.transpose().map_err(problem)?;
    let mut encoder = Encoder::new(format, answer.schema.clone()).map_err(problem)?;
    let mut head = encoder.start();
    if let Some(batch) = &first {
        head.extend(encoder.batch(batch).map_err(problem)?);
    }
    let request = id.0.clone();
    let rest = futures::stream::unfold(Next::Batches(answer.batches, Box::new(encoder), permit), move |next| {
        let request = request.clone();
        async move {
            match next {
                Next::Done => None,
                Next::Cut(e) => Some((Err(cut(&request, format, e).await), Next::Done)),
                Next::Batches(mut batches, mut encoder, permit) => match batches.next().await {
                    Some(Ok(batch)) => match encoder.batch(&batch) {
                        Ok(bytes) => Some((Ok(Bytes::from(bytes)), Next::Batches(batches, encoder, permit))),
                        Err(e) => Some((Err(cut(&request, format, e).await), Next::Done)),
                    },
                    // NDJSON readers see why the answer ends before it is cut off.
                    Some(Err(e)) if format == Format::Ndjson => {
                        let line = serde_json::json!({ "error": e.to_string() }).to_string() + "\n";
                        Some((Ok(Bytes::from(line)), Next::Cut(e)))
                    }
                    Some(Err(e)) => Some((Err(cut(&request, format, e).await), Next::Done)),
                    None => match encoder.finish() {
                        Ok(bytes) => Some((Ok(Bytes::from(bytes)), Next::Done)),
                        Err(e) => Some((Err(cut(&request, format, e).await), Next::Done)),
                    },
                },
            }
        }
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) }).chain(rest);
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    Ok(response)
}

/// What the answer's stream does next.
enum Next {
    Batches(sql::Batches, Box<Encoder>, tokio::sync::OwnedSemaphorePermit),
    /// Cut the answer off with this error.
    Cut(SqlError),
    Done,
}

/// Logs a failure in the middle of an answer and gives the error that cuts it off.
async fn cut(request: &str, format: Format, e: SqlError) -> std::io::Error {
    tracing::warn!(request, ?format, error = %e, "a SQL answer failed while it was being sent; the answer is cut off");
    tokio::time::sleep(super::reads::CUT_GRACE).await;
    std::io::Error::other(e.to_string())
}
