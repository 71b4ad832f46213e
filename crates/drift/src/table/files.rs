//! The file commands' work: compare two tables column by column (whole, or per chunk), score a
//! table of predictions against its labels, and estimate performance per chunk from scores.

use super::frame::{Cells, Table};
use super::plain_csv;
use crate::chunk::{self, Chunking, Span};
use crate::chunked::{self, ChunkColumn, ChunkMethod, ChunkThreshold, ChunkedDrift, Values};
use crate::compare::{self, Comparison, Options};
use crate::estimate::{self, Basis, Estimate, EstimateMetric, EstimateOptions, Predictions};
use crate::format::category_name;
use crate::realized::{self, ClassRows, Outcomes, ValueRows};
use crate::stats::performance::{self, BinaryPart, Classes, Metrics, RocPoint, Task};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A comparison of two files, as `driftline drift compare` prints it in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileComparison {
    pub reference: FileInfo,
    pub current: FileInfo,
    /// Columns left out as asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_columns: Vec<String>,
    /// Compared columns holding a different value in every row of both files (text or whole
    /// numbers, at least 100 values each): ids or timestamps, which drift by construction and
    /// are better left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique_columns: Vec<String>,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A file and its row count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub rows: usize,
}

/// Compares `columns` (all columns the two files share when empty) of two files, but those in
/// `exclude`.
pub fn compare_files(
    reference: &Path,
    current: &Path,
    columns: &[String],
    exclude: &[String],
    options: &Options,
) -> Result<FileComparison, Error> {
    options.validate()?;
    let (r, c) = (read_for(reference, columns, None)?, read_for(current, columns, None)?);
    let names = chosen_columns(&r, &c, columns, exclude)?;
    let mut data = Vec::with_capacity(names.len());
    for name in names {
        let (rc, cc) = (r.column(&name)?, c.column(&name)?);
        data.push((name, rc, cc));
    }
    let unique_columns =
        data.iter().filter(|(_, rc, cc)| rc.unique_per_row() && cc.unique_per_row()).map(|(n, ..)| n.clone()).collect();
    let comparison = compare::compare(&data, options)?;
    Ok(FileComparison {
        reference: FileInfo { path: r.path().into(), rows: r.rows() },
        current: FileInfo { path: c.path().into(), rows: c.rows() },
        excluded_columns: exclude.to_vec(),
        unique_columns,
        comparison,
    })
}

/// The columns to compare: `columns`, or all the two tables share, but those in `exclude`.
fn chosen_columns(r: &Table, c: &Table, columns: &[String], exclude: &[String]) -> Result<Vec<String>, Error> {
    let (reference_names, current_names) = (r.column_names(), c.column_names());
    if let Some(unknown) = exclude.iter().find(|x| !reference_names.contains(x) && !current_names.contains(x)) {
        return Err(Error::Invalid {
            field: "exclude".into(),
            message: format!("neither {} nor {} has a column `{unknown}`", r.path(), c.path()),
        });
    }
    let mut names: Vec<String> = if columns.is_empty() {
        let shared: Vec<String> = reference_names.into_iter().filter(|n| current_names.contains(n)).collect();
        if shared.is_empty() {
            return Err(Error::Invalid {
                field: "columns".into(),
                message: format!("{} and {} share no column name; name the columns to compare", r.path(), c.path()),
            });
        }
        shared
    } else {
        columns.to_vec()
    };
    names.retain(|n| !exclude.contains(n));
    if names.is_empty() {
        return Err(Error::Invalid { field: "exclude".into(), message: "leaves no column to compare".into() });
    }
    Ok(names)
}

/// Drift per chunk of two files, as `driftline drift compare --chunk-…` prints it in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileChunkedDrift {
    pub reference: FileInfo,
    /// The analysis file.
    pub current: FileInfo,
    pub chunking: Chunking,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_column: Option<String>,
    #[serde(flatten)]
    pub drift: ChunkedDrift,
}

/// What a chunked comparison computes.
#[derive(Debug, Clone)]
pub struct ChunkRequest {
    pub chunking: Chunking,
    /// The column rows are ordered by, and periods read from.
    pub timestamp_column: Option<String>,
    pub methods: Vec<ChunkMethod>,
    pub threshold: ChunkThreshold,
}

/// Drift per chunk of `columns` (all the files share but the timestamp column when empty) of
/// two files, but those in `exclude`.
pub fn chunked_compare_files(
    reference: &Path,
    current: &Path,
    columns: &[String],
    exclude: &[String],
    request: &ChunkRequest,
) -> Result<FileChunkedDrift, Error> {
    let ts = request.timestamp_column.as_deref();
    let (r, c) = (read_for(reference, columns, ts)?, read_for(current, columns, ts)?);
    let mut left_out = exclude.to_vec();
    left_out.extend(ts.map(str::to_owned));
    let names = chosen_columns(&r, &c, columns, &left_out)?;
    let (reference_order, reference_spans) = cut(&r, ts, request.chunking)?;
    let (current_order, current_spans) = cut(&c, ts, request.chunking)?;
    let mut data = Vec::with_capacity(names.len());
    for name in names {
        data.push(ChunkColumn {
            reference: reordered(r.values(&name)?, &reference_order),
            analysis: reordered(c.values(&name)?, &current_order),
            name,
        });
    }
    let drift = chunked::chunked_drift(&data, &reference_spans, &current_spans, &request.methods, request.threshold)?;
    Ok(FileChunkedDrift {
        reference: FileInfo { path: r.path().into(), rows: r.rows() },
        current: FileInfo { path: c.path().into(), rows: c.rows() },
        chunking: request.chunking,
        timestamp_column: request.timestamp_column.clone(),
        drift,
    })
}

/// A file with only `columns` and `timestamp` read, or all of it when no columns are named.
fn read_for(path: &Path, columns: &[String], timestamp: Option<&str>) -> Result<Table, Error> {
    if columns.is_empty() {
        return Table::read(path);
    }
    let wanted: Vec<&str> = columns.iter().map(String::as_str).chain(timestamp).collect();
    Table::read_only(path, &wanted)
}

/// The order a table's rows are chunked in (by `timestamp`, if named; empty for file order) and
/// its chunks.
fn cut(table: &Table, timestamp: Option<&str>, chunking: Chunking) -> Result<(Vec<usize>, Vec<Span>), Error> {
    let times = timestamp.map(|name| table.times(name)).transpose()?;
    let order = chunk::order(times.as_deref(), timestamp.unwrap_or_default())?;
    let ordered: Option<Vec<i64>> = times.map(|t| order.iter().map(|&i| t[i].unwrap_or_default()).collect());
    let spans = chunk::split(table.rows(), ordered.as_deref(), chunking)?;
    Ok((order, spans))
}

/// Performance estimated per chunk from two files' scores, as `driftline drift estimate` prints
/// it in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEstimate {
    pub reference: FileInfo,
    /// The analysis file.
    pub current: FileInfo,
    #[serde(default = "binary_task")]
    pub task: Task,
    pub chunking: Chunking,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_column: Option<String>,
    pub score: String,
    /// The column of predicted classes, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    /// A score at or above it predicts class 1, without a prediction column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_threshold: Option<f64>,
    pub label: String,
    /// Multiclass: each class's column of scores.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class_scores: BTreeMap<String, String>,
    #[serde(flatten)]
    pub estimate: Estimate,
}

fn binary_task() -> Task {
    Task::Binary
}

/// What to estimate from two files.
#[derive(Debug, Clone)]
pub struct EstimateRequest {
    pub chunking: Chunking,
    pub timestamp_column: Option<String>,
    /// Probabilities of class 1.
    pub score: String,
    /// Predicted classes (0/1 or true/false); the decision threshold decides otherwise.
    pub prediction: Option<String>,
    pub decision_threshold: f64,
    /// Ground truth: needed in the reference; in the analysis file where known (the column may
    /// be absent or partly empty).
    pub label: String,
    pub options: EstimateOptions,
}

/// Estimates a binary classifier's performance per chunk of `current` from its scores, with
/// the calibration and thresholds learnt on `reference` (or, with [`Basis::Realized`], gives
/// its realised performance per chunk from `current`'s labels, which it then needs).
pub fn estimate_files(reference: &Path, current: &Path, request: &EstimateRequest) -> Result<FileEstimate, Error> {
    let ts = request.timestamp_column.as_deref();
    let mut wanted = vec![request.score.as_str()];
    wanted.extend(request.prediction.as_deref().into_iter().chain(ts));
    let label = [request.label.as_str()];
    let reference_columns = [&wanted[..], &label[..]].concat();
    // The analysis file may have no labels (unless realised performance is asked for).
    let c = match request.options.basis {
        Basis::Realized => Table::read_only(current, &reference_columns)?,
        Basis::Estimated => Table::read_only_with(current, &wanted, &label)?,
    };
    let r = Table::read_only(reference, &reference_columns)?;
    let rows = |t: &Table, labels_needed: bool| -> Result<(Predictions, Vec<Span>), Error> {
        let scores = numbers(&request.score, &t.cells(&request.score)?, "scores are probabilities of class 1")?;
        let predicted = match &request.prediction {
            Some(column) => binary_labels(column, &t.cells(column)?)?,
            None => scores.iter().map(|s| s.map(|s| s >= request.decision_threshold)).collect(),
        };
        let labels = match t.cells(&request.label) {
            Ok(cells) => binary_labels(&request.label, &cells)?,
            Err(Error::MissingColumn { .. }) if !labels_needed => vec![None; t.rows()],
            Err(e) => return Err(e),
        };
        let (order, spans) = cut(t, ts, request.chunking)?;
        Ok((
            Predictions {
                scores: in_order(scores, &order),
                predicted: in_order(predicted, &order),
                labels: in_order(labels, &order),
            },
            spans,
        ))
    };
    let (reference_rows, reference_spans) = rows(&r, true)?;
    let (current_rows, current_spans) = rows(&c, request.options.basis == Basis::Realized)?;
    let estimate =
        estimate::estimate(&reference_rows, &reference_spans, &current_rows, &current_spans, &request.options)?;
    Ok(FileEstimate {
        reference: FileInfo { path: r.path().into(), rows: r.rows() },
        current: FileInfo { path: c.path().into(), rows: c.rows() },
        chunking: request.chunking,
        timestamp_column: request.timestamp_column.clone(),
        score: request.score.clone(),
        prediction: request.prediction.clone(),
        task: Task::Binary,
        decision_threshold: request.prediction.is_none().then_some(request.decision_threshold),
        label: request.label.clone(),
        class_scores: BTreeMap::new(),
        estimate,
    })
}

/// What realised performance per chunk to compute from two files of a multiclass or regression
/// model (a binary classifier's goes through [`estimate_files`] with [`Basis::Realized`]).
#[derive(Debug, Clone)]
pub struct RealizedRequest {
    pub task: Task,
    pub chunking: Chunking,
    pub timestamp_column: Option<String>,
    /// Predicted class names (multiclass) or predicted values (regression).
    pub prediction: String,
    /// Ground truth: true class names or target values.
    pub label: String,
    /// Multiclass: each class's column of scores, `(class, column)`; they name the classes.
    pub class_scores: Vec<(String, String)>,
    pub metrics: Vec<EstimateMetric>,
    pub threshold: ChunkThreshold,
}

/// Realised performance per chunk of a multiclass classifier or a regression model: both files
/// need predictions and labels. A multiclass model's classes are those of `class_scores` when
/// given (then a prediction or label of another class is refused), otherwise every class named
/// in either file.
pub fn realized_files(reference: &Path, current: &Path, request: &RealizedRequest) -> Result<FileEstimate, Error> {
    let ts = request.timestamp_column.as_deref();
    if !request.class_scores.is_empty() && request.task != Task::Multiclass {
        return Err(Error::Invalid {
            field: "class_scores".into(),
            message: format!("are for the multiclass task; the {} task has none", request.task.name()),
        });
    }
    let mut wanted = vec![request.prediction.as_str(), request.label.as_str()];
    wanted.extend(request.class_scores.iter().map(|(_, c)| c.as_str()).chain(ts));
    let (r, c) = (Table::read_only(reference, &wanted)?, Table::read_only(current, &wanted)?);
    let mut spans = Vec::new();
    let outcomes = match request.task {
        Task::Binary => {
            return Err(Error::Invalid {
                field: "task".into(),
                message: "a binary classifier's realised performance per chunk is computed from its scores;                           use the estimate path with realised values"
                    .into(),
            })
        }
        Task::Regression => {
            let mut periods = Vec::new();
            for t in [&r, &c] {
                let predicted = numbers(&request.prediction, &t.cells(&request.prediction)?, REGRESSION_HINT)?;
                let targets = numbers(&request.label, &t.cells(&request.label)?, REGRESSION_HINT)?;
                let (order, cut_spans) = cut(t, ts, request.chunking)?;
                spans.push(cut_spans);
                periods.push(Outcomes::Regression(ValueRows {
                    predicted: in_order(predicted, &order),
                    targets: in_order(targets, &order),
                }));
            }
            periods
        }
        Task::Multiclass => {
            // Each file's predicted and true class names.
            let named = |t: &Table| -> Result<[Vec<Option<String>>; 2], Error> {
                Ok([names(&t.cells(&request.prediction)?), names(&t.cells(&request.label)?)])
            };
            let (r_names, c_names) = (named(&r)?, named(&c)?);
            let classes: Vec<String> = if request.class_scores.is_empty() {
                let mut all: Vec<String> =
                    r_names.iter().chain(&c_names).flatten().flatten().cloned().collect();
                all.sort();
                all.dedup();
                all
            } else {
                request.class_scores.iter().map(|(class, _)| class.clone()).collect()
            };
            let index: BTreeMap<&str, u32> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as u32)).collect();
            let mut periods = Vec::new();
            for (t, [predicted, labels]) in [(&r, &r_names), (&c, &c_names)] {
                let coded = |column: &str, values: &[Option<String>]| -> Result<Vec<Option<u32>>, Error> {
                    values
                        .iter()
                        .enumerate()
                        .map(|(row, v)| match v {
                            None => Ok(None),
                            Some(v) => index.get(v.as_str()).copied().map(Some).ok_or_else(|| Error::Column {
                                column: column.into(),
                                message: format!(
                                    "row {} of {} holds the class `{v}`, which has no column of scores; the classes \
                                     are {} (add `{v}=COLUMN` to the class scores)",
                                    row + 1,
                                    t.path(),
                                    classes.join(", ")
                                ),
                            }),
                        })
                        .collect()
                };
                let hint = "a class's scores are its probabilities";
                let scores = request
                    .class_scores
                    .iter()
                    .map(|(_, column)| numbers(column, &t.cells(column)?, hint))
                    .collect::<Result<Vec<_>, Error>>()?;
                let (order, cut_spans) = cut(t, ts, request.chunking)?;
                spans.push(cut_spans);
                periods.push(Outcomes::Multiclass(ClassRows {
                    classes: classes.clone(),
                    scores: scores.into_iter().map(|s| in_order(s, &order)).collect(),
                    predicted: in_order(coded(&request.prediction, predicted)?, &order),
                    labels: in_order(coded(&request.label, labels)?, &order),
                }));
            }
            periods
        }
    };
    let estimate =
        realized::realized(&outcomes[0], &spans[0], &outcomes[1], &spans[1], &request.metrics, request.threshold)?;
    Ok(FileEstimate {
        reference: FileInfo { path: r.path().into(), rows: r.rows() },
        current: FileInfo { path: c.path().into(), rows: c.rows() },
        task: request.task,
        chunking: request.chunking,
        timestamp_column: request.timestamp_column.clone(),
        score: request.prediction.clone(),
        prediction: None,
        decision_threshold: None,
        label: request.label.clone(),
        class_scores: request.class_scores.iter().cloned().collect(),
        estimate,
    })
}

/// Why regression columns must be numbers.
const REGRESSION_HINT: &str = "a regression model's predictions and targets are numbers";

/// `values` in `order` (as they are when it is empty).
fn in_order<T: Copy>(values: Vec<T>, order: &[usize]) -> Vec<T> {
    if order.is_empty() {
        return values;
    }
    order.iter().map(|&i| values[i]).collect()
}

/// The values in `order` (file order when it is empty).
fn reordered(values: Values, order: &[usize]) -> Values {
    if order.is_empty() {
        return values;
    }
    match values {
        Values::Numbers(v) => Values::Numbers(in_order(v, order)),
        Values::Categories { names, codes } => Values::Categories { names, codes: in_order(codes, order) },
    }
}

/// Performance of one file's predictions, as `driftline drift performance` prints it in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilePerformance {
    pub input: FileInfo,
    pub task: Task,
    pub score: String,
    /// The column of predicted classes (binary), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    pub label: String,
    /// Rows left out because the score, the predicted class or the label was missing, NaN or
    /// infinite.
    pub rows_excluded: usize,
    pub metrics: Metrics,
    /// The ROC curve (binary), when asked for, thinned to at most [`ROC_POINTS`] points.
    #[serde(skip)]
    pub roc_curve: Vec<RocPoint>,
}

/// Most points of a file's ROC curve kept for its report.
pub const ROC_POINTS: usize = 2_000;

/// What to score in a file of predictions.
#[derive(Debug, Clone)]
pub struct PerformanceRequest {
    /// Scores: probabilities of class 1 (binary), class names (multiclass) or predicted values
    /// (regression).
    pub score: String,
    /// Predicted classes (binary only; 0/1 or true/false); the threshold decides otherwise.
    pub prediction: Option<String>,
    /// Ground truth.
    pub label: String,
    pub task: Task,
    /// A binary score at or above it predicts class 1 (without a prediction column).
    pub threshold: f64,
    /// Whether to compute the ROC curve (binary), for a report.
    pub roc_curve: bool,
    /// Multiclass: each class's column of scores, `(class, column)`, for one-vs-rest ROC AUC.
    pub class_scores: Vec<(String, String)>,
}

/// Scores a file's predictions against its labels.
pub fn performance_of_file(path: &Path, request: &PerformanceRequest) -> Result<FilePerformance, Error> {
    let PerformanceRequest { score, prediction, label, task, threshold, .. } = request;
    let (task, threshold) = (*task, *threshold);
    let mut wanted = vec![score.as_str(), label.as_str()];
    wanted.extend(prediction.as_deref().into_iter().chain(request.class_scores.iter().map(|(_, c)| c.as_str())));
    if !request.class_scores.is_empty() && task != Task::Multiclass {
        return Err(Error::Invalid {
            field: "class_scores".into(),
            message: format!("are for the multiclass task; with the {} task use the score column", task.name()),
        });
    }
    if task == Task::Binary && prediction.is_none() {
        if let Some(read) = plain_csv_parts(path, score, label, threshold)? {
            let excluded = read.rows - read.parts.iter().map(BinaryPart::rows).sum::<usize>();
            let (metrics, roc_curve) = performance::binary_of_parts(read.parts, Some(threshold), request.roc_curve);
            return Ok(FilePerformance {
                input: FileInfo { path: path.display().to_string(), rows: read.rows },
                task,
                score: score.clone(),
                prediction: None,
                label: label.clone(),
                rows_excluded: excluded,
                metrics: Metrics::Binary(metrics),
                roc_curve: thin(roc_curve, ROC_POINTS),
            });
        }
    }
    let table = Table::read_only(path, &wanted)?;
    if prediction.is_some() && task != Task::Binary {
        return Err(Error::Invalid {
            field: "prediction".into(),
            message: format!(
                "a column of predicted classes is for the binary task; with the {} task the score column holds the \
                 predictions",
                task.name()
            ),
        });
    }
    let mut roc_curve = Vec::new();
    let (metrics, excluded) = match task {
        Task::Binary => {
            let (metrics, curve, excluded) = match prediction {
                None => {
                    let (parts, excluded) = binary_parts(&table, score, label, threshold)?;
                    let (metrics, curve) = performance::binary_of_parts(parts, Some(threshold), request.roc_curve);
                    (metrics, curve, excluded)
                }
                Some(column) => {
                    let (s, l) = (table.cells(score)?, table.cells(label)?);
                    let scores = numbers(score, &s, SCORES_HINT)?;
                    let labels = binary_labels(label, &l)?;
                    let predicted = binary_labels(column, &table.cells(column)?)?;
                    let (mut kept_scores, mut kept_predicted, mut kept_labels) = (Vec::new(), Vec::new(), Vec::new());
                    for ((s, p), l) in scores.iter().zip(&predicted).zip(&labels) {
                        if let (Some(s), Some(p), Some(l)) = (s, p, l) {
                            kept_scores.push(*s);
                            kept_predicted.push(*p);
                            kept_labels.push(*l);
                        }
                    }
                    let excluded = scores.len() - kept_scores.len();
                    let classes = Classes::Predicted(&kept_predicted);
                    let metrics = performance::binary_classes(&kept_scores, classes, &kept_labels);
                    let curve =
                        if request.roc_curve { performance::roc_curve(&kept_scores, &kept_labels) } else { Vec::new() };
                    (metrics, curve, excluded)
                }
            };
            roc_curve = thin(curve, ROC_POINTS);
            (Metrics::Binary(metrics), excluded)
        }
        Task::Regression => {
            let (s, l) = (table.cells(score)?, table.cells(label)?);
            let predicted = numbers(score, &s, "regression needs numeric predictions")?;
            let targets = numbers(label, &l, "regression needs numeric targets")?;
            let (p, t, excluded) = pair_rows(&predicted, &targets);
            (Metrics::Regression(performance::regression(&p, &t)), excluded)
        }
        Task::Multiclass => {
            let (p, t) = (names(&table.cells(score)?), names(&table.cells(label)?));
            let class_scores: Vec<(&String, Vec<Option<f64>>)> = request
                .class_scores
                .iter()
                .map(|(class, column)| {
                    let hint = "a class's scores are its probabilities";
                    Ok((class, numbers(column, &table.cells(column)?, hint)?))
                })
                .collect::<Result<_, Error>>()?;
            let mut excluded = 0;
            let (mut predicted, mut labels) = (Vec::new(), Vec::new());
            let mut kept_scores: BTreeMap<String, Vec<f64>> =
                class_scores.iter().map(|(class, _)| ((*class).clone(), Vec::new())).collect();
            for (row, (p, t)) in p.iter().zip(&t).enumerate() {
                let scored = class_scores.iter().all(|(_, v)| v[row].is_some());
                match (p, t) {
                    (Some(p), Some(t)) if scored => {
                        predicted.push(p.as_str());
                        labels.push(t.as_str());
                        for (class, v) in &class_scores {
                            kept_scores.get_mut(*class).expect("made above").push(v[row].expect("checked"));
                        }
                    }
                    _ => excluded += 1,
                }
            }
            let mut metrics = performance::multiclass(&predicted, &labels);
            if !class_scores.is_empty() {
                metrics.one_vs_rest = Some(performance::one_vs_rest(&kept_scores, &labels));
            }
            (Metrics::Multiclass(metrics), excluded)
        }
    };
    Ok(FilePerformance {
        input: FileInfo { path: table.path().into(), rows: table.rows() },
        task,
        score: score.clone(),
        prediction: prediction.clone(),
        label: label.clone(),
        rows_excluded: excluded,
        metrics,
        roc_curve,
    })
}

/// A binary task's rows from a plain CSV file (see [`plain_csv`]), when it is one.
fn plain_csv_parts(path: &Path, score: &str, label: &str, threshold: f64) -> Result<Option<plain_csv::Parts>, Error> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let separator = match extension.as_str() {
        "csv" => b',',
        "tsv" => b'\t',
        _ => return Ok(None),
    };
    plain_csv::binary_parts(path, separator, score, label, threshold)
}

/// At most `max` points of a curve, evenly spaced, its first and last kept.
fn thin(points: Vec<RocPoint>, max: usize) -> Vec<RocPoint> {
    if points.len() <= max {
        return points;
    }
    let step = points.len().div_ceil(max - 1);
    let last = points.len() - 1;
    points.into_iter().enumerate().filter(|(i, _)| i % step == 0 || *i == last).map(|(_, p)| p).collect()
}

/// Class names: numbers as JSON prints them; missing, NaN and infinite numbers are missing.
fn names(cells: &Cells) -> Vec<Option<String>> {
    match cells {
        Cells::Text(v) => v.clone(),
        Cells::Numbers(v) => v.iter().map(|x| x.filter(|x| x.is_finite()).map(category_name)).collect(),
    }
}

fn numbers(name: &str, column: &Cells, hint: &str) -> Result<Vec<Option<f64>>, Error> {
    match column {
        Cells::Numbers(v) => Ok(v.iter().map(|x| x.filter(|x| x.is_finite())).collect()),
        Cells::Text(v) => {
            let example = v.iter().flatten().next().cloned().unwrap_or_default();
            Err(Error::Column {
                column: name.into(),
                message: format!("holds text such as {example:?}, not numbers; {hint}"),
            })
        }
    }
}

/// Why binary scores must be numbers.
const SCORES_HINT: &str = "binary scores are probabilities of class 1; use the multiclass task for class names";

/// The refusal of a label (`value`, as shown) at 0-based `row` that is not binary.
fn not_binary(name: &str, row: usize, value: String) -> Error {
    Error::Column {
        column: name.into(),
        message: format!(
            "row {} holds {value}, which is not a binary label (0/1 or true/false); use the multiclass task for more \
             classes",
            row + 1
        ),
    }
}

/// A numeric label: 0 or 1, missing when absent or NaN.
fn numeric_label(name: &str, row: usize, x: Option<f64>) -> Result<Option<bool>, Error> {
    match x {
        None => Ok(None),
        Some(x) if x.is_nan() => Ok(None),
        Some(0.0) => Ok(Some(false)),
        Some(1.0) => Ok(Some(true)),
        Some(x) => Err(not_binary(name, row, x.to_string())),
    }
}

/// The rows of a binary task with both a finite score and a label, read into parts (a score at
/// or above `threshold` predicting class 1), and how many rows were excluded. Numeric columns
/// are read from polars' arrays, many rows in one part per thread; others as cells.
fn binary_parts(table: &Table, score: &str, label: &str, threshold: f64) -> Result<(Vec<BinaryPart>, usize), Error> {
    let (Some(scores), Some(labels)) = (table.floats(score)?, table.floats(label)?) else {
        let scores = numbers(score, &table.cells(score)?, SCORES_HINT)?;
        let labels = binary_labels(label, &table.cells(label)?)?;
        let (scores, labels, excluded) = pair_rows(&scores, &labels);
        let mut part = BinaryPart::default();
        for (s, l) in scores.iter().zip(&labels) {
            part.push(*s, *l, *s >= threshold);
        }
        return Ok((vec![part], excluded));
    };
    let n = scores.len();
    let threads =
        if n >= PARALLEL_ROWS { std::thread::available_parallelism().map_or(1, |t| t.get()).min(n) } else { 1 };
    let read_rows = |from: usize, to: usize| -> Result<BinaryPart, Error> {
        let (s, l) = (scores.slice(from as i64, to - from), labels.slice(from as i64, to - from));
        let mut part = BinaryPart::default();
        for (row, (x, y)) in (from..).zip(s.iter().zip(l.iter())) {
            if let (Some(x), Some(y)) = (x.filter(|x| x.is_finite()), numeric_label(label, row, y)?) {
                part.push(x, y, x >= threshold);
            }
        }
        Ok(part)
    };
    let bounds: Vec<usize> = (0..=threads).map(|t| t * n / threads).collect();
    let parts: Vec<Result<BinaryPart, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds.windows(2).map(|w| scope.spawn(|| read_rows(w[0], w[1]))).collect();
        handles.into_iter().map(|h| h.join().expect("reading a column part does not panic")).collect()
    });
    // The first part's refusal is the earliest row's.
    let parts = parts.into_iter().collect::<Result<Vec<_>, Error>>()?;
    let excluded = n - parts.iter().map(BinaryPart::rows).sum::<usize>();
    Ok((parts, excluded))
}

/// Rows from which a file's binary columns are read on every core.
const PARALLEL_ROWS: usize = 100_000;

/// Labels 0/1, true/false (as numbers, booleans or text); missing ones are `None`.
fn binary_labels(name: &str, column: &Cells) -> Result<Vec<Option<bool>>, Error> {
    match column {
        Cells::Numbers(v) => v.iter().enumerate().map(|(i, x)| numeric_label(name, i, *x)).collect(),
        Cells::Text(v) => v
            .iter()
            .enumerate()
            .map(|(i, s)| match s.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
                None => Ok(None),
                Some(s) if s.is_empty() => Ok(None),
                Some(s) if s == "1" || s == "true" => Ok(Some(true)),
                Some(s) if s == "0" || s == "false" => Ok(Some(false)),
                Some(s) => Err(not_binary(name, i, format!("{s:?}"))),
            })
            .collect(),
    }
}

/// Keeps the rows where both values are present.
fn pair_rows<A: Copy, B: Copy>(a: &[Option<A>], b: &[Option<B>]) -> (Vec<A>, Vec<B>, usize) {
    let mut excluded = 0;
    let (mut xs, mut ys) = (Vec::with_capacity(a.len()), Vec::with_capacity(a.len()));
    for (x, y) in a.iter().zip(b) {
        match (x, y) {
            (Some(x), Some(y)) => {
                xs.push(*x);
                ys.push(*y);
            }
            _ => excluded += 1,
        }
    }
    (xs, ys, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_pairs_are_those_of_the_cells() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(&path, "score,label,flag\n0.9,1,true\n,0,false\n0.3,,true\nNaN,1,false\n0.2,0.0,true\n0.7,1,\n")
            .unwrap();
        let table = Table::read(&path).unwrap();
        assert!(table.floats("score").unwrap().is_some() && table.floats("label").unwrap().is_some());
        let scored = |label: &str| {
            let (parts, excluded) = binary_parts(&table, "score", label, 0.5).unwrap();
            (performance::binary_of_parts(parts, Some(0.5), false).0, excluded)
        };
        let (fast, excluded) = scored("label");
        let scores = numbers("score", &table.cells("score").unwrap(), SCORES_HINT).unwrap();
        let labels = binary_labels("label", &table.cells("label").unwrap()).unwrap();
        let (kept_scores, kept_labels, cell_excluded) = pair_rows(&scores, &labels);
        assert_eq!(
            (kept_scores.as_slice(), kept_labels.as_slice(), excluded),
            (&[0.9, 0.2, 0.7][..], &[true, false, true][..], 3)
        );
        assert_eq!((fast, excluded), (performance::binary(&kept_scores, &kept_labels, 0.5), cell_excluded));
        // Boolean labels are read as cells.
        assert!(table.floats("flag").unwrap().is_none());
        let (flagged, excluded) = scored("flag");
        assert_eq!((flagged, excluded), (performance::binary(&[0.9, 0.3, 0.2], &[true, true, true], 0.5), 3));

        std::fs::write(&path, "score,label\n0.9,1\n0.4,2\n").unwrap();
        let err = binary_parts(&Table::read(&path).unwrap(), "score", "label", 0.5).unwrap_err().to_string();
        assert!(err.contains("`label`") && err.contains("row 2 holds 2,"), "{err}");
    }

    /// A plain CSV file, read by `plain_csv`, scores as the same rows read by polars (here made
    /// to by quoting the header), and a label polars would refuse is refused the same way.
    #[test]
    fn plain_csv_files_score_as_the_general_reader_scores_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut body = String::new();
        for i in 0..5_000u32 {
            let score = f64::from(i.wrapping_mul(7_919) % 1_000) / 1_000.0;
            let label = u8::from((i.wrapping_mul(104_729) % 7) < 3 || score > 0.8);
            let score = if i % 97 == 0 { String::new() } else { score.to_string() };
            body.push_str(&format!("{i},{score},{label}\n"));
        }
        let (plain, quoted) = (dir.path().join("plain.csv"), dir.path().join("quoted.csv"));
        std::fs::write(&plain, format!("id,score,label\n{body}")).unwrap();
        std::fs::write(&quoted, format!("\"id\",\"score\",\"label\"\n{body}")).unwrap();
        assert!(plain_csv_parts(&plain, "score", "label", 0.5).unwrap().is_some());
        assert!(plain_csv_parts(&quoted, "score", "label", 0.5).unwrap().is_none());
        let request = PerformanceRequest {
            score: "score".into(),
            prediction: None,
            label: "label".into(),
            task: Task::Binary,
            threshold: 0.5,
            roc_curve: true,
            class_scores: Vec::new(),
        };
        let (a, b) = (performance_of_file(&plain, &request).unwrap(), performance_of_file(&quoted, &request).unwrap());
        assert_eq!((a.input.rows, a.rows_excluded), (5_000, 52));
        assert_eq!((a.input.rows, a.rows_excluded), (b.input.rows, b.rows_excluded));
        let (Metrics::Binary(plain_metrics), Metrics::Binary(general_metrics)) = (&a.metrics, &b.metrics) else {
            panic!("binary metrics")
        };
        crate::stats::performance::assert_same_binary(plain_metrics, general_metrics);
        assert_eq!(a.roc_curve, b.roc_curve);

        std::fs::write(&plain, "score,label\n0.9,1\n0.4,2\n").unwrap();
        let err = performance_of_file(&plain, &request).unwrap_err().to_string();
        assert!(err.contains("`label`") && err.contains("row 2 holds 2,"), "{err}");
    }

    #[test]
    fn labels_accept_numbers_booleans_and_text() {
        let n = Cells::Numbers(vec![Some(0.0), Some(1.0), None]);
        assert_eq!(binary_labels("y", &n).unwrap(), vec![Some(false), Some(true), None]);
        let t = Cells::Text(vec![Some("True".into()), Some("0".into()), Some("".into())]);
        assert_eq!(binary_labels("y", &t).unwrap(), vec![Some(true), Some(false), None]);
        let bad = Cells::Numbers(vec![Some(0.0), Some(2.0)]);
        let err = binary_labels("label", &bad).unwrap_err().to_string();
        assert!(err.contains("`label`") && err.contains("row 2") && err.contains("multiclass task"), "{err}");
    }
}
