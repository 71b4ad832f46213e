//! What both backends share: their statements, written once over a pool of either database
//! (both take `$N` placeholders). The statements live beside their concern (`keys.rs`,
//! `jobs.rs`) as methods of [`Sql`], whose trait bounds are stated once per concern.

use sqlx::{Database, Pool};

/// A pool of either backend, on which the shared statements run.
pub(crate) struct Sql<'p, DB: Database>(pub(crate) &'p Pool<DB>);
