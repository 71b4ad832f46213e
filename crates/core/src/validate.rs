//! Parsing and validation of v1 events. A rejection always names the field and the rule broken,
//! and says what to send instead.

use std::fmt;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{AggregateMetrics, DelayedMetrics, Event, Prediction, ReplicaStats, WIRE_VERSION};
use crate::limits::Limits;
use crate::metrics_json::{Bounds, MetricsJson};
use crate::time::date_string;

/// Longest CRN accepted, in bytes.
pub const MAX_CRN_BYTES: usize = 1024;

/// Why an event was refused: the field at fault and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Rejection {
    /// The offending field (`metrics.input` style paths), or `event` for the event as a whole.
    pub field: String,
    /// What is wrong and what to send instead.
    pub rule: String,
}

impl Rejection {
    /// A rejection of `field` for breaking `rule`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Rejection { field: field.into(), rule: rule.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.rule)
    }
}

const PREDICTION_FIELDS: &[&str] = &[
    "v",
    "type",
    "uuid",
    "model_crn",
    "model_build_crn",
    "model_deployment_crn",
    "start_timestamp_ms",
    "end_timestamp_ms",
    "metrics",
];
const DELAYED_FIELDS: &[&str] = &["v", "type", "uuid", "timestamp_ms", "metrics"];
const REPLICA_FIELDS: &[&str] =
    &["v", "type", "model_deployment_crn", "replica_id", "timestamp_ms", "cpu_percent", "memory_bytes"];
/// Longest replica id, in bytes.
const MAX_REPLICA_ID_BYTES: usize = 128;
/// The event types, as named in error messages.
const TYPES: &str = "\"prediction\", \"delayed_metrics\", \"aggregate_metrics\" or \"replica_stats\"";
const AGGREGATE_FIELDS: &[&str] =
    &["v", "type", "model_deployment_crn", "start_timestamp_ms", "end_timestamp_ms", "metrics", "source"];

/// Refuses an encoded event of `len` bytes over the limit of bytes per event.
pub fn check_event_size(len: usize, limits: &Limits) -> Result<(), Rejection> {
    if len > limits.max_event_bytes {
        return Err(Rejection::new(
            "event",
            format!(
                "is {len} bytes, over the limit of {} bytes per event; send fewer metrics per event",
                limits.max_event_bytes
            ),
        ));
    }
    Ok(())
}

/// Parses and validates one encoded event.
///
/// The event's `metrics` are read in one pass straight into the text the store keeps, without
/// a tree of values ([`MetricsJson`]); only when that pass meets something it does not accept
/// is the event read again as a tree, to name what is wrong.
pub fn parse_event(raw: &[u8], limits: &Limits) -> Result<Event, Rejection> {
    check_event_size(raw.len(), limits)?;
    if let Ok(Streamed { fields, metrics }) = Streamed::read(raw, limits) {
        return validate(fields, metrics, limits);
    }
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| Rejection::new("event", format!("is not valid JSON ({e}); send one JSON object per event")))?;
    parse_event_value(value, limits)
}

/// Validates one event already decoded as JSON. The caller checks the encoded size.
pub fn parse_event_value(value: Value, limits: &Limits) -> Result<Event, Rejection> {
    validate(value, None, limits)
}

/// An event read in one pass: its fields other than `metrics` as values, and its `metrics`
/// (if present) as checked text.
struct Streamed {
    fields: Value,
    metrics: Option<MetricsJson>,
}

impl Streamed {
    /// Fails on anything unusual (invalid JSON, not an object, metrics the streaming pass does
    /// not accept); the caller then takes the slow path, which says why.
    fn read(raw: &[u8], limits: &Limits) -> Result<Streamed, serde_json::Error> {
        let bounds = Bounds {
            max_keys: limits.max_metric_keys,
            max_depth: limits.max_depth,
            allow_nul: limits.unchecked_text_for_tests,
            allow_reserved: false,
        };
        let mut de = serde_json::Deserializer::from_slice(raw);
        let streamed = serde::Deserializer::deserialize_map(&mut de, StreamedVisitor(&bounds))?;
        de.end()?;
        Ok(streamed)
    }
}

struct StreamedVisitor<'b>(&'b Bounds);

impl<'de> serde::de::Visitor<'de> for StreamedVisitor<'_> {
    type Value = Streamed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Streamed, A::Error> {
        let mut fields = Map::new();
        let mut metrics = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "metrics" {
                metrics = Some(map.next_value_seed(MetricsJson::seed(self.0))?);
            } else {
                fields.insert(key, map.next_value()?);
            }
        }
        Ok(Streamed { fields: Value::Object(fields), metrics })
    }
}

/// Validates an event's fields; `metrics`, when given, was read by the streaming pass and is
/// not among `value`'s fields.
fn validate(value: Value, metrics: Option<MetricsJson>, limits: &Limits) -> Result<Event, Rejection> {
    let Value::Object(mut obj) = value else {
        return Err(Rejection::new(
            "event",
            format!("is a JSON {}, not an object; send {{\"v\":1,\"type\":…}}", json_kind(&value)),
        ));
    };
    match obj.get("v") {
        None => return Err(Rejection::new("v", "is required; set \"v\": 1")),
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(WIRE_VERSION)) => {}
        Some(other) => {
            return Err(Rejection::new(
                "v",
                format!("is {other}, but this server reads wire format version 1; set \"v\": 1"),
            ))
        }
    }
    let kind = match obj.get("type") {
        None => return Err(Rejection::new("type", format!("is required; use {TYPES}"))),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(Rejection::new("type", format!("must be a string, found {}", json_kind(other)))),
    };
    let allowed = match kind.as_str() {
        "prediction" => PREDICTION_FIELDS,
        "delayed_metrics" => DELAYED_FIELDS,
        "aggregate_metrics" => AGGREGATE_FIELDS,
        "replica_stats" => REPLICA_FIELDS,
        other => return Err(Rejection::new("type", format!("\"{other}\" is not an event type; use {TYPES}"))),
    };
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Rejection::new(
            clip(unknown),
            format!("is not a field of a {kind} event; allowed fields are {}", allowed.join(", ")),
        ));
    }
    let mut fields = Fields { obj: &mut obj, limits, metrics };
    let event = match kind.as_str() {
        "prediction" => {
            let uuid = fields.uuid("uuid")?;
            let model_crn = fields.crn("model_crn")?;
            let model_build_crn = fields.crn("model_build_crn")?;
            let model_deployment_crn = fields.crn("model_deployment_crn")?;
            let (start_timestamp_ms, end_timestamp_ms) = fields.range()?;
            let metrics = fields.metrics()?;
            Event::Prediction(Prediction {
                uuid,
                model_crn,
                model_build_crn,
                model_deployment_crn,
                start_timestamp_ms,
                end_timestamp_ms,
                metrics,
            })
        }
        "delayed_metrics" => {
            let uuid = fields.uuid("uuid")?;
            let timestamp_ms = fields.timestamp("timestamp_ms")?;
            let metrics = fields.metrics()?;
            Event::DelayedMetrics(DelayedMetrics { uuid, timestamp_ms, metrics })
        }
        "replica_stats" => {
            let model_deployment_crn = fields.crn("model_deployment_crn")?;
            let replica_id = fields.replica_id()?;
            let timestamp_ms = fields.timestamp("timestamp_ms")?;
            let cpu_percent = fields.number("cpu_percent", 0.0, 100_000.0, "percent of one core, e.g. 37.5")?;
            let memory_bytes =
                fields.number("memory_bytes", 0.0, 9_007_199_254_740_992.0, "resident bytes, e.g. 524288000")?;
            if memory_bytes.fract() != 0.0 {
                return Err(Rejection::new("memory_bytes", format!("{memory_bytes} is not a whole number of bytes")));
            }
            Event::ReplicaStats(ReplicaStats {
                model_deployment_crn,
                replica_id,
                timestamp_ms,
                cpu_percent,
                memory_bytes: memory_bytes as u64,
            })
        }
        _ => {
            let model_deployment_crn = fields.crn("model_deployment_crn")?;
            let (start_timestamp_ms, end_timestamp_ms) = fields.range()?;
            let metrics = fields.metrics()?;
            let source = fields.source()?;
            Event::AggregateMetrics(AggregateMetrics {
                model_deployment_crn,
                start_timestamp_ms,
                end_timestamp_ms,
                metrics,
                source,
            })
        }
    };
    Ok(event)
}

struct Fields<'a> {
    obj: &'a mut Map<String, Value>,
    limits: &'a Limits,
    /// The metrics as the streaming pass read them, if it did.
    metrics: Option<MetricsJson>,
}

impl Fields<'_> {
    fn required(&mut self, name: &str, hint: &str) -> Result<Value, Rejection> {
        match self.obj.remove(name) {
            None | Some(Value::Null) => Err(Rejection::new(name, format!("is required; {hint}"))),
            Some(v) => Ok(v),
        }
    }

    fn uuid(&mut self, name: &str) -> Result<Uuid, Rejection> {
        let hint = "send the prediction's UUID as a string such as \"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42\"";
        match self.required(name, hint)? {
            Value::String(s) => {
                Uuid::parse_str(&s).map_err(|_| Rejection::new(name, format!("\"{}\" is not a UUID; {hint}", clip(&s))))
            }
            other => Err(Rejection::new(name, format!("must be a string, found {}; {hint}", json_kind(&other)))),
        }
    }

    fn crn(&mut self, name: &str) -> Result<String, Rejection> {
        match self.required(name, "send the CRN as a non-empty string")? {
            Value::String(s) => {
                if s.trim().is_empty() {
                    Err(Rejection::new(name, "must not be empty; send the CRN as a non-empty string"))
                } else if s.len() > MAX_CRN_BYTES {
                    Err(Rejection::new(name, format!("is {} bytes, over the limit of {MAX_CRN_BYTES}", s.len())))
                } else if !self.limits.unchecked_text_for_tests && s.chars().any(char::is_control) {
                    Err(Rejection::new(name, "must not contain control characters"))
                } else {
                    Ok(s)
                }
            }
            other => Err(Rejection::new(name, format!("must be a string, found {}", json_kind(&other)))),
        }
    }

    fn timestamp(&mut self, name: &str) -> Result<i64, Rejection> {
        let hint = "send an integer count of milliseconds since the Unix epoch";
        let (ms, shown) = match self.required(name, hint)? {
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(ms), _) => (ms, ms.to_string()),
                // Too large for any timestamp: past the end of the accepted range.
                (None, Some(_)) => (i64::MAX, n.to_string()),
                (None, None) => return Err(Rejection::new(name, format!("{n} is not an integer; {hint}"))),
            },
            other => {
                return Err(Rejection::new(name, format!("must be a number, found {}; {hint}", json_kind(&other))))
            }
        };
        let (min, max) = (self.limits.min_timestamp_ms, self.limits.max_timestamp_ms);
        if ms < min {
            let seconds_hint =
                if (min / 1000..max / 1000).contains(&ms) { " It looks like seconds: multiply by 1000." } else { "" };
            return Err(Rejection::new(
                name,
                format!(
                    "{ms} is before {} ({min}), the earliest accepted time; timestamps are milliseconds since the Unix epoch.{seconds_hint}",
                    date_string(min)
                ),
            ));
        }
        if ms >= max {
            return Err(Rejection::new(
                name,
                format!(
                    "{shown} is not before {} ({max}), the end of the accepted range; timestamps are milliseconds since the Unix epoch",
                    date_string(max)
                ),
            ));
        }
        Ok(ms)
    }

    fn replica_id(&mut self) -> Result<String, Rejection> {
        let hint = "name the replica with letters, digits, -, _ and : (such as \"churn-7d9f-x2k\")";
        match self.required("replica_id", hint)? {
            Value::String(s) => {
                if s.is_empty() || s.len() > MAX_REPLICA_ID_BYTES {
                    Err(Rejection::new("replica_id", format!("must be 1 to {MAX_REPLICA_ID_BYTES} bytes; {hint}")))
                } else if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b)) {
                    Err(Rejection::new("replica_id", format!("\"{}\" has other characters; {hint}", clip(&s))))
                } else {
                    Ok(s)
                }
            }
            other => {
                Err(Rejection::new("replica_id", format!("must be a string, found {}; {hint}", json_kind(&other))))
            }
        }
    }

    /// A number in `[min, max]`.
    fn number(&mut self, name: &str, min: f64, max: f64, hint: &str) -> Result<f64, Rejection> {
        match self.required(name, &format!("send a number: {hint}"))? {
            Value::Number(n) => match n.as_f64() {
                Some(x) if (min..=max).contains(&x) => Ok(x),
                _ => Err(Rejection::new(name, format!("{n} is outside [{min}, {max}]; send {hint}"))),
            },
            other => Err(Rejection::new(name, format!("must be a number, found {}; send {hint}", json_kind(&other)))),
        }
    }

    fn range(&mut self) -> Result<(i64, i64), Rejection> {
        let start = self.timestamp("start_timestamp_ms")?;
        let end = self.timestamp("end_timestamp_ms")?;
        if end < start {
            return Err(Rejection::new(
                "end_timestamp_ms",
                format!("{end} is before start_timestamp_ms {start}; the end must not be before the start"),
            ));
        }
        Ok((start, end))
    }

    fn metrics(&mut self) -> Result<MetricsJson, Rejection> {
        if let Some(metrics) = self.metrics.take() {
            return Ok(metrics);
        }
        let mut metrics = match self.required("metrics", "send a JSON object, e.g. {\"prediction\": 0.8}")? {
            Value::Object(m) => m,
            other => {
                return Err(Rejection::new("metrics", format!("must be a JSON object, found {}", json_kind(&other))))
            }
        };
        let mut keys = 0usize;
        let depth = measure(&mut metrics, 1, &mut keys);
        if keys > self.limits.max_metric_keys {
            return Err(Rejection::new(
                "metrics",
                format!(
                    "has {keys} keys, over the limit of {} keys per event; send fewer metrics per event",
                    self.limits.max_metric_keys
                ),
            ));
        }
        if self.limits.unchecked_text_for_tests {
            // Test hook: the store is left to refuse what it cannot hold.
        } else if let Some(path) = nul_path(&metrics, "metrics") {
            return Err(Rejection::new(
                path,
                "contains a NUL character (\\u0000), which the store cannot keep; remove it or encode the value",
            ));
        }
        if let Some(key) = metrics.keys().find(|k| k.starts_with('@')) {
            return Err(Rejection::new(
                format!("metrics.{key}"),
                "starts with @, which is reserved for the series driftline derives itself (@predictions, @latency_ms, \
                 @event_bytes, @labels, @rejected, @replica.…); rename the metric",
            ));
        }
        if depth > self.limits.max_depth {
            return Err(Rejection::new(
                "metrics",
                format!("nests {depth} levels deep, over the limit of {}; flatten the payload", self.limits.max_depth),
            ));
        }
        Ok(MetricsJson::from(metrics))
    }

    fn source(&mut self) -> Result<String, Rejection> {
        match self.obj.remove("source") {
            None | Some(Value::Null) => Ok("user".to_owned()),
            Some(Value::String(s)) if s == "user" || (s.starts_with("drift:") && s.len() > "drift:".len()) => {
                if s.len() > MAX_CRN_BYTES {
                    Err(Rejection::new("source", format!("is {} bytes, over the limit of {MAX_CRN_BYTES}", s.len())))
                } else if !self.limits.unchecked_text_for_tests && s.chars().any(char::is_control) {
                    Err(Rejection::new(
                        "source",
                        "must not contain control characters (such as NUL); name the drift job in plain text",
                    ))
                } else {
                    Ok(s)
                }
            }
            Some(other) => Err(Rejection::new(
                "source",
                format!("{} is not a source; use \"user\" or \"drift:<job name>\"", clip(&other.to_string())),
            )),
        }
    }
}

/// Counts the object keys under `metrics` (into `keys`) and returns the nesting depth, where
/// `metrics` itself is at `level`. On the way, `-0.0` becomes `0.0`: Postgres's `jsonb` has no
/// negative zero, and both backends must read back the same value.
fn measure(obj: &mut Map<String, Value>, level: usize, keys: &mut usize) -> usize {
    *keys += obj.len();
    obj.values_mut().map(|v| measure_value(v, level, keys)).max().unwrap_or(level).max(level)
}

fn measure_value(value: &mut Value, level: usize, keys: &mut usize) -> usize {
    match value {
        Value::Object(o) => measure(o, level + 1, keys),
        Value::Array(a) => a.iter_mut().map(|v| measure_value(v, level + 1, keys)).max().unwrap_or(level + 1),
        Value::Number(n) if n.as_f64().is_some_and(|x| x == 0.0 && x.is_sign_negative()) => {
            *value = Value::from(0.0);
            level
        }
        _ => level,
    }
}

/// The dotted path of the first key or string holding a NUL character. The path is only built
/// once one is found, so a clean payload costs no allocation.
fn nul_path(obj: &Map<String, Value>, prefix: &str) -> Option<String> {
    let mut segments = Vec::new();
    if !object_has_nul(obj, &mut segments) {
        return None;
    }
    let mut path = prefix.to_owned();
    for segment in segments.iter().rev() {
        match segment {
            Segment::Key(k) => {
                path.push('.');
                path.push_str(&clip(k));
            }
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    Some(path)
}

/// One step of a path into JSON: an object key or an array index.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Whether a key or string under `obj` holds a NUL; if so, `segments` gets the path to it,
/// innermost first.
fn object_has_nul<'a>(obj: &'a Map<String, Value>, segments: &mut Vec<Segment<'a>>) -> bool {
    for (k, v) in obj {
        if k.contains('\0') || value_has_nul(v, segments) {
            segments.push(Segment::Key(k));
            return true;
        }
    }
    false
}

fn value_has_nul<'a>(value: &'a Value, segments: &mut Vec<Segment<'a>>) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Object(o) => object_has_nul(o, segments),
        Value::Array(a) => a.iter().enumerate().any(|(i, v)| {
            let found = value_has_nul(v, segments);
            if found {
                segments.push(Segment::Index(i));
            }
            found
        }),
        _ => false,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// At most 64 characters of user input for a message, control characters replaced.
fn clip(s: &str) -> String {
    let clean = |c: char| if c.is_control() { '\u{FFFD}' } else { c };
    if s.chars().count() <= 64 {
        s.chars().map(clean).collect()
    } else {
        let head: String = s.chars().take(61).map(clean).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prediction() -> Value {
        json!({"v":1,"type":"prediction","uuid":"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42",
            "model_crn":"crn:model/churn","model_build_crn":"crn:build/7","model_deployment_crn":"crn:dep/1",
            "start_timestamp_ms":1_700_000_000_000_i64,"end_timestamp_ms":1_700_000_000_012_i64,
            "metrics":{"input":{"tenure":12,"plan":"basic"},"prediction":0.83}})
    }

    fn reject(value: Value) -> Rejection {
        parse_event_value(value, &Limits::default()).expect_err("must be rejected")
    }

    #[test]
    fn parses_each_event_type() {
        let Event::Prediction(p) = parse_event_value(prediction(), &Limits::default()).unwrap() else {
            panic!("not a prediction")
        };
        assert_eq!(p.model_deployment_crn, "crn:dep/1");
        assert_eq!(p.metrics.to_map()["input"]["tenure"], json!(12));

        let delayed = json!({"v":1,"type":"delayed_metrics","uuid":"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42",
            "timestamp_ms":1_700_000_360_000_i64,"metrics":{"label":1}});
        assert!(matches!(parse_event_value(delayed, &Limits::default()), Ok(Event::DelayedMetrics(_))));

        let aggregate = json!({"v":1,"type":"aggregate_metrics","model_deployment_crn":"crn:dep/1",
            "start_timestamp_ms":1_700_000_000_000_i64,"end_timestamp_ms":1_700_086_400_000_i64,"metrics":{"roc_auc":0.91}});
        let Ok(Event::AggregateMetrics(a)) = parse_event_value(aggregate, &Limits::default()) else {
            panic!("not an aggregate")
        };
        assert_eq!(a.source, "user");
    }

    #[test]
    fn required_fields_are_named() {
        for field in [
            "uuid",
            "model_crn",
            "model_build_crn",
            "model_deployment_crn",
            "start_timestamp_ms",
            "metrics",
            "v",
            "type",
        ] {
            let mut event = prediction();
            event.as_object_mut().unwrap().remove(field);
            let r = reject(event);
            assert_eq!(r.field, field);
            assert!(r.rule.contains("required"), "{r}");
        }
    }

    #[test]
    fn bad_values_name_the_field_and_rule() {
        let mut e = prediction();
        e["uuid"] = json!("not-a-uuid");
        let r = reject(e);
        assert_eq!((r.field.as_str(), r.rule.contains("is not a UUID")), ("uuid", true));

        let mut e = prediction();
        e["start_timestamp_ms"] = json!(1_700_000_000_i64);
        let r = reject(e);
        assert_eq!(r.field, "start_timestamp_ms");
        assert!(r.rule.contains("multiply by 1000"), "{r}");

        let mut e = prediction();
        e["end_timestamp_ms"] = json!(1_699_999_999_999_i64);
        assert_eq!(reject(e).field, "end_timestamp_ms");

        let mut e = prediction();
        e["start_timestamp_ms"] = json!(4_200_000_000_000_i64);
        e["end_timestamp_ms"] = json!(4_200_000_000_000_i64);
        assert!(reject(e).rule.contains("2100-01-01"));

        let mut e = prediction();
        e["model_crn"] = json!("");
        assert_eq!(reject(e).field, "model_crn");

        let mut e = prediction();
        e["metrics"] = json!([1, 2]);
        let r = reject(e);
        assert_eq!(r.field, "metrics");
        assert!(r.rule.contains("array"));

        let mut e = prediction();
        e["v"] = json!(2);
        assert_eq!(reject(e).field, "v");

        let mut e = prediction();
        e["type"] = json!("click");
        assert!(reject(e).rule.contains("not an event type"));

        let mut e = prediction();
        e["start_timestamp"] = json!(1);
        let r = reject(e);
        assert_eq!(r.field, "start_timestamp");
        assert!(r.rule.contains("allowed fields"));

        let aggregate = json!({"v":1,"type":"aggregate_metrics","model_deployment_crn":"d",
            "start_timestamp_ms":1_700_000_000_000_i64,"end_timestamp_ms":1_700_000_000_000_i64,"metrics":{},"source":"me"});
        assert_eq!(reject(aggregate).field, "source");

        assert_eq!(reject(json!([1])).field, "event");
    }

    #[test]
    fn limits_are_enforced_and_configurable() {
        let limits = Limits { max_metric_keys: 3, max_depth: 3, max_event_bytes: 400, ..Limits::default() };
        let mut e = prediction();
        e["metrics"] = json!({"a":1,"b":2,"c":3,"d":4});
        let r = parse_event_value(e, &limits).unwrap_err();
        assert!(r.rule.contains("4 keys"), "{r}");

        let mut e = prediction();
        e["metrics"] = json!({"a":{"b":{"c":{"d":1}}}});
        let deep_limits = Limits { max_metric_keys: 10, ..limits };
        let r = parse_event_value(e, &deep_limits).unwrap_err();
        assert!(r.rule.contains("4 levels"), "{r}");

        let mut e = prediction();
        e["metrics"] = json!({"a":{"b":[1]}});
        assert!(parse_event_value(e, &limits).is_ok());

        let mut e = prediction();
        e["metrics"] = json!({"blob": "x".repeat(500)});
        let raw = serde_json::to_vec(&e).unwrap();
        let r = parse_event(&raw, &limits).unwrap_err();
        assert_eq!(r.field, "event");
        assert!(r.rule.contains("over the limit"), "{r}");

        // The default nesting limit is 64 levels, `metrics` itself being the first.
        let nested = |levels: usize| {
            let mut deep = json!(1);
            for _ in 0..levels {
                deep = json!({ "x": deep });
            }
            let mut e = prediction();
            e["metrics"] = deep;
            e
        };
        assert!(parse_event_value(nested(64), &Limits::default()).is_ok());
        assert!(reject(nested(65)).rule.contains("65 levels"));
    }

    #[test]
    fn nul_characters_are_refused_with_their_path() {
        let mut e = prediction();
        e["metrics"] = json!({"input": {"names": ["ok", "bad\u{0}"]}});
        let r = reject(e);
        assert_eq!(r.field, "metrics.input.names[1]");
        assert!(r.rule.contains("NUL"), "{r}");
        let mut e = prediction();
        e["metrics"] = json!({"a": 1, "b": [1, {"fine": "yes", "c": "x\u{0}"}]});
        assert_eq!(reject(e).field, "metrics.b[1].c");
    }

    #[test]
    fn replica_stats_are_checked_field_by_field() {
        let stats = json!({"v":1,"type":"replica_stats","model_deployment_crn":"crn:dep/1","replica_id":"churn-7d9f:x2k",
            "timestamp_ms":1_700_000_000_000_i64,"cpu_percent":37.5,"memory_bytes":524_288_000});
        let Event::ReplicaStats(r) = parse_event(stats.to_string().as_bytes(), &Limits::default()).unwrap() else {
            panic!("not replica stats")
        };
        assert_eq!((r.replica_id.as_str(), r.cpu_percent, r.memory_bytes), ("churn-7d9f:x2k", 37.5, 524_288_000));
        for (field, value, says) in [
            ("replica_id", json!("pod.1"), "other characters"),
            ("replica_id", json!(""), "1 to 128 bytes"),
            ("cpu_percent", json!(-1), "outside"),
            ("cpu_percent", json!("high"), "must be a number"),
            ("memory_bytes", json!(1.5), "whole number"),
            ("timestamp_ms", json!(1_700_000_000), "seconds"),
        ] {
            let mut e = stats.clone();
            e[field] = value;
            let r = reject(e);
            assert_eq!(r.field, field);
            assert!(r.rule.contains(says), "{r}");
        }
        let mut e = stats.clone();
        e["metrics"] = json!({});
        assert!(reject(e).rule.contains("not a field of a replica_stats event"));
        let mut e = stats;
        e["type"] = json!("replica");
        assert!(reject(e).rule.contains("\"replica_stats\""));
    }

    #[test]
    fn top_level_metric_keys_starting_with_at_are_reserved_on_both_paths() {
        let mut e = prediction();
        e["metrics"] = json!({"prediction": 0.5, "@latency_ms": 3});
        let r = reject(e.clone());
        assert_eq!(r.field, "metrics.@latency_ms");
        assert!(r.rule.contains("reserved"), "{r}");
        let streamed = parse_event(e.to_string().as_bytes(), &Limits::default()).expect_err("must be rejected");
        assert_eq!(streamed, r, "the streaming pass refuses it the same way");
        let mut delayed = json!({"v":1,"type":"delayed_metrics","uuid":"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42",
            "timestamp_ms":1_700_000_000_000_i64,"metrics":{"@labels": 1}});
        assert_eq!(reject(delayed.clone()).field, "metrics.@labels");
        // Deeper keys are ordinary: their paths do not start with @.
        delayed["metrics"] = json!({"label": {"@source": "crm"}});
        assert!(parse_event(delayed.to_string().as_bytes(), &Limits::default()).is_ok());
    }

    #[test]
    fn text_fields_refuse_control_characters_unless_the_test_hook_is_on() {
        let aggregate = |source: &str| {
            json!({"v":1,"type":"aggregate_metrics","model_deployment_crn":"d","start_timestamp_ms":1_700_000_000_000_i64,
                "end_timestamp_ms":1_700_000_000_000_i64,"metrics":{},"source":source})
        };
        let r = reject(aggregate("drift:daily\u{0}x"));
        assert_eq!(r.field, "source");
        assert!(r.rule.contains("control characters"), "{r}");
        assert!(parse_event_value(aggregate("drift:daily"), &Limits::default()).is_ok());
        let hooked = Limits { unchecked_text_for_tests: true, ..Limits::default() };
        assert!(parse_event_value(aggregate("drift:daily\u{0}x"), &hooked).is_ok());
        let mut e = prediction();
        e["metrics"] = json!({"a": "x\u{0}"});
        assert!(parse_event_value(e, &hooked).is_ok());
    }

    #[test]
    fn encoded_events_with_nul_in_metrics_are_refused_as_their_trees_are() {
        for metrics in [json!({"a": {"b": ["x", "y\u{0}"]}}), json!({"k\u{0}": 1})] {
            let mut e = prediction();
            e["metrics"] = metrics;
            let text = serde_json::to_vec(&e).unwrap();
            let streamed = parse_event(&text, &Limits::default()).unwrap_err();
            assert!(streamed.field.starts_with("metrics.") && streamed.rule.contains("NUL"), "{streamed}");
            assert_eq!(streamed, reject(e));
        }
        // Repeated keys: the last one counts, in the metrics and at the top.
        let text = br#"{"v":1,"type":"delayed_metrics","uuid":"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42","timestamp_ms":1700000000000,"metrics":{"label":0,"label":1},"timestamp_ms":1700000000001}"#;
        let Event::DelayedMetrics(d) = parse_event(text, &Limits::default()).unwrap() else { panic!() };
        assert_eq!((d.timestamp_ms, d.metrics.to_map()["label"].clone()), (1_700_000_000_001, json!(1)));
    }

    #[test]
    fn negative_zero_becomes_zero_and_huge_timestamps_name_the_limit() {
        let mut e = prediction();
        e["metrics"] = json!({"a": -0.0, "b": [{"c": -0.0}], "d": -1.5});
        let Event::Prediction(p) = parse_event_value(e, &Limits::default()).unwrap() else { panic!() };
        assert_eq!(serde_json::to_string(&p.metrics).unwrap(), r#"{"a":0.0,"b":[{"c":0.0}],"d":-1.5}"#);
        let mut e = prediction();
        e["start_timestamp_ms"] = json!(18_446_744_073_709_551_615_u64);
        let r = reject(e);
        assert!(r.rule.contains("18446744073709551615 is not before 2100-01-01"), "{r}");
    }

    #[test]
    fn invalid_json_reports_position() {
        let r = parse_event(b"{\"v\":1,", &Limits::default()).unwrap_err();
        assert_eq!(r.field, "event");
        assert!(r.rule.contains("line 1 column"), "{r}");
    }

    #[test]
    fn wire_json_round_trips() {
        let event = parse_event_value(prediction(), &Limits::default()).unwrap();
        let wire = event.to_wire_json();
        assert!(wire.starts_with("{\"v\":1,\"type\":\"prediction\""), "{wire}");
        assert_eq!(parse_event(wire.as_bytes(), &Limits::default()).unwrap(), event);
    }
}
