//! What every request passes before a handler sees it, outermost first: a request id; a bound on
//! requests served at once (503 with `Retry-After` past it); authentication of the key from the
//! headers alone (401 before a byte of body is read); and for a body, its declared size (413),
//! its encoding (gzip inflated within the size limit, anything else 415), a share of the
//! server-wide budget of body bytes in flight (503 past it) and a deadline for receiving it all
//! (408 past it).

use std::future::Future;
use std::io::Read as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use tokio::sync::OwnedSemaphorePermit;

use super::AppState;
use crate::problem::Problem;

/// The id of a request: in its log lines, its dead letters' sources and the `x-request-id`
/// answer header.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

pub(crate) async fn request_id(mut request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

pub(crate) async fn limit_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(permit) = state.requests.clone().try_acquire_owned() else {
        return Problem::busy(format!(
            "the server is serving {} requests at once, its limit; try again in a second",
            state.http.max_concurrent_requests
        ))
        .into_response();
    };
    // The permit lives as long as the answer's body: a streamed answer counts until it ends.
    next.run(request).await.map(|body| Body::new(Holding { body, _permit: permit }))
}

pub(crate) async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = path == "/healthz" || path == "/readyz" || (path == "/metrics" && state.http.public_metrics);
    if !open {
        match state.keys.authenticate(request.headers()) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
            }
            Err(problem) => return problem.into_response(),
        }
    }
    next.run(request).await
}

/// How a request body is encoded.
enum Encoding {
    Identity,
    Gzip,
}

pub(crate) async fn body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    if length.unwrap_or(0) == 0 && !chunked || parts.method == Method::GET || parts.method == Method::HEAD {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let limit = state.limits.max_request_bytes;
    if length.is_some_and(|l| l > limit) {
        return Problem::too_large(limit).into_response();
    }
    let encoding = match parts.headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().map(str::trim)) {
        None | Some(Ok("identity" | "")) => Encoding::Identity,
        Some(Ok(v)) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => Encoding::Gzip,
        Some(v) => {
            let shown = v.unwrap_or("?").chars().take(40).collect::<String>();
            return Problem::unsupported_media(format!(
                "Content-Encoding `{shown}` is not supported; send the body as it is or compressed with gzip"
            ))
            .into_response();
        }
    };
    // A share of the bytes the server receives at once: the declared length, or the limit.
    let reserve = match encoding {
        Encoding::Identity => length.unwrap_or(limit),
        // The compressed body and what it inflates to.
        Encoding::Gzip => length.unwrap_or(limit) + limit,
    };
    let kib = reserve.div_ceil(1024).max(1).min(state.http.inflight_body_kib()) as u32;
    let Ok(permit) = state.body_kib.clone().try_acquire_many_owned(kib) else {
        return Problem::busy(
            "the server is receiving as many request bytes as it allows at once; try again in a second",
        )
        .into_response();
    };
    let body = Body::new(Deadline::new(body, state.http.body_timeout));
    let body = match encoding {
        Encoding::Identity => body,
        Encoding::Gzip => {
            let compressed = match axum::body::to_bytes(body, limit).await {
                Ok(bytes) => bytes,
                Err(e) => return body_error(&e, limit, state.http.body_timeout).into_response(),
            };
            match inflate(&compressed, limit) {
                Ok(inflated) => {
                    parts.headers.remove(header::CONTENT_ENCODING);
                    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(inflated.len()));
                    Body::from(inflated)
                }
                Err(problem) => return problem.into_response(),
            }
        }
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    drop(permit);
    response
}

/// Inflates a gzip body, refusing one that inflates past `limit` bytes.
fn inflate(compressed: &[u8], limit: usize) -> Result<Bytes, Problem> {
    let mut out = Vec::with_capacity((compressed.len() * 4).min(limit));
    let read = flate2::read::MultiGzDecoder::new(compressed).take(limit as u64 + 1).read_to_end(&mut out);
    match read {
        Ok(n) if n > limit => Err(Problem::too_large(limit)),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(Problem::bad_request(format!(
            "the body says Content-Encoding: gzip but does not inflate ({e}); send valid gzip or drop the header"
        ))),
    }
}

/// The problem for a body that could not be read: too large, too slow, or broken.
pub(crate) fn body_error(error: &(dyn std::error::Error + 'static), limit: usize, deadline: Duration) -> Problem {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTimedOut>() {
            return Problem::request_timeout(format!(
                "the request body did not arrive within {} s; send it faster or in smaller requests",
                deadline.as_secs()
            ));
        }
        if e.is::<http_body_util::LengthLimitError>() {
            return Problem::too_large(limit);
        }
        cause = e.source();
    }
    Problem::bad_request(format!("cannot read the request body: {error}"))
}

/// The request body did not arrive within its deadline.
#[derive(Debug)]
pub(crate) struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive within its deadline")
    }
}

impl std::error::Error for BodyTimedOut {}

/// A request body that fails once its deadline has passed, however slowly it trickles in.
struct Deadline {
    body: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(body: Body, within: Duration) -> Self {
        Deadline { body, deadline: Box::pin(tokio::time::sleep(within)) }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Pin::new(&mut self.body).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// An answer body that holds a permit until it has been sent.
struct Holding {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
