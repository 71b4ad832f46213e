//! Read windows: which predictions, over which time, and what comes back.

use driftline_core::Metrics;
use serde_json::Value;
use uuid::Uuid;

use crate::rollups::SourceRow;
use crate::Error;

/// Which predictions a read selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Predictions of one deployment.
    Deployment(String),
    /// Predictions of one model build.
    Build(String),
    /// Predictions of one model.
    Model(String),
}

impl Selection {
    /// The column this selection filters on.
    pub fn column(&self) -> &'static str {
        match self {
            Selection::Deployment(_) => "model_deployment_crn",
            Selection::Build(_) => "model_build_crn",
            Selection::Model(_) => "model_crn",
        }
    }

    /// The CRN selected.
    pub fn crn(&self) -> &str {
        match self {
            Selection::Deployment(c) | Selection::Build(c) | Selection::Model(c) => c,
        }
    }
}

/// A half-open time window `[start_ms, end_ms)` on the prediction's start timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start, ms since the epoch.
    pub start_ms: i64,
    /// Exclusive end, ms since the epoch.
    pub end_ms: i64,
}

/// One prediction as read back, its delayed metrics merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRecord {
    /// The prediction's UUID.
    pub uuid: Uuid,
    /// The model's CRN.
    pub model_crn: String,
    /// The build's CRN.
    pub model_build_crn: String,
    /// The deployment's CRN.
    pub model_deployment_crn: String,
    /// Start, ms since the epoch.
    pub start_timestamp_ms: i64,
    /// End, ms since the epoch.
    pub end_timestamp_ms: i64,
    /// The prediction's metrics with each delayed metrics object merged in, oldest first, so
    /// later keys win.
    pub metrics: Metrics,
}

/// An aggregate metrics event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAggregate {
    /// The deployment's CRN.
    pub model_deployment_crn: String,
    /// Start of the range covered.
    pub start_timestamp_ms: i64,
    /// End of the range covered.
    pub end_timestamp_ms: i64,
    /// The metrics.
    pub metrics: Metrics,
    /// `user` or `drift:<job>`.
    pub source: String,
}

/// Decodes a stored metrics object.
pub(crate) fn decode_metrics(text: &str) -> Result<Metrics, Error> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt { what: "metrics", detail: e.to_string() })
}

/// Merges a JSON array of delayed metrics objects (oldest first) into `metrics`.
pub(crate) fn merge_delayed(metrics: &mut Metrics, delayed: Option<&str>) -> Result<(), Error> {
    let Some(text) = delayed else { return Ok(()) };
    let list: Vec<Value> =
        serde_json::from_str(text).map_err(|e| Error::Corrupt { what: "delayed metrics", detail: e.to_string() })?;
    for item in list {
        if let Value::Object(obj) = item {
            metrics.extend(obj);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_delayed_keys_win() {
        let mut m = decode_metrics(r#"{"prediction":0.8,"label":null}"#).unwrap();
        merge_delayed(&mut m, Some(r#"[{"label":0,"note":"a"},{"label":1}]"#)).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"label":1,"note":"a","prediction":0.8}"#);
        merge_delayed(&mut m, None).unwrap();
        assert!(merge_delayed(&mut m, Some("[")).is_err());
    }
}

/// A prediction as both backends select it (text columns, JSON as text, its delayed metrics as
/// one JSON array), decoded into what reads return.
pub(crate) fn decode_record(row: SourceRow) -> Result<ReadRecord, Error> {
    let uuid = Uuid::parse_str(&row.uuid).map_err(|e| Error::Corrupt { what: "uuid", detail: e.to_string() })?;
    let mut metrics = decode_metrics(&row.metrics)?;
    merge_delayed(&mut metrics, row.delayed.as_deref())?;
    Ok(ReadRecord {
        uuid,
        model_crn: row.model_crn,
        model_build_crn: row.model_build_crn,
        model_deployment_crn: row.model_deployment_crn,
        start_timestamp_ms: row.start_timestamp_ms,
        end_timestamp_ms: row.end_timestamp_ms,
        metrics,
    })
}

/// An aggregate row as both backends select it.
#[derive(sqlx::FromRow)]
pub(crate) struct RawAggregate {
    model_deployment_crn: String,
    start_timestamp_ms: i64,
    end_timestamp_ms: i64,
    metrics: String,
    source: String,
}

impl RawAggregate {
    pub(crate) fn decode(self) -> Result<StoredAggregate, Error> {
        Ok(StoredAggregate {
            model_deployment_crn: self.model_deployment_crn,
            start_timestamp_ms: self.start_timestamp_ms,
            end_timestamp_ms: self.end_timestamp_ms,
            metrics: decode_metrics(&self.metrics)?,
            source: self.source,
        })
    }
}

/// Rows buffered between a store's reader task and the consumer of its stream: the reader
/// waits when the consumer is slower, so memory does not grow with the window.
pub(crate) const READ_BUFFER: usize = 512;

/// Most rows handed over at once: rows go over the channel in batches of those the database
/// has already sent, so that a fast consumer is not woken once per row (on a window of
/// 500,000 rows that was a tenth of the reading process's time).
const READ_BATCH: usize = 64;

/// Runs `run` in its own task, handing it a [`RowSink`] that passes decoded items to the
/// returned stream over a bounded channel. The whole read, streaming included, gets `budget`:
/// past it the task is stopped and the stream ends with [`Error::ReadTimeout`].
pub(crate) fn spawn_reader<T, F, Fut>(
    budget: std::time::Duration,
    run: F,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Error>> + Send>>
where
    T: Send + 'static,
    F: FnOnce(RowSink<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(READ_BUFFER / READ_BATCH);
    let timeout_tx = tx.clone();
    let read = run(RowSink { tx });
    tokio::spawn(async move {
        if tokio::time::timeout(budget, read).await.is_err() {
            let _ = timeout_tx.send(vec![Err(Error::ReadTimeout { budget })]).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).flat_map(futures::stream::iter))
}

/// The sending end of a read stream.
pub(crate) struct RowSink<T> {
    tx: tokio::sync::mpsc::Sender<Vec<Result<T, Error>>>,
}

impl<T> RowSink<T> {
    /// Decodes and forwards rows until they end, one fails (passed on, then stop), or the
    /// consumer goes away.
    pub(crate) async fn drain<R, S>(self, rows: S, decode: fn(R) -> Result<T, Error>)
    where
        S: futures::Stream<Item = Result<R, sqlx::Error>>,
    {
        self.drain_with(rows, decode).await
    }

    /// [`RowSink::drain`] with a decoder that keeps state.
    pub(crate) async fn drain_with<R, S>(self, rows: S, mut decode: impl FnMut(R) -> Result<T, Error>)
    where
        S: futures::Stream<Item = Result<R, sqlx::Error>>,
    {
        use futures::StreamExt;
        let rows = rows.ready_chunks(READ_BATCH);
        futures::pin_mut!(rows);
        while let Some(ready) = rows.next().await {
            let mut batch = Vec::with_capacity(ready.len());
            let mut failed = false;
            for row in ready {
                let item = row.map_err(Error::db("read")).and_then(&mut decode);
                failed = item.is_err();
                batch.push(item);
                if failed {
                    break;
                }
            }
            if self.tx.send(batch).await.is_err() || failed {
                break;
            }
        }
    }

    /// Ends the stream with `error`.
    pub(crate) async fn fail(self, error: Error) {
        let _ = self.tx.send(vec![Err(error)]).await;
    }
}

/// Makes a stored string safe for any text column: NUL becomes U+FFFD.
pub(crate) fn text_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}
