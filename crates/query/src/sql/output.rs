//! Writing an answer: an aligned table for a person, CSV, a JSON array of row objects, NDJSON,
//! or an Arrow IPC stream. Every format but the table is written batch by batch, so an answer
//! streams in bounded memory.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::json::WriterBuilder;

use super::SqlError;

/// An answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal (the whole answer is held to size the columns).
    Table,
    Csv,
    /// One JSON array of row objects (`[{"column": value, …}, …]`).
    Json,
    /// One JSON object per line.
    Ndjson,
    /// An Arrow IPC stream.
    Arrow,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "ndjson" => Ok(Format::Ndjson),
            "arrow" => Ok(Format::Arrow),
            other => Err(format!("`{other}` is not an answer format; use table, csv, json, ndjson or arrow")),
        }
    }
}

impl Format {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// Writes one answer, batch by batch: each call returns the bytes to send next.
pub struct Encoder {
    format: Format,
    schema: SchemaRef,
    /// Rows written so far.
    rows: u64,
    /// The table's batches, held until the end.
    held: Vec<RecordBatch>,
    ipc: Option<StreamWriter<Vec<u8>>>,
}

fn failed(e: ArrowError) -> SqlError {
    SqlError::Failed(format!("encoding the answer: {e}"))
}

impl Encoder {
    /// An encoder of answers of `schema` in `format`.
    pub fn new(format: Format, schema: SchemaRef) -> Result<Self, SqlError> {
        let ipc = match format {
            Format::Arrow => Some(StreamWriter::try_new(Vec::new(), &schema).map_err(failed)?),
            _ => None,
        };
        Ok(Encoder { format, schema, rows: 0, held: Vec::new(), ipc })
    }

    /// The bytes that start the answer (before any batch).
    pub fn start(&mut self) -> Vec<u8> {
        match self.format {
            Format::Json => b"[".to_vec(),
            Format::Arrow => self.ipc.as_mut().map(|w| std::mem::take(w.get_mut())).unwrap_or_default(),
            Format::Csv => {
                // The header, even for an answer without rows.
                let empty = RecordBatch::new_empty(self.schema.clone());
                let mut out = Vec::new();
                let mut w = csv::WriterBuilder::new().with_header(true).build(&mut out);
                let _ = w.write(&empty);
                drop(w);
                out
            }
            _ => Vec::new(),
        }
    }

    /// The bytes of one batch.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, SqlError> {
        let first = self.rows == 0;
        self.rows += batch.num_rows() as u64;
        match self.format {
            Format::Table => {
                self.held.push(batch.clone());
                Ok(Vec::new())
            }
            Format::Csv => {
                let mut out = Vec::new();
                let mut w = csv::WriterBuilder::new().with_header(false).build(&mut out);
                w.write(batch).map_err(failed)?;
                drop(w);
                Ok(out)
            }
            Format::Ndjson => lines(batch),
            Format::Json => {
                let lines = lines(batch)?;
                let mut out = Vec::with_capacity(lines.len() + 1);
                let mut rest = lines.as_slice();
                let mut first_row = first;
                while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                    if !first_row {
                        out.push(b',');
                    }
                    out.extend_from_slice(&rest[..end]);
                    rest = &rest[end + 1..];
                    first_row = false;
                }
                Ok(out)
            }
            Format::Arrow => {
                let w = self.ipc.as_mut().expect("an arrow encoder has its writer");
                w.write(batch).map_err(failed)?;
                Ok(std::mem::take(w.get_mut()))
            }
        }
    }

    /// The bytes that end the answer.
    pub fn finish(&mut self) -> Result<Vec<u8>, SqlError> {
        match self.format {
            Format::Json => Ok(b"]\n".to_vec()),
            Format::Arrow => {
                let w = self.ipc.as_mut().expect("an arrow encoder has its writer");
                w.finish().map_err(failed)?;
                Ok(std::mem::take(w.get_mut()))
            }
            Format::Table => {
                let mut text = if self.held.is_empty() {
                    datafusion::arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(
                        self.schema.clone(),
                    )])
                } else {
                    datafusion::arrow::util::pretty::pretty_format_batches(&self.held)
                }
                .map_err(failed)?
                .to_string();
                text.push_str(&format!("\n{} row{}\n", self.rows, if self.rows == 1 { "" } else { "s" }));
                Ok(text.into_bytes())
            }
            Format::Csv | Format::Ndjson => Ok(Vec::new()),
        }
    }
}

/// A batch as JSON lines, nulls written as `null`.
fn lines(batch: &RecordBatch) -> Result<Vec<u8>, SqlError> {
    let mut w = WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(Vec::new());
    w.write(batch).map_err(failed)?;
    w.finish().map_err(failed)?;
    Ok(w.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let ns: Vec<i64> = (from..from + n).collect();
        let xs: Vec<Option<f64>> = ns.iter().map(|&i| (i % 2 == 0).then_some(i as f64 / 2.0)).collect();
        let ss: Vec<Option<String>> = ns.iter().map(|&i| Some(format!("r\"{i}"))).collect();
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(ns)), Arc::new(Float64Array::from(xs)), Arc::new(StringArray::from(ss))],
        )
        .unwrap()
    }

    fn encode(format: Format, batches: &[RecordBatch]) -> Vec<u8> {
        let schema = batch(0, 0).schema();
        let mut e = Encoder::new(format, schema).unwrap();
        let mut out = e.start();
        for b in batches {
            out.extend(e.batch(b).unwrap());
        }
        out.extend(e.finish().unwrap());
        out
    }

    #[test]
    fn json_is_one_array_of_row_objects_across_batches() {
        let text = String::from_utf8(encode(Format::Json, &[batch(0, 2), batch(2, 1)])).unwrap();
        assert_eq!(
            text,
            "[{\"n\":0,\"x\":0.0,\"s\":\"r\\\"0\"},{\"n\":1,\"x\":null,\"s\":\"r\\\"1\"},{\"n\":2,\"x\":1.0,\"s\":\"r\\\"2\"}]\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 3);
        assert_eq!(String::from_utf8(encode(Format::Json, &[])).unwrap(), "[]\n");
    }

    #[test]
    fn ndjson_csv_and_table_write_every_row() {
        let ndjson = String::from_utf8(encode(Format::Ndjson, &[batch(0, 2), batch(2, 1)])).unwrap();
        assert_eq!(ndjson.lines().count(), 3);
        let csv = String::from_utf8(encode(Format::Csv, &[batch(0, 2), batch(2, 1)])).unwrap();
        assert_eq!(csv.lines().collect::<Vec<_>>(), ["n,x,s", "0,0.0,\"r\"\"0\"", "1,,\"r\"\"1\"", "2,1.0,\"r\"\"2\""]);
        assert_eq!(String::from_utf8(encode(Format::Csv, &[])).unwrap(), "n,x,s\n");
        let table = String::from_utf8(encode(Format::Table, &[batch(0, 2)])).unwrap();
        assert!(
            table.contains("| n | x   | s   |")
                && table.contains("| 1 |     | r\"1 |")
                && table.ends_with("\n2 rows\n"),
            "{table}"
        );
    }

    #[test]
    fn arrow_streams_read_back_as_the_batches() {
        let bytes = encode(Format::Arrow, &[batch(0, 2), batch(2, 3)]);
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches, [batch(0, 2), batch(2, 3)]);
    }
}
