//! Rollups on SQLite: the source query and the invalidation marks event writes add.
//!
//! SQLite runs one write transaction at a time, and an event write reads the rollup mark after
//! its first insert, holding the write lock (a write that inserts nothing marks nothing). The worker's announcement is itself a write, so it
//! happens wholly before or wholly after each event write: no further barrier is needed.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::batch::WriteBatch;
use crate::rollups::{
    dirty_minutes_of, DirtyEntry, PathEntry, Removed, Resolution, RollupCommit, RollupRow, RollupState, RollupStore,
    SourceStream, REMOVE_CHUNK,
};
use crate::sql::Sql;
use crate::{Error, Selection, Window};

/// UUIDs per `IN (…)` list.
const UUIDS_PER_QUERY: usize = 500;

/// Marks, in the write's transaction, the minutes its events add to that were already rolled
/// or are being rolled.
pub(super) async fn mark_late(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    batch: &WriteBatch,
    kept: &[bool],
) -> Result<(), Error> {
    let any_prediction = kept.iter().any(|&k| k);
    if !any_prediction
        && batch.delayed_metrics.is_empty()
        && batch.replica_stats.is_empty()
        && batch.dead_letters.is_empty()
    {
        return Ok(());
    }
    let rolling_to: Option<i64> = sqlx::query_scalar("SELECT rolling_to_ms FROM rollup_state WHERE id = 1")
        .fetch_one(&mut **tx)
        .await
        .map_err(Error::db("read the rollup mark"))?;
    let Some(rolling_to) = rolling_to else { return Ok(()) };
    let mut minutes = crate::rollups::other_minutes(batch, rolling_to);
    minutes.extend(dirty_minutes_of(
        batch
            .predictions
            .iter()
            .zip(kept)
            .filter(|(_, &k)| k)
            .map(|(p, _)| (p.model_deployment_crn.as_str(), p.start_timestamp_ms)),
        rolling_to,
    ));
    for chunk in batch.delayed_metrics.chunks(UUIDS_PER_QUERY) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT model_deployment_crn, start_timestamp_ms FROM predictions WHERE start_timestamp_ms < ",
        );
        q.push_bind(rolling_to).push(" AND uuid IN (");
        let mut list = q.separated(", ");
        for d in chunk {
            list.push_bind(d.uuid.to_string());
        }
        q.push(")");
        let labelled: Vec<(String, i64)> =
            q.build_query_as().fetch_all(&mut **tx).await.map_err(Error::db("find labelled predictions"))?;
        minutes.extend(dirty_minutes_of(labelled.iter().map(|(d, s)| (d.as_str(), *s)), rolling_to));
    }
    minutes.sort();
    minutes.dedup();
    if !minutes.is_empty() {
        crate::rollups::sql::sqlite::mark_dirty(tx, &minutes).await?;
    }
    Ok(())
}

#[async_trait]
impl RollupStore for SqliteStore {
    async fn rollup_state(&self) -> Result<RollupState, Error> {
        Sql(&self.reader).rollup_state().await
    }

    async fn deployments(&self) -> Result<Vec<String>, Error> {
        Sql(&self.reader).deployments().await
    }

    async fn next_start_ms(&self, deployment: &str, from_ms: i64) -> Result<Option<i64>, Error> {
        Sql(&self.reader).next_start_ms(deployment, from_ms).await
    }

    async fn announce_rolling(&self, to_ms: i64) -> Result<(), Error> {
        sqlx::query(
            "UPDATE rollup_state SET rolling_to_ms = max(coalesce(rolling_to_ms, ?1), ?1), updated_at_ms = ?2 \
             WHERE id = 1",
        )
        .bind(to_ms)
        .bind(driftline_core::time::now_ms())
        .execute(&self.writer)
        .await
        .map_err(Error::db("announce rolling"))?;
        Ok(())
    }

    fn rollup_source(&self, deployment: &str, window: Window) -> SourceStream {
        self.window_rows(Selection::Deployment(deployment.to_owned()), window, Ok)
    }

    async fn replica_source(&self, deployment: &str, window: Window) -> Result<Vec<crate::rollups::ReplicaRow>, Error> {
        Sql(&self.reader).replica_source(deployment, window).await
    }

    async fn rejected_source(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error> {
        Sql(&self.reader).rejected_source(deployment, window).await
    }

    async fn pass_barrier(&self) -> Result<(), Error> {
        // One writer at a time: no write is in flight while this one runs.
        sqlx::query("UPDATE rollup_state SET updated_at_ms = ?1 WHERE id = 1")
            .bind(driftline_core::time::now_ms())
            .execute(&self.writer)
            .await
            .map_err(Error::db("wait for writes in flight"))?;
        Ok(())
    }

    async fn dirty(&self, limit: u32) -> Result<Vec<DirtyEntry>, Error> {
        Sql(&self.reader).dirty(limit).await
    }

    async fn oldest_dirty_minute(&self) -> Result<Option<i64>, Error> {
        Sql(&self.reader).oldest_dirty_minute().await
    }

    async fn dirty_minutes(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error> {
        Sql(&self.reader).dirty_minutes(deployment, window).await
    }

    async fn rollup_rows(
        &self,
        resolution: Resolution,
        deployment: &str,
        path: Option<&str>,
        window: Window,
    ) -> Result<Vec<RollupRow>, Error> {
        Sql(&self.reader).rollup_rows(resolution, deployment, path, window).await
    }

    async fn rollup_paths(&self, deployment: &str) -> Result<Vec<PathEntry>, Error> {
        Sql(&self.reader).rollup_paths(deployment).await
    }

    async fn commit_rollup(&self, commit: &RollupCommit) -> Result<(), Error> {
        let mut tx = self.writer.begin().await.map_err(Error::db("begin rollup"))?;
        crate::rollups::sql::sqlite::apply_commit(&mut tx, commit, driftline_core::time::now_ms()).await?;
        tx.commit().await.map_err(Error::db("commit rollup"))?;
        Ok(())
    }

    async fn reset_rollups(&self, from_ms: Option<i64>) -> Result<(), Error> {
        let mut tx = self.writer.begin().await.map_err(Error::db("begin replay"))?;
        crate::rollups::sql::sqlite::reset(&mut tx, from_ms, driftline_core::time::now_ms()).await?;
        tx.commit().await.map_err(Error::db("commit replay"))
    }

    async fn count_predictions_from(&self, from_ms: i64) -> Result<u64, Error> {
        Sql(&self.reader).count_predictions_from(from_ms).await
    }

    async fn mark_raw_removed(&self, before_ms: i64) -> Result<(), Error> {
        Sql(&self.writer).mark_raw_removed(before_ms, driftline_core::time::now_ms()).await
    }

    async fn remove_raw(&self, before_ms: i64) -> Result<Removed, Error> {
        let mut removed = Removed::default();
        for deployment in Sql(&self.reader).deployments().await? {
            loop {
                let mut tx = self.writer.begin().await.map_err(Error::db("begin retention"))?;
                let uuids: Vec<String> = sqlx::query_scalar(&format!(
                    "DELETE FROM predictions WHERE rowid IN (SELECT rowid FROM predictions \
                     WHERE model_deployment_crn = ?1 AND start_timestamp_ms < ?2 AND received_at_ms < ?2 LIMIT {REMOVE_CHUNK}) RETURNING uuid"
                ))
                .bind(&deployment)
                .bind(before_ms)
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::db("retention"))?;
                for chunk in uuids.chunks(UUIDS_PER_QUERY) {
                    let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM delayed_metrics WHERE uuid IN (");
                    let mut list = q.separated(", ");
                    for u in chunk {
                        list.push_bind(u.as_str());
                    }
                    q.push(")");
                    let done = q.build().execute(&mut *tx).await.map_err(Error::db("retention"))?;
                    removed.delayed_metrics += done.rows_affected();
                }
                tx.commit().await.map_err(Error::db("commit retention"))?;
                removed.predictions += uuids.len() as u64;
                if (uuids.len() as i64) < REMOVE_CHUNK {
                    break;
                }
            }
        }
        removed.delayed_metrics += Sql(&self.writer)
            .remove_in_chunks(
                "delayed_metrics",
                "id",
                "timestamp_ms < $1 AND received_at_ms < $1 AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.uuid = delayed_metrics.uuid)",
                before_ms,
            )
            .await?;
        removed.replica_stats = Sql(&self.writer)
            .remove_in_chunks("replica_stats", "id", "timestamp_ms < $1 AND received_at_ms < $1", before_ms)
            .await?;
        Ok(removed)
    }

    async fn remove_rollups(&self, resolution: Resolution, before_ms: i64) -> Result<u64, Error> {
        Sql(&self.writer).mark_rollups_removed(resolution, before_ms, driftline_core::time::now_ms()).await?;
        Sql(&self.writer)
            .remove_in_chunks(
                resolution.table(),
                "model_deployment_crn, path, bucket_start_ms",
                "bucket_start_ms < $1",
                before_ms,
            )
            .await
    }

    async fn remove_dead_letters(&self, before_ms: i64) -> Result<u64, Error> {
        Sql(&self.writer).remove_in_chunks("dead_letters", "id", "received_at_ms < $1", before_ms).await
    }
}
