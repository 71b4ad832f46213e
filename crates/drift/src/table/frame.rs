//! Tables from files: CSV and Parquet through polars, turned into the typed columns the
//! statistics work on.

use crate::stats::categories::Categories;
use crate::stats::column::ColumnData;
use crate::Error;
use polars::prelude::*;
use std::path::Path;

/// One column's values row by row, for the metrics that pair a row's score with its label.
#[derive(Debug, Clone, PartialEq)]
pub enum Cells {
    /// `None` for a missing value.
    Numbers(Vec<Option<f64>>),
    /// Strings and booleans (as `true` / `false`); `None` for a missing value.
    Text(Vec<Option<String>>),
}

/// A table read from a file.
#[derive(Debug)]
pub struct Table {
    path: String,
    frame: DataFrame,
}

/// A column's series by type.
enum Typed {
    Numbers(Vec<Option<f64>>),
    Booleans(BooleanChunked),
    Text(StringChunked),
}

impl Table {
    /// Reads a CSV (with a header row) or Parquet file, chosen by its extension (`.csv`,
    /// `.tsv`, `.parquet`, `.pq`).
    pub fn read(path: &Path) -> Result<Self, Error> {
        Table::read_columns(path, None)
    }

    /// Reads only the named columns of a file (the others are skipped while parsing); when one
    /// of them is not in the file, the whole file, so that asking for the column names what is
    /// there.
    pub fn read_only(path: &Path, columns: &[&str]) -> Result<Self, Error> {
        Table::read_only_with(path, columns, &[])
    }

    /// As [`Table::read_only`], with `optional` columns read too where the file has them.
    pub fn read_only_with(path: &Path, columns: &[&str], optional: &[&str]) -> Result<Self, Error> {
        let mut wanted: Vec<&str> = Vec::with_capacity(columns.len() + optional.len());
        for c in columns.iter().chain(optional) {
            if !wanted.contains(c) {
                wanted.push(c);
            }
        }
        Table::read_columns(path, Some(&wanted))
            .or_else(|e| if optional.is_empty() { Err(e) } else { Table::read_columns(path, Some(columns)) })
            .or_else(|_| Table::read(path))
    }

    fn read_columns(path: &Path, columns: Option<&[&str]>) -> Result<Self, Error> {
        let shown = path.display().to_string();
        let fail = |message: String| Error::Read { path: shown.clone(), message };
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let frame = match extension.as_str() {
            "csv" | "tsv" => {
                let separator = if extension == "tsv" { b'\t' } else { b',' };
                CsvReadOptions::default()
                    .with_has_header(true)
                    .with_infer_schema_length(Some(10_000))
                    .with_columns(columns.map(|c| c.iter().map(|c| PlSmallStr::from(*c)).collect()))
                    .map_parse_options(|o| o.with_separator(separator))
                    .try_into_reader_with_file_path(Some(path.to_path_buf()))
                    .and_then(|r| r.finish())
                    .map_err(|e| fail(e.to_string()))?
            }
            "parquet" | "pq" => {
                let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
                ParquetReader::new(file)
                    .with_columns(columns.map(|c| c.iter().map(|c| c.to_string()).collect()))
                    .finish()
                    .map_err(|e| fail(e.to_string()))?
            }
            _ => {
                return Err(fail(
                    "unknown file type; give a .csv, .tsv or .parquet file (the extension decides the reader)".into(),
                ))
            }
        };
        Ok(Table { path: shown, frame })
    }

    /// The path the table was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn rows(&self) -> usize {
        self.frame.height()
    }

    /// Column names in file order.
    pub fn column_names(&self) -> Vec<String> {
        self.frame.get_column_names().iter().map(|n| n.to_string()).collect()
    }

    /// The named column for a comparison: numeric types become numbers, everything else
    /// categories, counted (long values cut, as [`crate::stats::categories`] says).
    pub fn column(&self, name: &str) -> Result<ColumnData, Error> {
        Ok(match self.typed(name)? {
            Typed::Numbers(values) => ColumnData::Numeric(values),
            Typed::Booleans(b) => {
                let names = b.iter().map(|b| b.map(|b| if b { "true" } else { "false" }));
                ColumnData::Categorical(Categories::of(names))
            }
            Typed::Text(s) => ColumnData::Categorical(Categories::of(s.iter())),
        })
    }

    /// The named column row by row: numeric types become numbers, everything else text.
    pub fn cells(&self, name: &str) -> Result<Cells, Error> {
        Ok(match self.typed(name)? {
            Typed::Numbers(values) => Cells::Numbers(values),
            Typed::Booleans(b) => Cells::Text(b.iter().map(|b| b.map(|b| b.to_string())).collect()),
            Typed::Text(s) => Cells::Text(s.iter().map(|s| s.map(str::to_string)).collect()),
        })
    }

    /// A numeric column as polars holds it, as 64-bit floats (no copy when it is one), for
    /// passes over many rows; `None` when the column is not numeric.
    pub fn floats(&self, name: &str) -> Result<Option<Float64Chunked>, Error> {
        let series = self.series(name)?;
        if !series.dtype().is_primitive_numeric() {
            return Ok(None);
        }
        let failed = |e: PolarsError| Error::Column { column: name.to_string(), message: e.to_string() };
        let floats = series.cast(&DataType::Float64).map_err(failed)?;
        Ok(Some(floats.f64().map_err(failed)?.clone()))
    }

    /// A column's values for chunked comparisons: numbers, or text (booleans as `true` and
    /// `false`).
    pub fn values(&self, name: &str) -> Result<crate::chunked::Values, Error> {
        use crate::chunked::Values;
        Ok(match self.typed(name)? {
            Typed::Numbers(v) => Values::Numbers(v),
            Typed::Booleans(b) => Values::categories(b.iter().map(|b| b.map(|b| if b { "true" } else { "false" }))),
            Typed::Text(s) => Values::categories(s.iter()),
        })
    }

    /// A column of times as milliseconds since the epoch: a date-time column (any unit, taken
    /// as UTC), or whole numbers taken as milliseconds; missing values are `None`.
    pub fn times(&self, name: &str) -> Result<Vec<Option<i64>>, Error> {
        let series = self.series(name)?;
        let failed = |e: PolarsError| Error::Column { column: name.to_string(), message: e.to_string() };
        let per_ms = match series.dtype() {
            DataType::Datetime(TimeUnit::Nanoseconds, _) => 1_000_000,
            DataType::Datetime(TimeUnit::Microseconds, _) => 1_000,
            DataType::Datetime(TimeUnit::Milliseconds, _) => 1,
            dtype if dtype.is_integer() => 1,
            other => {
                return Err(Error::Column {
                    column: name.to_string(),
                    message: format!(
                        "holds {other}, not times; give a date-time column or milliseconds since the epoch"
                    ),
                })
            }
        };
        let physical = series.to_physical_repr().cast(&DataType::Int64).map_err(failed)?;
        Ok(physical.i64().map_err(failed)?.iter().map(|v| v.map(|v| v.div_euclid(per_ms))).collect())
    }

    /// The column `name`, or an error listing the file's columns.
    fn series(&self, name: &str) -> Result<&Series, Error> {
        let column = self.frame.column(name).map_err(|_| Error::MissingColumn {
            column: name.to_string(),
            path: self.path.clone(),
            available: self.column_names().join(", "),
        })?;
        Ok(column.as_materialized_series())
    }

    fn typed(&self, name: &str) -> Result<Typed, Error> {
        let series = self.series(name)?;
        let failed = |e: PolarsError| Error::Column { column: name.to_string(), message: e.to_string() };
        let dtype = series.dtype();
        if dtype.is_primitive_numeric() {
            let floats = series.cast(&DataType::Float64).map_err(failed)?;
            Ok(Typed::Numbers(floats.f64().map_err(failed)?.iter().collect()))
        } else if dtype == &DataType::Boolean {
            Ok(Typed::Booleans(series.bool().map_err(failed)?.clone()))
        } else {
            let strings = series.cast(&DataType::String).map_err(failed)?;
            Ok(Typed::Text(strings.str().map_err(failed)?.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_columns_by_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "x,plan,flag\n1.5,basic,true\n,pro,false\n3,basic,\n").unwrap();
        let table = Table::read(&path).unwrap();
        assert_eq!(table.rows(), 3);
        assert_eq!(table.column("x").unwrap(), ColumnData::Numeric(vec![Some(1.5), None, Some(3.0)]));
        assert_eq!(
            table.column("plan").unwrap(),
            ColumnData::Categorical(Categories::of([Some("basic"), Some("pro"), Some("basic")]))
        );
        assert_eq!(
            table.column("flag").unwrap(),
            ColumnData::Categorical(Categories::of([Some("true"), Some("false"), None]))
        );
        assert_eq!(table.cells("flag").unwrap(), Cells::Text(vec![Some("true".into()), Some("false".into()), None]));
        assert_eq!(table.cells("x").unwrap(), Cells::Numbers(vec![Some(1.5), None, Some(3.0)]));
        let err = table.column("nope").unwrap_err().to_string();
        assert!(err.contains("`nope`") && err.contains("x, plan, flag"), "{err}");
    }

    #[test]
    fn parquet_reads_small_integers_and_date_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let times = Series::new("at".into(), &[1_793_491_200_000i64, 1_793_491_260_000, 1_793_491_320_000])
            .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
            .unwrap();
        let mut frame = DataFrame::new(
            3,
            vec![
                Series::new("label".into(), &[1i8, 0, 1]).into(),
                Series::new("count".into(), &[7u16, 8, 9]).into(),
                times.into(),
            ],
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(&path).unwrap()).finish(&mut frame).unwrap();
        let table = Table::read(&path).unwrap();
        assert_eq!(table.cells("label").unwrap(), Cells::Numbers(vec![Some(1.0), Some(0.0), Some(1.0)]));
        assert_eq!(table.cells("count").unwrap(), Cells::Numbers(vec![Some(7.0), Some(8.0), Some(9.0)]));
        assert_eq!(
            table.times("at").unwrap(),
            vec![Some(1_793_491_200_000), Some(1_793_491_260_000), Some(1_793_491_320_000)]
        );
        let only = Table::read_only(&path, &["label"]).unwrap();
        assert_eq!(only.column_names(), ["label"], "only the column asked for is read");
        let without = Table::read_only_with(&path, &["label"], &["absent"]).unwrap();
        assert_eq!(without.column_names(), ["label"], "an optional column the file lacks is left out");
        let with = Table::read_only_with(&path, &["label"], &["count"]).unwrap();
        assert_eq!(with.column_names(), ["label", "count"]);
    }

    #[test]
    fn unknown_extensions_are_refused_with_the_fix() {
        let err = Table::read(Path::new("data.xlsx")).unwrap_err().to_string();
        assert!(err.contains(".csv") && err.contains(".parquet"), "{err}");
    }
}
