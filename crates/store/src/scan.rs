//! Table scans for the query layer: which tables and columns it may read, the filters the store
//! applies exactly (CRN equality and integer time comparisons), and the one SELECT each scan
//! sends, with the caller's deployment scope always added by the store itself.
//!
//! Rows come back as cells, streamed over the same bounded channel and read budget as
//! `read_window`, so a scan holds at most a few hundred rows whatever the table's size.

use std::fmt::Write as _;
use std::pin::Pin;

use futures::Stream;
use serde_json::Value;

use crate::rollups::Resolution;
use crate::Error;

/// A table the query layer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanTable {
    /// Predictions as written.
    Predictions,
    /// Delayed metrics (ground truth) as written.
    DelayedMetrics,
    /// Predictions with their delayed metrics merged into `metrics`, later keys winning: what
    /// `read_metrics` answers.
    LabelledPredictions,
    /// Aggregate metrics events.
    AggregateMetrics,
    /// Refused events.
    DeadLetters,
    /// Rollups of one resolution.
    Rollups(Resolution),
}

/// How a column's values are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// Text.
    Text,
    /// JSON object as compact text, keys sorted: the same text on both backends.
    Json,
    /// Bytes.
    Bytes,
}

/// One column of a scanned table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanColumn {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: ColumnKind,
    /// Whether it may be null.
    pub nullable: bool,
    /// Equality with a text value, and integer comparisons, are applied by the store.
    pub pushable: bool,
}

const fn col(name: &'static str, kind: ColumnKind, nullable: bool, pushable: bool) -> ScanColumn {
    ScanColumn { name, kind, nullable, pushable }
}

use ColumnKind::{Bytes, Float, Int, Json, Text};

const PREDICTIONS: &[ScanColumn] = &[
    col("uuid", Text, false, false),
    col("model_crn", Text, false, true),
    col("model_build_crn", Text, false, true),
    col("model_deployment_crn", Text, false, true),
    col("start_timestamp_ms", Int, false, true),
    col("end_timestamp_ms", Int, false, true),
    col("metrics", Json, false, false),
    col("received_at_ms", Int, false, true),
];

const DELAYED_METRICS: &[ScanColumn] = &[
    col("id", Int, false, true),
    col("uuid", Text, false, false),
    col("timestamp_ms", Int, false, true),
    col("metrics", Json, false, false),
    col("model_deployment_crn", Text, true, true),
    col("received_at_ms", Int, false, true),
];

const AGGREGATE_METRICS: &[ScanColumn] = &[
    col("id", Int, false, true),
    col("model_deployment_crn", Text, false, true),
    col("start_timestamp_ms", Int, false, true),
    col("end_timestamp_ms", Int, false, true),
    col("metrics", Json, false, false),
    col("source", Text, false, true),
    col("received_at_ms", Int, false, true),
];

const DEAD_LETTERS: &[ScanColumn] = &[
    col("id", Int, false, true),
    col("received_at_ms", Int, false, true),
    col("source", Text, false, true),
    col("reason", Text, false, false),
    col("raw", Bytes, false, false),
    col("source_key", Bytes, true, false),
    col("model_deployment_crn", Text, true, true),
];

const ROLLUPS: &[ScanColumn] = &[
    col("model_deployment_crn", Text, false, true),
    col("path", Text, false, true),
    col("bucket_start_ms", Int, false, true),
    col("n_numeric", Int, false, true),
    col("sum", Float, false, false),
    col("min", Float, true, false),
    col("max", Float, true, false),
    col("m2", Float, false, false),
    col("sketch", Bytes, true, false),
    col("n_categorical", Int, false, true),
    col("value_counts", Json, true, false),
    col("other_count", Int, false, true),
];

impl ScanTable {
    /// Every table, as the query layer names them.
    pub const ALL: [ScanTable; 8] = [
        ScanTable::Predictions,
        ScanTable::DelayedMetrics,
        ScanTable::LabelledPredictions,
        ScanTable::AggregateMetrics,
        ScanTable::DeadLetters,
        ScanTable::Rollups(Resolution::Minute),
        ScanTable::Rollups(Resolution::Hour),
        ScanTable::Rollups(Resolution::Day),
    ];

    /// The table's name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            ScanTable::Predictions => "predictions",
            ScanTable::DelayedMetrics => "delayed_metrics",
            ScanTable::LabelledPredictions => "labelled_predictions",
            ScanTable::AggregateMetrics => "aggregate_metrics",
            ScanTable::DeadLetters => "dead_letters",
            ScanTable::Rollups(r) => r.table(),
        }
    }

    /// Its columns, in order.
    pub fn columns(self) -> &'static [ScanColumn] {
        match self {
            ScanTable::Predictions | ScanTable::LabelledPredictions => PREDICTIONS,
            ScanTable::DelayedMetrics => DELAYED_METRICS,
            ScanTable::AggregateMetrics => AGGREGATE_METRICS,
            ScanTable::DeadLetters => DEAD_LETTERS,
            ScanTable::Rollups(_) => ROLLUPS,
        }
    }

    /// The stored table it reads.
    fn source(self) -> &'static str {
        match self {
            ScanTable::LabelledPredictions => "predictions",
            other => other.name(),
        }
    }
}

/// A comparison the store applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl ScanOp {
    fn sql(self) -> &'static str {
        match self {
            ScanOp::Eq => "=",
            ScanOp::NotEq => "<>",
            ScanOp::Lt => "<",
            ScanOp::LtEq => "<=",
            ScanOp::Gt => ">",
            ScanOp::GtEq => ">=",
        }
    }
}

/// A literal compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanValue {
    Int(i64),
    Text(String),
}

/// A filter the store applies exactly; see [`ScanFilter::exact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanFilter {
    /// `column op value`.
    Compare { column: usize, op: ScanOp, value: ScanValue },
    /// Any of the filters holds.
    Any(Vec<ScanFilter>),
}

impl ScanFilter {
    /// Whether the store applies this filter exactly as SQL over the query layer's values
    /// would: text only by (in)equality (byte equality on both backends; ordering depends on
    /// collations), integers by any comparison, on pushable columns of `table`.
    pub fn exact(&self, table: ScanTable) -> bool {
        match self {
            ScanFilter::Compare { column, op, value } => {
                let Some(c) = table.columns().get(*column) else { return false };
                c.pushable
                    && match (c.kind, value) {
                        (ColumnKind::Int, ScanValue::Int(_)) => true,
                        (ColumnKind::Text, ScanValue::Text(_)) => matches!(op, ScanOp::Eq | ScanOp::NotEq),
                        _ => false,
                    }
            }
            ScanFilter::Any(any) => !any.is_empty() && any.iter().all(|f| f.exact(table)),
        }
    }
}

/// One scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub table: ScanTable,
    /// Indices of the columns wanted, in output order (may be empty: rows are counted).
    pub columns: Vec<usize>,
    /// Filters, all of which hold; only exact ones are sent.
    pub filters: Vec<ScanFilter>,
    /// The caller's deployment: the scan sees that deployment's rows only.
    pub scope: Option<String>,
    /// At most this many rows.
    pub limit: Option<u64>,
}

/// One value of a scanned row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Scanned rows, each with the requested columns in order.
pub type ScanStream = Pin<Box<dyn Stream<Item = Result<Vec<Cell>, Error>> + Send>>;

/// What the query layer reads through.
pub trait ScanStore: Send + Sync {
    /// Streams the rows of a scan.
    fn scan(&self, request: ScanRequest) -> ScanStream;

    /// The SQL a scan sends, for `EXPLAIN`.
    fn scan_sql(&self, request: &ScanRequest) -> String;
}

/// The SQL dialects of the two backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    /// How a column is selected as text where the backend's type differs.
    fn select(self, c: &ScanColumn) -> String {
        match (self, c.name) {
            (Dialect::Postgres, "uuid") => "t.uuid::text".into(),
            (Dialect::Postgres, "metrics") => "t.metrics::text".into(),
            (_, name) => format!("t.{name}"),
        }
    }
}

/// The SQL of a scan and its parameters, in order. For labelled predictions with `metrics`
/// wanted, one more column (the delayed metrics as a JSON array) follows the requested ones.
pub(crate) fn build(request: &ScanRequest, dialect: Dialect) -> (String, Vec<ScanValue>) {
    let table = request.table;
    let columns = table.columns();
    let mut params: Vec<ScanValue> = Vec::new();
    let mut select: Vec<String> = request.columns.iter().map(|&i| dialect.select(&columns[i])).collect();
    if merges_delayed(request) {
        select.push(match dialect {
            Dialect::Postgres => "(SELECT json_agg(d.metrics ORDER BY d.timestamp_ms, d.id)::text FROM delayed_metrics d \
                 WHERE d.uuid = t.uuid AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = t.model_deployment_crn))"
                .into(),
            Dialect::Sqlite => "(SELECT json_group_array(json(d.metrics) ORDER BY d.timestamp_ms, d.id) FROM delayed_metrics d \
                 WHERE d.uuid = t.uuid AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = t.model_deployment_crn) \
                 HAVING count(*) > 0)"
                .into(),
        });
    }
    if select.is_empty() {
        select.push("1".into());
    }
    let mut conditions: Vec<String> = Vec::new();
    if let Some(scope) = &request.scope {
        params.push(ScanValue::Text(scope.clone()));
        let p = dialect.placeholder(params.len());
        conditions.push(match table {
            // Ground truth names its deployment when it was sent with one; otherwise it is the
            // deployment's if it labels one of its predictions.
            ScanTable::DelayedMetrics => {
                let owner = match dialect {
                    Dialect::Postgres => "SELECT 1 FROM prediction_ids p WHERE p.uuid = t.uuid",
                    Dialect::Sqlite => "SELECT 1 FROM predictions p WHERE p.uuid = t.uuid",
                };
                format!(
                    "(t.model_deployment_crn = {p} OR (t.model_deployment_crn IS NULL AND EXISTS ({owner} AND p.model_deployment_crn = {p})))"
                )
            }
            _ => format!("t.model_deployment_crn = {p}"),
        });
    }
    for f in request.filters.iter().filter(|f| f.exact(table)) {
        conditions.push(condition(f, columns, dialect, &mut params));
    }
    let mut sql = format!("SELECT {} FROM {} t", select.join(", "), table.source());
    if !conditions.is_empty() {
        let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
    }
    if let Some(n) = request.limit {
        let _ = write!(sql, " LIMIT {n}");
    }
    (sql, params)
}

fn condition(f: &ScanFilter, columns: &[ScanColumn], dialect: Dialect, params: &mut Vec<ScanValue>) -> String {
    match f {
        ScanFilter::Compare { column, op, value } => {
            params.push(value.clone());
            format!("t.{} {} {}", columns[*column].name, op.sql(), dialect.placeholder(params.len()))
        }
        ScanFilter::Any(any) => {
            let parts: Vec<String> = any.iter().map(|f| condition(f, columns, dialect, params)).collect();
            format!("({})", parts.join(" OR "))
        }
    }
}

/// Binds a scan's parameters, in order, to `query`.
pub(crate) fn bind<'q, DB: sqlx::Database>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    params: Vec<ScanValue>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for p in params {
        query = match p {
            ScanValue::Int(i) => query.bind(i),
            ScanValue::Text(s) => query.bind(s),
        };
    }
    query
}

/// Whether a scan merges delayed metrics into `metrics`.
pub(crate) fn merges_delayed(request: &ScanRequest) -> bool {
    request.table == ScanTable::LabelledPredictions
        && request.columns.iter().any(|&i| request.table.columns()[i].name == "metrics")
}

/// Makes stored JSON text the same on both backends: compact, keys sorted.
pub(crate) fn normal_json(text: &str) -> Result<String, Error> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Error::Corrupt { what: "stored JSON", detail: e.to_string() })?;
    Ok(value.to_string())
}

/// Decodes a row of `request` from any sqlx backend.
pub(crate) fn decode<R>(row: &R, request: &ScanRequest) -> Result<Vec<Cell>, Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let columns = request.table.columns();
    let get = |e: sqlx::Error| Error::Corrupt { what: "scanned row", detail: e.to_string() };
    let mut out = Vec::with_capacity(request.columns.len());
    for (i, &c) in request.columns.iter().enumerate() {
        let cell = match columns[c].kind {
            ColumnKind::Int => row.try_get::<Option<i64>, _>(i).map_err(get)?.map_or(Cell::Null, Cell::Int),
            ColumnKind::Float => row.try_get::<Option<f64>, _>(i).map_err(get)?.map_or(Cell::Null, Cell::Float),
            ColumnKind::Text => row.try_get::<Option<String>, _>(i).map_err(get)?.map_or(Cell::Null, Cell::Text),
            ColumnKind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i).map_err(get)?.map_or(Cell::Null, Cell::Bytes),
            ColumnKind::Json => match row.try_get::<Option<String>, _>(i).map_err(get)? {
                None => Cell::Null,
                Some(text) if merges_delayed(request) && columns[c].name == "metrics" => {
                    let delayed: Option<String> = row.try_get(request.columns.len()).map_err(get)?;
                    let mut metrics = crate::read::decode_metrics(&text)?;
                    crate::read::merge_delayed(&mut metrics, delayed.as_deref())?;
                    Cell::Text(Value::Object(metrics).to_string())
                }
                Some(text) => Cell::Text(normal_json(&text)?),
            },
        };
        out.push(cell);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(table: ScanTable, name: &str) -> usize {
        table.columns().iter().position(|c| c.name == name).unwrap()
    }

    #[test]
    fn scans_send_exact_filters_and_the_scope_only() {
        let t = ScanTable::LabelledPredictions;
        let request = ScanRequest {
            table: t,
            columns: vec![column(t, "uuid"), column(t, "metrics")],
            filters: vec![
                ScanFilter::Compare {
                    column: column(t, "start_timestamp_ms"),
                    op: ScanOp::GtEq,
                    value: ScanValue::Int(5),
                },
                // Text ordering depends on collations: left to the query layer.
                ScanFilter::Compare {
                    column: column(t, "model_crn"),
                    op: ScanOp::Lt,
                    value: ScanValue::Text("m".into()),
                },
                ScanFilter::Any(vec![
                    ScanFilter::Compare {
                        column: column(t, "model_build_crn"),
                        op: ScanOp::Eq,
                        value: ScanValue::Text("b1".into()),
                    },
                    ScanFilter::Compare {
                        column: column(t, "model_build_crn"),
                        op: ScanOp::Eq,
                        value: ScanValue::Text("b2".into()),
                    },
                ]),
            ],
            scope: Some("dep".into()),
            limit: Some(10),
        };
        let (sql, params) = build(&request, Dialect::Postgres);
        assert!(sql.starts_with("SELECT t.uuid::text, t.metrics::text, (SELECT json_agg"), "{sql}");
        assert!(
            sql.ends_with(
                "FROM predictions t WHERE t.model_deployment_crn = $1 AND t.start_timestamp_ms >= $2 AND \
                 (t.model_build_crn = $3 OR t.model_build_crn = $4) LIMIT 10"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 4);
        let (sql, _) = build(&ScanRequest { scope: None, limit: None, ..request }, Dialect::Sqlite);
        assert!(sql.contains("WHERE t.start_timestamp_ms >= ?1 AND (t.model_build_crn = ?2"), "{sql}");
    }

    #[test]
    fn scoped_delayed_metrics_are_those_naming_or_labelling_the_deployment() {
        let request = ScanRequest {
            table: ScanTable::DelayedMetrics,
            columns: vec![],
            filters: vec![],
            scope: Some("dep".into()),
            limit: None,
        };
        let (sql, _) = build(&request, Dialect::Sqlite);
        assert_eq!(
            sql,
            "SELECT 1 FROM delayed_metrics t WHERE (t.model_deployment_crn = ?1 OR (t.model_deployment_crn IS NULL AND \
             EXISTS (SELECT 1 FROM predictions p WHERE p.uuid = t.uuid AND p.model_deployment_crn = ?1)))"
        );
    }
}
