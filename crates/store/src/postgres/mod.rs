//! The production backend: Postgres, with `predictions` range-partitioned by day.
//!
//! Writes are one transaction per batch: binary `COPY` for predictions and their UUID claims,
//! array parameters (`UNNEST`) for the rest, never a statement per row. Rows go in sorted by their
//! unique key, so two writers of overlapping batches take their locks in the same order and
//! cannot deadlock. Day partitions are made ahead by a background task ([`partitions`]), never
//! inside a write. Every connection runs with a statement and a lock timeout, and reads run
//! under their own time budget, so nothing waits unbounded.

mod copy;
pub mod partitions;
mod rollups;

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;
use uuid::Uuid;

use self::copy::{copy_in, BinaryRows};
use crate::batch::{digest, DeadLetter, WriteBatch, WriteOutcome};
use crate::keys::ApiKey;
use crate::open::{redact, StoreOptions};
use crate::read::{decode_record, spawn_reader, text_safe, RawAggregate, Selection, Window};
use crate::rollups::SourceRow;
use crate::{AggregateStream, Counts, Error, EventStore, JobStore, KeyStore, RecordStream};

/// How often the partition task looks ahead.
const PARTITION_ROUND: Duration = Duration::from_secs(3600);

/// The Postgres store.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// A connection of its own for health checks and the key cache, so neither queues behind
    /// busy readers or writers.
    health: PgPool,
    options: StoreOptions,
    /// The partition task, stopped with the store.
    maintenance: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.maintenance.abort();
    }
}

impl PostgresStore {
    /// Connects with the default options and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Connects, applies migrations, makes the day partitions ahead, and starts the task that
    /// keeps making them.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Self, Error> {
        let open = |cause| Error::Open { location: redact(url), cause };
        let connect = PgConnectOptions::from_str(url).map_err(open)?.options([
            ("statement_timeout", format!("{}", options.statement_timeout.as_millis())),
            ("lock_timeout", format!("{}", options.lock_timeout.as_millis())),
            // A session that dies inside a transaction does not hold its locks for ever.
            ("idle_in_transaction_session_timeout", format!("{}", options.statement_timeout.as_millis() * 4)),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(connect.clone())
            .await
            .map_err(open)?;
        let health = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(connect)
            .await
            .map_err(open)?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|cause| Error::Migrate { backend: "postgres", cause })?;
        if let Err(e) = partitions::make_ahead(&pool, options.partition_days_ahead).await {
            tracing::warn!(error = %e, "cannot make day partitions ahead yet; new days go to predictions_default meanwhile");
        }
        let maintenance =
            tokio::spawn(partitions::maintain(pool.clone(), options.partition_days_ahead, PARTITION_ROUND));
        Ok(PostgresStore { pool, health, options, maintenance })
    }

    /// The connection pool, for tools that share the database (benchmarks, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The day partitions that exist, by name (the default partition not included).
    pub async fn partitions(&self) -> Result<Vec<String>, Error> {
        partitions::partitions(&self.pool).await
    }

    /// Makes the missing day partitions from yesterday to the configured days ahead now (the
    /// background task does this every hour); returns how many it made.
    pub async fn make_partitions(&self) -> Result<usize, Error> {
        partitions::make_ahead(&self.pool, self.options.partition_days_ahead).await
    }

    /// Makes the partition of one day (days since 1970-01-01), moving that day's rows out of the
    /// default partition: for backfills of past days, which the background task (yesterday
    /// onwards) does not cover.
    pub async fn make_partition(&self, day: i64) -> Result<(), Error> {
        partitions::attach_day(&self.pool, day).await
    }

    /// Streams the predictions selected in a window, by start time then UUID, each with its
    /// delayed metrics as one JSON array, decoded by `decode`: what reads and the rollup worker
    /// both take.
    ///
    /// The delayed metrics come from a join rather than a subquery per prediction: Postgres
    /// can then hash-join a large window (the subquery meant an index probe and an aggregate per
    /// row, three times the time of the join for a window of 500,000), and the rows of one
    /// prediction, adjacent by the order, are folded into one here ([`one_per_prediction`]).
    pub(crate) fn window_rows<T: Send + 'static>(
        &self,
        selection: Selection,
        window: Window,
        decode: fn(SourceRow) -> Result<T, Error>,
    ) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Error>> + Send>> {
        let pool = self.pool.clone();
        let budget = self.options.read_timeout;
        let sql = format!(
            "SELECT p.uuid::text AS uuid, p.model_crn, p.model_build_crn, p.model_deployment_crn, \
             p.start_timestamp_ms, p.end_timestamp_ms, p.metrics::text AS metrics, d.metrics::text AS delayed \
             FROM predictions p LEFT JOIN delayed_metrics d ON d.uuid = p.uuid \
             AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = p.model_deployment_crn) \
             WHERE p.{} = $1 AND p.start_timestamp_ms >= $2 AND p.start_timestamp_ms < $3 \
             ORDER BY p.start_timestamp_ms, p.uuid, d.timestamp_ms, d.id",
            selection.column()
        );
        spawn_reader(budget, move |sink| async move {
            let mut tx = match window_transaction(&pool, budget).await {
                Ok(tx) => tx,
                Err(e) => return sink.fail(e).await,
            };
            let rows = sqlx::query_as::<_, SourceRow>(&sql)
                .bind(selection.crn())
                .bind(window.start_ms)
                .bind(window.end_ms)
                .fetch(&mut *tx);
            sink.drain(one_per_prediction(rows), decode).await;
        })
    }

    /// Writes the batch's events (not its positions) in `tx`; `rolling_to` is the rollup mark
    /// read at the start of the transaction (see [`rollups::read_mark`]).
    async fn write_events(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        batch: &WriteBatch,
        outcome: &mut WriteOutcome,
        rolling_to: Option<i64>,
    ) -> Result<(), Error> {
        let at = batch.received_at_ms;
        let mut keep = Vec::new();
        if !batch.predictions.is_empty() {
            keep = claim(tx, batch).await?;
            outcome.record_predictions(batch, &keep);
            if outcome.predictions > 0 {
                // The rows themselves go in with COPY, in UUID order, inside the same
                // transaction: the fastest bulk path Postgres has. Only the claimed UUIDs.
                let mut rows = BinaryRows::with_capacity(batch.predictions.len() * 512);
                for i in uuid_order(batch).into_iter().filter(|&i| keep[i]) {
                    rows.prediction(&batch.predictions[i], at);
                }
                copy_in(
                    tx,
                    "COPY predictions (uuid, model_crn, model_build_crn, model_deployment_crn, \
                     start_timestamp_ms, end_timestamp_ms, metrics, received_at_ms) FROM STDIN (FORMAT binary)",
                    &rows.finish(),
                )
                .await
                .map_err(Error::db("copy predictions"))?;
            }
        }

        if !batch.delayed_metrics.is_empty() {
            let mut rows: Vec<(Uuid, i64, String, Vec<u8>)> = batch
                .delayed_metrics
                .iter()
                .map(|d| {
                    let m = d.metrics.canonical();
                    let h = digest(&m);
                    (d.uuid, d.timestamp_ms, m, h)
                })
                .collect();
            // The unique key's order: overlapping writers lock index entries in one order.
            rows.sort_by(|a, b| (a.0, a.1, &a.3).cmp(&(b.0, b.1, &b.3)));
            let done = sqlx::query(
                "INSERT INTO delayed_metrics (uuid, timestamp_ms, metrics, digest, received_at_ms, model_deployment_crn) \
                 SELECT u, t, x::jsonb, h, $5, $6 FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::bytea[]) \
                 WITH ORDINALITY AS r(u, t, x, h, n) ORDER BY n ON CONFLICT DO NOTHING",
            )
            .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3.as_slice()).collect::<Vec<_>>())
            .bind(at)
            .bind(batch.delayed_deployment.as_deref())
            .execute(&mut **tx)
            .await
            .map_err(Error::db("insert delayed metrics"))?;
            outcome.delayed_metrics = done.rows_affected();
            outcome.delayed_duplicates = rows.len() as u64 - done.rows_affected();
        }

        if !batch.aggregate_metrics.is_empty() {
            let mut rows: Vec<AggregateRow<'_>> = batch
                .aggregate_metrics
                .iter()
                .map(|a| {
                    let m = a.metrics.canonical();
                    let h = digest(&m);
                    (a.model_deployment_crn.as_str(), a.start_timestamp_ms, a.end_timestamp_ms, m, a.source.as_str(), h)
                })
                .collect();
            rows.sort_by(|a, b| (a.0, a.1, a.2, a.4, &a.5).cmp(&(b.0, b.1, b.2, b.4, &b.5)));
            let done = sqlx::query(
                "INSERT INTO aggregate_metrics (model_deployment_crn, start_timestamp_ms, end_timestamp_ms, metrics, \
                 source, digest, received_at_ms) SELECT d, s, e, x::jsonb, src, h, $7 \
                 FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::bytea[]) \
                 WITH ORDINALITY AS r(d, s, e, x, src, h, n) ORDER BY n ON CONFLICT DO NOTHING",
            )
            .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.5.as_slice()).collect::<Vec<_>>())
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("insert aggregate metrics"))?;
            outcome.aggregate_metrics = done.rows_affected();
            outcome.aggregate_duplicates = rows.len() as u64 - done.rows_affected();
        }
        if !batch.replica_stats.is_empty() {
            let mut rows: Vec<&driftline_core::ReplicaStats> = batch.replica_stats.iter().collect();
            rows.sort_by(|a, b| {
                (&a.model_deployment_crn, a.timestamp_ms, &a.replica_id).cmp(&(
                    &b.model_deployment_crn,
                    b.timestamp_ms,
                    &b.replica_id,
                ))
            });
            let done = sqlx::query(
                "INSERT INTO replica_stats (model_deployment_crn, replica_id, timestamp_ms, cpu_percent, memory_bytes, \
                 received_at_ms) SELECT d, r, t, c, m, $6 \
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::float8[], $5::int8[]) \
                 WITH ORDINALITY AS x(d, r, t, c, m, n) ORDER BY n ON CONFLICT DO NOTHING",
            )
            .bind(rows.iter().map(|r| r.model_deployment_crn.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.replica_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.cpu_percent).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.memory_bytes as i64).collect::<Vec<_>>())
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("insert replica stats"))?;
            outcome.replica_stats = done.rows_affected();
            outcome.replica_duplicates = rows.len() as u64 - done.rows_affected();
        }
        // One insert of every new deployment, in name order: two writers cannot take these
        // locks in opposite orders.
        let deployments = crate::rollups::new_deployments(batch, &keep);
        if !deployments.is_empty() {
            crate::rollups::sql::postgres::note_deployments(tx, &deployments, at).await?;
        }
        let lineage = crate::rollups::new_lineage(batch, &keep);
        if !lineage.is_empty() {
            crate::rollups::sql::postgres::note_lineage(tx, &lineage, at).await?;
        }
        if let Some(rolling_to) = rolling_to {
            rollups::mark_late(tx, batch, &keep, rolling_to).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.health).await.map_err(Error::db("ping"))?;
        Ok(())
    }

    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, Error> {
        let mut outcome = WriteOutcome::default();
        if batch.is_empty() {
            return Ok(outcome);
        }
        let mut tx = self.pool.begin().await.map_err(Error::db("begin write"))?;
        // The rollup mark first: its share lock, held to the commit, is what the rollup worker
        // waits for before it reads events (see `rollups`).
        let rolling_to = rollups::read_mark(&mut tx).await?;
        // Then positions: the row locks taken here order concurrent writers of one partition,
        // and a position that moved fails the batch before anything else is written.
        crate::positions::advance::<sqlx::Postgres>(&mut tx, &batch.positions, batch.received_at_ms).await?;
        Self::write_events(&mut tx, batch, &mut outcome, rolling_to).await?;
        if !batch.dead_letters.is_empty() {
            let l = &batch.dead_letters;
            sqlx::query(
                "INSERT INTO dead_letters (received_at_ms, source, reason, raw, source_key, model_deployment_crn) \
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::text[])",
            )
            .bind(l.iter().map(|d| d.received_at_ms).collect::<Vec<_>>())
            .bind(l.iter().map(|d| text_safe(&d.source).into_owned()).collect::<Vec<_>>())
            .bind(l.iter().map(|d| text_safe(&d.reason).into_owned()).collect::<Vec<_>>())
            .bind(l.iter().map(|d| d.raw.as_slice()).collect::<Vec<_>>())
            .bind(l.iter().map(|d| d.key.as_deref()).collect::<Vec<_>>())
            .bind(l.iter().map(DeadLetter::named_deployment).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert dead letters"))?;
            outcome.dead_letters = l.len() as u64;
        }
        tx.commit().await.map_err(Error::db("commit write"))?;
        Ok(outcome)
    }

    async fn probe(&self, batch: &WriteBatch) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::db("begin probe"))?;
        let result = Self::write_events(&mut tx, batch, &mut WriteOutcome::default(), None).await;
        let _ = tx.rollback().await;
        result
    }

    async fn source_positions(&self, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>, Error> {
        let rows: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT partition, next_offset FROM ingest_offsets WHERE consumer_group = $1 AND topic = $2",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("read source positions"))?;
        Ok(rows.into_iter().collect())
    }

    fn read_window(&self, selection: Selection, window: Window) -> RecordStream {
        self.window_rows(selection, window, decode_record)
    }

    fn aggregate_window(&self, deployment: &str, window: Window) -> AggregateStream {
        let pool = self.pool.clone();
        let budget = self.options.read_timeout;
        let deployment = deployment.to_owned();
        spawn_reader(budget, move |sink| async move {
            let mut tx = match read_transaction(&pool, budget).await {
                Ok(tx) => tx,
                Err(e) => return sink.fail(e).await,
            };
            let rows = sqlx::query_as::<_, RawAggregate>(
                "SELECT model_deployment_crn, start_timestamp_ms, end_timestamp_ms, metrics::text AS metrics, source \
                 FROM aggregate_metrics WHERE model_deployment_crn = $1 AND start_timestamp_ms >= $2 \
                 AND start_timestamp_ms < $3 ORDER BY start_timestamp_ms, id",
            )
            .bind(&deployment)
            .bind(window.start_ms)
            .bind(window.end_ms)
            .fetch(&mut *tx);
            sink.drain(rows, RawAggregate::decode).await;
        })
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, Error> {
        let rows = sqlx::query(
            "SELECT received_at_ms, source, reason, raw, source_key FROM dead_letters ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
        .fetch_one(&self.pool)
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
        let rows = sqlx::query("SELECT uuid, model_deployment_crn FROM prediction_ids WHERE uuid = ANY($1)")
            .bind(uuids)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::db("look up predictions"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn close(&self) {
        self.maintenance.abort();
        self.pool.close().await;
        self.health.close().await;
    }
}

impl crate::scan::ScanStore for PostgresStore {
    fn scan(&self, request: crate::scan::ScanRequest) -> crate::scan::ScanStream {
        use crate::scan::{self, Dialect};
        let pool = self.pool.clone();
        let budget = self.options.read_timeout;
        let (sql, params) = scan::build(&request, Dialect::Postgres);
        spawn_reader(budget, move |sink| async move {
            let mut tx = match read_transaction(&pool, budget).await {
                Ok(tx) => tx,
                Err(e) => return sink.fail(e).await,
            };
            let rows = scan::bind(sqlx::query(&sql), params).fetch(&mut *tx);
            sink.drain_with(rows, |row| scan::decode(&row, &request)).await;
        })
    }

    fn scan_sql(&self, request: &crate::scan::ScanRequest) -> String {
        crate::scan::build(request, crate::scan::Dialect::Postgres).0
    }
}

/// A [`read_transaction`] for a window query, whose sort of a large window fits in memory
/// instead of spilling to disk.
async fn window_transaction(
    pool: &PgPool,
    budget: Duration,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Error> {
    let mut tx = read_transaction(pool, budget).await?;
    sqlx::query("SET LOCAL work_mem = '64MB'").execute(&mut *tx).await.map_err(Error::db("begin read"))?;
    Ok(tx)
}

/// A read-only transaction whose statements may run for `budget`.
async fn read_transaction(
    pool: &PgPool,
    budget: Duration,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Error> {
    let mut tx = pool.begin().await.map_err(Error::db("begin read"))?;
    sqlx::query(&format!("SET LOCAL statement_timeout = {}", budget.as_millis()))
        .execute(&mut *tx)
        .await
        .map_err(Error::db("begin read"))?;
    // A read's plan is simple; compiling it (Postgres's JIT, for plans it deems costly, such as
    // a large window) took 0.3 s and saved nothing.
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await.map_err(Error::db("begin read"))?;
    sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await.map_err(Error::db("begin read"))?;
    Ok(tx)
}

/// A drift job's window, as [`PostgresStore::window_rows`] reads it, but only the columns a job
/// reads, and the UUID as its 16 bytes rather than text: a third less to send and decode.
const JOB_ROWS_SQL: &str =
    "SELECT p.uuid, p.start_timestamp_ms, p.metrics::text AS metrics, d.metrics::text AS delayed \
     FROM predictions p LEFT JOIN delayed_metrics d ON d.uuid = p.uuid \
     AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = p.model_deployment_crn) \
     WHERE p.model_deployment_crn = $1 AND p.start_timestamp_ms >= $2 AND p.start_timestamp_ms < $3 \
     ORDER BY p.start_timestamp_ms, p.uuid, d.timestamp_ms, d.id";

/// A row of a window query: one per prediction and delayed metrics object (or one with none).
trait WindowRow {
    /// Whether `other` is a row of the same prediction.
    fn same_prediction(&self, other: &Self) -> bool;
    /// The delayed metrics: one object as read, the JSON array of them once folded.
    fn delayed(&mut self) -> &mut Option<String>;
}

impl WindowRow for SourceRow {
    fn same_prediction(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
    fn delayed(&mut self) -> &mut Option<String> {
        &mut self.delayed
    }
}

impl WindowRow for crate::JobRow {
    fn same_prediction(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
    fn delayed(&mut self) -> &mut Option<String> {
        &mut self.delayed
    }
}

/// Folds the rows of a window query, one per prediction and delayed metrics object (or one
/// with none), in order, into one row per prediction whose `delayed` is the JSON array of its
/// objects, oldest first.
fn one_per_prediction<R, S>(rows: S) -> impl futures::Stream<Item = Result<R, sqlx::Error>>
where
    R: WindowRow,
    S: futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
{
    use futures::StreamExt;
    let finish = |mut row: R| {
        if let Some(d) = row.delayed().as_mut() {
            d.push(']');
        }
        row
    };
    futures::stream::unfold((rows, None::<R>), move |(mut rows, mut pending)| async move {
        loop {
            match rows.next().await {
                Some(Ok(mut row)) => match pending.as_mut() {
                    Some(p) if p.same_prediction(&row) => {
                        if let Some(more) = row.delayed().take() {
                            match p.delayed() {
                                Some(d) => {
                                    d.push(',');
                                    d.push_str(&more);
                                }
                                none => *none = Some(format!("[{more}")),
                            }
                        }
                    }
                    _ => {
                        if let Some(d) = row.delayed().as_mut() {
                            d.insert(0, '[');
                        }
                        if let Some(done) = pending.replace(row) {
                            return Some((Ok(finish(done)), (rows, pending)));
                        }
                    }
                },
                Some(Err(e)) => return Some((Err(e), (rows, None))),
                None => return pending.take().map(|p| (Ok(finish(p)), (rows, None))),
            }
        }
    })
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn insert_key(&self, key: &ApiKey, key_hash: &str) -> Result<(), Error> {
        crate::sql::Sql(&self.pool).insert_key(key, key_hash).await
    }

    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error> {
        crate::sql::Sql(&self.pool).find_key(key_hash).await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, Error> {
        crate::sql::Sql(&self.pool).list_keys().await
    }

    async fn active_keys(&self) -> Result<Vec<(String, ApiKey)>, Error> {
        crate::sql::Sql(&self.health).active_keys().await
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, Error> {
        crate::sql::Sql(&self.pool).revoke_key(id).await
    }
}

#[async_trait]
impl crate::GovernanceStore for PostgresStore {
    async fn append_governance(&self, events: &[crate::NewGovernanceEvent]) -> Result<Vec<crate::Appended>, Error> {
        crate::sql::Sql(&self.pool).append_governance(events).await
    }

    async fn governance_events(&self, after_seq: i64, limit: u32) -> Result<Vec<crate::GovernanceEvent>, Error> {
        crate::sql::Sql(&self.pool).governance_events(after_seq, i64::from(limit)).await
    }

    async fn governance_heads(&self) -> Result<Vec<(String, i64, String)>, Error> {
        crate::sql::Sql(&self.pool).governance_heads().await
    }

    async fn seen_deployments(&self) -> Result<Vec<crate::SeenDeployment>, Error> {
        crate::sql::Sql(&self.pool).seen_deployments().await
    }

    async fn last_prediction_ms(&self, deployment: &str) -> Result<Option<i64>, Error> {
        crate::sql::Sql(&self.pool).last_prediction_ms(deployment).await
    }

    async fn sync_cursor(&self, name: &str) -> Result<Option<i64>, Error> {
        crate::sql::Sql(&self.pool).sync_cursor(name).await
    }

    async fn set_sync_cursor(&self, name: &str, position: i64, at_ms: i64) -> Result<(), Error> {
        crate::sql::Sql(&self.pool).set_sync_cursor(name, position, at_ms).await
    }

    async fn record_remote(&self, remote: &crate::RemoteSync) -> Result<(), Error> {
        crate::sql::Sql(&self.pool).record_remote(remote).await
    }

    async fn remotes(&self) -> Result<Vec<crate::RemoteSync>, Error> {
        crate::sql::Sql(&self.pool).remotes().await
    }

    async fn record_sync_run(&self, run: &crate::SyncRun) -> Result<i64, Error> {
        crate::sql::Sql(&self.pool).record_sync_run(run).await
    }

    async fn sync_runs(&self, prefix: &str, limit: u32) -> Result<Vec<crate::SyncRun>, Error> {
        crate::sql::Sql(&self.pool).sync_runs(prefix, i64::from(limit)).await
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn create_job(&self, job: &crate::StoredJob) -> Result<bool, Error> {
        crate::sql::Sql(&self.pool).create_job(job).await
    }

    async fn job(&self, name: &str) -> Result<Option<crate::StoredJob>, Error> {
        crate::sql::Sql(&self.pool).job(name).await
    }

    async fn jobs(&self) -> Result<Vec<crate::StoredJob>, Error> {
        crate::sql::Sql(&self.pool).jobs().await
    }

    async fn delete_job(&self, name: &str) -> Result<bool, Error> {
        crate::sql::Sql(&self.pool).delete_job(name).await
    }

    async fn begin_run(&self, run: &crate::NewRun<'_>) -> Result<Option<i64>, Error> {
        crate::sql::Sql(&self.pool).begin_run(run).await
    }

    async fn finish_run(&self, id: i64, outcome: &crate::RunOutcome) -> Result<(), Error> {
        crate::sql::Sql(&self.pool).finish_run(id, outcome).await
    }

    async fn runs(&self, job: &str, limit: u32) -> Result<Vec<crate::StoredRun>, Error> {
        crate::sql::Sql(&self.pool).runs(job, i64::from(limit)).await
    }

    async fn run(&self, job: &str, id: i64) -> Result<Option<crate::StoredRun>, Error> {
        crate::sql::Sql(&self.pool).run(job, id).await
    }

    async fn run_reports(&self, job: &str, id: i64) -> Result<Option<(Option<String>, Option<String>)>, Error> {
        crate::sql::Sql(&self.pool).run_reports(job, id).await
    }

    async fn abandon_runs(&self, before_ms: i64) -> Result<u64, Error> {
        crate::sql::Sql(&self.pool).abandon_runs(before_ms, driftline_core::time::now_ms()).await
    }

    fn job_rows(&self, deployment: &str, window: Window) -> crate::JobRowStream {
        let pool = self.pool.clone();
        let budget = self.options.read_timeout;
        let deployment = deployment.to_owned();
        spawn_reader(budget, move |sink| async move {
            use futures::StreamExt;
            let mut tx = match window_transaction(&pool, budget).await {
                Ok(tx) => tx,
                Err(e) => return sink.fail(e).await,
            };
            let rows = sqlx::query(JOB_ROWS_SQL)
                .bind(&deployment)
                .bind(window.start_ms)
                .bind(window.end_ms)
                .fetch(&mut *tx)
                .map(|row| {
                    let row = row?;
                    Ok(crate::JobRow {
                        uuid: row.try_get(0)?,
                        start_timestamp_ms: row.try_get(1)?,
                        metrics: row.try_get(2)?,
                        delayed: row.try_get(3)?,
                    })
                });
            sink.drain(one_per_prediction(rows), Ok).await;
        })
    }
}

/// An aggregate as inserted: deployment, start, end, metrics JSON, source, digest.
type AggregateRow<'a> = (&'a str, i64, i64, String, &'a str, Vec<u8>);

/// The indices of the batch's predictions in UUID order: the order rows are claimed and copied
/// in, so that overlapping concurrent batches lock the same index entries in the same order.
fn uuid_order(batch: &WriteBatch) -> Vec<usize> {
    let mut order: Vec<usize> = (0..batch.predictions.len()).collect();
    order.sort_by_key(|&i| batch.predictions[i].uuid);
    order
}

/// Claims the batch's prediction UUIDs in `prediction_ids`; returns, per prediction, whether it
/// is to be stored: the first of its UUID in the batch, and not stored before.
///
/// Repeats of stored UUIDs are rare (a producer's retry), so the claim is optimistic: the
/// batch's distinct UUIDs are copied in, in UUID order, with `COPY`, which is much cheaper per
/// row than an `INSERT … ON CONFLICT` (no speculative insertion, no rows sent back). Only when
/// that meets a stored UUID is it rolled back, to a savepoint, and redone with `ON CONFLICT DO
/// NOTHING RETURNING`, which says which ones were new.
async fn claim(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, batch: &WriteBatch) -> Result<Vec<bool>, Error> {
    let mut seen = HashSet::with_capacity(batch.predictions.len());
    let firsts: Vec<bool> = batch.predictions.iter().map(|p| seen.insert(p.uuid)).collect();
    let order = uuid_order(batch);
    let mut rows = BinaryRows::with_capacity(batch.predictions.len() * 80);
    for &i in order.iter().filter(|&&i| firsts[i]) {
        rows.claim(&batch.predictions[i]);
    }
    sqlx::query("SAVEPOINT claim").execute(&mut **tx).await.map_err(Error::db("claim prediction uuids"))?;
    let copied = copy_in(
        tx,
        "COPY prediction_ids (uuid, model_deployment_crn, start_timestamp_ms) FROM STDIN (FORMAT binary)",
        &rows.finish(),
    )
    .await;
    match copied {
        Ok(_) => {
            sqlx::query("RELEASE SAVEPOINT claim")
                .execute(&mut **tx)
                .await
                .map_err(Error::db("claim prediction uuids"))?;
            return Ok(firsts);
        }
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some(UNIQUE_VIOLATION) => {
            sqlx::query("ROLLBACK TO SAVEPOINT claim")
                .execute(&mut **tx)
                .await
                .map_err(Error::db("claim prediction uuids"))?;
        }
        Err(e) => return Err(Error::db("claim prediction uuids")(e)),
    }
    let uuids: Vec<Uuid> = order.iter().map(|&i| batch.predictions[i].uuid).collect();
    let deployments: Vec<&str> = order.iter().map(|&i| batch.predictions[i].model_deployment_crn.as_str()).collect();
    let starts: Vec<i64> = order.iter().map(|&i| batch.predictions[i].start_timestamp_ms).collect();
    let inserted: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO prediction_ids (uuid, model_deployment_crn, start_timestamp_ms) \
         SELECT u, d, s FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) WITH ORDINALITY AS r(u, d, s, n) \
         ORDER BY n ON CONFLICT DO NOTHING RETURNING uuid",
    )
    .bind(&uuids)
    .bind(&deployments)
    .bind(&starts)
    .fetch_all(&mut **tx)
    .await
    .map_err(Error::db("claim prediction uuids"))?
    .into_iter()
    .collect();
    Ok(batch.first_of(&inserted))
}

/// SQLSTATE of a unique-constraint violation.
const UNIQUE_VIOLATION: &str = "23505";
