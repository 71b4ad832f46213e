//! Every HTTP error, mapped in one place to a status code and an `application/problem+json`
//! body that says what went wrong and what to do.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An HTTP error answer (RFC 9457 problem details).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    /// Seconds to wait before trying again, sent as `Retry-After`.
    #[serde(skip)]
    retry_after: Option<u32>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem { kind: "about:blank", title, status: status.as_u16(), detail: detail.into(), retry_after: None }
    }

    /// The same answer with `prefix` before its detail (which item of a request it is about).
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        self.detail = format!("{prefix}{}", self.detail);
        self
    }

    /// What went wrong and what to do, as the answer's `detail` says it.
    pub(crate) fn detail(&self) -> &str {
        &self.detail
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }

    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "Not Found", detail)
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            format!("the request body is over the limit of {limit} bytes; split it into smaller requests"),
        )
    }

    pub(crate) fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", detail)
    }

    /// The server is at a bound it keeps (requests or body bytes in flight): come back soon.
    pub(crate) fn busy(detail: impl Into<String>) -> Self {
        Problem { retry_after: Some(1), ..Problem::unavailable(detail) }
    }

    pub(crate) fn request_timeout(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::REQUEST_TIMEOUT, "Request Timeout", detail)
    }

    pub(crate) fn unsupported_media(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type", detail)
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", detail)
    }

    /// A store failure during a write: nothing of the request was stored.
    pub(crate) fn write_failed(e: driftline_store::Error) -> Self {
        tracing::error!(error = %e, "store write failed");
        match e {
            e @ (driftline_store::Error::Corrupt { .. } | driftline_store::Error::PositionMoved { .. }) => {
                Problem::internal(format!("{e}; nothing of the request was stored"))
            }
            e => Problem {
                retry_after: Some(5),
                ..Problem::unavailable(format!("{e}; nothing of the request was stored, retry it later"))
            },
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("problems always encode");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A store failure outside a write (a read, a lookup): the store is busy or down, or what it
/// holds does not decode.
impl From<driftline_store::Error> for Problem {
    fn from(e: driftline_store::Error) -> Self {
        use driftline_store::Error as E;
        match &e {
            E::Corrupt { .. } | E::Migrate { .. } | E::PositionMoved { .. } | E::UnsupportedUrl(_) => {
                tracing::error!(error = %e, "store failure");
                Problem::internal(format!("{e}; this needs an operator"))
            }
            E::ReadTimeout { .. } => Problem::unavailable(e.to_string()),
            _ if e.is_timeout() => Problem::busy(format!("the store did not answer in time ({e}); try again later")),
            _ => {
                tracing::error!(error = %e, "store failure");
                Problem::busy(format!("the store is unavailable ({e}); try again later"))
            }
        }
    }
}

impl From<driftline_rollup::Error> for Problem {
    fn from(e: driftline_rollup::Error) -> Self {
        match e {
            driftline_rollup::Error::Store(e) => e.into(),
            driftline_rollup::Error::Query(_) => Problem::bad_request(e.to_string()),
            driftline_rollup::Error::Read { .. } => Problem::unavailable(e.to_string()),
            driftline_rollup::Error::Sketch(_) | driftline_rollup::Error::Stored(_) => {
                tracing::error!(error = %e, "rollup failure");
                Problem::internal(format!("{e}; this needs an operator"))
            }
        }
    }
}

impl From<driftline_ingest::Error> for Problem {
    fn from(e: driftline_ingest::Error) -> Self {
        match e {
            driftline_ingest::Error::MalformedBody { .. } => Problem::bad_request(e.to_string()),
            driftline_ingest::Error::TooManyEvents { .. } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", e.to_string())
            }
            driftline_ingest::Error::Store(e) => Problem::write_failed(e),
            driftline_ingest::Error::Kafka(_) => Problem::unavailable(e.to_string()),
        }
    }
}

impl From<driftline_query::Error> for Problem {
    fn from(e: driftline_query::Error) -> Self {
        match e {
            driftline_query::Error::Param { .. } => Problem::bad_request(e.to_string()),
            driftline_query::Error::Store(e) => e.into(),
            driftline_query::Error::Sql(e) => Problem::unavailable(format!("the read failed: {e}")),
        }
    }
}
