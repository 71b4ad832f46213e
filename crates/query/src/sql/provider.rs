//! The store's tables as DataFusion tables: a provider per table that hands the store the
//! projection, the filters it applies exactly and the limit, and a leaf plan that streams the
//! scanned rows as Arrow record batches. The caller's deployment scope travels inside the
//! provider and is added to every scan by the store, whatever the query's filters.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, Int64Builder, RecordBatch, RecordBatchOptions, StringBuilder,
};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use driftline_store::scan::{
    Cell, ColumnKind, JsonType, ScanFilter, ScanOp, ScanRequest, ScanStream, ScanTable, ScanValue,
};
use driftline_store::Store;
use futures::StreamExt;

/// The Arrow schema of a table.
pub(crate) fn schema(table: ScanTable) -> SchemaRef {
    let fields: Vec<Field> = table
        .columns()
        .iter()
        .map(|c| {
            let t = match c.kind {
                ColumnKind::Int => DataType::Int64,
                ColumnKind::Float => DataType::Float64,
                ColumnKind::Text | ColumnKind::Json => DataType::Utf8,
                ColumnKind::Bytes => DataType::Binary,
            };
            Field::new(c.name, t, c.nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One table of the store, as one caller sees it.
pub(crate) struct ScanProvider {
    table: ScanTable,
    schema: SchemaRef,
    store: Arc<dyn Store>,
    scope: Option<String>,
    /// Columns every scan's rows come ordered by (ascending), declared to the planner so that a
    /// sort on them is not done twice.
    order_by: Vec<usize>,
}

impl fmt::Debug for ScanProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanProvider").field("table", &self.table).field("scope", &self.scope).finish()
    }
}

impl ScanProvider {
    pub(crate) fn new(table: ScanTable, store: Arc<dyn Store>, scope: Option<String>) -> Self {
        ScanProvider { table, schema: schema(table), store, scope, order_by: Vec::new() }
    }

    /// The table with its rows ordered by the columns `by`, ascending.
    pub(crate) fn ordered(table: ScanTable, store: Arc<dyn Store>, scope: Option<String>, by: &[&str]) -> Self {
        let order_by = by
            .iter()
            .map(|name| table.columns().iter().position(|c| c.name == *name).expect("ordered by a column of the table"))
            .collect();
        ScanProvider { order_by, ..ScanProvider::new(table, store, scope) }
    }

    /// Reads `columns` of the rows of `table` that pass `filter`, ordered by `order` (which the
    /// store sends them in: the plan does not sort), for a caller limited to `scope`: the plan,
    /// on one partition (the store's one ordered stream, nothing to repartition or merge),
    /// started.
    pub(crate) async fn read_ordered(
        table: ScanTable,
        store: Arc<dyn Store>,
        scope: Option<String>,
        filter: Expr,
        columns: &[&str],
        order: &[&str],
    ) -> Result<datafusion::physical_plan::SendableRecordBatchStream> {
        use datafusion::prelude::{col, SessionConfig, SessionContext};
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let provider = ScanProvider::ordered(table, store, scope, order);
        ctx.read_table(Arc::new(provider))?
            .filter(filter)?
            .select_columns(columns)?
            .sort(order.iter().map(|c| col(*c).sort(true, false)).collect())?
            .execute_stream()
            .await
    }

    pub(crate) fn table(&self) -> ScanTable {
        self.table
    }

    /// The deployment the caller is limited to, if any.
    pub(crate) fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

/// The store's filter for `expr`, when the store applies it, exactly or as a superset (see
/// [`ScanFilter::exact`]).
pub(crate) fn filter(table: ScanTable, expr: &Expr) -> Option<ScanFilter> {
    let f = match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let mut any = Vec::new();
            for side in [left, right] {
                match filter(table, side)? {
                    ScanFilter::Any(more) => any.extend(more),
                    one => any.push(one),
                }
            }
            ScanFilter::Any(any)
        }
        // `WHERE json_get_bool(metrics, …)`.
        Expr::ScalarFunction(_) => {
            let (column, path, as_type) = json_path(table, expr)?;
            json_compare(column, path, as_type, Operator::Eq, &ScalarValue::Boolean(Some(true)))?
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) => compare(table, &c.name, *op, v)?,
            (Expr::Literal(v, _), Expr::Column(c)) => compare(table, &c.name, op.swap()?, v)?,
            // A typed JSON read compared with a literal, on either side.
            (read, Expr::Literal(v, _)) => {
                let (column, path, as_type) = json_path(table, read)?;
                json_compare(column, path, as_type, *op, v)?
            }
            (Expr::Literal(v, _), read) => {
                let (column, path, as_type) = json_path(table, read)?;
                json_compare(column, path, as_type, op.swap()?, v)?
            }
            _ => return None,
        },
        Expr::InList(InList { expr, list, negated: false }) => {
            let Expr::Column(column) = expr.as_ref() else { return None };
            let any = list
                .iter()
                .map(|item| match item {
                    Expr::Literal(v, _) => compare(table, &column.name, Operator::Eq, v),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            ScanFilter::Any(any)
        }
        _ => return None,
    };
    f.sendable(table).then_some(f)
}

/// `json_get_str`, `json_get_float` or `json_get_bool` of a column and object keys: the column,
/// the keys and the type read.
pub(crate) fn json_path(table: ScanTable, expr: &Expr) -> Option<(usize, Vec<String>, JsonType)> {
    let Expr::ScalarFunction(f) = expr else { return None };
    let as_type = match f.name() {
        "json_get_str" => JsonType::Str,
        "json_get_float" => JsonType::Float,
        "json_get_bool" => JsonType::Bool,
        _ => return None,
    };
    let (first, keys) = f.args.split_first()?;
    let Expr::Column(c) = first else { return None };
    let column = table.columns().iter().position(|col| col.name == c.name)?;
    // Object keys only: an integer argument is an array index, which is not sent.
    let path = keys
        .iter()
        .map(|k| match k {
            Expr::Literal(
                ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => Some(s.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((column, path, as_type))
}

fn json_compare(
    column: usize,
    path: Vec<String>,
    as_type: JsonType,
    op: Operator,
    value: &ScalarValue,
) -> Option<ScanFilter> {
    let value = match (as_type, value) {
        (JsonType::Float, ScalarValue::Float64(Some(v))) => ScanValue::Float(*v),
        (JsonType::Float, ScalarValue::Int64(Some(v))) => ScanValue::Float(*v as f64),
        (JsonType::Bool, ScalarValue::Boolean(Some(b))) => ScanValue::Bool(*b),
        (
            JsonType::Str,
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
        ) => ScanValue::Text(s.clone()),
        _ => return None,
    };
    Some(ScanFilter::Json { column, path, as_type, op: scan_op(op)?, value })
}

fn scan_op(op: Operator) -> Option<ScanOp> {
    Some(match op {
        Operator::Eq => ScanOp::Eq,
        Operator::NotEq => ScanOp::NotEq,
        Operator::Lt => ScanOp::Lt,
        Operator::LtEq => ScanOp::LtEq,
        Operator::Gt => ScanOp::Gt,
        Operator::GtEq => ScanOp::GtEq,
        _ => return None,
    })
}

fn compare(table: ScanTable, name: &str, op: Operator, value: &ScalarValue) -> Option<ScanFilter> {
    let column = table.columns().iter().position(|c| c.name == name)?;
    let op = scan_op(op)?;
    let value = match value {
        ScalarValue::Int64(Some(v)) => ScanValue::Int(*v),
        ScalarValue::Int32(Some(v)) => ScanValue::Int(i64::from(*v)),
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            ScanValue::Text(s.clone())
        }
        _ => return None,
    };
    Some(ScanFilter::Compare { column, op, value })
}

#[async_trait]
impl TableProvider for ScanProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match filter(self.table, f) {
                Some(f) if f.exact(self.table) => TableProviderFilterPushDown::Exact,
                // Sent, and applied again by DataFusion.
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.table.columns().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&columns)?);
        // The ordering, as output columns, when every column of it is in the output.
        let ordering: Option<Vec<PhysicalSortExpr>> = self
            .order_by
            .iter()
            .map(|&c| {
                let at = columns.iter().position(|&o| o == c)?;
                let column = Column::new(self.table.columns()[c].name, at);
                Some(PhysicalSortExpr::new(Arc::new(column), SortOptions { descending: false, nulls_first: false }))
            })
            .collect();
        let request = ScanRequest {
            table: self.table,
            columns,
            filters: filters.iter().filter_map(|f| filter(self.table, f)).collect(),
            scope: self.scope.clone(),
            limit: limit.map(|n| n as u64),
            order_by: self.order_by.clone(),
            aggregate: None,
        };
        Ok(Arc::new(ScanExec::new(request, schema, self.store.clone(), ordering.filter(|o| !o.is_empty()))))
    }
}

/// Streams one scan of the store as record batches.
pub(crate) struct ScanExec {
    request: ScanRequest,
    /// The SQL the store sends, shown by `EXPLAIN`.
    sql: String,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    store: Arc<dyn Store>,
}

impl ScanExec {
    /// The scan `request` of `store`, whose rows have `schema` and come in `ordering` if given.
    pub(crate) fn new(
        request: ScanRequest,
        schema: SchemaRef,
        store: Arc<dyn Store>,
        ordering: Option<Vec<PhysicalSortExpr>>,
    ) -> Self {
        let sql = store.scan_sql(&request);
        let equivalence = match ordering {
            Some(ordering) => EquivalenceProperties::new_with_orderings(schema.clone(), [ordering]),
            None => EquivalenceProperties::new(schema.clone()),
        };
        let properties = Arc::new(PlanProperties::new(
            equivalence,
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        ScanExec { request, sql, schema, properties, store }
    }
}

impl fmt::Debug for ScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanExec").field("sql", &self.sql).finish()
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => write!(f, "sql={}", self.sql),
            _ => write!(f, "ScanExec: table={}, sql={}", self.request.table.name(), self.sql),
        }
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &str {
        "ScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("a store scan has no children".into()))
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("a store scan has one partition, not {partition}")));
        }
        let rows = self.store.scan(self.request.clone());
        let batches = batches(rows, self.schema.clone(), self.request.clone(), context.session_config().batch_size());
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

/// Groups scanned rows into record batches of up to `size` rows.
fn batches(
    rows: ScanStream,
    schema: SchemaRef,
    request: ScanRequest,
    size: usize,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    let kinds: Vec<ColumnKind> = request.output_kinds();
    futures::stream::unfold(Some(rows), move |rows| {
        let (schema, kinds) = (schema.clone(), kinds.clone());
        async move {
            let mut rows = rows?;
            let mut chunk: Vec<Vec<Cell>> = Vec::with_capacity(size.min(1024));
            while chunk.len() < size {
                match rows.next().await {
                    Some(Ok(row)) => chunk.push(row),
                    Some(Err(e)) => return Some((Err(DataFusionError::External(Box::new(e))), None)),
                    None => break,
                }
            }
            if chunk.is_empty() {
                return None;
            }
            let more = chunk.len() == size;
            Some((batch(&schema, &kinds, &chunk), more.then_some(rows)))
        }
    })
}

/// One record batch of scanned rows.
fn batch(schema: &SchemaRef, kinds: &[ColumnKind], rows: &[Vec<Cell>]) -> Result<RecordBatch> {
    let mismatch = |i: usize| DataFusionError::Internal(format!("scanned column {i} does not have its declared type"));
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let column: ArrayRef = match kind {
            ColumnKind::Int => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for row in rows {
                    match &row[i] {
                        Cell::Int(v) => b.append_value(*v),
                        Cell::Null => b.append_null(),
                        _ => return Err(mismatch(i)),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnKind::Float => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for row in rows {
                    match &row[i] {
                        Cell::Float(v) => b.append_value(*v),
                        Cell::Null => b.append_null(),
                        _ => return Err(mismatch(i)),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnKind::Text | ColumnKind::Json => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 32);
                for row in rows {
                    match &row[i] {
                        Cell::Text(v) => b.append_value(v),
                        Cell::Null => b.append_null(),
                        _ => return Err(mismatch(i)),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnKind::Bytes => {
                let mut b = BinaryBuilder::with_capacity(rows.len(), rows.len() * 32);
                for row in rows {
                    match &row[i] {
                        Cell::Bytes(v) => b.append_value(v),
                        Cell::Null => b.append_null(),
                        _ => return Err(mismatch(i)),
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push(column);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn only_crn_equality_and_integer_comparisons_are_exact() {
        let t = ScanTable::Predictions;
        let exact = |e: Expr| filter(t, &e).is_some();
        assert!(exact(col("model_deployment_crn").eq(lit("d"))));
        assert!(exact(lit(5i64).lt(col("start_timestamp_ms"))));
        assert!(exact(col("model_build_crn").in_list(vec![lit("a"), lit("b")], false)));
        assert!(exact(col("model_crn").eq(lit("a")).or(col("start_timestamp_ms").gt_eq(lit(3i64)))));
        // Text ordering follows collations; JSON and UUIDs are not compared by the store.
        assert!(!exact(col("model_crn").lt(lit("m"))));
        assert!(!exact(col("metrics").eq(lit("{}"))));
        assert!(!exact(col("uuid").eq(lit("x"))));
        assert!(!exact(col("model_build_crn").in_list(vec![lit("a")], true)));
        assert!(!exact(col("model_crn").eq(lit("a")).or(col("metrics").eq(lit("{}")))));
        assert!(!exact(col("start_timestamp_ms").eq(lit(ScalarValue::Int64(None)))));
    }

    #[test]
    fn typed_json_reads_of_stored_metrics_go_to_the_store() {
        use datafusion::execution::FunctionRegistry;
        let mut ctx = datafusion::prelude::SessionContext::new();
        datafusion_functions_json::register_all(&mut ctx).unwrap();
        let get = |name: &str, keys: &[&str]| {
            let mut args = vec![col("metrics")];
            args.extend(keys.iter().map(|k| lit(*k)));
            ctx.udf(name).unwrap().call(args)
        };
        // Some(true): exact; Some(false): a superset the query layer filters again.
        let applied = |t: ScanTable, e: Expr| filter(t, &e).map(|f| f.exact(t));
        let t = ScanTable::Predictions;
        assert_eq!(applied(t, get("json_get_str", &["input", "plan"]).eq(lit("basic"))), Some(true));
        assert_eq!(applied(t, get("json_get_bool", &["input", "paperless"])), Some(true));
        assert_eq!(applied(t, lit(false).not_eq(get("json_get_bool", &["x"]))), Some(true));
        // Numbers written as strings are numbers to json_get_float: strings are kept.
        assert_eq!(applied(t, get("json_get_float", &["prediction"]).gt(lit(0.5))), Some(false));
        assert_eq!(applied(t, lit(0.5).lt_eq(get("json_get_float", &["input", "tenure"]))), Some(false));
        assert_eq!(
            applied(t, get("json_get_str", &["a"]).eq(lit("x")).or(get("json_get_float", &["b"]).lt(lit(1.0)))),
            Some(false)
        );
        assert_eq!(applied(ScanTable::DelayedMetrics, get("json_get_str", &["label"]).eq(lit("yes"))), Some(true));
        // Labels are merged in after the scan; text ordering follows collations; integers and
        // array indices are left to DataFusion; so are keys with quotes, and keys that read as
        // array indices.
        assert_eq!(applied(ScanTable::LabelledPredictions, get("json_get_str", &["label"]).eq(lit("1"))), None);
        assert_eq!(applied(t, get("json_get_str", &["input", "plan"]).lt(lit("m"))), None);
        assert_eq!(applied(t, get("json_get_int", &["input", "tenure"]).gt(lit(5i64))), None);
        assert_eq!(applied(t, get("json_get_str", &["input", "a\"b"]).eq(lit("x"))), None);
        assert_eq!(applied(t, get("json_get_str", &["xs", "0"]).eq(lit("x"))), None);
        let indexed = ctx.udf("json_get_str").unwrap().call(vec![col("metrics"), lit("xs"), lit(0i64)]);
        assert_eq!(applied(t, indexed.eq(lit("x"))), None);
    }
}
