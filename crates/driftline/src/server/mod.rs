//! The HTTP API: intake, reads, health, wired to the store, behind the guards every request
//! passes (see [`guard`]).
//!
//! Connections are served by hyper directly rather than `axum::serve`, for what a public server
//! needs: a deadline on request headers (which also closes idle keep-alive connections), a bound
//! on open connections, and a graceful shutdown that lets requests in flight finish.

mod events;
pub(crate) mod flight;
mod guard;
mod reads;
mod series;
mod sql;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use driftline_core::Limits;
use driftline_ingest::IngestMetrics;
use driftline_store::Store;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub(crate) use self::events::RequestBody;
pub(crate) use self::series::default_span;
use crate::auth::KeyCache;
use crate::problem::Problem;

/// How the server protects itself; see the `serve` flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpSettings {
    /// Longest wait for a request's headers, and for the next request on an idle connection.
    pub(crate) header_timeout: Duration,
    /// Longest time to receive a whole request body.
    pub(crate) body_timeout: Duration,
    /// Most requests served at once.
    pub(crate) max_concurrent_requests: usize,
    /// Most request body bytes being received at once, server-wide.
    pub(crate) max_inflight_body_bytes: usize,
    /// Whether `/metrics` is served without a key.
    pub(crate) public_metrics: bool,
    /// How often keys are reloaded from the store.
    pub(crate) key_refresh: Duration,
}

impl HttpSettings {
    /// The server-wide budget of request body bytes in flight, in KiB (at least 1).
    pub(crate) fn inflight_body_kib(&self) -> usize {
        self.max_inflight_body_bytes.div_ceil(1024).max(1)
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_concurrent_requests: 256,
            max_inflight_body_bytes: 256 * 1024 * 1024,
            public_metrics: false,
            key_refresh: Duration::from_secs(2),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) limits: Limits,
    /// The API keys, in memory.
    pub(crate) keys: KeyCache,
    /// Intake counters, served at `/metrics`.
    pub(crate) metrics: Arc<IngestMetrics>,
    pub(crate) http: HttpSettings,
    /// What the drift jobs API needs: where reference files may be read.
    pub(crate) drift: crate::drift_api::DriftSettings,
    /// What the governance API needs: this cluster's name, where the template is.
    pub(crate) governance: crate::governance_api::GovernanceSettings,
    /// How series reads summarise raw rows (the rollup worker's settings).
    pub(crate) rollup: driftline_rollup::SummaryOptions,
    /// Limits of one SQL query.
    pub(crate) sql: driftline_query::sql::SqlLimits,
    /// SQL queries that may run at once.
    pub(crate) sql_permits: Arc<Semaphore>,
    /// Requests being served.
    requests: Arc<Semaphore>,
    /// Request body bytes being received, in KiB.
    body_kib: Arc<Semaphore>,
}

impl AppState {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        limits: Limits,
        keys: KeyCache,
        metrics: Arc<IngestMetrics>,
        http: HttpSettings,
        drift: crate::drift_api::DriftSettings,
    ) -> Self {
        AppState {
            store,
            limits,
            keys,
            metrics,
            drift,
            governance: Default::default(),
            rollup: driftline_rollup::SummaryOptions::default(),
            sql: driftline_query::sql::SqlLimits::default(),
            sql_permits: Arc::new(Semaphore::new(SQL_AT_ONCE)),
            requests: Arc::new(Semaphore::new(http.max_concurrent_requests)),
            body_kib: Arc::new(Semaphore::new(http.inflight_body_kib())),
            http,
        }
    }
}

/// SQL queries the server runs at once; more are refused with 503 until one ends (each may
/// hold up to its memory limit).
const SQL_AT_ONCE: usize = 4;

/// The API's routes, behind the guards.
pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_request_bytes;
    Router::new()
        .route("/healthz", get(reads::healthz))
        .route("/readyz", get(reads::readyz))
        .route("/metrics", get(reads::metrics))
        .route("/api/v1/events", post(events::post_events))
        .route("/api/v1/delayed_metrics", post(events::post_delayed_metrics))
        .route("/api/v1/aggregate_metrics", post(events::post_aggregate_metrics).get(reads::get_aggregate_metrics))
        .route("/api/v1/read_metrics", get(reads::read_metrics))
        .route("/api/v1/series", get(series::get_series))
        .route("/api/v1/sql", post(sql::post_sql))
        .route("/api/v1/stats", get(reads::stats))
        .merge(crate::drift_api::routes())
        .merge(crate::governance_api::routes())
        .fallback(|| async { Problem::not_found("no such endpoint; see the README for the API") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        // Innermost last: a request passes them from the bottom up.
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::authenticate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::limit_requests))
        .layer(axum::middleware::from_fn(guard::request_id))
        .with_state(state)
}

/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves; requests in flight get [`SHUTDOWN_GRACE`] to finish. An
/// event is acknowledged only once committed, so what is cut off was never acknowledged.
pub(crate) async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = state.http.header_timeout;
    // Open connections, idle ones included: a few per request that may be served at once.
    let connections = Arc::new(Semaphore::new(state.http.max_concurrent_requests.saturating_mul(4).max(16)));
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!("too many open connections; closing a new one");
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "requests still in flight after {SHUTDOWN_GRACE:?} are cut off; nothing of them was acknowledged"
        );
    }
    Ok(())
}

/// The routes of `driftline ingest --metrics-listen`: `/metrics` and `/healthz`.
pub(crate) fn metrics_router(metrics: Arc<IngestMetrics>) -> Router {
    Router::new()
        .route("/healthz", get(reads::healthz))
        .route("/metrics", get(move || std::future::ready(reads::prometheus_text(&metrics))))
}
