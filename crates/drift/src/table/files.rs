//! The file commands' work: compare two tables column by column, and score a table of
//! predictions against its labels.

use super::frame::{Cells, Table};
use crate::compare::{self, Comparison, Options};
use crate::format::category_name;
use crate::stats::performance::{self, Metrics, Task};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A comparison of two files, as `driftline drift compare` prints it in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileComparison {
    pub reference: FileInfo,
    pub current: FileInfo,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A file and its row count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub rows: usize,
}

/// Compares `columns` (all columns the two files share when empty) of two files.
pub fn compare_files(
    reference: &Path,
    current: &Path,
    columns: &[String],
    options: &Options,
) -> Result<FileComparison, Error> {
    options.validate()?;
    let (r, c) = (Table::read(reference)?, Table::read(current)?);
    let names: Vec<String> = if columns.is_empty() {
        let shared: Vec<String> = r.column_names().into_iter().filter(|n| c.column_names().contains(n)).collect();
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
    let mut data = Vec::with_capacity(names.len());
    for name in names {
        let (rc, cc) = (r.column(&name)?, c.column(&name)?);
        data.push((name, rc, cc));
    }
    let comparison = compare::compare(&data, options)?;
    Ok(FileComparison {
        reference: FileInfo { path: r.path().into(), rows: r.rows() },
        current: FileInfo { path: c.path().into(), rows: c.rows() },
        comparison,
    })
}

/// Performance of one file's predictions, as `driftline drift performance` prints it in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilePerformance {
    pub input: FileInfo,
    pub task: Task,
    pub score: String,
    pub label: String,
    /// Rows left out because the score or the label was missing, NaN or infinite.
    pub rows_excluded: usize,
    pub metrics: Metrics,
}

/// Scores the `score` column against the `label` column of a file.
pub fn performance_of_file(
    path: &Path,
    score: &str,
    label: &str,
    task: Task,
    threshold: f64,
) -> Result<FilePerformance, Error> {
    let table = Table::read(path)?;
    let (s, l) = (table.cells(score)?, table.cells(label)?);
    let (metrics, excluded) = match task {
        Task::Binary => {
            let scores = numbers(
                score,
                &s,
                "binary scores are probabilities of class 1; use the multiclass task for class names",
            )?;
            let labels = binary_labels(label, &l)?;
            let (scores, labels, excluded) = pair_rows(&scores, &labels);
            (Metrics::Binary(performance::binary(&scores, &labels, threshold)), excluded)
        }
        Task::Regression => {
            let predicted = numbers(score, &s, "regression needs numeric predictions")?;
            let targets = numbers(label, &l, "regression needs numeric targets")?;
            let (p, t, excluded) = pair_rows(&predicted, &targets);
            (Metrics::Regression(performance::regression(&p, &t)), excluded)
        }
        Task::Multiclass => {
            let (p, t) = (names(&s), names(&l));
            let mut excluded = 0;
            let (mut predicted, mut labels) = (Vec::new(), Vec::new());
            for (p, t) in p.iter().zip(&t) {
                match (p, t) {
                    (Some(p), Some(t)) => {
                        predicted.push(p.as_str());
                        labels.push(t.as_str());
                    }
                    _ => excluded += 1,
                }
            }
            (Metrics::Multiclass(performance::multiclass(&predicted, &labels)), excluded)
        }
    };
    Ok(FilePerformance {
        input: FileInfo { path: table.path().into(), rows: table.rows() },
        task,
        score: score.into(),
        label: label.into(),
        rows_excluded: excluded,
        metrics,
    })
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

/// Labels 0/1, true/false (as numbers, booleans or text); missing ones are `None`.
fn binary_labels(name: &str, column: &Cells) -> Result<Vec<Option<bool>>, Error> {
    let refuse = |row: usize, value: String| Error::Column {
        column: name.into(),
        message: format!(
            "row {} holds {value}, which is not a binary label (0/1 or true/false); use the multiclass task for more \
             classes",
            row + 1
        ),
    };
    match column {
        Cells::Numbers(v) => v
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                None => Ok(None),
                Some(x) if x.is_nan() => Ok(None),
                Some(x) if *x == 0.0 => Ok(Some(false)),
                Some(x) if *x == 1.0 => Ok(Some(true)),
                Some(x) => Err(refuse(i, x.to_string())),
            })
            .collect(),
        Cells::Text(v) => v
            .iter()
            .enumerate()
            .map(|(i, s)| match s.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
                None => Ok(None),
                Some(s) if s.is_empty() => Ok(None),
                Some(s) if s == "1" || s == "true" => Ok(Some(true)),
                Some(s) if s == "0" || s == "false" => Ok(Some(false)),
                Some(s) => Err(refuse(i, format!("{s:?}"))),
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
