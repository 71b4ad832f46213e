//! driftline-store owns durable state: the append-only event tables (`predictions`,
//! `delayed_metrics`, `aggregate_metrics`, `dead_letters`), the source positions written in the
//! same transaction as the events they cover (`ingest_offsets`), and API keys. One [`Store`]
//! trait, two backends on sqlx: SQLite (one file, the embedded default) and Postgres (predictions
//! range-partitioned by day). Migrations are applied when a store is opened.

pub mod batch;
pub mod jobs;
pub mod keys;
pub mod open;
pub mod positions;
pub mod postgres;
pub mod read;
pub mod sqlite;
pub mod testing;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub use batch::{DeadLetter, SourcePosition, WriteBatch, WriteOutcome};
pub use jobs::{NewRun, RunOutcome, RunStatus, StoredJob, StoredRun};
pub use keys::{ApiKey, NewKey, Scope};
pub use open::{open, StoreConfig};
pub use read::{ReadRecord, Selection, StoredAggregate, Window};

/// A stream of read records, in prediction start-time order.
pub type RecordStream = Pin<Box<dyn Stream<Item = Result<ReadRecord, Error>> + Send>>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file: the embedded default.
    Sqlite,
    /// A Postgres server: production.
    Postgres,
}

/// Row counts of the event tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Stored predictions.
    pub predictions: u64,
    /// Stored delayed metrics events.
    pub delayed_metrics: u64,
    /// Stored aggregate metrics events.
    pub aggregate_metrics: u64,
    /// Stored dead letters.
    pub dead_letters: u64,
}

/// The event store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The database this store runs on.
    fn backend(&self) -> Backend;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), Error>;

    /// Writes a batch in one transaction: events, dead letters and source positions all land,
    /// or none do. Predictions whose UUID is already stored (or repeated within the batch) are
    /// not written again and are reported as duplicates.
    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, Error>;

    /// The stored source positions of a consumer group on a topic.
    async fn source_positions(&self, group: &str, topic: &str) -> Result<Vec<SourcePosition>, Error>;

    /// Streams the predictions selected in a window, ordered by start time then UUID, each with
    /// its delayed metrics merged into its metrics.
    fn read_window(&self, selection: Selection, window: Window) -> RecordStream;

    /// The aggregate metrics of a deployment whose range starts in the window, by start time.
    async fn aggregate_metrics(&self, deployment: &str, window: Window) -> Result<Vec<StoredAggregate>, Error>;

    /// The newest dead letters, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, Error>;

    /// Row counts of the event tables.
    async fn counts(&self) -> Result<Counts, Error>;

    /// The deployment of each stored prediction among `uuids` (unknown UUIDs are absent).
    async fn deployments_of(&self, uuids: &[uuid::Uuid]) -> Result<Vec<(uuid::Uuid, String)>, Error>;

    /// Stores a new API key (only its hash).
    async fn insert_key(&self, key: &ApiKey, key_hash: &str) -> Result<(), Error>;

    /// The active (not revoked) key with this hash.
    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error>;

    /// Every key, newest first, revoked ones included.
    async fn list_keys(&self) -> Result<Vec<ApiKey>, Error>;

    /// Revokes the active key whose id is `id`; false when there is none.
    async fn revoke_key(&self, id: &str) -> Result<bool, Error>;

    /// Stores a new drift job; `false` when a job of that name exists.
    async fn create_job(&self, job: &StoredJob) -> Result<bool, Error>;

    /// The drift job of that name.
    async fn job(&self, name: &str) -> Result<Option<StoredJob>, Error>;

    /// All drift jobs, by name.
    async fn jobs(&self) -> Result<Vec<StoredJob>, Error>;

    /// Deletes a drift job and its runs; `false` when there was none.
    async fn delete_job(&self, name: &str) -> Result<bool, Error>;

    /// Records a run as running; `None` when the job has a run in progress already.
    async fn begin_run(&self, run: &NewRun<'_>) -> Result<Option<i64>, Error>;

    /// Records how a run ended, with its reports.
    async fn finish_run(&self, id: i64, outcome: &RunOutcome) -> Result<(), Error>;

    /// The newest `limit` runs of a job, newest first.
    async fn runs(&self, job: &str, limit: u32) -> Result<Vec<StoredRun>, Error>;

    /// One run of a job.
    async fn run(&self, job: &str, id: i64) -> Result<Option<StoredRun>, Error>;

    /// A run's JSON and HTML reports; `None` when there is no such run.
    async fn run_reports(&self, job: &str, id: i64) -> Result<Option<(Option<String>, Option<String>)>, Error>;

    /// Marks runs still running that started before `before_ms` as failed (their process
    /// died); returns how many.
    async fn abandon_runs(&self, before_ms: i64) -> Result<u64, Error>;

    /// Finishes pending work and closes the connections.
    async fn close(&self);
}

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be opened; the message says where and why.
    #[error("cannot open the store at {location} ({cause}); check the path or URL and that the database is reachable")]
    Open {
        /// The file or URL (password removed).
        location: String,
        /// What the driver said.
        cause: sqlx::Error,
    },
    /// Migrations failed.
    #[error(
        "cannot apply the {backend} migrations ({cause}); if this database was written by another driftline version, \
         use a fresh data directory or database"
    )]
    Migrate {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What the migrator said.
        cause: sqlx::migrate::MigrateError,
    },
    /// A database statement failed.
    #[error("store {operation} failed: {cause}")]
    Database {
        /// What the store was doing.
        operation: &'static str,
        /// What the driver said.
        cause: sqlx::Error,
    },
    /// Stored data did not decode; it was written by something other than driftline.
    #[error("stored {what} is not valid: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A source position had moved since the writer read it: another writer stored that part of
    /// the source. Nothing of the batch was written; read the positions again and resume there.
    #[error(
        "position of {group}/{topic}/{partition} moved: expected {expected:?}, stored {stored:?}; \
         another consumer wrote this partition, resume from the stored position"
    )]
    PositionMoved {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What the writer expected to find.
        expected: Option<i64>,
        /// What was stored.
        stored: Option<i64>,
    },
    /// The database URL names no backend driftline knows.
    #[error("unsupported database URL `{0}`; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
}

impl Error {
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |cause| Error::Database { operation, cause }
    }
}
