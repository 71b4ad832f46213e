//! The production backend: Postgres, with `predictions` range-partitioned by day.
//!
//! Writes are one transaction per batch with array parameters (`UNNEST`), never a statement per
//! row. Day partitions are created on demand, before the batch's transaction, for any day a
//! batch touches, old or new.

use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use driftline_core::time::{civil_date, day_of, DAY_MS};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use uuid::Uuid;

use crate::batch::{digest, metrics_json, DeadLetter, SourcePosition, WriteBatch, WriteOutcome};
use crate::keys::{ApiKey, Scope};
use crate::open::redact;
use crate::read::{spawn_reader, text_safe, RawAggregate, RawRecord, Selection, StoredAggregate, Window};
use crate::{Backend, Counts, Error, RecordStream, Store};

/// Advisory lock key taken while creating partitions, so concurrent writers do not race.
const PARTITION_LOCK: i64 = 0x6472_6966_746c_0001;

/// The Postgres store.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Days whose partition this process has created or seen.
    partitions: Mutex<HashSet<i64>>,
}

impl PostgresStore {
    /// Connects and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(15))
            .connect(url)
            .await
            .map_err(|cause| Error::Open { location: redact(url), cause })?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|cause| Error::Migrate { backend: "postgres", cause })?;
        Ok(PostgresStore { pool, partitions: Mutex::new(HashSet::new()) })
    }

    /// The connection pool, for tools that share the database (benchmarks, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Name of the partition holding `day` (days since 1970-01-01).
    pub fn partition_name(day: i64) -> String {
        let (y, m, d) = civil_date(day);
        format!("predictions_p{y:04}{m:02}{d:02}")
    }

    /// Creates the day partitions that hold these start timestamps, where missing.
    pub async fn ensure_partitions(&self, start_timestamps: impl IntoIterator<Item = i64>) -> Result<(), Error> {
        let missing: BTreeSet<i64> = {
            let known = self.partitions.lock().expect("partition cache lock");
            start_timestamps.into_iter().map(day_of).filter(|d| !known.contains(d)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(Error::db("begin partition creation"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("lock partition creation"))?;
        for &day in &missing {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF predictions FOR VALUES FROM ({}) TO ({})",
                Self::partition_name(day),
                day * DAY_MS,
                (day + 1) * DAY_MS
            );
            sqlx::query(&sql).execute(&mut *tx).await.map_err(Error::db("create partition"))?;
        }
        tx.commit().await.map_err(Error::db("commit partition creation"))?;
        self.partitions.lock().expect("partition cache lock").extend(missing);
        Ok(())
    }

    /// The day partitions that exist, by name.
    pub async fn partitions(&self) -> Result<Vec<String>, Error> {
        sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'predictions'::regclass ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("list partitions"))
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(Error::db("ping"))?;
        Ok(())
    }

    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome, Error> {
        let mut outcome = WriteOutcome::default();
        if batch.is_empty() {
            return Ok(outcome);
        }
        let at = batch.received_at_ms;
        self.ensure_partitions(batch.predictions.iter().map(|p| p.start_timestamp_ms)).await?;
        let mut tx = self.pool.begin().await.map_err(Error::db("begin write"))?;
        // Positions first: the row locks taken here order concurrent writers of one partition,
        // and a position that moved fails the batch before anything else is written.
        crate::positions::advance::<sqlx::Postgres>(&mut tx, &batch.positions, at).await?;

        if !batch.predictions.is_empty() {
            let keep = claim(&mut tx, batch).await?;
            outcome.record_predictions(batch, &keep);

            if outcome.predictions > 0 {
                // The rows themselves go in with COPY, inside the same transaction: the fastest
                // bulk path Postgres has. Only the UUIDs claimed above are copied.
                let mut csv = Vec::with_capacity(batch.predictions.len() * 512);
                for (p, _) in batch.predictions.iter().zip(&keep).filter(|(_, &k)| k) {
                    csv_row(&mut csv, p, at);
                }
                copy_in(
                    &mut tx,
                    "COPY predictions (uuid, model_crn, model_build_crn, model_deployment_crn, \
                     start_timestamp_ms, end_timestamp_ms, metrics, received_at_ms) FROM STDIN (FORMAT csv)",
                    &csv,
                )
                .await
                .map_err(Error::db("copy predictions"))?;
            }
        }

        if !batch.delayed_metrics.is_empty() {
            let d = &batch.delayed_metrics;
            let metrics: Vec<String> = d.iter().map(|d| metrics_json(&d.metrics)).collect();
            let done = sqlx::query(
                "INSERT INTO delayed_metrics (uuid, timestamp_ms, metrics, digest, received_at_ms) \
                 SELECT u, t, x::jsonb, h, $5 FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::bytea[]) AS r(u, t, x, h) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(d.iter().map(|d| d.uuid).collect::<Vec<_>>())
            .bind(d.iter().map(|d| d.timestamp_ms).collect::<Vec<_>>())
            .bind(&metrics)
            .bind(metrics.iter().map(|m| digest(m)).collect::<Vec<_>>())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert delayed metrics"))?;
            outcome.delayed_metrics = done.rows_affected();
            outcome.delayed_duplicates = d.len() as u64 - done.rows_affected();
        }

        if !batch.aggregate_metrics.is_empty() {
            let a = &batch.aggregate_metrics;
            let metrics: Vec<String> = a.iter().map(|a| metrics_json(&a.metrics)).collect();
            let done = sqlx::query(
                "INSERT INTO aggregate_metrics (model_deployment_crn, start_timestamp_ms, end_timestamp_ms, metrics, \
                 source, digest, received_at_ms) SELECT d, s, e, x::jsonb, src, h, $7 \
                 FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::bytea[]) AS r(d, s, e, x, src, h) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(a.iter().map(|a| a.model_deployment_crn.as_str()).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.start_timestamp_ms).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.end_timestamp_ms).collect::<Vec<_>>())
            .bind(&metrics)
            .bind(a.iter().map(|a| a.source.as_str()).collect::<Vec<_>>())
            .bind(metrics.iter().map(|m| digest(m)).collect::<Vec<_>>())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert aggregate metrics"))?;
            outcome.aggregate_metrics = done.rows_affected();
            outcome.aggregate_duplicates = a.len() as u64 - done.rows_affected();
        }

        if !batch.dead_letters.is_empty() {
            let l = &batch.dead_letters;
            sqlx::query(
                "INSERT INTO dead_letters (received_at_ms, source, reason, raw, source_key) \
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::bytea[], $5::bytea[])",
            )
            .bind(l.iter().map(|d| d.received_at_ms).collect::<Vec<_>>())
            .bind(l.iter().map(|d| text_safe(&d.source).into_owned()).collect::<Vec<_>>())
            .bind(l.iter().map(|d| text_safe(&d.reason).into_owned()).collect::<Vec<_>>())
            .bind(l.iter().map(|d| d.raw.as_slice()).collect::<Vec<_>>())
            .bind(l.iter().map(|d| d.key.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert dead letters"))?;
            outcome.dead_letters = l.len() as u64;
        }

        tx.commit().await.map_err(Error::db("commit write"))?;
        Ok(outcome)
    }

    async fn source_positions(&self, group: &str, topic: &str) -> Result<Vec<SourcePosition>, Error> {
        let rows = sqlx::query(
            "SELECT partition, next_offset FROM ingest_offsets WHERE consumer_group = $1 AND topic = $2 ORDER BY partition",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("read source positions"))?;
        Ok(rows
            .into_iter()
            .map(|r| SourcePosition {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition: r.get(0),
                next_offset: r.get(1),
                previous: Some(r.get(1)),
            })
            .collect())
    }

    fn read_window(&self, selection: Selection, window: Window) -> RecordStream {
        let pool = self.pool.clone();
        let sql = format!(
            "SELECT p.uuid::text AS uuid, p.model_crn, p.model_build_crn, p.model_deployment_crn, \
             p.start_timestamp_ms, p.end_timestamp_ms, p.metrics::text AS metrics, \
             (SELECT json_agg(d.metrics ORDER BY d.timestamp_ms, d.id)::text FROM delayed_metrics d \
              WHERE d.uuid = p.uuid) AS delayed \
             FROM predictions p WHERE p.{} = $1 AND p.start_timestamp_ms >= $2 AND p.start_timestamp_ms < $3 \
             ORDER BY p.start_timestamp_ms, p.uuid",
            selection.column()
        );
        spawn_reader(move |sink| async move {
            let rows = sqlx::query_as::<_, RawRecord>(&sql)
                .bind(selection.crn())
                .bind(window.start_ms)
                .bind(window.end_ms)
                .fetch(&pool);
            sink.drain(rows).await;
        })
    }

    async fn aggregate_metrics(&self, deployment: &str, window: Window) -> Result<Vec<StoredAggregate>, Error> {
        sqlx::query_as::<_, RawAggregate>(
            "SELECT model_deployment_crn, start_timestamp_ms, end_timestamp_ms, metrics::text AS metrics, source \
             FROM aggregate_metrics WHERE model_deployment_crn = $1 AND start_timestamp_ms >= $2 \
             AND start_timestamp_ms < $3 ORDER BY start_timestamp_ms, id",
        )
        .bind(deployment)
        .bind(window.start_ms)
        .bind(window.end_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("read aggregate metrics"))?
        .into_iter()
        .map(RawAggregate::decode)
        .collect()
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

    async fn insert_key(&self, key: &ApiKey, key_hash: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, scope, model_deployment_crn, key_hash, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(key.scope.as_str())
        .bind(key.deployment.as_deref())
        .bind(key_hash)
        .bind(key.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(Error::db("insert key"))?;
        Ok(())
    }

    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error> {
        let row = sqlx::query(
            "SELECT id, name, scope, model_deployment_crn, created_at_ms, revoked_at_ms FROM api_keys \
             WHERE key_hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::db("find key"))?;
        row.map(|r| key_from_row(&r)).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, Error> {
        let rows = sqlx::query(
            "SELECT id, name, scope, model_deployment_crn, created_at_ms, revoked_at_ms FROM api_keys \
             ORDER BY created_at_ms DESC, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("list keys"))?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, Error> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
            .bind(driftline_core::time::now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(Error::db("revoke key"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_job(&self, job: &crate::StoredJob) -> Result<bool, Error> {
        crate::jobs::postgres::create_job(&self.pool, job).await
    }

    async fn job(&self, name: &str) -> Result<Option<crate::StoredJob>, Error> {
        crate::jobs::postgres::job(&self.pool, name).await
    }

    async fn jobs(&self) -> Result<Vec<crate::StoredJob>, Error> {
        crate::jobs::postgres::jobs(&self.pool).await
    }

    async fn delete_job(&self, name: &str) -> Result<bool, Error> {
        crate::jobs::postgres::delete_job(&self.pool, name).await
    }

    async fn begin_run(&self, run: &crate::NewRun<'_>) -> Result<Option<i64>, Error> {
        crate::jobs::postgres::begin_run(&self.pool, run).await
    }

    async fn finish_run(&self, id: i64, outcome: &crate::RunOutcome) -> Result<(), Error> {
        crate::jobs::postgres::finish_run(&self.pool, id, outcome).await
    }

    async fn runs(&self, job: &str, limit: u32) -> Result<Vec<crate::StoredRun>, Error> {
        crate::jobs::postgres::runs(&self.pool, job, i64::from(limit)).await
    }

    async fn run(&self, job: &str, id: i64) -> Result<Option<crate::StoredRun>, Error> {
        crate::jobs::postgres::run(&self.pool, job, id).await
    }

    async fn run_reports(&self, job: &str, id: i64) -> Result<Option<(Option<String>, Option<String>)>, Error> {
        crate::jobs::postgres::run_reports(&self.pool, job, id).await
    }

    async fn abandon_runs(&self, before_ms: i64) -> Result<u64, Error> {
        crate::jobs::postgres::abandon_runs(&self.pool, before_ms, driftline_core::time::now_ms()).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Claims the batch's prediction UUIDs in `prediction_ids`; returns, per prediction, whether it
/// is to be stored: the first of its UUID in the batch, and not stored before.
///
/// Repeats of stored UUIDs are rare (a producer's retry), so the claim is optimistic: the
/// batch's distinct UUIDs are copied in with `COPY`, which is much cheaper per row than an
/// `INSERT … ON CONFLICT` (no speculative insertion, no rows sent back). Only when that meets a
/// stored UUID is it rolled back, to a savepoint, and redone row by row with `ON CONFLICT DO
/// NOTHING RETURNING`, which says which ones were new.
async fn claim(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, batch: &WriteBatch) -> Result<Vec<bool>, Error> {
    let mut seen = HashSet::with_capacity(batch.predictions.len());
    let firsts: Vec<bool> = batch.predictions.iter().map(|p| seen.insert(p.uuid)).collect();
    let mut csv = Vec::with_capacity(batch.predictions.len() * 80);
    for (p, _) in batch.predictions.iter().zip(&firsts).filter(|(_, &first)| first) {
        claim_row(&mut csv, p);
    }
    sqlx::query("SAVEPOINT claim").execute(&mut **tx).await.map_err(Error::db("claim prediction uuids"))?;
    let copied = copy_in(
        tx,
        "COPY prediction_ids (uuid, model_deployment_crn, start_timestamp_ms) FROM STDIN (FORMAT csv)",
        &csv,
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
    let uuids: Vec<Uuid> = batch.predictions.iter().map(|p| p.uuid).collect();
    let deployments: Vec<&str> = batch.predictions.iter().map(|p| p.model_deployment_crn.as_str()).collect();
    let starts: Vec<i64> = batch.predictions.iter().map(|p| p.start_timestamp_ms).collect();
    let inserted: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO prediction_ids (uuid, model_deployment_crn, start_timestamp_ms) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) ON CONFLICT DO NOTHING RETURNING uuid",
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

/// Runs `statement` (a `COPY … FROM STDIN`) with `data` as its input; returns the rows copied.
async fn copy_in(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, statement: &str, data: &[u8]) -> sqlx::Result<u64> {
    let mut copy = tx.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await
}

/// Appends `s` as a quoted CSV field: quotes doubled. Validation has already refused NUL
/// characters, which no text column can hold.
fn csv_quoted(out: &mut Vec<u8>, s: &[u8]) {
    use std::io::Write;
    out.push(b'"');
    let _ = QuotedField(out).write_all(s);
    out.push(b'"');
}

/// Writes into a CSV buffer as one quoted field's inside, doubling quotes on the way, so JSON is
/// serialised straight into the `COPY` data without an intermediate string.
struct QuotedField<'a>(&'a mut Vec<u8>);

impl std::io::Write for QuotedField<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'"') {
            self.0.extend_from_slice(&rest[..=i]);
            self.0.push(b'"');
            rest = &rest[i + 1..];
        }
        self.0.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One prediction as a CSV line for `COPY predictions … (FORMAT csv)`.
fn csv_row(out: &mut Vec<u8>, p: &driftline_core::Prediction, received_at_ms: i64) {
    use std::io::Write;
    let _ = write!(out, "{},", p.uuid);
    csv_quoted(out, p.model_crn.as_bytes());
    out.push(b',');
    csv_quoted(out, p.model_build_crn.as_bytes());
    out.push(b',');
    csv_quoted(out, p.model_deployment_crn.as_bytes());
    let _ = write!(out, ",{},{},\"", p.start_timestamp_ms, p.end_timestamp_ms);
    serde_json::to_writer(QuotedField(out), &p.metrics).expect("metrics serialise to JSON");
    let _ = writeln!(out, "\",{received_at_ms}");
}

/// One prediction's claim as a CSV line for `COPY prediction_ids … (FORMAT csv)`.
fn claim_row(out: &mut Vec<u8>, p: &driftline_core::Prediction) {
    use std::io::Write;
    let _ = write!(out, "{},", p.uuid);
    csv_quoted(out, p.model_deployment_crn.as_bytes());
    let _ = writeln!(out, ",{}", p.start_timestamp_ms);
}

fn key_from_row(row: &PgRow) -> Result<ApiKey, Error> {
    let scope: String = row.get(2);
    Ok(ApiKey {
        id: row.get(0),
        name: row.get(1),
        scope: Scope::from_str(&scope).map_err(|detail| Error::Corrupt { what: "key scope", detail })?,
        deployment: row.get(3),
        created_at_ms: row.get(4),
        revoked_at_ms: row.get(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_named_by_utc_date() {
        assert_eq!(PostgresStore::partition_name(day_of(1_700_000_000_000)), "predictions_p20231114");
    }
}
