//! The drift engine: model performance against late ground truth and distribution drift
//! between a reference and a current sample, with the numbers scikit-learn and SciPy give for
//! the same data; comparisons of files (CSV, Parquet) and of store windows; reports.

pub mod compare;
pub mod files;
pub mod frame;
pub mod job;
pub mod kolmogorov;
pub mod performance;
pub mod render;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod stats;
pub mod value;

pub use value::Stat;

/// What can fail in the drift engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read as a table.
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    /// A named column is not in the file.
    #[error("column `{column}` is not in {path}; its columns are: {available}")]
    MissingColumn { column: String, path: String, available: String },
    /// A column's values do not fit what the command needs from it.
    #[error("column `{column}`: {message}")]
    Column { column: String, message: String },
    /// A command-line or job setting is invalid.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The job has a run in progress already.
    #[error("job `{job}` is running already (here or in another process); wait for that run to finish")]
    Busy { job: String },
    #[error(transparent)]
    Store(#[from] driftline_store::Error),
}
