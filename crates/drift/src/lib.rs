//! The drift engine: model performance against late ground truth and distribution drift
//! between a reference and a current sample, with the numbers scikit-learn and SciPy give for
//! the same data; comparisons of files (CSV, Parquet) and of store windows; drift jobs on a
//! schedule and their reports. The modules are layers, each using only the ones listed before
//! it: [`format`] (how numbers, times and text are written for people), [`stats`] (pure
//! statistics), [`compare`] (a test and a verdict per column, and one for the dataset),
//! [`chunk`] and [`chunked`] (rows cut into chunks, and drift per chunk with thresholds from
//! the reference's chunks, as NannyML computes it), [`estimate`] (performance estimated per
//! chunk from calibrated scores, without labels: NannyML's CBPE), [`realized`] (a multiclass or
//! regression model's realised performance per chunk), [`summarised`] (the
//! whole-window comparison for columns known only from rollups, marked approximate), [`table`] (CSV and Parquet files, and the reference files a process may read), [`report`]
//! (terminal tables and self-contained HTML pages), [`job`] (drift jobs over the store: settings,
//! schedules, runs and the scheduler).

pub mod chunk;
pub mod chunked;
pub mod compare;
pub mod estimate;
pub mod format;
pub mod job;
pub mod realized;
pub mod report;
pub mod stats;
pub mod summarised;
pub mod table;

/// What can fail in the drift engine. `Invalid`, `Reference`, `Read`, `MissingColumn` and
/// `Column` are the caller's input; `NoJob` and `Busy` the state of a job; `Internal`, `Io`
/// and `Store` are failures of this process or its store, never the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read as a table.
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    /// A named column is not in the file.
    #[error("column `{column}` is not in {path}; its columns are: {available}")]
    MissingColumn { column: String, path: String, available: String },
    /// A column's values do not fit what is asked of it.
    #[error("column `{column}`: {message}")]
    Column { column: String, message: String },
    /// A setting or an input is invalid: `field` names it, the message says what to do.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A reference file that may not be read: missing, not a file, outside the references
    /// directory, or a link out of it. One message for every case, so that it does not tell
    /// whether a path exists.
    #[error(
        "reference: `{path}` is not a readable file in the references directory; copy the file into that \
         directory and name it by its path relative to the directory"
    )]
    Reference { path: String },
    /// No job of this name is stored.
    #[error("no drift job `{job}`")]
    NoJob { job: String },
    /// The job has a run in progress already.
    #[error("job `{job}` is running already (here or in another process); wait for that run to finish")]
    Busy { job: String },
    /// A failure inside the engine, not caused by the input: a computation that panicked, a
    /// stored job whose settings no longer parse.
    #[error("internal error in {what}: {message}; this is a bug or a damaged store, please report it")]
    Internal { what: String, message: String },
    /// A file could not be written (report files).
    #[error("cannot write {path}: {source}; check that the directory is writable and the disk has room")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] driftline_store::Error),
}
