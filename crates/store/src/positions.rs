//! Source positions move only from where their writer found them: one implementation for both
//! backends (both accept `$N` placeholders).

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use crate::batch::SourcePosition;
use crate::Error;

/// Moves each position from its `from` offset to its `next_offset`, inside the write's
/// transaction; fails with [`Error::PositionMoved`] when the stored position is elsewhere.
/// Positions go in partition order, so concurrent writers take the row locks in one order.
pub(crate) async fn advance<DB>(conn: &mut DB::Connection, positions: &[SourcePosition], at: i64) -> Result<(), Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB> + sqlx::Decode<'q, DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let mut ordered: Vec<&SourcePosition> = positions.iter().collect();
    ordered.sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    for pos in ordered {
        // The update moves the row only from `from`; the insert happens only when there is no
        // row. Either returns the row it wrote; no row means the position was elsewhere.
        let updated = sqlx::query_scalar::<DB, i64>(
            "UPDATE ingest_offsets SET next_offset = $1, updated_at_ms = $2 \
             WHERE consumer_group = $3 AND topic = $4 AND partition = $5 AND next_offset = $6 RETURNING next_offset",
        )
        .bind(pos.next_offset)
        .bind(at)
        .bind(pos.group.as_str())
        .bind(pos.topic.as_str())
        .bind(pos.partition)
        .bind(pos.from)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("store source positions"))?;
        if updated.is_some() {
            continue;
        }
        let inserted = sqlx::query_scalar::<DB, i64>(
            "INSERT INTO ingest_offsets (next_offset, updated_at_ms, consumer_group, topic, partition) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING next_offset",
        )
        .bind(pos.next_offset)
        .bind(at)
        .bind(pos.group.as_str())
        .bind(pos.topic.as_str())
        .bind(pos.partition)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("store source positions"))?;
        if inserted.is_some() {
            continue;
        }
        let stored: Option<i64> = sqlx::query_scalar::<DB, i64>(
            "SELECT next_offset FROM ingest_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
        )
        .bind(pos.group.as_str())
        .bind(pos.topic.as_str())
        .bind(pos.partition)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("read source positions"))?;
        return Err(Error::PositionMoved {
            group: pos.group.clone(),
            topic: pos.topic.clone(),
            partition: pos.partition,
            from: pos.from,
            stored,
        });
    }
    Ok(())
}
