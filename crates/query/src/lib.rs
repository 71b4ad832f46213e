//! driftline-query owns reads: turning request parameters into a selection and a time window,
//! and streaming the selected predictions (or aggregate metrics) out in the answer shapes that
//! existing clients parse (a chunked JSON document or NDJSON), never buffering the whole window;
//! and SQL over the store's tables through DataFusion ([`sql`]).

pub mod answer;
pub mod params;
pub mod series;
pub mod sql;
pub mod window;

pub use answer::{encode_aggregates, AggregateMetric, Encoding};
pub use params::{ReadRequest, WindowParams};

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request parameter is missing or wrong; the message names it and says what to send.
    #[error("parameter `{param}`: {rule}")]
    Param {
        /// The parameter at fault.
        param: &'static str,
        /// What is wrong and what to send instead.
        rule: String,
    },
    /// Reading from the store failed.
    #[error(transparent)]
    Store(#[from] driftline_store::Error),
    /// A read planned through the SQL layer failed.
    #[error(transparent)]
    Sql(#[from] sql::SqlError),
}
