//! driftline-core owns what every other crate agrees on: the v1 event types and their wire
//! format, validation against configurable limits (every rejection names the field and the
//! rule), and time helpers. It does no I/O.

pub mod event;
pub mod limits;
mod metrics_json;
pub mod time;
pub mod validate;

pub use event::{AggregateMetrics, DelayedMetrics, Event, Metrics, MetricsJson, Prediction, ReplicaStats, WireEvent};
pub use limits::Limits;
/// The crate's error: why an event was refused.
pub use validate::Rejection as Error;
pub use validate::{check_event_size, parse_event, parse_event_value, Rejection};
