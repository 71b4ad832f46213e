//! The rollup statements both backends share (`$N` placeholders, standard SQL). What differs,
//! the announcement barrier and the source query, lives with each backend.

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::{DirtyEntry, PathEntry, Resolution, RollupRow, RollupState};
use crate::sql::Sql;
use crate::{Error, Window};

/// Rollup rows per multi-row INSERT: 12 columns each stays far below both databases' limits on
/// bound parameters.
const ROWS_PER_INSERT: usize = 400;

/// The columns of a rollup table, in [`RollupRow`] order.
const COLUMNS: &str = "model_deployment_crn, path, bucket_start_ms, n_numeric, sum, min, max, m2, sketch, \
                       n_categorical, value_counts, other_count";

#[derive(FromRow)]
pub(crate) struct StateRow {
    rolling_to_ms: Option<i64>,
    rolled_to_ms: Option<i64>,
    raw_kept_from_ms: Option<i64>,
    minute_kept_from_ms: Option<i64>,
    hour_kept_from_ms: Option<i64>,
    generation: i64,
}

#[derive(FromRow)]
pub(crate) struct StoredRow {
    model_deployment_crn: String,
    path: String,
    bucket_start_ms: i64,
    n_numeric: i64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    m2: f64,
    sketch: Option<Vec<u8>>,
    n_categorical: i64,
    value_counts: Option<String>,
    other_count: i64,
}

impl From<StoredRow> for RollupRow {
    fn from(r: StoredRow) -> Self {
        RollupRow {
            model_deployment_crn: r.model_deployment_crn,
            path: r.path,
            bucket_start_ms: r.bucket_start_ms,
            n_numeric: r.n_numeric,
            sum: r.sum,
            min: r.min,
            max: r.max,
            m2: r.m2,
            sketch: r.sketch,
            n_categorical: r.n_categorical,
            value_counts: r.value_counts,
            other_count: r.other_count,
        }
    }
}

#[derive(FromRow)]
pub(crate) struct DirtyRow {
    id: i64,
    model_deployment_crn: String,
    bucket_start_ms: i64,
}

#[derive(FromRow)]
pub(crate) struct PathRow {
    model_deployment_crn: String,
    path: String,
    admitted: bool,
    refused_values: i64,
}

impl<DB> Sql<'_, DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<f64>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Vec<u8>>: Encode<'q, DB> + Type<DB>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (Option<i64>,): FromRow<'r, DB::Row>,
    for<'r> StateRow: FromRow<'r, DB::Row>,
    for<'r> StoredRow: FromRow<'r, DB::Row>,
    for<'r> DirtyRow: FromRow<'r, DB::Row>,
    for<'r> PathRow: FromRow<'r, DB::Row>,
    for<'r> super::ReplicaRow: FromRow<'r, DB::Row>,
{
    /// The worker's progress.
    pub(crate) async fn rollup_state(&self) -> Result<RollupState, Error> {
        let row = sqlx::query_as::<DB, StateRow>(
            "SELECT rolling_to_ms, rolled_to_ms, raw_kept_from_ms, minute_kept_from_ms, hour_kept_from_ms, generation \
             FROM rollup_state WHERE id = 1",
        )
        .fetch_one(self.0)
        .await
        .map_err(Error::db("read rollup state"))?;
        Ok(RollupState {
            rolling_to_ms: row.rolling_to_ms,
            rolled_to_ms: row.rolled_to_ms,
            raw_kept_from_ms: row.raw_kept_from_ms,
            minute_kept_from_ms: row.minute_kept_from_ms,
            hour_kept_from_ms: row.hour_kept_from_ms,
            generation: row.generation,
        })
    }

    /// Every deployment that has sent a prediction, by name.
    pub(crate) async fn deployments(&self) -> Result<Vec<String>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as::<DB, (String,)>(
            "SELECT model_deployment_crn FROM deployments ORDER BY model_deployment_crn",
        )
        .fetch_all(self.0)
        .await
        .map_err(Error::db("list deployments"))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The earliest time at or after `from_ms` of anything `deployment` rolls up from: a
    /// prediction's start, replica figures, a dead letter naming it.
    pub(crate) async fn next_start_ms(&self, deployment: &str, from_ms: i64) -> Result<Option<i64>, Error> {
        let row: (Option<i64>,) = sqlx::query_as::<DB, (Option<i64>,)>(
            "SELECT min(t) FROM (\
             SELECT min(start_timestamp_ms) AS t FROM predictions WHERE model_deployment_crn = $1 AND start_timestamp_ms >= $2 \
             UNION ALL SELECT min(timestamp_ms) FROM replica_stats WHERE model_deployment_crn = $1 AND timestamp_ms >= $2 \
             UNION ALL SELECT min(received_at_ms) FROM dead_letters WHERE model_deployment_crn = $1 AND received_at_ms >= $2\
             ) AS firsts",
        )
        .bind(deployment)
        .bind(from_ms)
        .fetch_one(self.0)
        .await
        .map_err(Error::db("find the first prediction"))?;
        Ok(row.0)
    }

    /// The oldest entries of the invalidation log.
    pub(crate) async fn dirty(&self, limit: u32) -> Result<Vec<DirtyEntry>, Error> {
        let rows = sqlx::query_as::<DB, DirtyRow>(
            "SELECT id, model_deployment_crn, bucket_start_ms FROM rollup_dirty ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.0)
        .await
        .map_err(Error::db("read the invalidation log"))?;
        Ok(rows
            .into_iter()
            .map(|r| DirtyEntry {
                id: r.id,
                model_deployment_crn: r.model_deployment_crn,
                bucket_start_ms: r.bucket_start_ms,
            })
            .collect())
    }

    /// The earliest dirty minute.
    pub(crate) async fn oldest_dirty_minute(&self) -> Result<Option<i64>, Error> {
        let row: (Option<i64>,) = sqlx::query_as::<DB, (Option<i64>,)>("SELECT min(bucket_start_ms) FROM rollup_dirty")
            .fetch_one(self.0)
            .await
            .map_err(Error::db("read the invalidation log"))?;
        Ok(row.0)
    }

    /// The distinct dirty minutes of a deployment in a window.
    pub(crate) async fn dirty_minutes(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error> {
        let rows: Vec<(i64,)> = sqlx::query_as::<DB, (i64,)>(
            "SELECT DISTINCT bucket_start_ms FROM rollup_dirty WHERE model_deployment_crn = $1 \
             AND bucket_start_ms >= $2 AND bucket_start_ms < $3 ORDER BY bucket_start_ms",
        )
        .bind(deployment)
        .bind(window.start_ms)
        .bind(window.end_ms)
        .fetch_all(self.0)
        .await
        .map_err(Error::db("read the invalidation log"))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Rollup rows of a deployment (and path) in a window, by path then bucket.
    pub(crate) async fn rollup_rows(
        &self,
        resolution: Resolution,
        deployment: &str,
        path: Option<&str>,
        window: Window,
    ) -> Result<Vec<RollupRow>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE model_deployment_crn = $1 AND ($2 IS NULL OR path = $2) \
             AND bucket_start_ms >= $3 AND bucket_start_ms < $4 ORDER BY path, bucket_start_ms",
            resolution.table()
        );
        let rows = sqlx::query_as::<DB, StoredRow>(&sql)
            .bind(deployment)
            .bind(path.map(str::to_owned))
            .bind(window.start_ms)
            .bind(window.end_ms)
            .fetch_all(self.0)
            .await
            .map_err(Error::db("read rollups"))?;
        Ok(rows.into_iter().map(RollupRow::from).collect())
    }

    /// Records that the rollups of `resolution` (a minute or an hour) before `before_ms` are
    /// being removed.
    pub(crate) async fn mark_rollups_removed(
        &self,
        resolution: Resolution,
        before_ms: i64,
        now_ms: i64,
    ) -> Result<(), Error> {
        let column = match resolution {
            Resolution::Minute => "minute_kept_from_ms",
            Resolution::Hour => "hour_kept_from_ms",
            Resolution::Day => return Ok(()),
        };
        sqlx::query::<DB>(&format!(
            "UPDATE rollup_state SET {column} = CASE WHEN {column} IS NULL OR {column} < $1 THEN $1 ELSE {column} END, \
             updated_at_ms = $2 WHERE id = 1"
        ))
        .bind(before_ms)
        .bind(now_ms)
        .execute(self.0)
        .await
        .map_err(Error::db("record rollup retention"))?;
        Ok(())
    }

    /// Records that raw events before `before_ms` are being removed.
    pub(crate) async fn mark_raw_removed(&self, before_ms: i64, now_ms: i64) -> Result<(), Error> {
        sqlx::query::<DB>(
            "UPDATE rollup_state SET raw_kept_from_ms = CASE WHEN raw_kept_from_ms IS NULL OR raw_kept_from_ms < $1 \
             THEN $1 ELSE raw_kept_from_ms END, generation = generation + 1, updated_at_ms = $2 WHERE id = 1",
        )
        .bind(before_ms)
        .bind(now_ms)
        .execute(self.0)
        .await
        .map_err(Error::db("record raw retention"))?;
        Ok(())
    }

    /// Deletes rows of `table` matched by `condition` (on `$1`) in chunks of
    /// [`super::REMOVE_CHUNK`], each its own statement; returns how many. `key` names the
    /// columns that identify a row. (SQLite's plan: the chunk's keys, then a lookup each.)
    pub(crate) async fn remove_in_chunks(
        &self,
        table: &str,
        key: &str,
        condition: &str,
        bound: i64,
    ) -> Result<u64, Error> {
        let sql = format!(
            "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {})",
            super::REMOVE_CHUNK
        );
        let mut removed = 0u64;
        loop {
            let done: Vec<(i64,)> = sqlx::query_as::<DB, (i64,)>(&format!("{sql} RETURNING CAST(1 AS BIGINT)"))
                .bind(bound)
                .fetch_all(self.0)
                .await
                .map_err(Error::db("retention"))?;
            let n = done.len() as u64;
            removed += n;
            if n < super::REMOVE_CHUNK as u64 {
                return Ok(removed);
            }
        }
    }

    /// How many predictions start at or after `from_ms`.
    pub(crate) async fn count_predictions_from(&self, from_ms: i64) -> Result<u64, Error> {
        let row: (i64,) =
            sqlx::query_as::<DB, (i64,)>("SELECT count(*) FROM predictions WHERE start_timestamp_ms >= $1")
                .bind(from_ms)
                .fetch_one(self.0)
                .await
                .map_err(Error::db("count predictions"))?;
        Ok(row.0 as u64)
    }

    /// Replica figures of a deployment in a window.
    pub(crate) async fn replica_source(
        &self,
        deployment: &str,
        window: Window,
    ) -> Result<Vec<super::ReplicaRow>, Error> {
        sqlx::query_as::<DB, super::ReplicaRow>(
            "SELECT replica_id, timestamp_ms, cpu_percent, memory_bytes FROM replica_stats \
             WHERE model_deployment_crn = $1 AND timestamp_ms >= $2 AND timestamp_ms < $3 ORDER BY timestamp_ms, replica_id",
        )
        .bind(deployment)
        .bind(window.start_ms)
        .bind(window.end_ms)
        .fetch_all(self.0)
        .await
        .map_err(Error::db("read replica stats"))
    }

    /// Receive times of the dead letters naming a deployment in a window.
    pub(crate) async fn rejected_source(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error> {
        let rows: Vec<(i64,)> = sqlx::query_as::<DB, (i64,)>(
            "SELECT received_at_ms FROM dead_letters WHERE model_deployment_crn = $1 \
             AND received_at_ms >= $2 AND received_at_ms < $3 ORDER BY received_at_ms",
        )
        .bind(deployment)
        .bind(window.start_ms)
        .bind(window.end_ms)
        .fetch_all(self.0)
        .await
        .map_err(Error::db("read dead letters"))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The paths known for a deployment.
    pub(crate) async fn rollup_paths(&self, deployment: &str) -> Result<Vec<PathEntry>, Error> {
        let rows = sqlx::query_as::<DB, PathRow>(
            "SELECT model_deployment_crn, path, admitted, refused_values FROM rollup_paths \
             WHERE model_deployment_crn = $1 ORDER BY path",
        )
        .bind(deployment)
        .fetch_all(self.0)
        .await
        .map_err(Error::db("read rollup paths"))?;
        Ok(rows
            .into_iter()
            .map(|r| PathEntry {
                model_deployment_crn: r.model_deployment_crn,
                path: r.path,
                admitted: r.admitted,
                refused_values: r.refused_values,
            })
            .collect())
    }
}

/// The writes, for one backend each: `QueryBuilder` does not lend itself to code generic over
/// the database, so the same text is instantiated twice.
macro_rules! rollup_writes {
    ($module:ident, $db:ty) => {
        pub(crate) mod $module {
            use sqlx::{QueryBuilder, Transaction};

            use super::{ROWS_PER_INSERT, COLUMNS};
            use crate::rollups::{Resolution, RollupCommit, RollupRow};
            use crate::Error;

            /// Applies a worker step inside `tx`: checks the generation, replaces buckets, clears
            /// dirty entries, records paths and moves the watermark.
            pub(crate) async fn apply_commit(
                tx: &mut Transaction<'_, $db>,
                commit: &RollupCommit,
                now_ms: i64,
            ) -> Result<(), Error> {
                for (resolution, window) in &commit.replace_ranges {
                    let sql =
                        format!("DELETE FROM {} WHERE bucket_start_ms >= $1 AND bucket_start_ms < $2", resolution.table());
                    sqlx::query::<$db>(&sql)
                        .bind(window.start_ms)
                        .bind(window.end_ms)
                        .execute(&mut **tx)
                        .await
                        .map_err(Error::db("replace rollups"))?;
                }
                for (resolution, deployment, bucket) in &commit.replace_buckets {
                    let sql =
                        format!("DELETE FROM {} WHERE model_deployment_crn = $1 AND bucket_start_ms = $2", resolution.table());
                    sqlx::query::<$db>(&sql)
                        .bind(deployment.as_str())
                        .bind(*bucket)
                        .execute(&mut **tx)
                        .await
                        .map_err(Error::db("replace rollups"))?;
                }
                for resolution in Resolution::ALL {
                    let rows: Vec<&RollupRow> = commit.rows.iter().filter(|(r, _)| *r == resolution).map(|(_, row)| row).collect();
                    for chunk in rows.chunks(ROWS_PER_INSERT) {
                        let mut q = QueryBuilder::<$db>::new(format!("INSERT INTO {} ({COLUMNS}) ", resolution.table()));
                        q.push_values(chunk, |mut b, row| {
                            b.push_bind(row.model_deployment_crn.clone())
                                .push_bind(row.path.clone())
                                .push_bind(row.bucket_start_ms)
                                .push_bind(row.n_numeric)
                                .push_bind(row.sum)
                                .push_bind(row.min)
                                .push_bind(row.max)
                                .push_bind(row.m2)
                                .push_bind(row.sketch.clone())
                                .push_bind(row.n_categorical)
                                .push_bind(row.value_counts.clone())
                                .push_bind(row.other_count);
                        });
                        q.build().execute(&mut **tx).await.map_err(Error::db("insert rollups"))?;
                    }
                }
                for chunk in commit.cleared.chunks(ROWS_PER_INSERT) {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM rollup_dirty WHERE id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    q.build().execute(&mut **tx).await.map_err(Error::db("clear the invalidation log"))?;
                }
                for p in &commit.paths {
                    sqlx::query::<$db>(
                        "INSERT INTO rollup_paths (model_deployment_crn, path, admitted, refused_values, first_seen_ms) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model_deployment_crn, path) \
                         DO UPDATE SET refused_values = rollup_paths.refused_values + excluded.refused_values",
                    )
                    .bind(p.model_deployment_crn.as_str())
                    .bind(p.path.as_str())
                    .bind(p.admitted)
                    .bind(p.refused_values)
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::db("record rollup paths"))?;
                }
                // Last, so that event writes (which read this row) wait only for the end of the step.
                let moved = sqlx::query_as::<$db, (i64,)>(
                    "UPDATE rollup_state SET generation = generation + 1, rolled_to_ms = coalesce($2, rolled_to_ms), \
                     updated_at_ms = $3 WHERE id = 1 AND generation = $1 RETURNING generation",
                )
                .bind(commit.generation)
                .bind(commit.rolled_to_ms)
                .bind(now_ms)
                .fetch_optional(&mut **tx)
                .await
                .map_err(Error::db("move the rollup watermark"))?;
                if moved.is_none() {
                    return Err(Error::RollupMoved { planned_on: commit.generation });
                }
                Ok(())
            }

            /// Forgets rollups from `from_ms` on (all when `None`) and the invalidation log, and
        /// moves the watermark back, in `tx`.
        pub(crate) async fn reset(tx: &mut Transaction<'_, $db>, from_ms: Option<i64>, now_ms: i64) -> Result<(), Error> {
            for resolution in Resolution::ALL {
                let sql = format!("DELETE FROM {} WHERE bucket_start_ms >= $1", resolution.table());
                sqlx::query::<$db>(&sql)
                    .bind(from_ms.unwrap_or(i64::MIN))
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::db("reset rollups"))?;
            }
            match from_ms {
                None => {
                    for sql in ["DELETE FROM rollup_dirty", "DELETE FROM rollup_paths"] {
                        sqlx::query::<$db>(sql).execute(&mut **tx).await.map_err(Error::db("reset rollups"))?;
                    }
                }
                Some(from) => {
                    // Log entries before `from` are for minutes whose rollups are kept: they stay.
                    sqlx::query::<$db>("DELETE FROM rollup_dirty WHERE bucket_start_ms >= $1")
                        .bind(from)
                        .execute(&mut **tx)
                        .await
                        .map_err(Error::db("reset rollups"))?;
                    // The refused values are counted again as the range is rolled again.
                    sqlx::query::<$db>("UPDATE rollup_paths SET refused_values = 0")
                        .execute(&mut **tx)
                        .await
                        .map_err(Error::db("reset rollups"))?;
                }
            }
            sqlx::query::<$db>(
                "UPDATE rollup_state SET rolled_to_ms = $1, rolling_to_ms = $1, generation = generation + 1, \
                 updated_at_ms = $2 WHERE id = 1",
            )
            .bind(from_ms)
            .bind(now_ms)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("reset rollups"))?;
            Ok(())
        }

        /// Records in `tx` the deployments of a write (`first_seen_ms` the write's receive time).
            pub(crate) async fn note_deployments(
                tx: &mut Transaction<'_, $db>,
                deployments: &[&str],
                at_ms: i64,
            ) -> Result<(), Error> {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO deployments (model_deployment_crn, first_seen_ms) ");
                q.push_values(deployments, |mut b, d| {
                    b.push_bind(d.to_string()).push_bind(at_ms);
                });
                q.push(" ON CONFLICT (model_deployment_crn) DO NOTHING");
                q.build().execute(&mut **tx).await.map_err(Error::db("record deployments"))?;
                Ok(())
            }

            /// Records in `tx` which build and model each deployment's new predictions name.
            pub(crate) async fn note_lineage(
                tx: &mut Transaction<'_, $db>,
                lineage: &[(&str, &str, &str)],
                at_ms: i64,
            ) -> Result<(), Error> {
                for chunk in lineage.chunks(ROWS_PER_INSERT) {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO deployment_lineage (model_deployment_crn, model_build_crn, model_crn, first_seen_ms) ",
                    );
                    q.push_values(chunk, |mut b, (d, build, model)| {
                        b.push_bind(d.to_string()).push_bind(build.to_string()).push_bind(model.to_string()).push_bind(at_ms);
                    });
                    q.push(" ON CONFLICT DO NOTHING");
                    q.build().execute(&mut **tx).await.map_err(Error::db("record deployment lineage"))?;
                }
                Ok(())
            }

            /// Adds entries to the invalidation log in `tx`.
            pub(crate) async fn mark_dirty(tx: &mut Transaction<'_, $db>, minutes: &[(String, i64)]) -> Result<(), Error> {
                for chunk in minutes.chunks(ROWS_PER_INSERT) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO rollup_dirty (model_deployment_crn, bucket_start_ms) ");
                    q.push_values(chunk, |mut b, (d, m)| {
                        b.push_bind(d.clone()).push_bind(*m);
                    });
                    q.build().execute(&mut **tx).await.map_err(Error::db("mark rollups dirty"))?;
                }
                Ok(())
            }
        }
    };
}

rollup_writes!(postgres, sqlx::Postgres);
rollup_writes!(sqlite, sqlx::Sqlite);
