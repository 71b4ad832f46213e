//! driftline-ingest owns the way events come in: decoding HTTP request bodies (a JSON array or
//! NDJSON) and Kafka messages into v1 events and rejections, and writing them to the store in
//! one transaction with every rejection kept as a dead letter, so nothing valid around a bad
//! event is lost. An event the store itself refuses is found by bisection and set aside the same
//! way, so no single event can stop a request or a partition. The Kafka consumer stores the
//! offsets each batch covers in the same transaction: exactly once.

pub mod assembly;
pub mod consumer;
pub mod decode;
pub mod intake;
pub mod isolate;
pub mod metrics;

pub use assembly::{Assembly, Origin, Refusal};
pub use consumer::{Ingest, KafkaConfig, OffsetReset, Partitions, REASON_HEADER, SOURCE_HEADER};
pub use decode::{decode_body, BodyFormat, Decoded};
pub use intake::{intake, IntakeError, IntakeOutcome, IntakeReport};
pub use isolate::write_isolating;
pub use metrics::IngestMetrics;

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body as a whole is not JSON: nothing in it could be split into events.
    #[error("the request body is not valid JSON at line {line}, column {column}: {message}; send a JSON array of events, or NDJSON with Content-Type: application/x-ndjson")]
    MalformedBody {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The body holds more events than one request may.
    #[error("the request holds more than {limit} events (at least {found}); send at most {limit} per request")]
    TooManyEvents {
        /// How many were counted before counting stopped.
        found: usize,
        /// The limit.
        limit: usize,
    },
    /// The Kafka client could not be set up; the message says what to check.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The store failed; nothing of the request was written.
    #[error(transparent)]
    Store(#[from] driftline_store::Error),
}
