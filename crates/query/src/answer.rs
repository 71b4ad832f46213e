//! The answers' encodings, and the aggregate metrics answer encoded as a stream of byte chunks:
//! `{"metrics":[{"modelDeploymentCrn":…,"startTimeStampMs":…,"endTimeStampMs":…,"metrics":{…},
//! "source":…}, …]}` as one JSON document, or one such object per line (NDJSON), in chunks of
//! about [`CHUNK_BYTES`]. `read_metrics` answers are encoded from record batches by
//! [`crate::window`], in the same way.

use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use driftline_core::Metrics;
use driftline_store::{AggregateStream, StoredAggregate};
use futures::{Stream, StreamExt};
use serde::Serialize;

use crate::Error;

/// Target size of one encoded chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// How the answer is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON document `{"metrics":[…]}`.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// An Arrow IPC stream (`read_metrics` only), metrics as a JSON text column.
    Arrow,
}

impl Encoding {
    /// The answer's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// One aggregate metrics event in the compatible camelCase shape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateMetric<'a> {
    /// The deployment's CRN.
    pub model_deployment_crn: &'a str,
    /// Start of the range covered, ms since the epoch.
    #[serde(rename = "startTimeStampMs")]
    pub start_time_stamp_ms: i64,
    /// End of the range covered, ms since the epoch.
    #[serde(rename = "endTimeStampMs")]
    pub end_time_stamp_ms: i64,
    /// The metrics.
    pub metrics: &'a Metrics,
    /// `user` or `drift:<job>`.
    pub source: &'a str,
}

impl<'a> From<&'a StoredAggregate> for AggregateMetric<'a> {
    fn from(a: &'a StoredAggregate) -> Self {
        AggregateMetric {
            model_deployment_crn: &a.model_deployment_crn,
            start_time_stamp_ms: a.start_timestamp_ms,
            end_time_stamp_ms: a.end_timestamp_ms,
            metrics: &a.metrics,
            source: &a.source,
        }
    }
}

struct State<T> {
    items: Pin<Box<dyn Stream<Item = Result<T, driftline_store::Error>> + Send>>,
    write: fn(&T, &mut BytesMut),
    encoding: Encoding,
    first: bool,
    done: bool,
    /// An error already announced on an NDJSON error line, ending the stream next.
    failed: Option<driftline_store::Error>,
}

/// Encodes a stream of aggregate metrics as a stream of chunks.
pub fn encode_aggregates(
    aggregates: AggregateStream,
    encoding: Encoding,
) -> impl Stream<Item = Result<Bytes, Error>> + Send {
    encode_items(aggregates, encoding, |a: &StoredAggregate, buf| write_json(buf, &AggregateMetric::from(a)))
}

fn write_json<T: Serialize>(buf: &mut BytesMut, value: &T) {
    serde_json::to_writer(buf.writer(), value).expect("answers always encode");
}

/// Encodes items as `{"metrics":[…]}` or NDJSON, in chunks of about [`CHUNK_BYTES`]. A store
/// error mid-way ends the stream with that error, so an HTTP body is cut off (the client sees a
/// broken transfer, never a short answer that looks whole); in NDJSON a last line
/// `{"error": …}` says why first.
fn encode_items<T: Send + 'static>(
    items: Pin<Box<dyn Stream<Item = Result<T, driftline_store::Error>> + Send>>,
    encoding: Encoding,
    write: fn(&T, &mut BytesMut),
) -> impl Stream<Item = Result<Bytes, Error>> + Send {
    let state = State { items, write, encoding, first: true, done: false, failed: None };
    futures::stream::unfold(state, |mut s| async move {
        if let Some(e) = s.failed.take() {
            s.done = true;
            return Some((Err(Error::Store(e)), s));
        }
        if s.done {
            return None;
        }
        let mut buf = BytesMut::with_capacity(CHUNK_BYTES + 1024);
        if s.first && s.encoding == Encoding::Json {
            buf.put_slice(b"{\"metrics\":[");
        }
        while buf.len() < CHUNK_BYTES {
            match s.items.next().await {
                Some(Ok(item)) => {
                    if s.encoding == Encoding::Json && !s.first {
                        buf.put_u8(b',');
                    }
                    s.first = false;
                    (s.write)(&item, &mut buf);
                    if s.encoding == Encoding::Ndjson {
                        buf.put_u8(b'\n');
                    }
                }
                Some(Err(e)) if s.encoding == Encoding::Ndjson => {
                    // What was read so far goes out with a last line that says why; the cut
                    // comes next.
                    write_json(&mut buf, &serde_json::json!({ "error": e.to_string() }));
                    buf.put_u8(b'\n');
                    s.failed = Some(e);
                    return Some((Ok(buf.freeze()), s));
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(Error::Store(e)), s));
                }
                None => {
                    if s.encoding == Encoding::Json {
                        buf.put_slice(b"]}");
                    }
                    s.done = true;
                    break;
                }
            }
        }
        s.first = s.first && s.encoding == Encoding::Ndjson;
        Some((Ok(buf.freeze()), s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::DataFusionError;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use datafusion::physical_plan::SendableRecordBatchStream;
    use futures::TryStreamExt;
    use serde_json::json;
    use std::sync::Arc;

    use crate::window::encode_window;

    /// Rows `from..to` as `read_window`'s plan gives them: metrics as the scan normalises them.
    fn batch(from: u128, to: u128) -> RecordBatch {
        let text =
            |f: &dyn Fn(u128) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values((from..to).map(f))) };
        let int = |f: &dyn Fn(u128) -> i64| -> ArrayRef { Arc::new((from..to).map(f).collect::<Int64Array>()) };
        let metrics = json!({"input": {"tenure": 12, "plan": "basic"}, "prediction": 0.83, "label": 1}).to_string();
        let columns = vec![
            text(&|_| "crn:model/churn".into()),
            text(&|_| "crn:build/7".into()),
            text(&|_| "crn:dep/1".into()),
            text(&|i| uuid::Uuid::from_u128(i).to_string()),
            int(&|i| 1_700_000_000_000 + i as i64),
            int(&|i| 1_700_000_000_012 + i as i64),
            text(&|_| metrics.clone()),
        ];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    fn schema() -> Arc<Schema> {
        let names = ["model_crn", "model_build_crn", "model_deployment_crn", "uuid"];
        let mut fields: Vec<Field> = names.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect();
        fields.push(Field::new("start_timestamp_ms", DataType::Int64, false));
        fields.push(Field::new("end_timestamp_ms", DataType::Int64, false));
        fields.push(Field::new("metrics", DataType::Utf8, true));
        Arc::new(Schema::new(fields))
    }

    fn stream(batches: Vec<Result<RecordBatch, DataFusionError>>) -> SendableRecordBatchStream {
        Box::pin(RecordBatchStreamAdapter::new(schema(), futures::stream::iter(batches)))
    }

    async fn collect(batches: Vec<Result<RecordBatch, DataFusionError>>, encoding: Encoding) -> Result<String, Error> {
        let chunks: Vec<Bytes> = encode_window(stream(batches), encoding).try_collect().await?;
        Ok(chunks.iter().map(|c| std::str::from_utf8(c).unwrap()).collect())
    }

    #[tokio::test]
    async fn json_answer_has_the_compatible_shape() {
        let text = collect(vec![Ok(batch(1, 2)), Ok(batch(2, 3))], Encoding::Json).await.unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        insta::assert_json_snapshot!("read_metrics_answer", value);
        assert_eq!(collect(vec![], Encoding::Json).await.unwrap(), r#"{"metrics":[]}"#);
    }

    #[tokio::test]
    async fn ndjson_is_one_object_per_line() {
        let text = collect(vec![Ok(batch(1, 3)), Ok(batch(3, 4))], Encoding::Ndjson).await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["predictionUuid"], json!("00000000-0000-0000-0000-000000000002"));
        assert_eq!(collect(vec![], Encoding::Ndjson).await.unwrap(), "");
    }

    #[tokio::test]
    async fn large_answers_come_in_bounded_chunks() {
        let batches = (0..5).map(|i| Ok(batch(i * 1_000, (i + 1) * 1_000))).collect();
        let chunks: Vec<Bytes> = encode_window(stream(batches), Encoding::Json).try_collect().await.unwrap();
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        // A chunk ends after the batch that fills it: at most one batch (about 200 KiB here) over.
        assert!(chunks.iter().all(|c| c.len() < CHUNK_BYTES + 300 * 1024));
        let text: Vec<u8> = chunks.concat();
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(value["metrics"].as_array().unwrap().len(), 5_000);
    }

    #[tokio::test]
    async fn arrow_answers_carry_the_batches() {
        let chunks: Vec<Bytes> =
            encode_window(stream(vec![Ok(batch(0, 3))]), Encoding::Arrow).try_collect().await.unwrap();
        let bytes = chunks.concat();
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches, vec![batch(0, 3)]);
    }

    #[tokio::test]
    async fn a_failure_cuts_the_stream() {
        let err = || {
            DataFusionError::External(Box::new(driftline_store::Error::Corrupt { what: "metrics", detail: "x".into() }))
        };
        assert!(collect(vec![Ok(batch(1, 2)), Err(err())], Encoding::Json).await.is_err());
        // NDJSON readers get the rows read so far and a last line that says why, then the cut.
        let chunks: Vec<Result<Bytes, Error>> =
            encode_window(stream(vec![Ok(batch(1, 2)), Err(err()), Ok(batch(2, 3))]), Encoding::Ndjson).collect().await;
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        let text = std::str::from_utf8(chunks[0].as_ref().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("{\"error\":\"stored metrics is not valid"), "{}", lines[1]);
        assert!(chunks[1].is_err());
    }
}
