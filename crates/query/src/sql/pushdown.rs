//! Groupings computed by the store: an optimizer rule that replaces an `Aggregate` directly over
//! a store table's scan (every filter of it applied by the store) with a scan of the store's own
//! `GROUP BY`, when every group and every aggregate translates exactly. The store then sends one
//! row per group instead of every row, which is what makes a count or mean over millions of
//! rows take about as long as the database itself takes.
//!
//! What translates: groups by integer or text columns, integer arithmetic (`+`, `-`, `/` by a
//! positive constant), `date_trunc('second'|'minute'|'hour'|'day', to_timestamp_millis(col))`
//! and `json_get_str` of stored metrics; `count`, `sum`, `avg`, `min`, `max` (not DISTINCT, no
//! FILTER) of integer and float columns and integer arithmetic. Anything else (`json_get_float`
//! among them, which also reads numbers written as strings), or a filter the store does not
//! apply exactly, leaves the plan as it was: DataFusion aggregates the scanned rows. Integer
//! results are exact; means and float sums are the database's, equal to DataFusion's up to the
//! order in which floats are added.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::expr::{AggregateFunction, Cast};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::col;
use driftline_store::scan::{AggregateFn, ColumnKind, JsonType, ScanAggregate, ScanExpr, ScanRequest, ScanTable};
use driftline_store::Store;

use super::provider::{filter, json_path, ScanExec, ScanProvider};

/// The rule; see the module's documentation.
#[derive(Debug)]
pub(crate) struct PushAggregates;

impl OptimizerRule for PushAggregates {
    fn name(&self) -> &str {
        "driftline_push_aggregates"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else { return Ok(Transformed::no(plan)) };
        match grouped_in_store(aggregate)? {
            Some(pushed) => Ok(Transformed::yes(pushed)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// The plan that reads `aggregate`'s answer from the store, if it translates.
fn grouped_in_store(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    // DataFusion may compute shared expressions in a projection between the two: its
    // expressions are put back in their place.
    let (scan, shared) = match aggregate.input.as_ref() {
        LogicalPlan::TableScan(scan) => (scan, HashMap::new()),
        LogicalPlan::Projection(projection) => match projection.input.as_ref() {
            LogicalPlan::TableScan(scan) => {
                let names = projection.schema.fields().iter().map(|f| f.name().clone());
                (scan, names.zip(projection.expr.iter().map(|e| e.clone().unalias())).collect())
            }
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if scan.fetch.is_some() {
        return Ok(None);
    }
    let Ok(provider) = source_as_provider(&scan.source) else { return Ok(None) };
    let any: &dyn Any = provider.as_ref();
    let Some(table) = any.downcast_ref::<ScanProvider>() else { return Ok(None) };
    let t = table.table();
    let Some(filters) = scan.filters.iter().map(|f| filter(t, f).filter(|f| f.exact(t))).collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let translate = Translate { table: t, shared };
    let Some(groups) = aggregate.group_expr.iter().map(|e| translate.group(e)).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let Some(aggregates) = aggregate.aggr_expr.iter().map(|e| translate.aggregate(e)).collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let stamps: Vec<bool> = groups.iter().map(|(_, stamp)| *stamp).chain(aggregates.iter().map(|_| false)).collect();
    let request = ScanAggregate { groups: groups.into_iter().map(|(g, _)| g).collect(), aggregates };
    let Some(kinds) = request.kinds(t) else { return Ok(None) };
    // Each output must have the type DataFusion's aggregate has (epoch milliseconds are cast to
    // the timestamps `date_trunc` gives).
    let fields = aggregate.schema.fields();
    let mut stored = Vec::with_capacity(kinds.len());
    for ((kind, stamp), field) in kinds.iter().zip(&stamps).zip(fields.iter()) {
        let produced = match kind {
            ColumnKind::Int => DataType::Int64,
            ColumnKind::Float => DataType::Float64,
            _ => DataType::Utf8,
        };
        let wanted = if *stamp { DataType::Timestamp(TimeUnit::Millisecond, None) } else { produced.clone() };
        if field.data_type() != &wanted {
            return Ok(None);
        }
        stored.push(Field::new(format!("c{}", stored.len()), produced, true));
    }
    let request = ScanRequest {
        table: t,
        columns: Vec::new(),
        filters,
        scope: table.scope().map(str::to_owned),
        limit: None,
        order_by: Vec::new(),
        aggregate: Some(request),
    };
    let groups = StoreGroups { request, schema: Arc::new(Schema::new(stored)), store: table.store() };
    let name = format!("{}_grouped", t.name());
    let read = LogicalPlanBuilder::scan(name.clone(), provider_as_source(Arc::new(groups)), None)?.build()?;
    let renamed: Vec<Expr> = aggregate
        .schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            let mut e = col(Column::new(Some(name.clone()), format!("c{i}")));
            if stamps[i] {
                e = Expr::Cast(Cast::new(Box::new(e), field.data_type().clone()));
            }
            e.alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    Ok(Some(LogicalPlanBuilder::from(read).project(renamed)?.build()?))
}

/// Expressions of one table's rows in the store's terms.
struct Translate {
    table: ScanTable,
    /// Columns of a projection between the aggregate and the scan, by name.
    shared: HashMap<String, Expr>,
}

impl Translate {
    /// A group's value in the store, and whether it is a `date_trunc` timestamp.
    fn group(&self, e: &Expr) -> Option<(ScanExpr, bool)> {
        match e {
            Expr::Alias(alias) => self.group(&alias.expr),
            Expr::Column(c) if self.shared.contains_key(&c.name) => self.below().group(&self.shared[&c.name]),
            Expr::ScalarFunction(f) if f.name() == "date_trunc" => {
                let [Expr::Literal(ScalarValue::Utf8(Some(unit)), _), Expr::ScalarFunction(stamp)] = f.args.as_slice()
                else {
                    return None;
                };
                let [millis] = stamp.args.as_slice() else { return None };
                if stamp.name() != "to_timestamp_millis" {
                    return None;
                }
                let step = match unit.to_ascii_lowercase().as_str() {
                    "second" => 1_000,
                    "minute" => 60_000,
                    "hour" => 3_600_000,
                    "day" => 86_400_000,
                    _ => return None,
                };
                Some((ScanExpr::Floor(Box::new(self.value(millis)?), step), true))
            }
            other => Some((self.value(other)?, false)),
        }
    }

    /// A value in the store.
    fn value(&self, e: &Expr) -> Option<ScanExpr> {
        let value = |e: &Expr| self.value(e).map(Box::new);
        match e {
            Expr::Alias(alias) => self.value(&alias.expr),
            Expr::Column(c) => match self.shared.get(&c.name) {
                Some(shared) => self.below().value(shared),
                None => self.column(&c.name),
            },
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match (op, right.as_ref()) {
                (Operator::Divide, Expr::Literal(ScalarValue::Int64(Some(n)), _)) if *n > 0 => {
                    Some(ScanExpr::Div(value(left)?, *n))
                }
                (Operator::Minus, _) => Some(ScanExpr::Sub(value(left)?, value(right)?)),
                (Operator::Plus, _) => Some(ScanExpr::Add(value(left)?, value(right)?)),
                _ => None,
            },
            Expr::Cast(cast) if cast.field.data_type() == &DataType::Float64 => {
                Some(ScanExpr::Float(value(&cast.expr)?))
            }
            // Strings only: `json_get_float` also reads numbers written as strings (see the
            // store).
            Expr::ScalarFunction(_) => {
                let (column, path, as_type) = json_path(self.table, e)?;
                (as_type == JsonType::Str).then_some(ScanExpr::Json { column, path, as_type })
            }
            _ => None,
        }
    }

    /// The translation of the projection's own expressions, which read the scan's columns.
    fn below(&self) -> Translate {
        Translate { table: self.table, shared: HashMap::new() }
    }

    fn column(&self, name: &str) -> Option<ScanExpr> {
        Some(ScanExpr::Column(self.table.columns().iter().position(|c| c.name == name)?))
    }

    /// An aggregate in the store.
    fn aggregate(&self, e: &Expr) -> Option<(AggregateFn, Option<ScanExpr>)> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = (match e {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        }) else {
            return None;
        };
        if params.distinct || params.filter.is_some() || !params.order_by.is_empty() || params.null_treatment.is_some()
        {
            return None;
        }
        let f = match func.name() {
            "count" => AggregateFn::Count,
            "sum" => AggregateFn::Sum,
            "avg" => AggregateFn::Avg,
            "min" => AggregateFn::Min,
            "max" => AggregateFn::Max,
            _ => return None,
        };
        match (f, params.args.as_slice()) {
            // count(*) is count of a non-null constant.
            (AggregateFn::Count, []) => Some((f, None)),
            (AggregateFn::Count, [Expr::Literal(v, _)]) if !v.is_null() => Some((f, None)),
            (_, [arg]) => Some((f, Some(self.value(arg)?))),
            _ => None,
        }
    }
}

/// The store's answer to one grouping, as a table.
struct StoreGroups {
    request: ScanRequest,
    schema: SchemaRef,
    store: Arc<dyn Store>,
}

impl fmt::Debug for StoreGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreGroups").field("request", &self.request).finish()
    }
}

#[async_trait]
impl TableProvider for StoreGroups {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Unsupported; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let exec: Arc<dyn ExecutionPlan> =
            Arc::new(ScanExec::new(self.request.clone(), self.schema.clone(), self.store.clone(), None));
        match projection {
            Some(columns) if columns.len() != self.schema.fields().len() => {
                let exprs: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> = columns
                    .iter()
                    .map(|&i| {
                        let name = self.schema.field(i).name().clone();
                        (Arc::new(PhysicalColumn::new(&name, i)) as _, name)
                    })
                    .collect();
                Ok(Arc::new(ProjectionExec::try_new(exprs, exec)?))
            }
            _ => Ok(exec),
        }
    }
}
