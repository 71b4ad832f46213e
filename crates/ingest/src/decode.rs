//! Request bodies to events: every element is decoded on its own, so one bad event (invalid
//! JSON, invalid UTF-8, a broken rule) does not spoil the others.
//!
//! A JSON array is split into its elements by a scanner that follows only strings and brackets,
//! so the elements are counted (and a body with too many refused) before any of them is parsed,
//! and an element that is not valid JSON or not UTF-8 is one rejection, not a failed request.

use std::ops::Range;

use bytes::Bytes;
use driftline_core::{parse_event, Event, Limits, Rejection};

use crate::Error;

/// How a body holds its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON array of events (a single event object is accepted too).
    JsonArray,
    /// One JSON event per line.
    Ndjson,
    /// No content type said which: a body starting with `[` is an array, one starting with `{`
    /// is one event, or NDJSON when more values follow the first.
    Detect,
}

impl BodyFormat {
    /// The format a `Content-Type` header names: NDJSON for `application/x-ndjson` (or
    /// `application/ndjson`, `application/jsonl`), a JSON array for `application/json`, detected
    /// from the body otherwise.
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        let essence = content_type.and_then(|c| c.split(';').next()).map(|c| c.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => BodyFormat::Ndjson,
            Some("application/json") => BodyFormat::JsonArray,
            _ => BodyFormat::Detect,
        }
    }
}

/// A decoded body: the valid events and the rejected ones, each with its index in the body and
/// its bytes as received.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Valid events: index, event, bytes.
    pub events: Vec<(usize, Event, Bytes)>,
    /// Refused events: index, why, bytes.
    pub rejected: Vec<(usize, Rejection, Bytes)>,
}

impl Decoded {
    /// Events in the body, valid or not.
    pub fn total(&self) -> usize {
        self.events.len() + self.rejected.len()
    }

    fn take(&mut self, index: usize, raw: Bytes, limits: &Limits) {
        match parse_event(&raw, limits) {
            Ok(event) => self.events.push((index, event, raw)),
            Err(rejection) => self.rejected.push((index, rejection, raw)),
        }
    }
}

/// Decodes a request body. Fails as a whole only when the body's structure is broken (an array
/// that does not close, text that is neither an array nor an object) or when it holds more than
/// `limits.max_request_events` events.
pub fn decode_body(body: Bytes, format: BodyFormat, limits: &Limits) -> Result<Decoded, Error> {
    let mut decoded = Decoded::default();
    let first = body.iter().position(|b| !b.is_ascii_whitespace()).map(|i| body[i]);
    let format = match (format, first) {
        (BodyFormat::Detect, Some(b'[')) => BodyFormat::JsonArray,
        (BodyFormat::Detect | BodyFormat::JsonArray, Some(b'{')) if more_than_one_value(&body) => BodyFormat::Ndjson,
        (BodyFormat::Detect, _) => BodyFormat::JsonArray,
        (other, _) => other,
    };
    match format {
        BodyFormat::JsonArray if first == Some(b'{') => {
            let range = trimmed(&body);
            decoded.take(0, body.slice(range), limits);
        }
        BodyFormat::JsonArray => {
            let elements = split_array(&body, limits.max_request_events).map_err(|e| explain(&body, e))?;
            for (index, range) in elements.into_iter().enumerate() {
                decoded.take(index, body.slice(range), limits);
            }
        }
        BodyFormat::Ndjson | BodyFormat::Detect => {
            let lines: Vec<Range<usize>> = lines(&body).collect();
            if lines.len() > limits.max_request_events {
                return Err(Error::TooManyEvents { found: lines.len(), limit: limits.max_request_events });
            }
            for (index, range) in lines.into_iter().enumerate() {
                decoded.take(index, body.slice(range), limits);
            }
        }
    }
    Ok(decoded)
}

/// The non-blank lines of an NDJSON body, trimmed, as ranges.
fn lines(body: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    body.split(|&b| b == b'\n').filter_map(move |line| {
        let at = start;
        start += line.len() + 1;
        let lead = line.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let trail = line.iter().rev().take_while(|b| b.is_ascii_whitespace()).count();
        (lead < line.len()).then(|| at + lead..at + line.len() - trail)
    })
}

fn trimmed(body: &[u8]) -> Range<usize> {
    let lead = body.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let trail = body.iter().rev().take_while(|b| b.is_ascii_whitespace()).count();
    lead..body.len().saturating_sub(trail).max(lead)
}

/// Whether the body holds more than one JSON value one after the other (NDJSON sent without its
/// content type). Only the first value is parsed.
fn more_than_one_value(body: &[u8]) -> bool {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<serde::de::IgnoredAny>();
    match values.next() {
        Some(Ok(_)) => body[values.byte_offset()..].iter().any(|b| !b.is_ascii_whitespace()),
        // The first line is broken: if a line break is followed by more, treat it as NDJSON so
        // that the other lines are judged on their own.
        _ => lines(body).nth(1).is_some(),
    }
}

/// A body whose structure is broken, explained as a JSON parser sees it (its line, column and
/// message are the most helpful), or as the scanner saw it when the parser has no complaint.
fn explain(body: &[u8], error: Error) -> Error {
    if !matches!(error, Error::MalformedBody { .. }) {
        return error;
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Err(e) if !e.is_io() => Error::MalformedBody { line: e.line(), column: e.column(), message: e.to_string() },
        _ => error,
    }
}

/// Splits a JSON array into the byte ranges of its elements, following only strings and
/// brackets; the elements themselves are not parsed. Fails on a body that is not one array, and
/// as soon as there are more than `max` elements.
fn split_array(body: &[u8], max: usize) -> Result<Vec<Range<usize>>, Error> {
    let malformed = |at: usize, message: &str| {
        let line = body[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let column = at - body[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        Error::MalformedBody { line, column, message: message.to_owned() }
    };
    let open =
        body.iter().position(|b| !b.is_ascii_whitespace()).ok_or_else(|| malformed(body.len(), "the body is empty"))?;
    if body[open] != b'[' {
        return Err(malformed(open, "expected `[` (an array of events) or `{` (one event)"));
    }
    let mut elements = Vec::new();
    let mut brackets: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut start: Option<usize> = None;
    let mut i = open + 1;
    let mut closed = None;
    while i < body.len() {
        if in_string {
            // Straight to the string's next quote or backslash; an escape skips what it escapes.
            match memchr::memchr2(b'"', b'\\', &body[i..]) {
                Some(k) if body[i + k] == b'\\' => i += k + 2,
                Some(k) => {
                    in_string = false;
                    i += k + 1;
                }
                None => i = body.len(),
            }
            continue;
        }
        let b = body[i];
        match b {
            b'"' => {
                in_string = true;
                start.get_or_insert(i);
            }
            b'[' | b'{' => {
                brackets.push(if b == b'[' { b']' } else { b'}' });
                start.get_or_insert(i);
            }
            b']' | b'}' if !brackets.is_empty() => {
                if brackets.pop() != Some(b) {
                    return Err(malformed(i, "a bracket closes what it did not open"));
                }
            }
            b']' => {
                closed = Some(i);
                break;
            }
            b'}' => return Err(malformed(i, "a `}` closes nothing")),
            b',' if brackets.is_empty() => {
                let s =
                    start.take().ok_or_else(|| malformed(i, "an empty element (two commas, or a leading comma)"))?;
                push_element(&mut elements, body, s..i, max)?;
            }
            b if b.is_ascii_whitespace() => {}
            _ => {
                start.get_or_insert(i);
            }
        }
        i += 1;
    }
    let Some(end) = closed else {
        return Err(malformed(body.len(), "the array does not end: EOF while parsing a list"));
    };
    match start {
        Some(s) => push_element(&mut elements, body, s..end, max)?,
        None if !elements.is_empty() => return Err(malformed(end, "a trailing comma before `]`")),
        None => {}
    }
    if let Some(rest) = body[end + 1..].iter().position(|b| !b.is_ascii_whitespace()) {
        return Err(malformed(end + 1 + rest, "trailing characters after the array"));
    }
    Ok(elements)
}

fn push_element(elements: &mut Vec<Range<usize>>, body: &[u8], range: Range<usize>, max: usize) -> Result<(), Error> {
    if elements.len() == max {
        return Err(Error::TooManyEvents { found: max + 1, limit: max });
    }
    let trail = body[range.clone()].iter().rev().take_while(|b| b.is_ascii_whitespace()).count();
    elements.push(range.start..range.end - trail);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"{"v":1,"type":"delayed_metrics","uuid":"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42","timestamp_ms":1700000000000,"metrics":{"label":1}}"#;

    fn decode(body: &[u8], format: BodyFormat) -> Result<Decoded, Error> {
        decode_body(Bytes::copy_from_slice(body), format, &Limits::default())
    }

    #[test]
    fn array_elements_are_judged_one_by_one() {
        let body = format!(r#"[{GOOD}, {{"v":1}}, 42, {GOOD}]"#);
        let d = decode(body.as_bytes(), BodyFormat::JsonArray).unwrap();
        assert_eq!(d.events.iter().map(|(i, ..)| *i).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(
            d.rejected.iter().map(|(i, r, _)| (*i, r.field.as_str())).collect::<Vec<_>>(),
            vec![(1, "type"), (2, "event")]
        );
        assert_eq!(&d.rejected[0].2[..], br#"{"v":1}"#, "raw bytes kept exactly");
        assert_eq!(d.total(), 4);
    }

    #[test]
    fn malformed_array_reports_line_and_column() {
        let body = format!("[{GOOD},\n  {{\"v\":1,]");
        let Err(Error::MalformedBody { line, column, .. }) = decode(body.as_bytes(), BodyFormat::JsonArray) else {
            panic!("must fail as a whole")
        };
        assert_eq!((line, column), (2, 10));
        for broken in ["[1, 2", "[1,,2]", "[1,]", "[1] x", "nope", "", "[}]", "[{]}"] {
            assert!(
                matches!(decode(broken.as_bytes(), BodyFormat::JsonArray), Err(Error::MalformedBody { .. })),
                "{broken:?} must fail"
            );
        }
        assert_eq!(decode(b" [ ] ", BodyFormat::JsonArray).unwrap().total(), 0);
    }

    #[test]
    fn a_broken_element_is_one_rejection() {
        // Invalid UTF-8 inside a string, and an element that is not valid JSON inside.
        let mut body = format!("[{GOOD}, {{\"v\":1,\"x\":\"").into_bytes();
        body.extend_from_slice(b"\xff\xfe\"}, {\"a\":1,}, ");
        body.extend_from_slice(GOOD.as_bytes());
        body.push(b']');
        let d = decode(&body, BodyFormat::JsonArray).unwrap();
        assert_eq!(d.events.iter().map(|(i, ..)| *i).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(d.rejected.iter().map(|(i, ..)| *i).collect::<Vec<_>>(), vec![1, 2]);
        assert!(d.rejected[0].1.rule.contains("not valid JSON"), "{}", d.rejected[0].1);
    }

    #[test]
    fn too_many_elements_are_refused_before_parsing() {
        let limits = Limits { max_request_events: 3, ..Limits::default() };
        let e = decode_body(Bytes::from_static(b"[1,1,1,1,1]"), BodyFormat::JsonArray, &limits).unwrap_err();
        assert!(matches!(e, Error::TooManyEvents { limit: 3, .. }), "{e}");
        let e = decode_body(Bytes::from_static(b"1\n1\n1\n1\n"), BodyFormat::Ndjson, &limits).unwrap_err();
        assert!(matches!(e, Error::TooManyEvents { found: 4, limit: 3 }), "{e}");
        assert_eq!(decode_body(Bytes::from_static(b"[1,1,1]"), BodyFormat::JsonArray, &limits).unwrap().total(), 3);
    }

    #[test]
    fn a_single_object_is_a_batch_of_one() {
        let d = decode(GOOD.as_bytes(), BodyFormat::JsonArray).unwrap();
        assert_eq!(d.events.len(), 1);
    }

    #[test]
    fn ndjson_without_its_content_type_is_detected() {
        let body = format!("{GOOD}\n{GOOD}\n");
        for format in [BodyFormat::Detect, BodyFormat::JsonArray] {
            let d = decode(body.as_bytes(), format).unwrap();
            assert_eq!(d.events.len(), 2, "{format:?}");
        }
        // A broken first line does not make the rest one event.
        let body = format!("{{\"v\":1,\n{GOOD}\n");
        let d = decode(body.as_bytes(), BodyFormat::Detect).unwrap();
        assert_eq!((d.events.len(), d.rejected.len()), (1, 1));
        let d = decode(format!("[{GOOD}]").as_bytes(), BodyFormat::Detect).unwrap();
        assert_eq!(d.events.len(), 1);
    }

    #[test]
    fn ndjson_bad_lines_are_rejected_alone() {
        let body = format!("{GOOD}\r\n\nnot json\n{GOOD}\n");
        let d = decode(body.as_bytes(), BodyFormat::Ndjson).unwrap();
        assert_eq!(d.events.iter().map(|(i, ..)| *i).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(d.rejected[0].0, 1);
        assert_eq!(&d.rejected[0].2[..], b"not json");
    }

    #[test]
    fn content_types() {
        assert_eq!(BodyFormat::from_content_type(Some("application/x-ndjson; charset=utf-8")), BodyFormat::Ndjson);
        assert_eq!(BodyFormat::from_content_type(Some("application/json")), BodyFormat::JsonArray);
        assert_eq!(BodyFormat::from_content_type(None), BodyFormat::Detect);
        assert_eq!(BodyFormat::from_content_type(Some("text/plain")), BodyFormat::Detect);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The scanner splits any array exactly as a JSON parser does: same elements, same text.
        #[test]
        fn the_scanner_agrees_with_a_json_parser(values in prop::collection::vec(json_value(), 0..8), pretty in any::<bool>()) {
            let array = serde_json::Value::Array(values.clone());
            let text = if pretty { serde_json::to_string_pretty(&array).unwrap() } else { array.to_string() };
            let ranges = split_array(text.as_bytes(), usize::MAX).unwrap();
            let parsed: Vec<&serde_json::value::RawValue> = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(ranges.len(), parsed.len());
            for (range, raw) in ranges.iter().zip(parsed) {
                prop_assert_eq!(&text[range.clone()], raw.get());
            }
        }
    }
}
