//! Day partitions of `predictions`, made ahead of time by a background task and never inside a
//! write: a batch whose events fall on days without a partition lands in `predictions_default`
//! (stored and read like any other row), so no write ever waits for DDL or takes a DDL lock.
//!
//! A new day's table is created on its own, given a CHECK constraint that matches its bounds, and
//! then attached. `ATTACH PARTITION` takes only `SHARE UPDATE EXCLUSIVE` on `predictions`, which
//! neither reads nor writes conflict with, and the CHECK spares it the validation scan. It still
//! has to look at the default partition (rows of that day that arrived early move out of it
//! first), whose lock can wait behind a long read of it, so every
//! step runs under a short `lock_timeout`: a step that cannot get its locks gives up and is
//! retried at the next round, days before the partition is needed.

use std::time::Duration;

use driftline_core::time::{civil_date, day_of, now_ms, DAY_MS};
use sqlx::PgPool;

use crate::Error;

/// The longest a partition step waits for a lock before it gives up until the next round.
const DDL_LOCK_TIMEOUT: &str = "2s";

/// Name of the partition holding `day` (days since 1970-01-01).
pub fn partition_name(day: i64) -> String {
    let (y, m, d) = civil_date(day);
    format!("predictions_p{y:04}{m:02}{d:02}")
}

/// The day (since 1970-01-01) a partition named by [`partition_name`] holds.
pub fn day_of_partition(name: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(name.strip_prefix("predictions_p")?, "%Y%m%d").ok()?;
    Some((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days())
}

/// Which days from yesterday to `days_ahead` days ahead have no partition yet.
pub(crate) async fn missing_days(pool: &PgPool, days_ahead: u32) -> Result<Vec<i64>, Error> {
    let today = day_of(now_ms());
    let existing = partitions(pool).await?;
    Ok((today - 1..=today + i64::from(days_ahead)).filter(|d| !existing.contains(&partition_name(*d))).collect())
}

/// Makes the partitions from yesterday to `days_ahead` days ahead that are missing; returns how
/// many it made. A day whose locks are busy is left for the next round.
pub(crate) async fn make_ahead(pool: &PgPool, days_ahead: u32) -> Result<usize, Error> {
    let mut made = 0;
    for day in missing_days(pool, days_ahead).await? {
        match attach_day(pool, day).await {
            Ok(()) => made += 1,
            Err(e) if e.is_timeout() => {
                tracing::warn!(partition = %partition_name(day), "a partition could not get its locks; trying again later");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(made)
}

/// Creates and attaches the partition of `day`, in one short transaction.
pub(crate) async fn attach_day(pool: &PgPool, day: i64) -> Result<(), Error> {
    let name = partition_name(day);
    let (from, to) = (day * DAY_MS, (day + 1) * DAY_MS);
    let mut tx = pool.begin().await.map_err(Error::db("begin partition creation"))?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await
        .map_err(Error::db("create partition"))?;
    let statements = [
        format!("CREATE TABLE IF NOT EXISTS {name} (LIKE predictions INCLUDING DEFAULTS)"),
        format!(
            "ALTER TABLE {name} ADD CONSTRAINT {name}_bounds \
             CHECK (start_timestamp_ms IS NOT NULL AND start_timestamp_ms >= {from} AND start_timestamp_ms < {to})"
        ),
        // Rows of this day that arrived before it had a partition move in with it.
        format!(
            "WITH moved AS (DELETE FROM predictions_default WHERE start_timestamp_ms >= {from} \
             AND start_timestamp_ms < {to} RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ),
        format!("ALTER TABLE predictions ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"),
        // Implied by the partition bounds from now on.
        format!("ALTER TABLE {name} DROP CONSTRAINT {name}_bounds"),
    ];
    for sql in &statements {
        match sqlx::query(sql).execute(&mut *tx).await {
            Ok(_) => {}
            // Another process attached it meanwhile.
            Err(e) if is_duplicate(&e) => return Ok(()),
            Err(e) => return Err(Error::db("create partition")(e)),
        }
    }
    tx.commit().await.map_err(Error::db("commit partition creation"))
}

/// Whether `e` says the object exists already (a concurrent creation won).
fn is_duplicate(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code());
    matches!(code.as_deref(), Some("42P07" | "42710" | "23505" | "42P16" | "42P17"))
}

/// The day partitions that exist, by name (the default partition not included).
pub(crate) async fn partitions(pool: &PgPool) -> Result<Vec<String>, Error> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'predictions'::regclass AND c.relname <> 'predictions_default' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .map_err(Error::db("list partitions"))
}

/// Runs [`make_ahead`] now and then every `every` until the task is aborted.
pub(crate) async fn maintain(pool: PgPool, days_ahead: u32, every: Duration) {
    loop {
        match make_ahead(&pool, days_ahead).await {
            Ok(0) => {}
            Ok(made) => tracing::info!(made, days_ahead, "made day partitions ahead"),
            Err(e) => tracing::warn!(error = %e, "cannot make day partitions ahead; trying again later"),
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_named_by_utc_date() {
        assert_eq!(partition_name(day_of(1_700_000_000_000)), "predictions_p20231114");
        assert_eq!(day_of_partition("predictions_p20231114"), Some(day_of(1_700_000_000_000)));
        assert_eq!(day_of_partition("predictions_default"), None);
    }
}
