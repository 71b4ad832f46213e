//! Drift and performance as SQL functions, computed by the drift engine's own code, so a query
//! gives the numbers `driftline drift` gives (and scikit-learn and SciPy with them), and KLL
//! sketches in the rollups' format.
//!
//! - `roc_auc(score, label)`, `average_precision(score, label)`, `log_loss(score, label)`,
//!   `brier(score, label)`: binary performance; labels 0/1 or booleans (other labels, and
//!   scores that are not finite numbers, are left out, as drift jobs leave them out).
//! - `psi(value, is_ref)`, `ks_stat(value, is_ref)`, `ks_pvalue(value, is_ref)`,
//!   `wasserstein(value, is_ref)`, `js_distance(value, is_ref)`: the rows where `is_ref` is true
//!   are the reference sample, the others the current one; PSI and Jensen–Shannon over 10 bins at
//!   the reference's deciles, Wasserstein the plain distance (`scipy.stats.wasserstein_distance`).
//! - `chi2_pvalue(category, is_ref)`: chi-square test of the two samples' category counts.
//! - `kll_sketch(value)` aggregates numbers into a DataSketches KLL sketch (k = 200, the bytes
//!   the rollups store), `kll_merge(sketch)` merges sketches, `kll_quantile(sketch, q)` reads one.
//!
//! Each aggregate keeps its group's values (or counts, or a sketch) and reports its size to the
//! query's memory pool, so a group too large for the query's memory stops the query.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, ListArray, StringArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::{exec_err, plan_err, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use driftline_drift::compare::{self, Method, Options};
use driftline_drift::stats::categories::Categories;
use driftline_drift::stats::column::ColumnData;
use driftline_drift::stats::drift;
use driftline_drift::stats::performance;
use driftline_drift::stats::sample::Sample;
use driftline_rollup::Sketch;

/// Registers every function of this module in `ctx`.
pub(crate) fn register(ctx: &SessionContext) {
    for kind in Kind::ALL {
        ctx.register_udaf(AggregateUDF::new_from_impl(Drift::new(kind)));
    }
    ctx.register_udaf(AggregateUDF::new_from_impl(Kll::new(KllInput::Values)));
    ctx.register_udaf(AggregateUDF::new_from_impl(Kll::new(KllInput::Sketches)));
    ctx.register_udf(ScalarUDF::new_from_impl(KllQuantile::new()));
}

/// The drift and performance aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    RocAuc,
    AveragePrecision,
    LogLoss,
    Brier,
    Psi,
    KsStat,
    KsPvalue,
    Wasserstein,
    JsDistance,
    Chi2Pvalue,
}

impl Kind {
    const ALL: [Kind; 10] = [
        Kind::RocAuc,
        Kind::AveragePrecision,
        Kind::LogLoss,
        Kind::Brier,
        Kind::Psi,
        Kind::KsStat,
        Kind::KsPvalue,
        Kind::Wasserstein,
        Kind::JsDistance,
        Kind::Chi2Pvalue,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::RocAuc => "roc_auc",
            Kind::AveragePrecision => "average_precision",
            Kind::LogLoss => "log_loss",
            Kind::Brier => "brier",
            Kind::Psi => "psi",
            Kind::KsStat => "ks_stat",
            Kind::KsPvalue => "ks_pvalue",
            Kind::Wasserstein => "wasserstein",
            Kind::JsDistance => "js_distance",
            Kind::Chi2Pvalue => "chi2_pvalue",
        }
    }

    /// Performance: (score, label); the others: (value, is_ref).
    fn is_performance(self) -> bool {
        matches!(self, Kind::RocAuc | Kind::AveragePrecision | Kind::LogLoss | Kind::Brier)
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Drift {
    kind: Kind,
    signature: Signature,
}

impl Drift {
    fn new(kind: Kind) -> Self {
        Drift { kind, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

fn numeric_or_bool(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean | DataType::Null)
}

impl AggregateUDFImpl for Drift {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.kind.name();
        let [first, second] = args else {
            return plan_err!(
                "{name} takes two arguments, {}",
                if self.kind.is_performance() { "(score, label)" } else { "(value, is_ref)" }
            );
        };
        if self.kind.is_performance() {
            if !numeric_or_bool(first) || !numeric_or_bool(second) {
                return plan_err!(
                    "{name}(score, label) takes a numeric score and a 0/1 or boolean label, not {first} and {second}"
                );
            }
            return Ok(vec![DataType::Float64, DataType::Float64]);
        }
        if !matches!(second, DataType::Boolean | DataType::Null) {
            return plan_err!("{name}(value, is_ref) takes a boolean is_ref (true for reference rows), not {second}; write e.g. start_timestamp_ms < 1795000000000");
        }
        if self.kind == Kind::Chi2Pvalue {
            return Ok(vec![DataType::Utf8, DataType::Boolean]);
        }
        if !numeric_or_bool(first) {
            return plan_err!(
                "{name}(value, is_ref) takes numeric values, not {first}; chi2_pvalue compares categories"
            );
        }
        Ok(vec![DataType::Float64, DataType::Boolean])
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(match self.kind {
            Kind::Chi2Pvalue => Box::new(CountsAccumulator::default()),
            kind => Box::new(PairsAccumulator { kind, values: Vec::new(), flags: Vec::new() }),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str, t: DataType| {
            Arc::new(Field::new(
                format_state_name(args.name, name),
                DataType::List(Arc::new(Field::new_list_field(t, true))),
                true,
            ))
        };
        Ok(match self.kind {
            Kind::Chi2Pvalue => vec![
                list("categories", DataType::Utf8),
                list("counts", DataType::UInt64),
                list("is_ref", DataType::Boolean),
            ],
            _ => vec![list("values", DataType::Float64), list("flags", DataType::Boolean)],
        })
    }
}

/// One list row holding `values`.
fn list_of(values: ArrayRef) -> ScalarValue {
    let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
    let offsets = OffsetBuffer::from_lengths([values.len()]);
    ScalarValue::List(Arc::new(ListArray::new(field, offsets, values, None)))
}

/// The values of every non-null list row of `state`.
fn lists(state: &ArrayRef) -> impl Iterator<Item = ArrayRef> + '_ {
    let list = state.as_list::<i32>();
    (0..list.len()).filter(move |&i| list.is_valid(i)).map(move |i| list.value(i))
}

/// Score and label pairs, or values with their side.
#[derive(Debug)]
struct PairsAccumulator {
    kind: Kind,
    values: Vec<f64>,
    /// The label (performance) or whether the value is the reference's.
    flags: Vec<bool>,
}

impl Accumulator for PairsAccumulator {
    fn update_batch(&mut self, args: &[ArrayRef]) -> Result<()> {
        let values = args[0].as_primitive::<Float64Type>();
        if self.kind.is_performance() {
            let labels = args[1].as_primitive::<Float64Type>();
            for i in 0..values.len() {
                if values.is_null(i) || labels.is_null(i) || !values.value(i).is_finite() {
                    continue;
                }
                let label = match labels.value(i) {
                    0.0 => false,
                    1.0 => true,
                    _ => continue,
                };
                self.values.push(values.value(i));
                self.flags.push(label);
            }
        } else {
            let sides = args[1].as_boolean();
            for i in 0..values.len() {
                // Missing values are left out, as the raw comparison leaves them out.
                if values.is_null(i) || sides.is_null(i) {
                    continue;
                }
                self.values.push(values.value(i));
                self.flags.push(sides.value(i));
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for (values, flags) in lists(&states[0]).zip(lists(&states[1])) {
            self.values.extend(values.as_primitive::<Float64Type>().values().iter());
            self.flags.extend(flags.as_boolean().iter().map(|b| b.unwrap_or(false)));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            list_of(Arc::new(Float64Array::from(std::mem::take(&mut self.values)))),
            list_of(Arc::new(BooleanArray::from(std::mem::take(&mut self.flags)))),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.value()?))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8 + self.flags.capacity()
    }
}

impl PairsAccumulator {
    fn value(&self) -> Result<Option<f64>> {
        if self.kind.is_performance() {
            if self.values.is_empty() {
                return Ok(None);
            }
            let b = performance::binary(&self.values, &self.flags, 0.5);
            let stat = match self.kind {
                Kind::RocAuc => b.roc_auc,
                Kind::AveragePrecision => b.average_precision,
                Kind::LogLoss => b.log_loss,
                _ => b.brier,
            };
            return Ok(stat.value);
        }
        let side = |reference: bool| -> Vec<f64> {
            self.values.iter().zip(&self.flags).filter(|(_, f)| **f == reference).map(|(v, _)| *v).collect()
        };
        let (r, c) = (side(true), side(false));
        Ok(match self.kind {
            Kind::KsStat | Kind::KsPvalue => {
                let ks =
                    drift::ks_two_sample(&Sample::from_finite(keep_finite(r)), &Sample::from_finite(keep_finite(c)));
                ks.map(|ks| if self.kind == Kind::KsStat { ks.statistic } else { ks.p_value })
            }
            Kind::Wasserstein => {
                drift::wasserstein(&Sample::from_finite(keep_finite(r)), &Sample::from_finite(keep_finite(c)))
            }
            Kind::Psi | Kind::JsDistance => {
                let method = if self.kind == Kind::Psi { Method::Psi } else { Method::Js };
                let column = |v: Vec<f64>| ColumnData::Numeric(v.into_iter().map(Some).collect());
                let options = Options { method, ..Options::default() };
                compare::compare_column(self.kind.name(), &column(r), &column(c), &options)
                    .map_err(|e| DataFusionError::Execution(e.to_string()))?
                    .statistic
            }
            _ => unreachable!("performance handled above, chi-square counts categories"),
        })
    }
}

fn keep_finite(mut v: Vec<f64>) -> Vec<f64> {
    v.retain(|x| x.is_finite());
    v
}

/// Category counts per side.
#[derive(Debug, Default)]
struct CountsAccumulator {
    counts: HashMap<(String, bool), u64>,
}

impl Accumulator for CountsAccumulator {
    fn update_batch(&mut self, args: &[ArrayRef]) -> Result<()> {
        let categories = args[0].as_string::<i32>();
        let sides = args[1].as_boolean();
        for i in 0..categories.len() {
            if categories.is_null(i) || sides.is_null(i) {
                continue;
            }
            *self.counts.entry((categories.value(i).to_owned(), sides.value(i))).or_default() += 1;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for ((names, counts), sides) in lists(&states[0]).zip(lists(&states[1])).zip(lists(&states[2])) {
            let (names, counts, sides) =
                (names.as_string::<i32>(), counts.as_primitive::<UInt64Type>(), sides.as_boolean());
            for i in 0..names.len() {
                *self.counts.entry((names.value(i).to_owned(), sides.value(i))).or_default() += counts.value(i);
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let entries: Vec<((String, bool), u64)> = std::mem::take(&mut self.counts).into_iter().collect();
        Ok(vec![
            list_of(Arc::new(StringArray::from_iter_values(entries.iter().map(|((n, _), _)| n.as_str())))),
            list_of(Arc::new(UInt64Array::from_iter_values(entries.iter().map(|(_, c)| *c)))),
            list_of(Arc::new(BooleanArray::from(entries.iter().map(|((_, r), _)| *r).collect::<Vec<_>>()))),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let (mut r, mut c) = (Categories::default(), Categories::default());
        for ((name, reference), count) in &self.counts {
            if *reference {
                r.add_many(name, *count)
            } else {
                c.add_many(name, *count)
            }
        }
        let options = Options { method: Method::Chi2, ..Options::default() };
        let verdict =
            compare::compare_column("chi2_pvalue", &ColumnData::Categorical(r), &ColumnData::Categorical(c), &options)
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        Ok(ScalarValue::Float64(verdict.p_value))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.keys().map(|(n, _)| n.capacity() + 48).sum::<usize>()
    }
}

/// What `kll_sketch` and `kll_merge` aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KllInput {
    Values,
    Sketches,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Kll {
    input: KllInput,
    signature: Signature,
}

impl Kll {
    fn new(input: KllInput) -> Self {
        let t = match input {
            KllInput::Values => DataType::Float64,
            KllInput::Sketches => DataType::Binary,
        };
        Kll { input, signature: Signature::exact(vec![t], Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for Kll {
    fn name(&self) -> &str {
        match self.input {
            KllInput::Values => "kll_sketch",
            KllInput::Sketches => "kll_merge",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(KllAccumulator { input: self.input, sketch: new_sketch()? }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format_state_name(args.name, "sketch"), DataType::Binary, true))])
    }
}

fn new_sketch() -> Result<Sketch> {
    Sketch::new(driftline_rollup::sketch::DEFAULT_K).map_err(|e| DataFusionError::Execution(e.to_string()))
}

fn read_sketch(bytes: &[u8]) -> Result<Sketch> {
    Sketch::from_bytes(bytes).map_err(|e| {
        DataFusionError::Execution(format!(
            "not a DataSketches KLL sketch of doubles (as kll_sketch and the rollups' sketch column hold): {e}"
        ))
    })
}

#[derive(Debug)]
struct KllAccumulator {
    input: KllInput,
    sketch: Sketch,
}

impl KllAccumulator {
    fn merge_bytes(&mut self, sketches: &BinaryArray) -> Result<()> {
        for bytes in sketches.iter().flatten() {
            let other = read_sketch(bytes)?;
            self.sketch.merge(&other).map_err(|e| DataFusionError::Execution(e.to_string()))?;
        }
        Ok(())
    }
}

impl Accumulator for KllAccumulator {
    fn update_batch(&mut self, args: &[ArrayRef]) -> Result<()> {
        match self.input {
            KllInput::Values => {
                for x in args[0].as_primitive::<Float64Type>().iter().flatten() {
                    if x.is_finite() {
                        self.sketch.update(x);
                    }
                }
                Ok(())
            }
            KllInput::Sketches => self.merge_bytes(args[0].as_binary::<i32>()),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_bytes(states[0].as_binary::<i32>())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.sketch.to_bytes()))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.sketch.to_bytes())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sketch.retained() * 8
    }
}

/// `kll_quantile(sketch, q)`: the sketch's estimate of the quantile at normalized rank `q`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KllQuantile {
    signature: Signature,
}

impl KllQuantile {
    fn new() -> Self {
        KllQuantile { signature: Signature::exact(vec![DataType::Binary, DataType::Float64], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for KllQuantile {
    fn name(&self) -> &str {
        "kll_quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let sketches = args.args[0].clone().into_array(rows)?;
        let ranks = args.args[1].clone().into_array(rows)?;
        let (sketches, ranks) = (sketches.as_binary::<i32>(), ranks.as_primitive::<Float64Type>());
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            if sketches.is_null(i) || ranks.is_null(i) {
                out.push(None);
                continue;
            }
            let q = ranks.value(i);
            if !(0.0..=1.0).contains(&q) {
                return exec_err!("kll_quantile: rank {q} is outside [0, 1]; ask for e.g. 0.5 or 0.99");
            }
            out.push(read_sketch(sketches.value(i))?.quantile(q));
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}
