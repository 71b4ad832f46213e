//! driftline-store owns durable state: the append-only event tables (`predictions`,
//! `delayed_metrics`, `aggregate_metrics`, `dead_letters`), the source positions written in the
//! same transaction as the events they cover (`ingest_offsets`), API keys, and the rollup tables
//! with their invalidation log (the summaries in them are driftline-rollup's). One [`Store`]
//! trait, two backends on sqlx: SQLite (one file, the embedded default) and Postgres (predictions
//! range-partitioned by day). Migrations are applied when a store is opened.

pub mod batch;
pub mod governance;
pub mod jobs;
pub mod keys;
pub mod open;
pub mod positions;
pub mod postgres;
pub mod read;
pub mod rollups;
pub mod scan;
mod sql;
pub mod sqlite;

use std::collections::BTreeMap;
use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub use batch::{DeadLetter, SourcePosition, WriteBatch, WriteOutcome};
pub use governance::{Appended, GovernanceEvent, NewGovernanceEvent, RemoteSync, SeenDeployment, SyncRun};
pub use jobs::{JobRow, JobRowStream, NewRun, RunOutcome, RunStatus, StoredJob, StoredRun};
pub use keys::{ApiKey, NewKey, Scope};
pub use open::{open, StoreConfig, StoreOptions};
pub use read::{ReadRecord, Selection, StoredAggregate, Window};
pub use rollups::{Resolution, RollupStore};
pub use scan::ScanStore;

/// A stream of read records, in prediction start-time order.
pub type RecordStream = Pin<Box<dyn Stream<Item = Result<ReadRecord, Error>> + Send>>;

/// A stream of aggregate metrics, in start-time order.
pub type AggregateStream = Pin<Box<dyn Stream<Item = Result<StoredAggregate, Error>> + Send>>;

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

/// The events: writes (with the source positions they cover), reads, and what ingest needs to
/// know about the store.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), Error>;

    /// Writes a batch in one transaction: events, dead letters and source positions all land,
    /// or none do. Predictions whose UUID is already stored (or repeated within the batch) are
    /// not written again and are reported as duplicates.
    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, Error>;

    /// Writes the batch's events in a transaction that is then rolled back: whether the store
    /// would take them. Used to find the events that make a write fail.
    async fn probe(&self, batch: &WriteBatch) -> Result<(), Error>;

    /// The stored next offset of each partition of a consumer group on a topic.
    async fn source_positions(&self, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>, Error>;

    /// Streams the predictions selected in a window, ordered by start time then UUID, each with
    /// its delayed metrics merged into its metrics.
    fn read_window(&self, selection: Selection, window: Window) -> RecordStream;

    /// Streams the aggregate metrics of a deployment whose range starts in the window, by start
    /// time.
    fn aggregate_window(&self, deployment: &str, window: Window) -> AggregateStream;

    /// The newest dead letters, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, Error>;

    /// Row counts of the event tables.
    async fn counts(&self) -> Result<Counts, Error>;

    /// The deployment of each stored prediction among `uuids` (unknown UUIDs are absent).
    async fn deployments_of(&self, uuids: &[uuid::Uuid]) -> Result<Vec<(uuid::Uuid, String)>, Error>;

    /// Finishes pending work and closes the connections.
    async fn close(&self);
}

/// API keys.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new API key (only its hash).
    async fn insert_key(&self, key: &ApiKey, key_hash: &str) -> Result<(), Error>;

    /// The active (not revoked) key with this hash.
    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error>;

    /// Every key, newest first, revoked ones included.
    async fn list_keys(&self) -> Result<Vec<ApiKey>, Error>;

    /// Every active key with its hash, for an in-memory cache of them.
    async fn active_keys(&self) -> Result<Vec<(String, ApiKey)>, Error>;

    /// Revokes the active key whose id is `id`; false when there is none.
    async fn revoke_key(&self, id: &str) -> Result<bool, Error>;
}

/// The governance log (see [`governance`]).
#[async_trait]
pub trait GovernanceStore: Send + Sync + 'static {
    /// Appends events in one transaction, each chained to the previous event of its cluster;
    /// an event whose id is stored already is not written again ([`Appended::Duplicate`]).
    async fn append_governance(&self, events: &[NewGovernanceEvent]) -> Result<Vec<Appended>, Error>;

    /// At most `limit` events after position `after_seq` of the log, in log order.
    async fn governance_events(&self, after_seq: i64, limit: u32) -> Result<Vec<GovernanceEvent>, Error>;

    /// Each cluster's recorded head: its name, its last event's position in its chain and hash.
    async fn governance_heads(&self) -> Result<Vec<(String, i64, String)>, Error>;

    /// Every deployment, build and model the stored predictions name.
    async fn seen_deployments(&self) -> Result<Vec<SeenDeployment>, Error>;

    /// The start time of a deployment's latest stored prediction, if it has one.
    async fn last_prediction_ms(&self, deployment: &str) -> Result<Option<i64>, Error>;

    /// The position a named sync from this store has reached (`None` before its first run).
    async fn sync_cursor(&self, name: &str) -> Result<Option<i64>, Error>;

    /// Records the position a named sync has reached.
    async fn set_sync_cursor(&self, name: &str, position: i64, at_ms: i64) -> Result<(), Error>;

    /// On a primary: records what a remote cluster's sync said of itself (its position only
    /// moves forward).
    async fn record_remote(&self, remote: &RemoteSync) -> Result<(), Error>;

    /// On a primary: every remote cluster that has synced to it.
    async fn remotes(&self) -> Result<Vec<RemoteSync>, Error>;

    /// Keeps the activity record of one run of a sync from another system; returns its id.
    async fn record_sync_run(&self, run: &SyncRun) -> Result<i64, Error>;

    /// The latest `limit` runs of the syncs whose name starts with `prefix`, newest first.
    async fn sync_runs(&self, prefix: &str, limit: u32) -> Result<Vec<SyncRun>, Error>;
}

/// Drift jobs and their runs.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
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

    /// Streams a deployment's predictions in a window, by start time then UUID, each with its
    /// delayed metrics merged as reads merge them (oldest first), with only what a drift job
    /// reads of them.
    fn job_rows(&self, deployment: &str, window: Window) -> JobRowStream;
}

/// A whole store: events, keys, jobs and rollups on one database.
pub trait Store: EventStore + KeyStore + JobStore + GovernanceStore + RollupStore + ScanStore {}

impl<T: EventStore + KeyStore + JobStore + GovernanceStore + RollupStore + ScanStore> Store for T {}

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
    /// A write's coverage of a source partition does not start where the store's position is:
    /// another consumer stored that part of the source, or this one fell behind. Nothing of the
    /// batch was written; read the positions again and resume there.
    #[error(
        "position of {group}/{topic}/{partition} is {stored:?} in the store, but this write covers the partition from \
         {from}; another consumer wrote this partition, resume from the stored position"
    )]
    PositionMoved {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Where the write's coverage starts.
        from: i64,
        /// What was stored.
        stored: Option<i64>,
    },
    /// A read ran past its time budget and was stopped.
    #[error("the read took longer than its budget of {budget:?} and was stopped; ask for a smaller window")]
    ReadTimeout {
        /// The budget.
        budget: std::time::Duration,
    },
    /// Another rollup worker committed since this one planned its step; nothing of the step was
    /// written. Read the state again and plan anew.
    #[error("another rollup worker moved the rollups since generation {planned_on}; this step was not written, plan it again")]
    RollupMoved {
        /// The generation the step was planned on.
        planned_on: i64,
    },
    /// The database URL names no backend driftline knows.
    #[error("unsupported database URL `{0}`; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
}

impl Error {
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |cause| Error::Database { operation, cause }
    }

    /// Whether the database refused the data itself: a constraint, a value it cannot hold, a
    /// size limit. The same write fails the same way every time, so retrying it is pointless,
    /// but the events that cause it can be found and set aside. Postgres: SQLSTATE classes 22
    /// (data exception), 23 (integrity constraint) and 54 (program limit exceeded); SQLite:
    /// SQLITE_TOOBIG, SQLITE_CONSTRAINT and SQLITE_MISMATCH.
    pub fn is_data_error(&self) -> bool {
        let Error::Database { cause: sqlx::Error::Database(db), .. } = self else { return false };
        let Some(code) = db.code() else { return false };
        if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
            return ["22", "23", "54"].iter().any(|class| code.starts_with(class));
        }
        code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 18..=20))
    }

    /// Whether the database gave up on a statement because it ran past its time budget
    /// (`statement_timeout`, `lock_timeout`, or SQLite's busy timeout).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Database { cause: sqlx::Error::Database(db), .. } => {
                matches!(db.code().as_deref(), Some("57014" | "55P03" | "5" | "517" | "261"))
            }
            Error::Database { cause: sqlx::Error::PoolTimedOut, .. } => true,
            _ => false,
        }
    }
}
