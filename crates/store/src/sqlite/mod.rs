//! The embedded backend: one SQLite file in WAL mode, one writer connection, a few readers.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use crate::batch::{digest, DeadLetter, WriteBatch, WriteOutcome};
use crate::keys::ApiKey;
use crate::open::StoreOptions;
use crate::read::{decode_record, spawn_reader, RawAggregate, Selection, Window};
use crate::rollups::SourceRow;
use crate::{AggregateStream, Counts, Error, EventStore, JobStore, KeyStore, RecordStream};

mod rollups;

/// Rows per multi-row INSERT: 8 columns each stays far below SQLite's bound-parameter limit.
const ROWS_PER_INSERT: usize = 500;

/// The condition `{alias}.{column} = {value}` on predictions, as SQLite reads it fast. There is
/// no index by build or model (see migrations/sqlite/0008): a filter on either also names the
/// deployments whose predictions carry that build or model, so the deployment index serves it.
pub(crate) fn predictions_where(alias: &str, column: &str, value: &str) -> String {
    match column {
        "model_build_crn" | "model_crn" => format!(
            "({alias}.{column} = {value} AND {alias}.model_deployment_crn IN \
             (SELECT l.model_deployment_crn FROM deployment_lineage l WHERE l.{column} = {value}))"
        ),
        _ => format!("{alias}.{column} = {value}"),
    }
}

/// The statement of [`SqliteStore::window_rows`]: `?1` the CRN selected, `?2`..`?3` the window.
fn window_sql(selection: &Selection) -> String {
    format!(
        "SELECT p.uuid, p.model_crn, p.model_build_crn, p.model_deployment_crn, p.start_timestamp_ms, \
         p.end_timestamp_ms, p.metrics, \
         (SELECT json_group_array(json(d.metrics) ORDER BY d.timestamp_ms, d.id) \
          FROM delayed_metrics d WHERE d.uuid = p.uuid \
          AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = p.model_deployment_crn) \
          HAVING count(*) > 0) AS delayed \
         FROM predictions p WHERE {} AND p.start_timestamp_ms >= ?2 AND p.start_timestamp_ms < ?3 \
         ORDER BY p.start_timestamp_ms, p.uuid",
        predictions_where("p", selection.column(), "?1")
    )
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// A read connection of its own for health checks and the key cache, so neither queues
    /// behind slow readers.
    health: SqlitePool,
    options: StoreOptions,
    /// Stops the checkpoints when the last clone of the store is dropped.
    checkpointer: Arc<Checkpointer>,
}

/// The writer's page cache, KiB.
const WRITER_CACHE_KIB: u32 = 65_536;
/// The WAL size, in pages, at which a commit checkpoints it itself (SQLite's default is 1,000):
/// only when the checkpointer falls behind.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 20_000;
/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The background task that checkpoints the WAL, aborted when dropped.
#[derive(Debug)]
struct Checkpointer(tokio::task::AbortHandle);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Copies the WAL into the database file every `every`, on a connection of its own, without
/// waiting for readers or the writer (a passive checkpoint): so the writer, the ingest path's
/// one serial step, does not do it inside a commit.
async fn checkpoint_every(pool: SqlitePool, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::debug!(error = %e, "checkpoint failed; the next one tries again");
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file with the default options and applies
    /// migrations.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, StoreOptions::default()).await
    }

    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open_with(path: &Path, options: StoreOptions) -> Result<Self, Error> {
        let location = path.display().to_string();
        let open = |cause| Error::Open { location: location.clone(), cause };
        let connect = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a transaction that committed survives a power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.lock_timeout);
        // The one writer is the ingest path's serial step: it keeps its pages in memory (a
        // write then reads no page back from the OS, and spills none mid-transaction), keeps
        // statement journals in memory, and leaves checkpoints to the checkpointer below but
        // for a WAL grown far past it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                connect
                    .clone()
                    .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
                    .pragma("temp_store", "memory")
                    .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES.to_string()),
            )
            .await
            .map_err(open)?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|cause| Error::Migrate { backend: "sqlite", cause })?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.clone().read_only(true))
            .await
            .map_err(open)?;
        let health = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(connect.clone().read_only(true))
            .await
            .map_err(open)?;
        let checkpoints = SqlitePoolOptions::new().max_connections(1).connect_with(connect).await.map_err(open)?;
        let checkpointer =
            Arc::new(Checkpointer(tokio::spawn(checkpoint_every(checkpoints, CHECKPOINT_EVERY)).abort_handle()));
        Ok(SqliteStore { writer, reader, health, options, checkpointer })
    }

    /// Streams the predictions selected in a window, by start time then UUID, each with its
    /// delayed metrics as one JSON array, decoded by `decode`: what reads and the rollup worker
    /// both take.
    pub(crate) fn window_rows<T: Send + 'static>(
        &self,
        selection: Selection,
        window: Window,
        decode: fn(SourceRow) -> Result<T, Error>,
    ) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Error>> + Send>> {
        let pool = self.reader.clone();
        let sql = window_sql(&selection);
        spawn_reader(self.options.read_timeout, move |sink| async move {
            let rows = sqlx::query_as::<_, SourceRow>(&sql)
                .bind(selection.crn())
                .bind(window.start_ms)
                .bind(window.end_ms)
                .fetch(&pool);
            sink.drain(rows, decode).await;
        })
    }

    /// Writes the batch's events (not its positions) in `tx`.
    async fn write_events(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        batch: &WriteBatch,
        outcome: &mut WriteOutcome,
    ) -> Result<(), Error> {
        let at = batch.received_at_ms;
        let mut inserted = HashSet::with_capacity(batch.predictions.len());
        for chunk in batch.predictions.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO predictions (uuid, model_crn, model_build_crn, model_deployment_crn, \
                 start_timestamp_ms, end_timestamp_ms, metrics, received_at_ms) ",
            );
            q.push_values(chunk, |mut row, p| {
                row.push_bind(p.uuid.to_string())
                    .push_bind(p.model_crn.as_str())
                    .push_bind(p.model_build_crn.as_str())
                    .push_bind(p.model_deployment_crn.as_str())
                    .push_bind(p.start_timestamp_ms)
                    .push_bind(p.end_timestamp_ms)
                    .push_bind(p.metrics.as_str())
                    .push_bind(at);
            });
            q.push(" ON CONFLICT (uuid) DO NOTHING RETURNING uuid");
            let rows: Vec<String> =
                q.build_query_scalar().fetch_all(&mut **tx).await.map_err(Error::db("insert predictions"))?;
            for uuid in rows {
                inserted.insert(
                    Uuid::parse_str(&uuid).map_err(|e| Error::Corrupt { what: "uuid", detail: e.to_string() })?,
                );
            }
        }
        let keep = batch.first_of(&inserted);
        outcome.record_predictions(batch, &keep);

        for chunk in batch.delayed_metrics.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO delayed_metrics (uuid, timestamp_ms, digest, metrics, received_at_ms, model_deployment_crn) ",
            );
            q.push_values(chunk, |mut row, d| {
                let metrics = d.metrics.canonical();
                row.push_bind(d.uuid.to_string())
                    .push_bind(d.timestamp_ms)
                    .push_bind(digest(&metrics))
                    .push_bind(metrics)
                    .push_bind(at)
                    .push_bind(batch.delayed_deployment.as_deref());
            });
            q.push(" ON CONFLICT DO NOTHING");
            let done = q.build().execute(&mut **tx).await.map_err(Error::db("insert delayed metrics"))?;
            outcome.delayed_metrics += done.rows_affected();
        }
        outcome.delayed_duplicates = batch.delayed_metrics.len() as u64 - outcome.delayed_metrics;

        for chunk in batch.aggregate_metrics.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO aggregate_metrics (model_deployment_crn, start_timestamp_ms, end_timestamp_ms, \
                 digest, metrics, source, received_at_ms) ",
            );
            q.push_values(chunk, |mut row, a| {
                let metrics = a.metrics.canonical();
                row.push_bind(a.model_deployment_crn.as_str())
                    .push_bind(a.start_timestamp_ms)
                    .push_bind(a.end_timestamp_ms)
                    .push_bind(digest(&metrics))
                    .push_bind(metrics)
                    .push_bind(a.source.as_str())
                    .push_bind(at);
            });
            q.push(" ON CONFLICT DO NOTHING");
            let done = q.build().execute(&mut **tx).await.map_err(Error::db("insert aggregate metrics"))?;
            outcome.aggregate_metrics += done.rows_affected();
        }
        outcome.aggregate_duplicates = batch.aggregate_metrics.len() as u64 - outcome.aggregate_metrics;
        for chunk in batch.replica_stats.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO replica_stats (model_deployment_crn, replica_id, timestamp_ms, cpu_percent, memory_bytes, \
                 received_at_ms) ",
            );
            q.push_values(chunk, |mut row, r| {
                row.push_bind(r.model_deployment_crn.as_str())
                    .push_bind(r.replica_id.as_str())
                    .push_bind(r.timestamp_ms)
                    .push_bind(r.cpu_percent)
                    .push_bind(r.memory_bytes as i64)
                    .push_bind(at);
            });
            q.push(" ON CONFLICT DO NOTHING");
            let done = q.build().execute(&mut **tx).await.map_err(Error::db("insert replica stats"))?;
            outcome.replica_stats += done.rows_affected();
        }
        outcome.replica_duplicates = batch.replica_stats.len() as u64 - outcome.replica_stats;
        let deployments = crate::rollups::new_deployments(batch, &keep);
        if !deployments.is_empty() {
            crate::rollups::sql::sqlite::note_deployments(tx, &deployments, at).await?;
        }
        let lineage = crate::rollups::new_lineage(batch, &keep);
        if !lineage.is_empty() {
            crate::rollups::sql::sqlite::note_lineage(tx, &lineage, at).await?;
        }
        // After the inserts: this transaction holds SQLite's write lock, so the worker's mark
        // cannot move until it commits.
        rollups::mark_late(tx, batch, &keep).await?;
        Ok(())
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.health).await.map_err(Error::db("ping"))?;
        Ok(())
    }

    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, Error> {
        let mut outcome = WriteOutcome::default();
        if batch.is_empty() {
            return Ok(outcome);
        }
        let mut tx = self.writer.begin().await.map_err(Error::db("begin write"))?;
        // Positions first: the first write takes SQLite's write lock, so what is read here is
        // the latest committed state.
        crate::positions::advance::<sqlx::Sqlite>(&mut tx, &batch.positions, batch.received_at_ms).await?;
        // Dead letters before the events: every write statement then comes before the read of
        // the rollup mark, so the transaction holds the write lock when it reads it.
        for chunk in batch.dead_letters.chunks(ROWS_PER_INSERT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO dead_letters (received_at_ms, source, reason, raw, source_key, model_deployment_crn) ",
            );
            q.push_values(chunk, |mut row, d| {
                row.push_bind(d.received_at_ms)
                    .push_bind(d.source.as_str())
                    .push_bind(d.reason.as_str())
                    .push_bind(d.raw.as_slice())
                    .push_bind(d.key.as_deref())
                    .push_bind(d.named_deployment());
            });
            q.build().execute(&mut *tx).await.map_err(Error::db("insert dead letters"))?;
        }
        Self::write_events(&mut tx, batch, &mut outcome).await?;
        outcome.dead_letters = batch.dead_letters.len() as u64;
        tx.commit().await.map_err(Error::db("commit write"))?;
        Ok(outcome)
    }

    async fn probe(&self, batch: &WriteBatch) -> Result<(), Error> {
        let mut tx = self.writer.begin().await.map_err(Error::db("begin probe"))?;
        let result = Self::write_events(&mut tx, batch, &mut WriteOutcome::default()).await;
        let _ = tx.rollback().await;
        result
    }

    async fn source_positions(&self, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>, Error> {
        // Through the writer: what was just committed by this process is what counts.
        let rows: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT partition, next_offset FROM ingest_offsets WHERE consumer_group = ?1 AND topic = ?2",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.writer)
        .await
        .map_err(Error::db("read source positions"))?;
        Ok(rows.into_iter().collect())
    }

    fn read_window(&self, selection: Selection, window: Window) -> RecordStream {
        self.window_rows(selection, window, decode_record)
    }

    fn aggregate_window(&self, deployment: &str, window: Window) -> AggregateStream {
        let pool = self.reader.clone();
        let deployment = deployment.to_owned();
        spawn_reader(self.options.read_timeout, move |sink| async move {
            let rows = sqlx::query_as::<_, RawAggregate>(
                "SELECT model_deployment_crn, start_timestamp_ms, end_timestamp_ms, metrics, source \
                 FROM aggregate_metrics WHERE model_deployment_crn = ?1 AND start_timestamp_ms >= ?2 \
                 AND start_timestamp_ms < ?3 ORDER BY start_timestamp_ms, id",
            )
            .bind(&deployment)
            .bind(window.start_ms)
            .bind(window.end_ms)
            .fetch(&pool);
            sink.drain(rows, RawAggregate::decode).await;
        })
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, Error> {
        let rows = sqlx::query(
            "SELECT received_at_ms, source, reason, raw, source_key FROM dead_letters ORDER BY id DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(Error::db("read dead letters"))?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                received_at_ms: r.get(0),
                source: r.get(1),
                reason: r.get(2),
                raw: r.get(3),
                key: r.get(4),
            })
            .collect())
    }

    async fn counts(&self) -> Result<Counts, Error> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM predictions), (SELECT count(*) FROM delayed_metrics), \
             (SELECT count(*) FROM aggregate_metrics), (SELECT count(*) FROM dead_letters)",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(Error::db("count events"))?;
        Ok(Counts {
            predictions: row.get::<i64, _>(0) as u64,
            delayed_metrics: row.get::<i64, _>(1) as u64,
            aggregate_metrics: row.get::<i64, _>(2) as u64,
            dead_letters: row.get::<i64, _>(3) as u64,
        })
    }

    async fn deployments_of(&self, uuids: &[Uuid]) -> Result<Vec<(Uuid, String)>, Error> {
        let mut found = Vec::new();
        for chunk in uuids.chunks(ROWS_PER_INSERT) {
            let mut q =
                QueryBuilder::<Sqlite>::new("SELECT uuid, model_deployment_crn FROM predictions WHERE uuid IN (");
            let mut list = q.separated(", ");
            for u in chunk {
                list.push_bind(u.to_string());
            }
            q.push(")");
            for row in q.build().fetch_all(&self.reader).await.map_err(Error::db("look up predictions"))? {
                let uuid: String = row.get(0);
                let uuid =
                    Uuid::parse_str(&uuid).map_err(|e| Error::Corrupt { what: "uuid", detail: e.to_string() })?;
                found.push((uuid, row.get(1)));
            }
        }
        Ok(found)
    }

    async fn close(&self) {
        self.checkpointer.0.abort();
        self.health.close().await;
        self.reader.close().await;
        self.writer.close().await;
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: &ApiKey, key_hash: &str) -> Result<(), Error> {
        crate::sql::Sql(&self.writer).insert_key(key, key_hash).await
    }

    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error> {
        crate::sql::Sql(&self.reader).find_key(key_hash).await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, Error> {
        crate::sql::Sql(&self.reader).list_keys().await
    }

    async fn active_keys(&self) -> Result<Vec<(String, ApiKey)>, Error> {
        crate::sql::Sql(&self.health).active_keys().await
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, Error> {
        crate::sql::Sql(&self.writer).revoke_key(id).await
    }
}

#[async_trait]
impl crate::GovernanceStore for SqliteStore {
    async fn append_governance(&self, events: &[crate::NewGovernanceEvent]) -> Result<Vec<crate::Appended>, Error> {
        crate::sql::Sql(&self.writer).append_governance(events).await
    }

    async fn governance_events(&self, after_seq: i64, limit: u32) -> Result<Vec<crate::GovernanceEvent>, Error> {
        crate::sql::Sql(&self.reader).governance_events(after_seq, i64::from(limit)).await
    }

    async fn governance_heads(&self) -> Result<Vec<(String, i64, String)>, Error> {
        crate::sql::Sql(&self.reader).governance_heads().await
    }

    async fn seen_deployments(&self) -> Result<Vec<crate::SeenDeployment>, Error> {
        crate::sql::Sql(&self.reader).seen_deployments().await
    }

    async fn last_prediction_ms(&self, deployment: &str) -> Result<Option<i64>, Error> {
        crate::sql::Sql(&self.reader).last_prediction_ms(deployment).await
    }

    async fn sync_cursor(&self, name: &str) -> Result<Option<i64>, Error> {
        crate::sql::Sql(&self.reader).sync_cursor(name).await
    }

    async fn set_sync_cursor(&self, name: &str, position: i64, at_ms: i64) -> Result<(), Error> {
        crate::sql::Sql(&self.writer).set_sync_cursor(name, position, at_ms).await
    }

    async fn record_remote(&self, remote: &crate::RemoteSync) -> Result<(), Error> {
        crate::sql::Sql(&self.writer).record_remote(remote).await
    }

    async fn remotes(&self) -> Result<Vec<crate::RemoteSync>, Error> {
        crate::sql::Sql(&self.reader).remotes().await
    }

    async fn record_sync_run(&self, run: &crate::SyncRun) -> Result<i64, Error> {
        crate::sql::Sql(&self.writer).record_sync_run(run).await
    }

    async fn sync_runs(&self, prefix: &str, limit: u32) -> Result<Vec<crate::SyncRun>, Error> {
        crate::sql::Sql(&self.reader).sync_runs(prefix, i64::from(limit)).await
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, job: &crate::StoredJob) -> Result<bool, Error> {
        crate::sql::Sql(&self.writer).create_job(job).await
    }

    async fn job(&self, name: &str) -> Result<Option<crate::StoredJob>, Error> {
        crate::sql::Sql(&self.reader).job(name).await
    }

    async fn jobs(&self) -> Result<Vec<crate::StoredJob>, Error> {
        crate::sql::Sql(&self.reader).jobs().await
    }

    async fn delete_job(&self, name: &str) -> Result<bool, Error> {
        crate::sql::Sql(&self.writer).delete_job(name).await
    }

    async fn begin_run(&self, run: &crate::NewRun<'_>) -> Result<Option<i64>, Error> {
        crate::sql::Sql(&self.writer).begin_run(run).await
    }

    async fn finish_run(&self, id: i64, outcome: &crate::RunOutcome) -> Result<(), Error> {
        crate::sql::Sql(&self.writer).finish_run(id, outcome).await
    }

    async fn runs(&self, job: &str, limit: u32) -> Result<Vec<crate::StoredRun>, Error> {
        crate::sql::Sql(&self.reader).runs(job, i64::from(limit)).await
    }

    async fn run(&self, job: &str, id: i64) -> Result<Option<crate::StoredRun>, Error> {
        crate::sql::Sql(&self.reader).run(job, id).await
    }

    async fn run_reports(&self, job: &str, id: i64) -> Result<Option<(Option<String>, Option<String>)>, Error> {
        crate::sql::Sql(&self.reader).run_reports(job, id).await
    }

    async fn abandon_runs(&self, before_ms: i64) -> Result<u64, Error> {
        crate::sql::Sql(&self.writer).abandon_runs(before_ms, driftline_core::time::now_ms()).await
    }

    fn job_rows(&self, deployment: &str, window: Window) -> crate::JobRowStream {
        self.window_rows(Selection::Deployment(deployment.to_owned()), window, |row| {
            let uuid =
                Uuid::parse_str(&row.uuid).map_err(|e| Error::Corrupt { what: "uuid", detail: e.to_string() })?;
            Ok(crate::JobRow {
                uuid,
                start_timestamp_ms: row.start_timestamp_ms,
                metrics: row.metrics,
                delayed: row.delayed,
            })
        })
    }
}

impl crate::scan::ScanStore for SqliteStore {
    fn scan(&self, request: crate::scan::ScanRequest) -> crate::scan::ScanStream {
        use crate::scan::{self, Dialect};
        let pool = self.reader.clone();
        let (sql, params) = scan::build(&request, Dialect::Sqlite);
        spawn_reader(self.options.read_timeout, move |sink| async move {
            let rows = scan::bind(sqlx::query(&sql), params).fetch(&pool);
            sink.drain_with(rows, |row| scan::decode(&row, &request)).await;
        })
    }

    fn scan_sql(&self, request: &crate::scan::ScanRequest) -> String {
        crate::scan::build(request, crate::scan::Dialect::Sqlite).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{Dialect, ScanFilter, ScanOp, ScanRequest, ScanTable, ScanValue};

    /// What SQLite plans for `sql`, its three parameters bound, one step per line.
    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .bind("crn")
            .bind(0_i64)
            .bind(1_i64)
            .fetch_all(&store.reader)
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<String, _>("detail")).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn reads_by_build_or_model_search_the_deployment_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.sqlite")).await.unwrap();
        let column = |name: &str| ScanTable::Predictions.columns().iter().position(|c| c.name == name).unwrap();
        for selection in [Selection::Build("crn".into()), Selection::Model("crn".into())] {
            let scan = ScanRequest {
                table: ScanTable::Predictions,
                columns: vec![column("uuid")],
                filters: vec![
                    ScanFilter::Compare {
                        column: column(selection.column()),
                        op: ScanOp::Eq,
                        value: ScanValue::Text("crn".into()),
                    },
                    ScanFilter::Compare {
                        column: column("start_timestamp_ms"),
                        op: ScanOp::GtEq,
                        value: ScanValue::Int(0),
                    },
                    ScanFilter::Compare {
                        column: column("start_timestamp_ms"),
                        op: ScanOp::Lt,
                        value: ScanValue::Int(1),
                    },
                ],
                scope: None,
                limit: None,
                order_by: vec![],
                aggregate: None,
            };
            for sql in [window_sql(&selection), crate::scan::build(&scan, Dialect::Sqlite).0] {
                let plan = plan(&store, &sql).await;
                assert!(
                    plan.contains("SEARCH p USING INDEX predictions_deployment_time")
                        || plan.contains("SEARCH t USING INDEX predictions_deployment_time"),
                    "{sql}\n{plan}"
                );
                assert!(!plan.contains("SCAN p") && !plan.contains("SCAN t"), "{sql}\n{plan}");
            }
        }
    }
}
