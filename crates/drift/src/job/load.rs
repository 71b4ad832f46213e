//! The data of a run, read in bounded memory: the current window of predictions from the
//! store, each with its late ground truth merged in (the store joins delayed metrics by UUID),
//! and the reference, a window of the store or a file in the references directory.
//!
//! Nothing is kept per row but what the statistics need: a feature stays one number per row
//! while all its values are numbers, and becomes category counts from its first other value on
//! (long values cut, at most 10,000 names, as [`crate::stats::categories`] says); the score and
//! the label stay one pair of numbers (or two class ids) per labelled prediction. A job with
//! chunk thresholds also keeps each feature's values row by row (a number, or a category's
//! code), which its reference chunks need.
//!
//! A store window that begins before the raw rows retention kept is read from the rollups
//! instead ([`driftline_rollup::summarise`]): one summary per feature, and for a binary task the
//! score sketches of each class, from which ROC AUC is estimated. Results from them are marked
//! approximate.

use super::paths::{Paths, Scratch};
use super::spec::{EstimateSpec, JobSpec, Reference};
use crate::chunked::Values;
use crate::compare::Approximation;
use crate::estimate::Predictions;
use crate::format::{category_name, time};
use crate::report::run::{ReferenceInfo, RollupRead};
use crate::stats::categories::{category_of, Categories, MAX_NAMES};
use crate::stats::column::ColumnData;
use crate::stats::performance::{self, Binary, Confusion, Metrics, RocPoint, Task};
use crate::stats::sketched;
use crate::stats::value::Stat;
use crate::table::frame::{Cells, Table};
use crate::table::references::ReferenceFiles;
use crate::Error;
use driftline_rollup::leaves::ClassScores;
use driftline_rollup::{Summary, SummaryOptions, WindowSummary};
use driftline_store::{Store, Window};
use futures::StreamExt;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// A window's columns, one per feature of the job in its order.
pub(crate) enum Columns {
    /// From the raw rows.
    Raw(Vec<ColumnData>),
    /// From the rollups, the raw rows being gone.
    Summarised(Vec<Summary>),
}

/// The current window of a run.
pub(crate) struct Current {
    /// Predictions in the window.
    pub(crate) rows: usize,
    pub(crate) features: Columns,
    pub(crate) outcomes: CurrentOutcomes,
    /// Each prediction's score, predicted class and label, when the job estimates performance.
    pub(crate) estimate_rows: EstimateRows,
    /// Each feature's values row by row, when the job has chunk thresholds.
    pub(crate) chunk_rows: ChunkRows,
    /// Set when read from the rollups.
    pub(crate) from_rollups: Option<RollupRead>,
}

/// Each feature's values row by row, in the job's feature order, or why there are none: `None`
/// when the job has no chunk thresholds.
pub(crate) type ChunkRows = Option<Result<ChunkValues, String>>;

/// What chunks are cut from: each feature's values row by row, the rows' start times (none
/// for a reference file), and each row's score and label for the realised performance per
/// chunk (or why there are none).
pub(crate) struct ChunkValues {
    pub(crate) columns: Vec<Values>,
    pub(crate) times: Option<Vec<i64>>,
    pub(crate) outcomes: Result<RowOutcomes, String>,
}

/// The rows a performance estimate needs, or why there are none: `None` when the job does not
/// estimate.
pub(crate) type EstimateRows = Option<Result<Predictions, String>>;

/// Why a window read from the rollups cannot be estimated.
const NO_ROWS_IN_ROLLUPS: &str = "read from the rollups, which keep no per-prediction scores";
/// Why a window read from the rollups cannot be cut into chunks.
const NO_VALUES_IN_ROLLUPS: &str = "read from the rollups, which keep no per-prediction values";

/// The scores and labels of the current window.
pub(crate) enum CurrentOutcomes {
    Raw(Outcomes),
    /// From the rollups: the score summaries of the positive and the negative class (binary
    /// task only; `None` otherwise).
    Summarised {
        rows: usize,
        task: Task,
        classes: Option<Box<(Summary, Summary)>>,
    },
}

/// Reads the current window.
pub(crate) async fn current(store: &dyn Store, spec: &JobSpec, window: Window) -> Result<Current, Error> {
    if raw_gone(store, window).await? {
        let classes =
            (spec.task == Task::Binary).then(|| ClassScores { score: spec.score.clone(), label: spec.label.clone() });
        let mut paths = spec.features.clone();
        if let Some(c) = &classes {
            paths.extend([c.path(true), c.path(false)]);
        }
        let mut summary = summarise(store, spec, &paths, window).await?;
        let class_summaries = classes.map(|_| {
            let negative = summary.summaries.pop().expect("asked for");
            let positive = summary.summaries.pop().expect("asked for");
            Box::new((positive, negative))
        });
        let rows = summary.predictions as usize;
        return Ok(Current {
            rows,
            estimate_rows: spec.estimate.as_ref().map(|_| Err(format!("the current window was {NO_ROWS_IN_ROLLUPS}"))),
            chunk_rows: spec.chunks.as_ref().map(|_| Err(format!("the current window was {NO_VALUES_IN_ROLLUPS}"))),
            from_rollups: Some(rollup_read("current", &summary)),
            features: Columns::Summarised(summary.summaries),
            outcomes: CurrentOutcomes::Summarised { rows, task: spec.task, classes: class_summaries },
        });
    }
    let mut outcomes = Outcomes::new(spec.task).scoring(spec.class_scores.keys().cloned().collect());
    let read = read(store, spec, window, Some(&mut outcomes)).await?;
    Ok(Current {
        rows: read.rows,
        features: Columns::Raw(read.columns),
        outcomes: CurrentOutcomes::Raw(outcomes),
        estimate_rows: read.estimate_rows.map(Ok),
        chunk_rows: read.chunk_rows.map(Ok),
        from_rollups: None,
    })
}

/// Whether retention removed raw rows of `window` (all or some of them).
async fn raw_gone(store: &dyn Store, window: Window) -> Result<bool, Error> {
    let state = store.rollup_state().await?;
    Ok(state.raw_kept_from_ms.is_some_and(|kept_from| window.start_ms < kept_from))
}

async fn summarise(
    store: &dyn Store,
    spec: &JobSpec,
    paths: &[String],
    window: Window,
) -> Result<WindowSummary, Error> {
    driftline_rollup::summarise(store, &spec.deployment, paths, window, SummaryOptions::default()).await.map_err(|e| {
        match e {
            driftline_rollup::Error::Store(e) => Error::Store(e),
            other => Error::Internal { what: "reading rollups".into(), message: other.to_string() },
        }
    })
}

fn rollup_read(which: &str, summary: &WindowSummary) -> RollupRead {
    RollupRead {
        window: which.into(),
        resolutions: summary.resolutions(),
        covered_start_ms: summary.covered.start_ms,
        covered_end_ms: summary.covered.end_ms,
    }
}

/// A run's reference: one column per feature, the rows for the estimate, what it is, and where
/// it was read from when that was the rollups.
pub(crate) struct ReferenceRead {
    pub(crate) columns: Columns,
    pub(crate) estimate_rows: EstimateRows,
    pub(crate) chunk_rows: ChunkRows,
    pub(crate) info: ReferenceInfo,
    pub(crate) from_rollups: Option<RollupRead>,
}

/// Reads the reference of the run whose current window is `window`.
pub(crate) async fn reference(
    store: &dyn Store,
    references: &ReferenceFiles,
    spec: &JobSpec,
    window: Window,
) -> Result<ReferenceRead, Error> {
    let (w, description) = match &spec.reference {
        Reference::Baseline { start_ms, end_ms } => {
            let w = Window { start_ms: *start_ms, end_ms: *end_ms };
            (w, format!("baseline window {} .. {}", time(w.start_ms), time(w.end_ms)))
        }
        Reference::Previous { offset } => {
            let w = Window { start_ms: window.start_ms - offset.ms, end_ms: window.end_ms - offset.ms };
            (w, format!("the same window {offset} earlier"))
        }
        Reference::File { path } => {
            let resolved = references.resolve(path)?;
            let job = spec.clone();
            let (columns, rows, estimate_rows, chunk_rows) =
                tokio::task::spawn_blocking(move || -> Result<_, Error> {
                    let table = Table::read(&resolved)?;
                    let columns = job.features.iter().map(|f| table.column(f)).collect::<Result<Vec<_>, _>>()?;
                    let estimate_rows =
                        job.estimate.as_ref().map(|e| file_rows(&table, &job, e).map_err(|e| e.to_string()));
                    let chunk_rows = job.chunks.as_ref().map(|_| {
                        job.features
                            .iter()
                            .map(|f| table.values(f))
                            .collect::<Result<Vec<_>, _>>()
                            .map(|columns| ChunkValues {
                                columns,
                                times: None,
                                outcomes: file_outcomes(&table, &job).map_err(|e| e.to_string()),
                            })
                            .map_err(|e| e.to_string())
                    });
                    Ok((columns, table.rows(), estimate_rows, chunk_rows))
                })
                .await
                .map_err(|e| Error::Internal { what: "reading the reference file".into(), message: e.to_string() })??;
            let info = ReferenceInfo {
                description: format!("reference file {}", path.display()),
                rows,
                start_ms: None,
                end_ms: None,
            };
            return Ok(ReferenceRead {
                columns: Columns::Raw(columns),
                estimate_rows,
                chunk_rows,
                info,
                from_rollups: None,
            });
        }
    };
    if raw_gone(store, w).await? {
        let summary = summarise(store, spec, &spec.features, w).await?;
        let read = rollup_read("reference", &summary);
        let info = ReferenceInfo {
            description: format!("{description}, from rollups ({})", read.resolutions),
            rows: summary.predictions as usize,
            start_ms: Some(w.start_ms),
            end_ms: Some(w.end_ms),
        };
        return Ok(ReferenceRead {
            columns: Columns::Summarised(summary.summaries),
            estimate_rows: spec.estimate.as_ref().map(|_| Err(format!("the reference was {NO_ROWS_IN_ROLLUPS}"))),
            chunk_rows: spec.chunks.as_ref().map(|_| Err(format!("the reference was {NO_VALUES_IN_ROLLUPS}"))),
            info,
            from_rollups: Some(read),
        });
    }
    let read = read(store, spec, w, None).await?;
    let info = ReferenceInfo { description, rows: read.rows, start_ms: Some(w.start_ms), end_ms: Some(w.end_ms) };
    Ok(ReferenceRead {
        columns: Columns::Raw(read.columns),
        estimate_rows: read.estimate_rows.map(Ok),
        chunk_rows: read.chunk_rows.map(Ok),
        info,
        from_rollups: None,
    })
}

/// A file column's cells as JSON values, as the store's rows have them.
fn json_cells(table: &Table, name: &str) -> Result<Vec<Option<Value>>, Error> {
    Ok(match table.cells(name)? {
        Cells::Numbers(v) => {
            v.into_iter().map(|x| x.and_then(|x| serde_json::Number::from_f64(x).map(Value::Number))).collect()
        }
        Cells::Text(v) => v.into_iter().map(|x| x.map(Value::String)).collect(),
    })
}

/// A reference file's rows for the estimate: its columns named by the job's score, predicted
/// class and label paths.
fn file_rows(table: &Table, spec: &JobSpec, estimate: &EstimateSpec) -> Result<Predictions, Error> {
    let cells = |name: &str| json_cells(table, name);
    let scores = cells(&spec.score)?;
    let labels = cells(&spec.label)?;
    let predicted = estimate.prediction.as_deref().map(cells).transpose()?;
    let mut rows = Predictions::default();
    for i in 0..table.rows() {
        let predicted = predicted.as_ref().map(|p| Cell::of(p[i].as_ref()));
        push_estimate_row(&mut rows, estimate, Cell::of(scores[i].as_ref()), predicted, Cell::of(labels[i].as_ref()));
    }
    Ok(rows)
}

/// Adds a prediction's score, predicted class (the score against the decision threshold when
/// the job names no predicted class) and label to the estimate's rows.
fn push_estimate_row(
    rows: &mut Predictions,
    estimate: &EstimateSpec,
    score: Cell<'_>,
    predicted: Option<Cell<'_>>,
    label: Cell<'_>,
) {
    let score = match score {
        Cell::Number(x) if x.is_finite() => Some(x),
        _ => None,
    };
    rows.predicted.push(match predicted {
        Some(cell) => binary(&cell),
        None => score.map(|s| s >= estimate.decision_threshold),
    });
    rows.scores.push(score);
    rows.labels.push(binary(&label));
}

/// A reference file's outcomes row by row: its columns named by the job's score, label and
/// class-score paths.
fn file_outcomes(table: &Table, spec: &JobSpec) -> Result<RowOutcomes, Error> {
    let scores = json_cells(table, &spec.score)?;
    let labels = json_cells(table, &spec.label)?;
    let classes = spec.class_scores.values().map(|c| json_cells(table, c)).collect::<Result<Vec<_>, _>>()?;
    let mut outcomes = RowOutcomes::new(spec.task, classes.len());
    for i in 0..table.rows() {
        let class_cells: Vec<Cell<'_>> = classes.iter().map(|c| Cell::of(c[i].as_ref())).collect();
        outcomes.push(Cell::of(scores[i].as_ref()), Cell::of(labels[i].as_ref()), &class_cells);
    }
    Ok(outcomes)
}

/// A binary class: 0/1 or true/false.
fn binary(cell: &Cell<'_>) -> Option<bool> {
    match cell {
        Cell::Number(x) if *x == 0.0 => Some(false),
        Cell::Number(x) if *x == 1.0 => Some(true),
        Cell::Text(t) if t == "true" || t == "1" => Some(true),
        Cell::Text(t) if t == "false" || t == "0" => Some(false),
        _ => None,
    }
}

/// A window of the job's deployment as read.
struct WindowRead {
    /// Predictions.
    rows: usize,
    /// One per feature.
    columns: Vec<ColumnData>,
    /// When the job estimates performance.
    estimate_rows: Option<Predictions>,
    /// Each feature's values row by row, when the job has chunk thresholds.
    chunk_rows: Option<ChunkValues>,
}

/// Reads a window of the job's deployment, and the scores and labels into `outcomes` when
/// given.
async fn read(
    store: &dyn Store,
    spec: &JobSpec,
    window: Window,
    mut outcomes: Option<&mut Outcomes>,
) -> Result<WindowRead, Error> {
    let mut stream = store.job_rows(&spec.deployment, window);
    let mut columns: Vec<ColumnBuilder> = spec.features.iter().map(|_| ColumnBuilder::default()).collect();
    let mut estimate_rows = spec.estimate.as_ref().map(|_| Predictions::default());
    let mut chunk_rows: Option<(Vec<RowsBuilder>, Vec<i64>, RowOutcomes)> = spec.chunks.as_ref().map(|_| {
        let builders = spec.features.iter().map(|_| RowsBuilder::default()).collect();
        (builders, Vec::new(), RowOutcomes::new(spec.task, spec.class_scores.len()))
    });
    // The features, then the score, the label, the predicted class and the class scores.
    let predicted_path = spec.estimate.as_ref().and_then(|e| e.prediction.as_deref());
    let mut wanted: Vec<&str> = spec.features.iter().map(String::as_str).collect();
    wanted.extend([spec.score.as_str(), spec.label.as_str()]);
    wanted.extend(predicted_path);
    let (score_at, label_at) = (spec.features.len(), spec.features.len() + 1);
    let classes_at = wanted.len();
    wanted.extend(spec.class_scores.values().map(String::as_str));
    let paths = Paths::new(&wanted);
    let (mut values, mut scratch) = (Vec::new(), Scratch::default());
    let mut rows = 0;
    while let Some(record) = stream.next().await {
        let record = record?;
        paths.read(&record.metrics, record.delayed.as_deref(), &mut values, &mut scratch).map_err(|e| {
            Error::Internal {
                what: format!("reading the stored metrics of prediction {}", record.uuid),
                message: e.to_string(),
            }
        })?;
        rows += 1;
        let (score, label) = (values[score_at].as_ref(), values[label_at].as_ref());
        if let Some((_, times, outcomes)) = chunk_rows.as_mut() {
            times.push(record.start_timestamp_ms);
            let class_cells: Vec<Cell<'_>> = values[classes_at..].iter().map(|v| Cell::of(v.as_ref())).collect();
            outcomes.push(Cell::of(score), Cell::of(label), &class_cells);
        }
        for (i, column) in columns.iter_mut().enumerate() {
            let cell = Cell::of(values[i].as_ref());
            if let Some((chunk_rows, ..)) = chunk_rows.as_mut() {
                chunk_rows[i].push(&cell);
            }
            column.push(cell);
        }
        if let (Some(estimate), Some(rows)) = (&spec.estimate, estimate_rows.as_mut()) {
            let predicted = predicted_path.map(|_| Cell::of(values[label_at + 1].as_ref()));
            push_estimate_row(rows, estimate, Cell::of(score), predicted, Cell::of(label));
        }
        if let Some(outcomes) = outcomes.as_deref_mut() {
            let class_cells: Vec<Cell<'_>> = values[classes_at..].iter().map(|v| Cell::of(v.as_ref())).collect();
            outcomes.push_scored(Cell::of(score), Cell::of(label), &class_cells);
        }
    }
    Ok(WindowRead {
        rows,
        columns: columns.into_iter().map(ColumnBuilder::finish).collect(),
        estimate_rows,
        chunk_rows: chunk_rows.map(|(columns, times, outcomes)| ChunkValues {
            columns: columns.into_iter().map(RowsBuilder::finish).collect(),
            times: Some(times),
            outcomes: Ok(outcomes),
        }),
    })
}

/// One value read from an event.
#[derive(Debug, Clone, PartialEq)]
enum Cell<'a> {
    Missing,
    Number(f64),
    Text(Cow<'a, str>),
}

impl<'a> Cell<'a> {
    fn of(value: Option<&'a Value>) -> Self {
        match value {
            None | Some(Value::Null) => Cell::Missing,
            Some(Value::Number(n)) => n.as_f64().map_or(Cell::Missing, Cell::Number),
            Some(Value::Bool(b)) => Cell::Text(Cow::Borrowed(if *b { "true" } else { "false" })),
            Some(Value::String(s)) => Cell::Text(Cow::Borrowed(s)),
            // Arrays and objects are not values of one feature: counted as their JSON text.
            Some(other) => Cell::Text(Cow::Owned(other.to_string())),
        }
    }
}

/// One feature's values as they are read: numbers, one per row, while every value present is a
/// number; from the first other value on, category counts, the numbers so far among them (as
/// JSON prints them).
#[derive(Debug)]
enum ColumnBuilder {
    Numbers(Vec<Option<f64>>),
    Categories(Categories),
}

impl Default for ColumnBuilder {
    fn default() -> Self {
        ColumnBuilder::Numbers(Vec::new())
    }
}

impl ColumnBuilder {
    fn push(&mut self, cell: Cell<'_>) {
        if let (ColumnBuilder::Numbers(numbers), Cell::Text(_)) = (&mut *self, &cell) {
            let mut categories = Categories::default();
            for x in numbers.iter() {
                match x {
                    Some(x) => categories.add(&category_name(*x)),
                    None => categories.add_missing(),
                }
            }
            *self = ColumnBuilder::Categories(categories);
        }
        match (self, cell) {
            (ColumnBuilder::Numbers(v), Cell::Number(x)) => v.push(Some(x)),
            (ColumnBuilder::Numbers(v), _) => v.push(None),
            (ColumnBuilder::Categories(c), Cell::Missing) => c.add_missing(),
            (ColumnBuilder::Categories(c), Cell::Number(x)) => c.add(&category_name(x)),
            (ColumnBuilder::Categories(c), Cell::Text(t)) => c.add(&t),
        }
    }

    fn finish(self) -> ColumnData {
        match self {
            ColumnBuilder::Numbers(v) => ColumnData::Numeric(v),
            ColumnBuilder::Categories(c) => ColumnData::Categorical(c),
        }
    }
}

/// The category of the values beyond [`MAX_NAMES`] distinct ones, row by row.
const OTHER: &str = "(other categories)";

/// One feature's values row by row, as [`ColumnBuilder`] reads them: numbers while every value
/// present is a number; from the first other value on, each row's category as a code (the
/// numbers so far by their JSON text), at most [`MAX_NAMES`] names, the rest as one, "other".
#[derive(Debug)]
enum RowsBuilder {
    Numbers(Vec<Option<f64>>),
    Categories { index: HashMap<String, u32>, names: Vec<String>, codes: Vec<Option<u32>> },
}

impl Default for RowsBuilder {
    fn default() -> Self {
        RowsBuilder::Numbers(Vec::new())
    }
}

impl RowsBuilder {
    fn push(&mut self, cell: &Cell<'_>) {
        if let (RowsBuilder::Numbers(numbers), Cell::Text(_)) = (&mut *self, cell) {
            let numbers = std::mem::take(numbers);
            *self = RowsBuilder::Categories { index: HashMap::new(), names: Vec::new(), codes: Vec::new() };
            for x in numbers {
                self.push(&x.map_or(Cell::Missing, Cell::Number));
            }
        }
        match self {
            RowsBuilder::Numbers(v) => v.push(match cell {
                Cell::Number(x) => Some(*x),
                _ => None,
            }),
            RowsBuilder::Categories { index, names, codes } => {
                let name = match cell {
                    Cell::Missing => {
                        codes.push(None);
                        return;
                    }
                    Cell::Number(x) => Cow::Owned(category_name(*x)),
                    Cell::Text(t) => category_of(t),
                };
                let code = match index.get(&*name) {
                    Some(code) => *code,
                    None => {
                        let name = if names.len() < MAX_NAMES { name.into_owned() } else { OTHER.to_string() };
                        *index.entry(name.clone()).or_insert_with(|| {
                            names.push(name);
                            (names.len() - 1) as u32
                        })
                    }
                };
                codes.push(Some(code));
            }
        }
    }

    fn finish(self) -> Values {
        match self {
            RowsBuilder::Numbers(v) => Values::Numbers(v),
            RowsBuilder::Categories { names, codes, .. } => Values::Categories { names, codes },
        }
    }
}

/// The scores and labels of a window, kept as the job's task needs them: only the labelled
/// predictions whose score and label fit the task, and counts of the others.
#[derive(Debug)]
/// Each row's outcome, row by row beside the chunk values, for the realised performance per
/// chunk: `None` where a row has no label yet or a value that does not fit the task.
pub(crate) enum RowOutcomes {
    /// The score (probability of class 1) and the label.
    Binary {
        scores: Vec<Option<f64>>,
        labels: Vec<Option<bool>>,
    },
    Regression {
        predicted: Vec<Option<f64>>,
        targets: Vec<Option<f64>>,
    },
    /// Ids of the predicted and the true class into `names` (at most [`MAX_NAMES`]; named as
    /// categories are), and each class's score in the job's `class_scores` order.
    Multiclass {
        names: Vec<String>,
        ids: HashMap<String, u32>,
        predicted: Vec<Option<u32>>,
        labels: Vec<Option<u32>>,
        scores: Vec<Vec<Option<f64>>>,
    },
}

impl RowOutcomes {
    fn new(task: Task, classes: usize) -> Self {
        match task {
            Task::Binary => RowOutcomes::Binary { scores: Vec::new(), labels: Vec::new() },
            Task::Regression => RowOutcomes::Regression { predicted: Vec::new(), targets: Vec::new() },
            Task::Multiclass => RowOutcomes::Multiclass {
                names: Vec::new(),
                ids: HashMap::new(),
                predicted: Vec::new(),
                labels: Vec::new(),
                scores: vec![Vec::new(); classes],
            },
        }
    }

    /// A row's score (the predicted class or value, but for a binary task), label and class
    /// scores.
    fn push(&mut self, score: Cell<'_>, label: Cell<'_>, class_cells: &[Cell<'_>]) {
        let number = |cell: &Cell<'_>| match cell {
            Cell::Number(x) if x.is_finite() => Some(*x),
            _ => None,
        };
        match self {
            RowOutcomes::Binary { scores, labels } => {
                scores.push(number(&score));
                labels.push(binary(&label));
            }
            RowOutcomes::Regression { predicted, targets } => {
                predicted.push(number(&score));
                targets.push(number(&label));
            }
            RowOutcomes::Multiclass { names, ids, predicted, labels, scores } => {
                let mut class = |cell: Cell<'_>| class_id(names, ids, cell);
                predicted.push(class(score));
                labels.push(class(label));
                for (column, cell) in scores.iter_mut().zip(class_cells) {
                    column.push(number(cell));
                }
            }
        }
    }
}

/// The id of a class named by `cell` in `names` (added when new, while there is room).
fn class_id(names: &mut Vec<String>, ids: &mut HashMap<String, u32>, cell: Cell<'_>) -> Option<u32> {
    let name = match cell {
        Cell::Missing => return None,
        Cell::Number(x) => Cow::Owned(category_name(x)),
        Cell::Text(t) => t,
    };
    let name = category_of(&name);
    if let Some(id) = ids.get(&*name) {
        return Some(*id);
    }
    if names.len() >= MAX_NAMES {
        return None;
    }
    let id = names.len() as u32;
    names.push(name.to_string());
    ids.insert(name.into_owned(), id);
    Some(id)
}

pub(crate) struct Outcomes {
    /// Predictions whose ground truth has arrived.
    labelled: usize,
    /// Predictions without ground truth yet.
    unlabelled: usize,
    /// Labelled predictions whose score or label does not fit the task.
    invalid: usize,
    pairs: Pairs,
    /// Multiclass with class scores: the classes' names in the job's order, and each kept
    /// pair's scores, one column per class.
    class_scores: Option<(Vec<String>, Vec<Vec<f64>>)>,
}

#[derive(Debug)]
enum Pairs {
    Binary {
        scores: Vec<f64>,
        labels: Vec<bool>,
    },
    Regression {
        predicted: Vec<f64>,
        targets: Vec<f64>,
    },
    /// Class ids of the prediction and the label; at most [`MAX_NAMES`] classes, named as
    /// categories are (long names cut).
    Multiclass {
        names: Vec<String>,
        ids: HashMap<String, u32>,
        pairs: Vec<(u32, u32)>,
    },
}

/// Performance on a window's labelled predictions.
pub(crate) struct Performance {
    pub(crate) metrics: Metrics,
    /// The ROC curve, binary task only.
    pub(crate) roc: Vec<RocPoint>,
    pub(crate) labelled: usize,
    pub(crate) unlabelled: usize,
    pub(crate) invalid: usize,
    /// Set when estimated from the rollups.
    pub(crate) approximate: Option<Approximation>,
}

impl CurrentOutcomes {
    /// The metrics of the task (CPU work).
    pub(crate) fn performance(self) -> Performance {
        match self {
            CurrentOutcomes::Raw(outcomes) => outcomes.performance(),
            CurrentOutcomes::Summarised { rows, task, classes } => summarised_performance(rows, task, classes),
        }
    }
}

/// Performance from the rollups: ROC AUC of a binary task from the two classes' score
/// sketches; the other metrics need each prediction's score and label, which are gone.
fn summarised_performance(rows: usize, task: Task, classes: Option<Box<(Summary, Summary)>>) -> Performance {
    const GONE: &str = "the window's raw rows are gone; the rollups keep ROC AUC only (binary task)";
    let count = |s: &Summary| s.numeric.as_ref().map_or(0, |n| n.count) as usize;
    let (labelled, metrics, approximate) = match (task, classes.map(|c| *c)) {
        (Task::Binary, Some((positive, negative))) => {
            let (p, n) = (count(&positive), count(&negative));
            let auc = match (&positive.numeric, &negative.numeric) {
                (Some(a), Some(b)) => sketched::roc_auc(&a.sketch, &b.sketch),
                _ => None,
            };
            let roc_auc = match auc {
                Some(a) => Stat::of(a.value),
                None => Stat::undefined("ROC AUC needs predictions of both classes"),
            };
            let metrics = Binary {
                rows: p + n,
                positives: p,
                threshold: Some(0.5),
                roc_auc,
                average_precision: Stat::undefined(GONE),
                accuracy: Stat::undefined(GONE),
                precision: Stat::undefined(GONE),
                recall: Stat::undefined(GONE),
                f1: Stat::undefined(GONE),
                log_loss: Stat::undefined(GONE),
                brier: Stat::undefined(GONE),
                confusion: Confusion::default(),
            };
            let approximate = auc.map(|a| Approximation {
                from: "kll sketches".into(),
                rank_error: None,
                error_bound: Some(a.error_bound),
                note: Some("ROC AUC from the score sketches of each class".into()),
            });
            (p + n, Metrics::Binary(metrics), approximate)
        }
        _ => {
            let undefined = || Stat::undefined(GONE);
            let metrics = match task {
                Task::Regression => Metrics::Regression(performance::Regression {
                    rows: 0,
                    mse: undefined(),
                    rmse: undefined(),
                    mae: undefined(),
                    r2: undefined(),
                    mape: undefined(),
                }),
                _ => Metrics::Multiclass(performance::Multiclass {
                    rows: 0,
                    classes: 0,
                    accuracy: undefined(),
                    macro_f1: undefined(),
                    macro_precision: undefined(),
                    macro_recall: undefined(),
                    weighted_precision: undefined(),
                    weighted_recall: undefined(),
                    weighted_f1: undefined(),
                    per_class: Default::default(),
                    one_vs_rest: None,
                }),
            };
            (0, metrics, None)
        }
    };
    Performance {
        metrics,
        roc: Vec::new(),
        labelled,
        unlabelled: rows.saturating_sub(labelled),
        invalid: 0,
        approximate,
    }
}

impl Outcomes {
    fn new(task: Task) -> Self {
        let pairs = match task {
            Task::Binary => Pairs::Binary { scores: Vec::new(), labels: Vec::new() },
            Task::Regression => Pairs::Regression { predicted: Vec::new(), targets: Vec::new() },
            Task::Multiclass => Pairs::Multiclass { names: Vec::new(), ids: HashMap::new(), pairs: Vec::new() },
        };
        Outcomes { labelled: 0, unlabelled: 0, invalid: 0, pairs, class_scores: None }
    }

    /// Also keeps each pair's scores of `classes` (multiclass), for one-vs-rest ROC AUC; a
    /// labelled prediction without a finite score for every class then does not fit.
    fn scoring(mut self, classes: Vec<String>) -> Self {
        if !classes.is_empty() {
            let columns = vec![Vec::new(); classes.len()];
            self.class_scores = Some((classes, columns));
        }
        self
    }

    #[cfg(test)]
    fn push(&mut self, score: Cell<'_>, label: Cell<'_>) {
        self.push_scored(score, label, &[]);
    }

    /// A prediction's score and label, and its class scores in [`Outcomes::scoring`]'s order.
    fn push_scored(&mut self, score: Cell<'_>, label: Cell<'_>, class_cells: &[Cell<'_>]) {
        if label == Cell::Missing {
            self.unlabelled += 1;
            return;
        }
        self.labelled += 1;
        let fits = match &mut self.pairs {
            Pairs::Binary { scores, labels } => match (score, binary(&label)) {
                (Cell::Number(x), Some(t)) if x.is_finite() => {
                    scores.push(x);
                    labels.push(t);
                    true
                }
                _ => false,
            },
            Pairs::Regression { predicted, targets } => match (score, label) {
                (Cell::Number(x), Cell::Number(y)) if x.is_finite() && y.is_finite() => {
                    predicted.push(x);
                    targets.push(y);
                    true
                }
                _ => false,
            },
            Pairs::Multiclass { names, ids, pairs } => {
                let mut class = |cell: Cell<'_>| class_id(names, ids, cell);
                let scores: Option<Vec<f64>> = match &self.class_scores {
                    None => Some(Vec::new()),
                    Some(_) => class_cells
                        .iter()
                        .map(|c| match c {
                            Cell::Number(x) if x.is_finite() => Some(*x),
                            _ => None,
                        })
                        .collect(),
                };
                match (class(score), class(label), scores) {
                    (Some(p), Some(t), Some(scores)) => {
                        pairs.push((p, t));
                        if let Some((_, columns)) = self.class_scores.as_mut() {
                            for (column, x) in columns.iter_mut().zip(scores) {
                                column.push(x);
                            }
                        }
                        true
                    }
                    _ => false,
                }
            }
        };
        if !fits {
            self.invalid += 1;
        }
    }

    /// The metrics of the task on the labelled predictions that fit it (CPU work).
    pub(crate) fn performance(self) -> Performance {
        let (metrics, roc) = match self.pairs {
            Pairs::Binary { scores, labels } => {
                let roc = performance::roc_curve(&scores, &labels);
                (Metrics::Binary(performance::binary(&scores, &labels, 0.5)), roc)
            }
            Pairs::Regression { predicted, targets } => {
                (Metrics::Regression(performance::regression(&predicted, &targets)), Vec::new())
            }
            Pairs::Multiclass { names, pairs, .. } => {
                let p: Vec<&str> = pairs.iter().map(|(p, _)| names[*p as usize].as_str()).collect();
                let t: Vec<&str> = pairs.iter().map(|(_, t)| names[*t as usize].as_str()).collect();
                let mut metrics = performance::multiclass(&p, &t);
                if let Some((classes, columns)) = self.class_scores {
                    let scores: BTreeMap<String, Vec<f64>> = classes.into_iter().zip(columns).collect();
                    metrics.one_vs_rest = Some(performance::one_vs_rest(&scores, &t));
                }
                (Metrics::Multiclass(metrics), Vec::new())
            }
        };
        Performance {
            metrics,
            roc,
            labelled: self.labelled,
            unlabelled: self.unlabelled,
            invalid: self.invalid,
            approximate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_walk_nested_objects() {
        let metrics = r#"{"input":{"tenure":12,"plan":"basic"},"prediction":0.8}"#;
        let paths = Paths::new(&["input.tenure", "prediction", "input.missing", "prediction.deeper"]);
        let mut values = Vec::new();
        paths.read(metrics, None, &mut values, &mut Scratch::default()).unwrap();
        assert_eq!(values, vec![Some(json!(12)), Some(json!(0.8)), None, None]);
    }

    fn column(values: &[Value]) -> ColumnData {
        let mut builder = ColumnBuilder::default();
        for v in values {
            builder.push(Cell::of(Some(v)));
        }
        builder.finish()
    }

    #[test]
    fn mixed_cells_become_categories() {
        assert_eq!(column(&[json!(1.0), Value::Null]), ColumnData::Numeric(vec![Some(1.0), None]));
        let mixed = column(&[json!(1.0), Value::Null, json!("a"), json!(2), json!(true)]);
        let expected = Categories::of([Some("1"), None, Some("a"), Some("2"), Some("true")]);
        assert_eq!(mixed, ColumnData::Categorical(expected));
    }

    #[test]
    fn long_text_is_kept_as_bounded_counts() {
        // 20,000 rows of distinct 900-character texts: at most 10,000 names of at most 256 bytes.
        let filler = "x".repeat(900);
        let mut builder = ColumnBuilder::default();
        for i in 0..20_000 {
            let text = format!("{i:06}{filler}");
            builder.push(Cell::of(Some(&Value::String(text))));
        }
        let ColumnData::Categorical(c) = builder.finish() else { panic!("categories") };
        assert_eq!((c.distinct(), c.untracked(), c.values()), (MAX_NAMES, 10_000, 20_000));
    }

    #[test]
    fn outcomes_keep_what_the_task_needs() {
        let mut binary = Outcomes::new(Task::Binary);
        for (score, label) in [
            (json!(0.9), json!(1)),
            (json!(0.2), json!("false")),
            (json!("high"), json!(1)),
            (json!(0.5), json!(2)),
            (json!(0.4), Value::Null),
        ] {
            binary.push(Cell::of(Some(&score)), Cell::of(Some(&label)));
        }
        let p = binary.performance();
        assert_eq!((p.labelled, p.unlabelled, p.invalid), (4, 1, 2));
        let Metrics::Binary(b) = p.metrics else { panic!("binary") };
        assert_eq!((b.rows, b.positives), (2, 1));

        let mut classes = Outcomes::new(Task::Multiclass);
        for (score, label) in [("cat", "cat"), ("dog", "cat"), ("3", "3")] {
            classes.push(Cell::of(Some(&json!(score))), Cell::of(Some(&json!(label))));
        }
        classes.push(Cell::of(Some(&json!(3))), Cell::of(Some(&json!("3"))));
        let Metrics::Multiclass(m) = classes.performance().metrics else { panic!("multiclass") };
        assert_eq!((m.rows, m.classes, m.accuracy.value), (4, 3, Some(0.75)));

        // With class scores, a pair without a finite score for every class does not fit.
        let mut scored = Outcomes::new(Task::Multiclass).scoring(vec!["cat".into(), "dog".into()]);
        let rows = [
            ("cat", "cat", json!(0.8), json!(0.2)),
            ("dog", "dog", json!(0.3), json!(0.7)),
            ("cat", "dog", json!(0.6), json!(0.4)),
            ("dog", "cat", json!(0.4), Value::Null),
        ];
        for (predicted, label, cat, dog) in rows {
            let cells = [Cell::of(Some(&cat)), Cell::of(Some(&dog))];
            scored.push_scored(Cell::of(Some(&json!(predicted))), Cell::of(Some(&json!(label))), &cells);
        }
        let p = scored.performance();
        assert_eq!((p.labelled, p.invalid), (4, 1));
        let Metrics::Multiclass(m) = p.metrics else { panic!("multiclass") };
        let ovr = m.one_vs_rest.expect("scored");
        let expected = performance::one_vs_rest(
            &[("cat".to_string(), vec![0.8, 0.3, 0.6]), ("dog".to_string(), vec![0.2, 0.7, 0.4])].into_iter().collect(),
            &["cat", "dog", "dog"],
        );
        assert_eq!(ovr.per_class, expected.per_class);
        assert_eq!(ovr.per_class["cat"], Some(1.0));
    }
}
