//! Series answers through the SQL layer: the rows a series is summarised from (predictions with
//! their delayed metrics, replica figures, dead letters, rollups) are read by DataFusion plans
//! over the same providers SQL's tables are, in the caller's scope, and summarised by the
//! rollup crate's code, so the answer is the one the worker's own reads would give.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{col, lit, Expr};
use driftline_rollup::rows::{RowStream, Rows};
use driftline_rollup::{Error, Series, SeriesQuery, SummaryOptions};
use driftline_store::rollups::{ReplicaRow, RollupRow, SourceRow};
use driftline_store::scan::ScanTable;
use driftline_store::{Resolution, Store, Window};
use futures::TryStreamExt;

use crate::sql::provider::ScanProvider;
use crate::sql::SqlError;

/// Reads `query` for a caller limited to `scope` (a deployment) if given.
pub async fn series(
    store: Arc<dyn Store>,
    scope: Option<String>,
    query: &SeriesQuery,
    options: SummaryOptions,
) -> Result<Series, Error> {
    let rows = PlannedRows::new(store.clone(), scope);
    driftline_rollup::series_from(store.as_ref(), &rows, query, options).await
}

/// The rows of series reads, through plans over the SQL layer's providers.
#[derive(Clone)]
pub struct PlannedRows {
    store: Arc<dyn Store>,
    scope: Option<String>,
}

impl PlannedRows {
    /// Rows of a caller limited to `scope` (a deployment) if given.
    pub fn new(store: Arc<dyn Store>, scope: Option<String>) -> Self {
        PlannedRows { store, scope }
    }

    /// [`ScanProvider::read_ordered`] in this caller's scope.
    async fn read(
        &self,
        table: ScanTable,
        filter: Expr,
        columns: &[&str],
        order: &[&str],
    ) -> Result<SendableRecordBatchStream, DataFusionError> {
        ScanProvider::read_ordered(table, self.store.clone(), self.scope.clone(), filter, columns, order).await
    }

    /// Every row of a started plan, each made by `row` from a batch and an index.
    async fn collect<T>(
        what: &'static str,
        plan: Result<SendableRecordBatchStream, DataFusionError>,
        row: impl Fn(&RecordBatch, usize) -> T,
    ) -> Result<Vec<T>, Error> {
        let batches: Vec<RecordBatch> = plan.map_err(failed(what))?.try_collect().await.map_err(failed(what))?;
        let mut out = Vec::new();
        for batch in &batches {
            out.extend((0..batch.num_rows()).map(|i| row(batch, i)));
        }
        Ok(out)
    }
}

/// Rows of `deployment` whose `time` lies in `window`.
fn selected(deployment: &str, time: &str, window: Window) -> Expr {
    col("model_deployment_crn")
        .eq(lit(deployment.to_owned()))
        .and(col(time).gt_eq(lit(window.start_ms)))
        .and(col(time).lt(lit(window.end_ms)))
}

/// Columns of `predictions` a series reads, in [`SourceRow`] order.
const PREDICTION_COLUMNS: [&str; 8] = [
    "model_deployment_crn",
    "uuid",
    "model_crn",
    "model_build_crn",
    "start_timestamp_ms",
    "end_timestamp_ms",
    "metrics",
    "delayed_metrics",
];

/// Columns of the rollup tables, in [`RollupRow`] order.
const ROLLUP_COLUMNS: [&str; 12] = [
    "model_deployment_crn",
    "path",
    "bucket_start_ms",
    "n_numeric",
    "sum",
    "min",
    "max",
    "m2",
    "sketch",
    "n_categorical",
    "value_counts",
    "other_count",
];

#[async_trait]
impl Rows for PlannedRows {
    fn predictions(&self, deployment: &str, window: Window) -> RowStream {
        let (rows, filter) = (self.clone(), selected(deployment, "start_timestamp_ms", window));
        let started = async move {
            let order = ["start_timestamp_ms", "uuid"];
            let what = "predictions";
            let batches =
                rows.read(ScanTable::Predictions, filter, &PREDICTION_COLUMNS, &order).await.map_err(failed(what))?;
            Ok::<_, Error>(
                batches.map_err(failed(what)).map_ok(|b| futures::stream::iter(source_rows(&b).into_iter().map(Ok))),
            )
        };
        Box::pin(futures::stream::once(started).try_flatten().try_flatten())
    }

    async fn replicas(&self, deployment: &str, window: Window) -> Result<Vec<ReplicaRow>, Error> {
        let columns = ["replica_id", "timestamp_ms", "cpu_percent", "memory_bytes"];
        let filter = selected(deployment, "timestamp_ms", window);
        let plan = self.read(ScanTable::ReplicaStats, filter, &columns, &["timestamp_ms", "replica_id"]).await;
        Self::collect("replica stats", plan, |b, i| ReplicaRow {
            replica_id: b.column(0).as_string::<i32>().value(i).to_owned(),
            timestamp_ms: b.column(1).as_primitive::<Int64Type>().value(i),
            cpu_percent: b.column(2).as_primitive::<Float64Type>().value(i),
            memory_bytes: b.column(3).as_primitive::<Int64Type>().value(i),
        })
        .await
    }

    async fn rejected(&self, deployment: &str, window: Window) -> Result<Vec<i64>, Error> {
        let filter = selected(deployment, "received_at_ms", window);
        let plan = self.read(ScanTable::DeadLetters, filter, &["received_at_ms"], &["received_at_ms"]).await;
        Self::collect("dead letters", plan, |b, i| b.column(0).as_primitive::<Int64Type>().value(i)).await
    }

    async fn rollups(
        &self,
        resolution: Resolution,
        deployment: &str,
        path: &str,
        window: Window,
    ) -> Result<Vec<RollupRow>, Error> {
        let filter = selected(deployment, "bucket_start_ms", window).and(col("path").eq(lit(path.to_owned())));
        let plan = self.read(ScanTable::Rollups(resolution), filter, &ROLLUP_COLUMNS, &["bucket_start_ms"]).await;
        Self::collect("rollups", plan, rollup_row).await
    }
}

/// The rows of a batch of [`PREDICTION_COLUMNS`].
fn source_rows(batch: &RecordBatch) -> Vec<SourceRow> {
    let text = |i: usize| batch.column(i).as_string::<i32>();
    let int = |i: usize| batch.column(i).as_primitive::<Int64Type>();
    let delayed = text(7);
    (0..batch.num_rows())
        .map(|row| SourceRow {
            model_deployment_crn: text(0).value(row).to_owned(),
            uuid: text(1).value(row).to_owned(),
            model_crn: text(2).value(row).to_owned(),
            model_build_crn: text(3).value(row).to_owned(),
            start_timestamp_ms: int(4).value(row),
            end_timestamp_ms: int(5).value(row),
            metrics: text(6).value(row).to_owned(),
            delayed: (!delayed.is_null(row)).then(|| delayed.value(row).to_owned()),
        })
        .collect()
}

/// Row `i` of a batch of [`ROLLUP_COLUMNS`].
fn rollup_row(batch: &RecordBatch, i: usize) -> RollupRow {
    let text = |c: usize| batch.column(c).as_string::<i32>();
    let int = |c: usize| batch.column(c).as_primitive::<Int64Type>().value(i);
    let float = |c: usize| batch.column(c).as_primitive::<Float64Type>();
    let maybe = |c: usize| (!float(c).is_null(i)).then(|| float(c).value(i));
    let sketch = batch.column(8).as_binary::<i32>();
    let counts = text(10);
    RollupRow {
        model_deployment_crn: text(0).value(i).to_owned(),
        path: text(1).value(i).to_owned(),
        bucket_start_ms: int(2),
        n_numeric: int(3),
        sum: float(4).value(i),
        min: maybe(5),
        max: maybe(6),
        m2: float(7).value(i),
        sketch: (!sketch.is_null(i)).then(|| sketch.value(i).to_vec()),
        n_categorical: int(9),
        value_counts: (!counts.is_null(i)).then(|| counts.value(i).to_owned()),
        other_count: int(11),
    }
}

/// A failed plan as the rollup crate's error, with the SQL layer's message for it (the store's
/// own where the store failed).
fn failed(what: &'static str) -> impl Fn(DataFusionError) -> Error {
    move |e| Error::Read { what, detail: SqlError::of(e).to_string() }
}
