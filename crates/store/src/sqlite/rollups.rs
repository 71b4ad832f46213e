//! Rollups on SQLite: the source query and the invalidation marks event writes add.
//!
//! SQLite runs one write transaction at a time, and an event write reads the rollup mark after
//! its first insert, holding the write lock. The worker's announcement is itself a write, so it
//! happens wholly before or wholly after each event write: no further barrier is needed.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::batch::WriteBatch;
use crate::read::spawn_reader;
use crate::rollups::{
    dirty_minutes_of, DirtyEntry, PathEntry, Resolution, RollupCommit, RollupRow, RollupState, RollupStore, SourceRow,
    SourceStream,
};
use crate::sql::Sql;
use crate::{Error, Window};

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
    if !any_prediction && batch.delayed_metrics.is_empty() {
        return Ok(());
    }
    let rolling_to: Option<i64> = sqlx::query_scalar("SELECT rolling_to_ms FROM rollup_state WHERE id = 1")
        .fetch_one(&mut **tx)
        .await
        .map_err(Error::db("read the rollup mark"))?;
    let Some(rolling_to) = rolling_to else { return Ok(()) };
    let mut minutes = dirty_minutes_of(
        batch
            .predictions
            .iter()
            .zip(kept)
            .filter(|(_, &k)| k)
            .map(|(p, _)| (p.model_deployment_crn.as_str(), p.start_timestamp_ms)),
        rolling_to,
    );
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
        // Through the writer: the latest committed state, including this process's own.
        Sql(&self.writer).rollup_state().await
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
        let pool = self.reader.clone();
        let deployment = deployment.to_owned();
        spawn_reader(self.options.read_timeout, move |sink| async move {
            let rows = sqlx::query_as::<_, SourceRow>(
                "SELECT p.model_deployment_crn, p.uuid, p.model_crn, p.model_build_crn, p.start_timestamp_ms, \
                 p.end_timestamp_ms, p.metrics, \
                 (SELECT json_group_array(json(d.metrics) ORDER BY d.timestamp_ms, d.id) \
                  FROM delayed_metrics d WHERE d.uuid = p.uuid \
                  AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = p.model_deployment_crn) \
                  HAVING count(*) > 0) AS delayed \
                 FROM predictions p WHERE p.model_deployment_crn = ?1 AND p.start_timestamp_ms >= ?2 \
                 AND p.start_timestamp_ms < ?3 ORDER BY p.start_timestamp_ms, p.uuid",
            )
            .bind(&deployment)
            .bind(window.start_ms)
            .bind(window.end_ms)
            .fetch(&pool);
            sink.drain(rows, Ok).await;
        })
    }

    async fn dirty(&self, limit: u32) -> Result<Vec<DirtyEntry>, Error> {
        Sql(&self.writer).dirty(limit).await
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
}
