//! driftline-ingest owns the way events come in: decoding HTTP request bodies (a JSON array or
//! NDJSON) and Kafka messages into v1 events and rejections, and writing them to the store in
//! one transaction with every rejection kept as a dead letter, so nothing valid around a bad
//! event is lost. The Kafka consumer stores its offsets in the same transaction: exactly once.

pub mod consumer;
pub mod decode;
pub mod intake;
pub mod metrics;

pub use consumer::{Ingest, KafkaConfig, OffsetReset, Partitions, REASON_HEADER, SOURCE_HEADER};
pub use decode::{decode_body, BodyFormat, Decoded};
pub use intake::{intake, IntakeError, IntakeReport};
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
    /// The Kafka client could not be set up; the message says what to check.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The store failed; nothing of the request was written.
    #[error(transparent)]
    Store(#[from] driftline_store::Error),
}
