//! driftline-core owns what every other crate agrees on: the v1 event types and their wire
//! format, validation against configurable limits (every rejection names the field and the
//! rule), and time helpers. It does no I/O.

pub mod event;
pub mod limits;
pub mod time;
pub mod validate;

pub use event::{AggregateMetrics, DelayedMetrics, Event, Metrics, Prediction, WireEvent};
pub use limits::Limits;
pub use validate::{parse_event, parse_event_value, Rejection};

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An event broke a rule of the v1 wire format; the rejection names the field.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A value could not be encoded as JSON.
    #[error("could not encode JSON: {0}")]
    Encode(#[from] serde_json::Error),
}
