//! Rollups on Postgres: the announcement barrier, the source query, and the invalidation marks
//! event writes add.
//!
//! The barrier is the `rollup_state` row. Every event write reads `rolling_to_ms` with
//! `FOR SHARE` as its first statement, holds that lock to its commit, and marks the minutes it
//! adds to before the mark dirty. The worker announces a new mark with an `UPDATE` of that row,
//! which waits for every write in flight to commit; writes that come later queue behind the
//! update and read the new mark. So once the announcement returns, every write that began
//! before it is visible and every later one marks what it adds before the mark: a read of the
//! source from then on misses nothing that is not in the invalidation log. The worker passes
//! the same barrier before it re-rolls logged minutes, so a late prediction and its label
//! written at the same time by two transactions (neither seeing the other) are both read.

use async_trait::async_trait;
use sqlx::Postgres;
use uuid::Uuid;

use super::PostgresStore;
use crate::batch::WriteBatch;
use crate::rollups::{
    dirty_minutes_of, DirtyEntry, PathEntry, Removed, Resolution, RollupCommit, RollupRow, RollupState, RollupStore,
    SourceStream, REMOVE_CHUNK,
};
use crate::sql::Sql;
use crate::{Error, Selection, Window};

/// Reads the rollup mark with a share lock held to the end of `tx`: the first statement of
/// every event write.
pub(super) async fn read_mark(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<Option<i64>, Error> {
    sqlx::query_scalar("SELECT rolling_to_ms FROM rollup_state WHERE id = 1 FOR SHARE")
        .fetch_one(&mut **tx)
        .await
        .map_err(Error::db("read the rollup mark"))
}

/// Marks, in the write's transaction, the minutes its events add to before `rolling_to`: they
/// were rolled, or are being rolled.
pub(super) async fn mark_late(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    batch: &WriteBatch,
    kept: &[bool],
    rolling_to: i64,
) -> Result<(), Error> {
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
    if !batch.delayed_metrics.is_empty() {
        let uuids: Vec<Uuid> = batch.delayed_metrics.iter().map(|d| d.uuid).collect();
        let labelled: Vec<(String, i64)> = sqlx::query_as(
            "SELECT model_deployment_crn, start_timestamp_ms FROM prediction_ids \
             WHERE uuid = ANY($1) AND start_timestamp_ms < $2",
        )
        .bind(&uuids)
        .bind(rolling_to)
        .fetch_all(&mut **tx)
        .await
        .map_err(Error::db("find labelled predictions"))?;
        minutes.extend(dirty_minutes_of(labelled.iter().map(|(d, s)| (d.as_str(), *s)), rolling_to));
    }
    minutes.sort();
    minutes.dedup();
    if !minutes.is_empty() {
        crate::rollups::sql::postgres::mark_dirty(tx, &minutes).await?;
    }
    Ok(())
}

#[async_trait]
impl RollupStore for PostgresStore {
    async fn rollup_state(&self) -> Result<RollupState, Error> {
        Sql(&self.pool).rollup_state().await
    }

    async fn deployments(&self) -> Result<Vec<String>, Error> {
        Sql(&self.pool).deployments().await
    }

    async fn next_start_ms(&self, deployment: &str, from_ms: i64) -> Result<Option<i64>, Error> {
        Sql(&self.pool).next_start_ms(deployment, from_ms).await
    }

    async fn announce_rolling(&self, to_ms: i64) -> Result<(), Error> {
        sqlx::query(
            "UPDATE rollup_state SET rolling_to_ms = greatest(coalesce(rolling_to_ms, $1), $1), updated_at_ms = $2 \
             WHERE id = 1",
        )
        .bind(to_ms)
        .bind(driftline_core::time::now_ms())
        .execute(&self.pool)
        .await
        .map_err(Error::db("announce rolling"))?;
        Ok(())
    }

    fn rollup_source(&self, deployment: &str, window: Window) -> SourceStream {
        self.window_rows(Selection::Deployment(deployment.to_owned()), window, Ok)
    }

    async fn replica_source(&self, deployment: &str, window: Window) -> Result<Vec<crate::rollups::ReplicaRow>, Error> {
        Sql(&self.pool).replica_source(deployment, window).await
    }

    async fn rejected_source(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error> {
        Sql(&self.pool).rejected_source(deployment, window).await
    }

    async fn dirty(&self, limit: u32) -> Result<Vec<DirtyEntry>, Error> {
        Sql(&self.pool).dirty(limit).await
    }

    async fn pass_barrier(&self) -> Result<(), Error> {
        sqlx::query("UPDATE rollup_state SET updated_at_ms = $1 WHERE id = 1")
            .bind(driftline_core::time::now_ms())
            .execute(&self.pool)
            .await
            .map_err(Error::db("wait for writes in flight"))?;
        Ok(())
    }

    async fn oldest_dirty_minute(&self) -> Result<Option<i64>, Error> {
        Sql(&self.pool).oldest_dirty_minute().await
    }

    async fn dirty_minutes(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error> {
        Sql(&self.pool).dirty_minutes(deployment, window).await
    }

    async fn rollup_rows(
        &self,
        resolution: Resolution,
        deployment: &str,
        path: Option<&str>,
        window: Window,
    ) -> Result<Vec<RollupRow>, Error> {
        Sql(&self.pool).rollup_rows(resolution, deployment, path, window).await
    }

    async fn rollup_paths(&self, deployment: &str) -> Result<Vec<PathEntry>, Error> {
        Sql(&self.pool).rollup_paths(deployment).await
    }

    async fn commit_rollup(&self, commit: &RollupCommit) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::db("begin rollup"))?;
        crate::rollups::sql::postgres::apply_commit(&mut tx, commit, driftline_core::time::now_ms()).await?;
        tx.commit().await.map_err(Error::db("commit rollup"))?;
        Ok(())
    }

    async fn reset_rollups(&self, from_ms: Option<i64>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::db("begin replay"))?;
        crate::rollups::sql::postgres::reset(&mut tx, from_ms, driftline_core::time::now_ms()).await?;
        tx.commit().await.map_err(Error::db("commit replay"))
    }

    async fn count_predictions_from(&self, from_ms: i64) -> Result<u64, Error> {
        Sql(&self.pool).count_predictions_from(from_ms).await
    }

    async fn mark_raw_removed(&self, before_ms: i64) -> Result<(), Error> {
        Sql(&self.pool).mark_raw_removed(before_ms, driftline_core::time::now_ms()).await
    }

    async fn remove_raw(&self, before_ms: i64) -> Result<Removed, Error> {
        let mut removed = Removed::default();
        for name in super::partitions::partitions(&self.pool).await? {
            let Some(day) = super::partitions::day_of_partition(&name) else { continue };
            if (day + 1) * driftline_core::time::DAY_MS > before_ms {
                continue;
            }
            match drop_day(&self.pool, &name, before_ms).await {
                Ok(None) => {}
                Ok(Some((predictions, delayed))) => {
                    removed.partitions += 1;
                    removed.predictions += predictions;
                    removed.delayed_metrics += delayed;
                }
                Err(e) if e.is_timeout() => {
                    tracing::warn!(partition = %name, "retention could not get the partition's locks; trying again later");
                }
                Err(e) => return Err(e),
            }
        }
        // Rows outside the day partitions, deployment by deployment along their index.
        for deployment in Sql(&self.pool).deployments().await? {
            loop {
                let mut tx = self.pool.begin().await.map_err(Error::db("begin retention"))?;
                let uuids: Vec<Uuid> = sqlx::query_scalar(&format!(
                    "DELETE FROM predictions_default WHERE ctid = ANY(ARRAY(SELECT ctid FROM predictions_default \
                     WHERE model_deployment_crn = $1 AND start_timestamp_ms < $2 AND received_at_ms < $2 LIMIT {REMOVE_CHUNK})) RETURNING uuid"
                ))
                .bind(&deployment)
                .bind(before_ms)
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::db("retention"))?;
                let delayed = sqlx::query("DELETE FROM delayed_metrics WHERE uuid = ANY($1)")
                    .bind(&uuids)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db("retention"))?;
                sqlx::query("DELETE FROM prediction_ids WHERE uuid = ANY($1)")
                    .bind(&uuids)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db("retention"))?;
                tx.commit().await.map_err(Error::db("commit retention"))?;
                removed.predictions += uuids.len() as u64;
                removed.delayed_metrics += delayed.rows_affected();
                if (uuids.len() as i64) < REMOVE_CHUNK {
                    break;
                }
            }
        }
        removed.delayed_metrics += remove_in_chunks(
            &self.pool,
            "delayed_metrics",
            "timestamp_ms < $1 AND received_at_ms < $1 AND NOT EXISTS (SELECT 1 FROM prediction_ids i WHERE i.uuid = delayed_metrics.uuid)",
            before_ms,
        )
        .await?;
        removed.replica_stats =
            remove_in_chunks(&self.pool, "replica_stats", "timestamp_ms < $1 AND received_at_ms < $1", before_ms)
                .await?;
        Ok(removed)
    }

    async fn remove_rollups(&self, resolution: Resolution, before_ms: i64) -> Result<u64, Error> {
        Sql(&self.pool).mark_rollups_removed(resolution, before_ms, driftline_core::time::now_ms()).await?;
        remove_in_chunks(&self.pool, resolution.table(), "bucket_start_ms < $1", before_ms).await
    }

    async fn remove_dead_letters(&self, before_ms: i64) -> Result<u64, Error> {
        remove_in_chunks(&self.pool, "dead_letters", "received_at_ms < $1", before_ms).await
    }
}

/// Deletes the rows of `table` matched by `condition` (on `$1`) in chunks, each its own
/// statement, found by their physical address (a TID scan, whatever the plan of the condition).
async fn remove_in_chunks(pool: &sqlx::PgPool, table: &str, condition: &str, bound: i64) -> Result<u64, Error> {
    let sql = format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {condition} LIMIT {REMOVE_CHUNK}))"
    );
    let mut removed = 0;
    loop {
        let done = sqlx::query(&sql).bind(bound).execute(pool).await.map_err(Error::db("retention"))?.rows_affected();
        removed += done;
        if done < REMOVE_CHUNK as u64 {
            return Ok(removed);
        }
    }
}

/// Drops a whole day partition with the UUID claims and delayed metrics of its predictions, in
/// one transaction under a short lock timeout; returns the predictions and delayed metrics
/// removed. A day holding rows received at or after `received_before` (a backfill) is left for
/// a later pass: `None`.
async fn drop_day(pool: &sqlx::PgPool, name: &str, received_before: i64) -> Result<Option<(u64, u64)>, Error> {
    let mut tx = pool.begin().await.map_err(Error::db("begin retention"))?;
    for setting in ["SET LOCAL lock_timeout = '2s'", "SET LOCAL statement_timeout = '10min'"] {
        sqlx::query(setting).execute(&mut *tx).await.map_err(Error::db("retention"))?;
    }
    let newest: Option<i64> = sqlx::query_scalar(&format!("SELECT max(received_at_ms) FROM {name}"))
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("retention"))?;
    if newest.is_some_and(|at| at >= received_before) {
        return Ok(None);
    }
    let delayed = sqlx::query(&format!("DELETE FROM delayed_metrics d USING {name} p WHERE d.uuid = p.uuid"))
        .execute(&mut *tx)
        .await
        .map_err(Error::db("retention"))?
        .rows_affected();
    let predictions = sqlx::query(&format!("DELETE FROM prediction_ids i USING {name} p WHERE i.uuid = p.uuid"))
        .execute(&mut *tx)
        .await
        .map_err(Error::db("retention"))?
        .rows_affected();
    sqlx::query(&format!("DROP TABLE {name}")).execute(&mut *tx).await.map_err(Error::db("drop a day partition"))?;
    tx.commit().await.map_err(Error::db("commit retention"))?;
    Ok(Some((predictions, delayed)))
}
