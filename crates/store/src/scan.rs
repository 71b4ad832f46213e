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
    /// Resource use of model replicas.
    ReplicaStats,
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
    /// JSON (an object, or an array of objects) as compact text, keys sorted: the same text on
    /// both backends.
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

/// Predictions as sent; the last column, `delayed_metrics`, is the prediction's delayed metrics
/// as one JSON array of their objects, oldest first (null when there are none).
const PREDICTIONS: &[ScanColumn] = &[
    col("uuid", Text, false, false),
    col("model_crn", Text, false, true),
    col("model_build_crn", Text, false, true),
    col("model_deployment_crn", Text, false, true),
    col("start_timestamp_ms", Int, false, true),
    col("end_timestamp_ms", Int, false, true),
    col("metrics", Json, false, false),
    col("received_at_ms", Int, false, true),
    col("delayed_metrics", Json, true, false),
];

/// Predictions with their delayed metrics merged into `metrics`: the columns before
/// `delayed_metrics`.
const LABELLED_PREDICTIONS: &[ScanColumn] = PREDICTIONS.split_at(PREDICTIONS.len() - 1).0;

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

const REPLICA_STATS: &[ScanColumn] = &[
    col("id", Int, false, true),
    col("model_deployment_crn", Text, false, true),
    col("replica_id", Text, false, true),
    col("timestamp_ms", Int, false, true),
    col("cpu_percent", Float, false, false),
    col("memory_bytes", Int, false, true),
    col("received_at_ms", Int, false, true),
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
    pub const ALL: [ScanTable; 9] = [
        ScanTable::Predictions,
        ScanTable::DelayedMetrics,
        ScanTable::LabelledPredictions,
        ScanTable::AggregateMetrics,
        ScanTable::DeadLetters,
        ScanTable::ReplicaStats,
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
            ScanTable::ReplicaStats => "replica_stats",
            ScanTable::Rollups(r) => r.table(),
        }
    }

    /// Its columns, in order.
    pub fn columns(self) -> &'static [ScanColumn] {
        match self {
            ScanTable::Predictions => PREDICTIONS,
            ScanTable::LabelledPredictions => LABELLED_PREDICTIONS,
            ScanTable::DelayedMetrics => DELAYED_METRICS,
            ScanTable::AggregateMetrics => AGGREGATE_METRICS,
            ScanTable::DeadLetters => DEAD_LETTERS,
            ScanTable::ReplicaStats => REPLICA_STATS,
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
#[derive(Debug, Clone, PartialEq)]
pub enum ScanValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

/// What a JSON filter reads at its path, as the query layer's `json_get_*` functions do: the
/// value when it has this type, null otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// A JSON string (`json_get_str`).
    Str,
    /// A JSON number, as a 64-bit float (`json_get_float`).
    Float,
    /// `true` or `false` (`json_get_bool`).
    Bool,
}

/// A filter the store applies exactly; see [`ScanFilter::exact`].
#[derive(Debug, Clone, PartialEq)]
pub enum ScanFilter {
    /// `column op value`.
    Compare { column: usize, op: ScanOp, value: ScanValue },
    /// The value at `path` (object keys) in JSON `column`, when of type `as_type`, `op value`;
    /// rows where it is missing or of another type do not pass.
    Json { column: usize, path: Vec<String>, as_type: JsonType, op: ScanOp, value: ScanValue },
    /// Any of the filters holds.
    Any(Vec<ScanFilter>),
}

impl ScanFilter {
    /// Whether the store applies this filter exactly as SQL over the query layer's values
    /// would: text only by (in)equality (byte equality on both backends; ordering depends on
    /// collations), integers by any comparison, on pushable columns of `table`; typed JSON reads
    /// of strings and booleans by (in)equality.
    pub fn exact(&self, table: ScanTable) -> bool {
        self.applied(table) == Some(true)
    }

    /// Whether the store applies this filter at all: exactly, or keeping a superset of the rows
    /// (a comparison of `json_get_float`: numbers are compared, strings are all kept, since the
    /// query layer also reads numbers written as strings), which the query layer filters again.
    pub fn sendable(&self, table: ScanTable) -> bool {
        self.applied(table).is_some()
    }

    /// `Some(true)` exactly, `Some(false)` as a superset, `None` not at all.
    fn applied(&self, table: ScanTable) -> Option<bool> {
        match self {
            ScanFilter::Compare { column, op, value } => {
                let c = table.columns().get(*column)?;
                let exact = c.pushable
                    && match (c.kind, value) {
                        (ColumnKind::Int, ScanValue::Int(_)) => true,
                        (ColumnKind::Text, ScanValue::Text(_)) => matches!(op, ScanOp::Eq | ScanOp::NotEq),
                        _ => false,
                    };
                exact.then_some(true)
            }
            ScanFilter::Json { column, path, as_type, op, value } => {
                if !json_pushable(table, *column) || !valid_path(path) {
                    return None;
                }
                match (as_type, value) {
                    (JsonType::Str, ScanValue::Text(_)) | (JsonType::Bool, ScanValue::Bool(_))
                        if matches!(op, ScanOp::Eq | ScanOp::NotEq) =>
                    {
                        Some(true)
                    }
                    (JsonType::Float, ScanValue::Float(v)) if v.is_finite() => Some(false),
                    _ => None,
                }
            }
            ScanFilter::Any(any) if !any.is_empty() => {
                let each: Option<Vec<bool>> = any.iter().map(|f| f.applied(table)).collect();
                each.map(|e| e.iter().all(|exact| *exact))
            }
            ScanFilter::Any(_) => None,
        }
    }
}

/// Whether filters on JSON paths of `column` go to the store: the stored `metrics` of every table
/// but `labelled_predictions` (whose metrics are merged from delayed ones after the scan).
fn json_pushable(table: ScanTable, column: usize) -> bool {
    table != ScanTable::LabelledPredictions && table.columns().get(column).is_some_and(|c| c.name == "metrics")
}

/// A value the store computes from a row, for grouping and aggregating in the store.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanExpr {
    /// A column (integer, float or text).
    Column(usize),
    /// Integer division by a positive constant, truncating toward zero (as SQL's `/` on
    /// integers does on all three engines).
    Div(Box<ScanExpr>, i64),
    /// The largest multiple of a positive constant not above the integer (`date_trunc` of epoch
    /// milliseconds to a fixed unit).
    Floor(Box<ScanExpr>, i64),
    /// Integer difference.
    Sub(Box<ScanExpr>, Box<ScanExpr>),
    /// Integer sum.
    Add(Box<ScanExpr>, Box<ScanExpr>),
    /// A number as a 64-bit float.
    Float(Box<ScanExpr>),
    /// The value at `path` in JSON `column` when it is a string (`Str`) or a number (`Float`),
    /// null otherwise, as in [`ScanFilter::Json`].
    Json { column: usize, path: Vec<String>, as_type: JsonType },
}

/// An aggregate function the store computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFn {
    /// Rows (no argument), or non-null values.
    Count,
    Sum,
    /// Mean, as a 64-bit float.
    Avg,
    Min,
    Max,
}

/// Grouping and aggregation done by the store: one row per group, the groups' values first,
/// then the aggregates', in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanAggregate {
    pub groups: Vec<ScanExpr>,
    pub aggregates: Vec<(AggregateFn, Option<ScanExpr>)>,
}

impl ScanExpr {
    /// The type of the value, if the store computes it exactly as the query layer would.
    pub fn kind(&self, table: ScanTable) -> Option<ColumnKind> {
        let int = |e: &ScanExpr| e.kind(table).filter(|k| *k == ColumnKind::Int);
        match self {
            ScanExpr::Column(c) => {
                let kind = table.columns().get(*c)?.kind;
                matches!(kind, ColumnKind::Int | ColumnKind::Float | ColumnKind::Text).then_some(kind)
            }
            ScanExpr::Div(e, n) | ScanExpr::Floor(e, n) => (*n > 0).then(|| int(e)).flatten(),
            ScanExpr::Sub(a, b) | ScanExpr::Add(a, b) => int(a).and(int(b)),
            ScanExpr::Float(e) => {
                matches!(e.kind(table)?, ColumnKind::Int | ColumnKind::Float).then_some(ColumnKind::Float)
            }
            ScanExpr::Json { column, path, as_type } => {
                if !json_pushable(table, *column) || !valid_path(path) {
                    return None;
                }
                // Only strings: `json_get_float` also reads numbers written as strings, as
                // `f64::from_str` does, which neither database does the same way.
                (*as_type == JsonType::Str).then_some(ColumnKind::Text)
            }
        }
    }
}

impl ScanAggregate {
    /// The types of the output columns, if the store computes all of them exactly: groups by
    /// integers or text (byte equality); sums, minimums and maximums of numbers; counts; means.
    pub fn kinds(&self, table: ScanTable) -> Option<Vec<ColumnKind>> {
        let mut kinds = Vec::new();
        for g in &self.groups {
            kinds.push(g.kind(table).filter(|k| matches!(k, ColumnKind::Int | ColumnKind::Text))?);
        }
        for (f, arg) in &self.aggregates {
            let arg = match arg {
                Some(e) => Some(e.kind(table)?),
                None => None,
            };
            kinds.push(match (f, arg) {
                (AggregateFn::Count, _) => ColumnKind::Int,
                (AggregateFn::Avg, Some(ColumnKind::Int | ColumnKind::Float)) => ColumnKind::Float,
                (
                    AggregateFn::Sum | AggregateFn::Min | AggregateFn::Max,
                    Some(k @ (ColumnKind::Int | ColumnKind::Float)),
                ) => k,
                _ => return None,
            });
        }
        Some(kinds)
    }
}

/// Object keys the store reads as the query layer does: not empty, no `"`, `\` or control
/// characters (SQLite's quoted paths), and not integers (which the query layer reads as array
/// indices when they reach an array).
fn valid_path(path: &[String]) -> bool {
    !path.is_empty()
        && path.iter().all(|k| {
            !k.is_empty() && !k.contains(['"', '\\']) && !k.chars().any(char::is_control) && k.parse::<isize>().is_err()
        })
}

/// One scan.
#[derive(Debug, Clone, PartialEq)]
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
    /// Indices of the columns the rows come ordered by, ascending (none: any order). On `uuid`
    /// both backends order as the UUIDs' lowercase text does.
    pub order_by: Vec<usize>,
    /// Group and aggregate in the store (`columns` and `order_by` are then not used): the rows
    /// are the groups.
    pub aggregate: Option<ScanAggregate>,
}

impl ScanRequest {
    /// The types of the rows' values, in order.
    pub fn output_kinds(&self) -> Vec<ColumnKind> {
        match &self.aggregate {
            Some(a) => a.kinds(self.table).unwrap_or_default(),
            None => self.columns.iter().map(|&i| self.table.columns()[i].kind).collect(),
        }
    }
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
            (_, "delayed_metrics") => self.delayed_array().into(),
            (_, name) => format!("t.{name}"),
        }
    }

    /// The delayed metrics of prediction `t`, oldest first, as one JSON array of their objects
    /// (null when there are none): those naming its deployment or none.
    fn delayed_array(self) -> &'static str {
        match self {
            Dialect::Postgres => "(SELECT json_agg(d.metrics ORDER BY d.timestamp_ms, d.id)::text FROM delayed_metrics d \
                 WHERE d.uuid = t.uuid AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = t.model_deployment_crn))",
            Dialect::Sqlite => "(SELECT json_group_array(json(d.metrics) ORDER BY d.timestamp_ms, d.id) FROM delayed_metrics d \
                 WHERE d.uuid = t.uuid AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = t.model_deployment_crn) \
                 HAVING count(*) > 0)",
        }
    }
}

/// The SQL of a scan and its parameters, in order. For labelled predictions with `metrics`
/// wanted, one more column (the delayed metrics as a JSON array) follows the requested ones.
pub(crate) fn build(request: &ScanRequest, dialect: Dialect) -> (String, Vec<ScanValue>) {
    let table = request.table;
    let columns = table.columns();
    let mut params: Vec<ScanValue> = Vec::new();
    let mut select: Vec<String> = match &request.aggregate {
        Some(aggregate) => aggregate_sql(aggregate, table, dialect, &mut params),
        None => request.columns.iter().map(|&i| dialect.select(&columns[i])).collect(),
    };
    if merges_delayed(request) {
        select.push(dialect.delayed_array().into());
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
    for f in request.filters.iter().filter(|f| f.sendable(table)) {
        conditions.push(condition(f, columns, dialect, &mut params));
    }
    let mut sql = format!("SELECT {} FROM {} t", select.join(", "), table.source());
    if !conditions.is_empty() {
        let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
    }
    if let Some(aggregate) = request.aggregate.as_ref().filter(|a| !a.groups.is_empty()) {
        let by: Vec<String> = (1..=aggregate.groups.len()).map(|i| i.to_string()).collect();
        let _ = write!(sql, " GROUP BY {}", by.join(", "));
    } else if !request.order_by.is_empty() {
        let by: Vec<String> = request.order_by.iter().map(|&i| format!("t.{}", columns[i].name)).collect();
        let _ = write!(sql, " ORDER BY {}", by.join(", "));
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
            let (name, v) = (columns[*column].name, dialect.placeholder(params.len()));
            match (dialect, op) {
                (Dialect::Sqlite, ScanOp::Eq) => crate::sqlite::predictions_where("t", name, &v),
                _ => format!("t.{name} {} {v}", op.sql()),
            }
        }
        // Numbers compared, strings kept (the query layer filters again).
        ScanFilter::Json { column, path, as_type: JsonType::Float, op, value } => {
            let at = json_at(columns[*column].name, path, dialect, params);
            match dialect {
                Dialect::Postgres => {
                    params.push(value.clone());
                    let v = dialect.placeholder(params.len());
                    format!(
                        "(CASE jsonb_typeof({at}) WHEN 'number' THEN ({at})::float8 {} {v} WHEN 'string' THEN true ELSE false END)",
                        op.sql()
                    )
                }
                // SQLite's own reading of decimals is not always the nearest double: numbers and
                // strings are kept, other values dropped.
                Dialect::Sqlite => format!("json_type({at}) IN ('integer', 'real', 'text')"),
            }
        }
        ScanFilter::Json { column, path, as_type, op, value } => {
            let at = json_value(columns[*column].name, path, *as_type, dialect, params);
            params.push(value.clone());
            format!("{at} {} {}", op.sql(), dialect.placeholder(params.len()))
        }
        ScanFilter::Any(any) => {
            let parts: Vec<String> = any.iter().map(|f| condition(f, columns, dialect, params)).collect();
            format!("({})", parts.join(" OR "))
        }
    }
}

/// The JSON value at `path` in `column`, as SQL: `->` with the keys as parameters on Postgres,
/// a quoted path (itself a parameter) on SQLite; keys never hold `"` or `\\` (see `valid_path`).
fn json_at(column: &str, path: &[String], dialect: Dialect, params: &mut Vec<ScanValue>) -> String {
    match dialect {
        Dialect::Postgres => {
            let mut at = format!("t.{column}");
            for key in path {
                params.push(ScanValue::Text(key.clone()));
                let _ = write!(at, " -> {}", dialect.placeholder(params.len()));
            }
            at
        }
        Dialect::Sqlite => {
            let quoted: Vec<String> = path.iter().map(|k| format!(".\"{k}\"")).collect();
            params.push(ScanValue::Text(format!("${}", quoted.concat())));
            format!("t.{column}, {}", dialect.placeholder(params.len()))
        }
    }
}

/// `json_get_str` (a string, else null) or `json_get_bool` (a boolean, or the string `true` or
/// `false`, else null) of `path` in `column`, as SQL. CASE, so that a cast never meets a value
/// of another type (AND does not promise an order).
fn json_value(
    column: &str,
    path: &[String],
    as_type: JsonType,
    dialect: Dialect,
    params: &mut Vec<ScanValue>,
) -> String {
    let at = json_at(column, path, dialect, params);
    match (dialect, as_type) {
        (Dialect::Postgres, JsonType::Bool) => format!(
            "(CASE jsonb_typeof({at}) WHEN 'boolean' THEN ({at})::boolean WHEN 'string' THEN \
             CASE ({at}) #>> '{{}}' WHEN 'true' THEN true WHEN 'false' THEN false END END)"
        ),
        (Dialect::Postgres, _) => format!("(CASE WHEN jsonb_typeof({at}) = 'string' THEN ({at}) #>> '{{}}' END)"),
        (Dialect::Sqlite, JsonType::Bool) => format!(
            "(CASE json_type({at}) WHEN 'true' THEN 1 WHEN 'false' THEN 0 WHEN 'text' THEN \
             CASE json_extract({at}) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END END)"
        ),
        (Dialect::Sqlite, _) => format!("(CASE WHEN json_type({at}) = 'text' THEN json_extract({at}) END)"),
    }
}

/// A computed value in SQL.
fn expr_sql(e: &ScanExpr, columns: &[ScanColumn], dialect: Dialect, params: &mut Vec<ScanValue>) -> String {
    match e {
        ScanExpr::Column(c) => dialect.select(&columns[*c]),
        ScanExpr::Div(e, n) => format!("({} / {n})", expr_sql(e, columns, dialect, params)),
        ScanExpr::Floor(e, n) => {
            let e = expr_sql(e, columns, dialect, params);
            format!("({e} - ((({e} % {n}) + {n}) % {n}))")
        }
        ScanExpr::Sub(a, b) => {
            format!("({} - {})", expr_sql(a, columns, dialect, params), expr_sql(b, columns, dialect, params))
        }
        ScanExpr::Add(a, b) => {
            format!("({} + {})", expr_sql(a, columns, dialect, params), expr_sql(b, columns, dialect, params))
        }
        ScanExpr::Float(e) => {
            let e = expr_sql(e, columns, dialect, params);
            match dialect {
                Dialect::Postgres => format!("({e})::float8"),
                Dialect::Sqlite => format!("CAST({e} AS REAL)"),
            }
        }
        ScanExpr::Json { column, path, as_type } => json_value(columns[*column].name, path, *as_type, dialect, params),
    }
}

/// The select list of a grouping: the groups, then the aggregates, typed as the query layer's.
fn aggregate_sql(
    aggregate: &ScanAggregate,
    table: ScanTable,
    dialect: Dialect,
    params: &mut Vec<ScanValue>,
) -> Vec<String> {
    let columns = table.columns();
    let mut select: Vec<String> = aggregate.groups.iter().map(|g| expr_sql(g, columns, dialect, params)).collect();
    for (f, arg) in &aggregate.aggregates {
        let kind = arg.as_ref().and_then(|a| a.kind(table));
        let arg = arg.as_ref().map(|a| expr_sql(a, columns, dialect, params));
        let arg = arg.as_deref().unwrap_or("*");
        select.push(match (f, kind, dialect) {
            (AggregateFn::Count, ..) => format!("count({arg})"),
            // Postgres sums integers as numeric and averages as numeric: back to the types the
            // query layer gives.
            (AggregateFn::Sum, Some(ColumnKind::Int), Dialect::Postgres) => format!("sum({arg})::bigint"),
            (AggregateFn::Sum, ..) => format!("sum({arg})"),
            (AggregateFn::Avg, _, Dialect::Postgres) => format!("avg({arg})::float8"),
            (AggregateFn::Avg, _, Dialect::Sqlite) => format!("CAST(avg({arg}) AS REAL)"),
            (AggregateFn::Min, ..) => format!("min({arg})"),
            (AggregateFn::Max, ..) => format!("max({arg})"),
        });
    }
    select
}

/// Binds a scan's parameters, in order, to `query`.
pub(crate) fn bind<'q, DB: sqlx::Database>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    params: Vec<ScanValue>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for p in params {
        query = match p {
            ScanValue::Int(i) => query.bind(i),
            ScanValue::Float(f) => query.bind(f),
            ScanValue::Bool(b) => query.bind(b),
            ScanValue::Text(s) => query.bind(s),
        };
    }
    query
}

/// Whether a scan merges delayed metrics into `metrics`.
pub(crate) fn merges_delayed(request: &ScanRequest) -> bool {
    request.table == ScanTable::LabelledPredictions
        && request.aggregate.is_none()
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
    // The values of a grouping are numbers and text; only scanned columns are JSON.
    let kinds = request.output_kinds();
    let mut out = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.into_iter().enumerate() {
        let cell = match kind {
            ColumnKind::Int => row.try_get::<Option<i64>, _>(i).map_err(get)?.map_or(Cell::Null, Cell::Int),
            ColumnKind::Float => row.try_get::<Option<f64>, _>(i).map_err(get)?.map_or(Cell::Null, Cell::Float),
            ColumnKind::Text => row.try_get::<Option<String>, _>(i).map_err(get)?.map_or(Cell::Null, Cell::Text),
            ColumnKind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i).map_err(get)?.map_or(Cell::Null, Cell::Bytes),
            ColumnKind::Json => match row.try_get::<Option<String>, _>(i).map_err(get)? {
                None => Cell::Null,
                Some(text) if merges_delayed(request) && columns[request.columns[i]].name == "metrics" => {
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
            order_by: vec![],
            aggregate: None,
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
        let ordered = ScanRequest {
            scope: None,
            limit: None,
            order_by: vec![column(t, "start_timestamp_ms"), column(t, "uuid")],
            ..request
        };
        let (sql, _) = build(&ordered, Dialect::Sqlite);
        // SQLite has no index by build: the deployments naming the build serve the filter.
        assert!(
            sql.contains(
                "WHERE t.start_timestamp_ms >= ?1 AND ((t.model_build_crn = ?2 AND t.model_deployment_crn IN \
                 (SELECT l.model_deployment_crn FROM deployment_lineage l WHERE l.model_build_crn = ?2)) OR"
            ),
            "{sql}"
        );
        assert!(sql.ends_with("?3))) ORDER BY t.start_timestamp_ms, t.uuid"), "{sql}");
    }

    #[test]
    fn scoped_delayed_metrics_are_those_naming_or_labelling_the_deployment() {
        let request = ScanRequest {
            table: ScanTable::DelayedMetrics,
            columns: vec![],
            filters: vec![],
            scope: Some("dep".into()),
            limit: None,
            order_by: vec![],
            aggregate: None,
        };
        let (sql, _) = build(&request, Dialect::Sqlite);
        assert_eq!(
            sql,
            "SELECT 1 FROM delayed_metrics t WHERE (t.model_deployment_crn = ?1 OR (t.model_deployment_crn IS NULL AND \
             EXISTS (SELECT 1 FROM predictions p WHERE p.uuid = t.uuid AND p.model_deployment_crn = ?1)))"
        );
    }
}
