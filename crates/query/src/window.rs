//! `read_metrics` through the SQL layer: a DataFusion plan over the provider that SQL's
//! `labelled_predictions` is (predictions with their delayed metrics merged in, later keys
//! winning), filtered to one deployment, build or model and a window, ordered by start time then
//! UUID; the store sends the rows in that order, so the plan has no sort of its own and streams
//! in bounded memory whatever the window's size. The batches are encoded in the compatible
//! shapes (`{"metrics":[…]}` or NDJSON, byte for byte what clients parse) or as an Arrow IPC
//! stream with `metrics` as a JSON text column.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{col, lit};
use driftline_store::scan::ScanTable;
use driftline_store::Store;
use futures::{Stream, StreamExt};

use crate::answer::CHUNK_BYTES;
use crate::sql::output::{Encoder, Format};
use crate::sql::provider::ScanProvider;
use crate::sql::SqlError;
use crate::{Encoding, Error, ReadRequest};

/// The columns of the answer, in the order of the compatible shape's keys.
const COLUMNS: [&str; 7] = [
    "model_crn",
    "model_build_crn",
    "model_deployment_crn",
    "uuid",
    "start_timestamp_ms",
    "end_timestamp_ms",
    "metrics",
];

/// The plan of `read` for a caller limited to `scope` (a deployment) if given, started.
pub async fn read_window(
    store: Arc<dyn Store>,
    scope: Option<String>,
    read: &ReadRequest,
) -> Result<SendableRecordBatchStream, Error> {
    let selected = col(read.selection.column())
        .eq(lit(read.selection.crn().to_owned()))
        .and(col("start_timestamp_ms").gt_eq(lit(read.window.start_ms)))
        .and(col("start_timestamp_ms").lt(lit(read.window.end_ms)));
    let order = ["start_timestamp_ms", "uuid"];
    ScanProvider::read_ordered(ScanTable::LabelledPredictions, store, scope, selected, &COLUMNS, &order)
        .await
        .map_err(|e| Error::Sql(SqlError::of(e)))
}

/// Encodes the batches of [`read_window`] as a stream of chunks of about [`CHUNK_BYTES`]. A
/// failure mid-way ends the stream with that error, so an HTTP body is cut off (never a short
/// answer that looks whole); in NDJSON a last line `{"error": …}` says why first.
pub fn encode_window(
    batches: SendableRecordBatchStream,
    encoding: Encoding,
) -> impl Stream<Item = Result<Bytes, Error>> + Send {
    let schema = batches.schema();
    let state = Some(Window { batches, encoding, arrow: None, started: false, first: true, failed: None });
    futures::stream::unfold(state, move |state| {
        let schema = schema.clone();
        async move {
            let mut w = state?;
            if let Some(e) = w.failed.take() {
                return Some((Err(e), None));
            }
            let mut out = BytesMut::new();
            if !w.started {
                w.started = true;
                match w.encoding {
                    Encoding::Json => out.put_slice(b"{\"metrics\":["),
                    Encoding::Ndjson => {}
                    Encoding::Arrow => {
                        let mut encoder = match Encoder::new(Format::Arrow, schema) {
                            Ok(encoder) => encoder,
                            Err(e) => return Some((Err(Error::Sql(e)), None)),
                        };
                        out.put_slice(&encoder.start());
                        w.arrow = Some(Box::new(encoder));
                    }
                }
            }
            loop {
                match w.batches.next().await {
                    Some(Ok(batch)) => {
                        if let Err(e) = w.add(&batch, &mut out) {
                            return Some((Err(e), None));
                        }
                        if out.len() >= CHUNK_BYTES {
                            return Some((Ok(out.freeze()), Some(w)));
                        }
                    }
                    Some(Err(e)) => {
                        let e = Error::Sql(SqlError::of(e));
                        if w.encoding == Encoding::Ndjson {
                            // What was read so far goes out with a last line that says why; the
                            // cut comes next.
                            let line = serde_json::json!({ "error": e.to_string() }).to_string();
                            out.put_slice(line.as_bytes());
                            out.put_u8(b'\n');
                            w.failed = Some(e);
                            return Some((Ok(out.freeze()), Some(w)));
                        }
                        return Some((Err(e), None));
                    }
                    None => {
                        match (w.encoding, w.arrow.take()) {
                            (Encoding::Json, _) => out.put_slice(b"]}"),
                            (Encoding::Arrow, Some(mut encoder)) => match encoder.finish() {
                                Ok(tail) => out.put_slice(&tail),
                                Err(e) => return Some((Err(Error::Sql(e)), None)),
                            },
                            _ => {}
                        }
                        return Some((Ok(out.freeze()), None));
                    }
                }
            }
        }
    })
}

/// An answer being encoded.
struct Window {
    batches: SendableRecordBatchStream,
    encoding: Encoding,
    arrow: Option<Box<Encoder>>,
    started: bool,
    /// No row written yet.
    first: bool,
    /// A failure already announced on an NDJSON error line, ending the stream next.
    failed: Option<Error>,
}

impl Window {
    /// Writes `batch`'s rows to `out`.
    fn add(&mut self, batch: &RecordBatch, out: &mut BytesMut) -> Result<(), Error> {
        if let Some(encoder) = &mut self.arrow {
            out.put_slice(&encoder.batch(batch).map_err(Error::Sql)?);
            return Ok(());
        }
        let text = |i: usize| batch.column(i).as_string::<i32>();
        let (model, build, deployment, uuid) = (text(0), text(1), text(2), text(3));
        let start = batch.column(4).as_primitive::<Int64Type>();
        let end = batch.column(5).as_primitive::<Int64Type>();
        let metrics = text(6);
        for row in 0..batch.num_rows() {
            if self.encoding == Encoding::Json && !self.first {
                out.put_u8(b',');
            }
            self.first = false;
            out.put_slice(b"{\"modelCrn\":");
            string(out, model.value(row));
            out.put_slice(b",\"modelBuildCrn\":");
            string(out, build.value(row));
            out.put_slice(b",\"modelDeploymentCrn\":");
            string(out, deployment.value(row));
            out.put_slice(b",\"predictionUuid\":");
            string(out, uuid.value(row));
            out.put_slice(b",\"startTimeStampMs\":");
            let _ = write!(out, "{}", start.value(row));
            out.put_slice(b",\"endTimeStampMs\":");
            let _ = write!(out, "{}", end.value(row));
            out.put_slice(b",\"metrics\":");
            // Stored metrics are compact JSON with sorted keys already (the scan normalises
            // them), which is how the compatible answer writes them.
            if metrics.is_null(row) {
                out.put_slice(b"{}");
            } else {
                out.put_slice(metrics.value(row).as_bytes());
            }
            out.put_u8(b'}');
            if self.encoding == Encoding::Ndjson {
                out.put_u8(b'\n');
            }
        }
        Ok(())
    }
}

/// `s` as a JSON string.
fn string(out: &mut BytesMut, s: &str) {
    serde_json::to_writer(out.writer(), s).expect("a string always encodes");
}
