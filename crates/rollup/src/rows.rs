//! Where summaries are made from: the rows of the store's tables, read by the store's own
//! queries ([`StoreRows`], what the worker rolls from) or by another reader with the same
//! answers (the query layer's plans, which serve series answers).

use std::pin::Pin;

use async_trait::async_trait;
use driftline_store::rollups::{ReplicaRow, RollupRow, SourceRow};
use driftline_store::{Resolution, Store, Window};
use futures::{Stream, TryStreamExt};

use crate::Error;

/// A stream of predictions with their delayed metrics.
pub type RowStream = Pin<Box<dyn Stream<Item = Result<SourceRow, Error>> + Send>>;

/// The rows rolling and series reads take.
#[async_trait]
pub trait Rows: Send + Sync {
    /// The deployment's predictions starting in `window`, each with its delayed metrics (those
    /// naming the deployment or none, oldest first), by start time then UUID.
    fn predictions(&self, deployment: &str, window: Window) -> RowStream;

    /// The deployment's replica figures in `window`.
    async fn replicas(&self, deployment: &str, window: Window) -> Result<Vec<ReplicaRow>, Error>;

    /// Receive times of the dead letters naming the deployment, in `window`.
    async fn rejected(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error>;

    /// The deployment's rollups of `path` at `resolution` whose buckets start in `window`, by
    /// bucket start.
    async fn rollups(
        &self,
        resolution: Resolution,
        deployment: &str,
        path: &str,
        window: Window,
    ) -> Result<Vec<RollupRow>, Error>;
}

/// The store's own queries.
#[derive(Clone, Copy)]
pub struct StoreRows<'a>(pub &'a dyn Store);

#[async_trait]
impl Rows for StoreRows<'_> {
    fn predictions(&self, deployment: &str, window: Window) -> RowStream {
        Box::pin(self.0.rollup_source(deployment, window).map_err(Error::from))
    }

    async fn replicas(&self, deployment: &str, window: Window) -> Result<Vec<ReplicaRow>, Error> {
        Ok(self.0.replica_source(deployment, window).await?)
    }

    async fn rejected(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error> {
        Ok(self.0.rejected_source(deployment, window).await?)
    }

    async fn rollups(
        &self,
        resolution: Resolution,
        deployment: &str,
        path: &str,
        window: Window,
    ) -> Result<Vec<RollupRow>, Error> {
        Ok(self.0.rollup_rows(resolution, deployment, Some(path), window).await?)
    }
}
