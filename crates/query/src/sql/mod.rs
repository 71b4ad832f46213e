//! SQL over the store through DataFusion: one session per caller with the store's tables, the
//! JSON functions of `datafusion-functions-json`, read-only planning, and budgets on time, rows
//! and memory, so one query cannot take the server down.
//!
//! Tables: `predictions`, `delayed_metrics`, `labelled_predictions` (predictions with their
//! delayed metrics merged in, later keys winning, as `read_metrics` answers), `aggregate_metrics`,
//! `dead_letters`, `rollups_1m`, `rollups_1h`, `rollups_1d`. A deployment-scoped caller sees its
//! deployment's rows only, in every table: the store adds the condition to each scan itself.

mod functions;
pub mod output;
pub(crate) mod provider;
mod pushdown;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use driftline_store::scan::ScanTable;
use driftline_store::Store;
use futures::{Stream, StreamExt};

/// Limits of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Longest a query may run, its answer streamed included.
    pub time: Duration,
    /// Most rows an answer may have.
    pub rows: u64,
    /// Most memory the query's operators may hold (sorts, aggregates, joins).
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    /// 30 s, 1,000,000 rows, 512 MiB.
    fn default() -> Self {
        SqlLimits { time: Duration::from_secs(30), rows: 1_000_000, memory_bytes: 512 << 20 }
    }
}

/// What can go wrong with a query.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query is not one this layer runs (a syntax error, an unknown table or column, a
    /// statement that would change something, more than one statement): the caller's to fix.
    #[error("{0}")]
    Query(String),
    /// The query ran into one of its limits.
    #[error("{0}")]
    Limit(String),
    /// Running it failed (the store, or a bug).
    #[error("{0}")]
    Failed(String),
}

impl SqlError {
    pub(crate) fn of(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => SqlError::Query(clean(&e)),
            DataFusionError::ResourcesExhausted(_) => SqlError::Limit(format!(
                "the query needs more memory than one query may use ({}); aggregate or filter more, or select fewer rows",
                clean(&e)
            )),
            // The store's own error says what failed, without DataFusion's wrapping.
            DataFusionError::External(inner) => SqlError::Failed(inner.to_string()),
            _ => SqlError::Failed(clean(&e)),
        }
    }
}

/// DataFusion's message without its nesting of contexts.
fn clean(e: &DataFusionError) -> String {
    e.find_root().to_string()
}

/// The catalog and schema the tables are in, for clients that name them in full
/// (`driftline.public.predictions`).
pub const CATALOG: &str = "driftline";
pub const SCHEMA: &str = "public";

/// A session over `store` for a caller limited to `scope` (a deployment) if given.
pub fn session(store: Arc<dyn Store>, scope: Option<String>, limits: &SqlLimits) -> Result<SessionContext, SqlError> {
    let mut config = SessionConfig::new()
        .with_information_schema(false)
        .with_target_partitions(2)
        .with_default_catalog_and_schema(CATALOG, SCHEMA);
    let options = config.options_mut();
    options.sql_parser.dialect = "PostgreSQL".parse().map_err(|e: DataFusionError| SqlError::Failed(e.to_string()))?;
    // Text stays Utf8 (not the view type) so filters on CRNs reach the store and every client
    // reads plain strings.
    options.sql_parser.map_string_types_to_utf8view = false;
    // Operators over their memory stop the query; nothing spills to disk.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .build_arc()
        .map_err(SqlError::of)?;
    let mut ctx = SessionContext::new_with_config_rt(config, runtime);
    datafusion_functions_json::register_all(&mut ctx).map_err(SqlError::of)?;
    functions::register(&ctx);
    ctx.add_optimizer_rule(Arc::new(pushdown::PushAggregates));
    for table in ScanTable::ALL {
        let provider = provider::ScanProvider::new(table, store.clone(), scope.clone());
        ctx.register_table(table.name(), Arc::new(provider)).map_err(SqlError::of)?;
    }
    Ok(ctx)
}

/// The tables of every session, each with its schema.
pub fn tables() -> impl Iterator<Item = (&'static str, SchemaRef)> {
    ScanTable::ALL.into_iter().map(|t| (t.name(), provider::schema(t)))
}

/// An answer's record batches, within the query's limits.
pub type Batches = std::pin::Pin<Box<dyn Stream<Item = Result<RecordBatch, SqlError>> + Send>>;

/// A running query: its answer's schema and its record batches.
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Batches,
}

/// A planned query, not started: its answer's schema is known.
pub struct Planned {
    frame: datafusion::dataframe::DataFrame,
    /// The answer's schema.
    pub schema: SchemaRef,
    deadline: tokio::time::Instant,
}

/// Plans `sql` (one read-only statement) in `ctx`; the query's time budget starts here.
pub async fn plan(ctx: &SessionContext, sql: &str, limits: &SqlLimits) -> Result<Planned, SqlError> {
    let deadline = tokio::time::Instant::now() + limits.time;
    let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let frame = tokio::time::timeout_at(deadline, ctx.sql_with_options(sql, read_only))
        .await
        .map_err(|_| over_time(limits))?
        .map_err(SqlError::of)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    if let Some(field) = schema.fields().iter().find(|f| matches!(f.data_type(), DataType::Union(..))) {
        return Err(SqlError::Query(format!(
            "column `{}` holds JSON values of mixed types, which no answer format carries; select it through a typed \
             function (json_get_str, json_get_float, json_get_int, json_get_bool) or as text with ->> or json_as_text",
            field.name()
        )));
    }
    Ok(Planned { frame, schema, deadline })
}

/// Plans and starts `sql` (one read-only statement) in `ctx`.
pub async fn run(ctx: &SessionContext, sql: &str, limits: &SqlLimits) -> Result<Answer, SqlError> {
    plan(ctx, sql, limits).await?.start(limits).await
}

impl Planned {
    /// Starts the query: its batches, within `limits`.
    pub async fn start(self, limits: &SqlLimits) -> Result<Answer, SqlError> {
        let Planned { frame, schema, deadline } = self;
        let stream = frame.execute_stream().await.map_err(SqlError::of)?;
        let limits = *limits;
        let batches = futures::stream::unfold(Some((stream, 0u64)), move |state| async move {
            let (mut stream, rows) = state?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => Some((Err(over_time(&limits)), None)),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((Err(SqlError::of(e)), None)),
                Ok(Some(Ok(batch))) => {
                    let rows = rows + batch.num_rows() as u64;
                    if rows > limits.rows {
                        let message = format!(
                            "the answer has more than {} rows, the most one query may return; aggregate, filter or add a LIMIT",
                            limits.rows
                        );
                        return Some((Err(SqlError::Limit(message)), None));
                    }
                    Some((Ok(batch), Some((stream, rows))))
                }
            }
        });
        Ok(Answer { schema, batches: Box::pin(batches) })
    }
}

fn over_time(limits: &SqlLimits) -> SqlError {
    SqlError::Limit(format!(
        "the query ran longer than {} s, the most one query may take; filter on model_deployment_crn and \
         start_timestamp_ms so less is read, or aggregate in rollups_1h",
        limits.time.as_secs()
    ))
}
