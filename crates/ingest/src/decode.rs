//! Request bodies to events: every element is decoded on its own, so one bad event does not
//! spoil the others.

use driftline_core::{parse_event, Event, Limits, Rejection};
use serde_json::value::RawValue;

use crate::Error;

/// How a body holds its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON array of events (a single event object is accepted too).
    JsonArray,
    /// One JSON event per line.
    Ndjson,
}

impl BodyFormat {
    /// The format a `Content-Type` header names: NDJSON for `application/x-ndjson` (or
    /// `application/ndjson`), a JSON array otherwise.
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        let essence = content_type.and_then(|c| c.split(';').next()).map(|c| c.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => BodyFormat::Ndjson,
            _ => BodyFormat::JsonArray,
        }
    }
}

/// A decoded body: the valid events and the rejected ones, each with its index in the body.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Valid events, with their 0-based index in the body.
    pub events: Vec<(usize, Event)>,
    /// Refused events: index, why, and the bytes as received.
    pub rejected: Vec<(usize, Rejection, Vec<u8>)>,
}

impl Decoded {
    /// Events in the body, valid or not.
    pub fn total(&self) -> usize {
        self.events.len() + self.rejected.len()
    }

    fn take(&mut self, index: usize, raw: &[u8], limits: &Limits) {
        match parse_event(raw, limits) {
            Ok(event) => self.events.push((index, event)),
            Err(rejection) => self.rejected.push((index, rejection, raw.to_vec())),
        }
    }
}

/// Decodes a request body. Only a JSON-array body that is not JSON at all fails as a whole;
/// in NDJSON a bad line is one rejected event.
pub fn decode_body(body: &[u8], format: BodyFormat, limits: &Limits) -> Result<Decoded, Error> {
    let mut decoded = Decoded::default();
    match format {
        BodyFormat::JsonArray => {
            let trimmed = body.trim_ascii_start();
            if trimmed.first() == Some(&b'{') {
                decoded.take(0, body.trim_ascii(), limits);
                return Ok(decoded);
            }
            let elements: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| Error::MalformedBody {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
            for (index, raw) in elements.into_iter().enumerate() {
                decoded.take(index, raw.get().as_bytes(), limits);
            }
        }
        BodyFormat::Ndjson => {
            let lines = body.split(|&b| b == b'\n').map(<[u8]>::trim_ascii).filter(|l| !l.is_empty());
            for (index, line) in lines.enumerate() {
                decoded.take(index, line, limits);
            }
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"v":1,"type":"delayed_metrics","uuid":"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42","timestamp_ms":1700000000000,"metrics":{"label":1}}"#;

    #[test]
    fn array_elements_are_judged_one_by_one() {
        let body = format!(r#"[{GOOD}, {{"v":1}}, 42, {GOOD}]"#);
        let d = decode_body(body.as_bytes(), BodyFormat::JsonArray, &Limits::default()).unwrap();
        assert_eq!(d.events.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(
            d.rejected.iter().map(|(i, r, _)| (*i, r.field.as_str())).collect::<Vec<_>>(),
            vec![(1, "type"), (2, "event")]
        );
        assert_eq!(d.rejected[0].2, br#"{"v":1}"#.to_vec(), "raw bytes kept exactly");
        assert_eq!(d.total(), 4);
    }

    #[test]
    fn malformed_array_reports_line_and_column() {
        let body = format!("[{GOOD},\n  {{\"v\":1,]");
        let Err(Error::MalformedBody { line, column, .. }) =
            decode_body(body.as_bytes(), BodyFormat::JsonArray, &Limits::default())
        else {
            panic!("must fail as a whole")
        };
        assert_eq!((line, column), (2, 10));
    }

    #[test]
    fn a_single_object_is_a_batch_of_one() {
        let d = decode_body(GOOD.as_bytes(), BodyFormat::JsonArray, &Limits::default()).unwrap();
        assert_eq!(d.events.len(), 1);
    }

    #[test]
    fn ndjson_bad_lines_are_rejected_alone() {
        let body = format!("{GOOD}\r\n\nnot json\n{GOOD}\n");
        let d = decode_body(body.as_bytes(), BodyFormat::Ndjson, &Limits::default()).unwrap();
        assert_eq!(d.events.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(d.rejected[0].0, 1);
        assert_eq!(d.rejected[0].2, b"not json".to_vec());
    }

    #[test]
    fn content_types() {
        assert_eq!(BodyFormat::from_content_type(Some("application/x-ndjson; charset=utf-8")), BodyFormat::Ndjson);
        assert_eq!(BodyFormat::from_content_type(Some("application/json")), BodyFormat::JsonArray);
        assert_eq!(BodyFormat::from_content_type(None), BodyFormat::JsonArray);
    }
}
