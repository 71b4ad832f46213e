//! driftline-rollup keeps years of history in bounded space. It turns the store's raw
//! predictions (with their late labels merged in) into per-minute summaries of every metric
//! path, merges minutes into hours and hours into days, re-rolls minutes that late events made
//! stale, and answers series queries from rollups and the not-yet-rolled tail alike. Summaries
//! hold count, sum, min, max, m2 and an Apache DataSketches KLL sketch for numbers, and top-K
//! value counts for strings and booleans. The tables and the invalidation log are the store's
//! (`driftline_store::rollups`); what goes into them is decided here.

pub mod leaves;
pub mod replay;
pub mod retention;
pub mod roll;
pub mod rows;
pub mod series;
pub mod sketch;
pub mod summary;
pub mod window;
pub mod worker;

pub use retention::{Retained, Retention};
pub use rows::{Rows, StoreRows};
pub use series::{series, series_from, Series, SeriesPoint, SeriesQuery, Source};
pub use sketch::Sketch;
pub use summary::{Summary, SummaryOptions};
pub use window::{summarise, WindowSummary};
pub use worker::{Worker, WorkerOptions};

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] driftline_store::Error),
    /// A sketch could not be made, merged or read.
    #[error("sketch: {0}")]
    Sketch(String),
    /// Stored data did not decode.
    #[error("stored data is not valid: {0}; it was not written by this driftline, run `driftline replay` to rebuild rollups")]
    Stored(String),
    /// A series query asked for something that cannot be answered.
    #[error("{0}")]
    Query(String),
    /// Rows read through another reader than the store's own queries could not be read.
    #[error("reading {what} failed: {detail}")]
    Read {
        /// Which rows.
        what: &'static str,
        /// Why.
        detail: String,
    },
}
