//! The v1 events: one JSON object per Kafka message or per element of an HTTP batch.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A metrics payload as a tree of values: any JSON object. Numeric leaves are numeric series;
/// strings and booleans are categorical values. Events carry theirs as [`MetricsJson`] text.
pub type Metrics = serde_json::Map<String, serde_json::Value>;

pub use crate::metrics_json::MetricsJson;

/// The current wire format version.
pub const WIRE_VERSION: u8 = 1;

/// One event as it travels on the wire: the version, then the event with its `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "driftline event (wire format v1)")]
pub struct WireEvent {
    /// The wire format version; always 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u8,
    /// The event itself, tagged by `type`.
    #[serde(flatten)]
    pub event: Event,
}

impl From<Event> for WireEvent {
    fn from(event: Event) -> Self {
        WireEvent { v: WIRE_VERSION, event }
    }
}

/// A v1 event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// One prediction made by a model deployment.
    Prediction(Prediction),
    /// Metrics known later (ground truth), keyed by the prediction's UUID.
    DelayedMetrics(DelayedMetrics),
    /// Metrics about a deployment over a time range.
    AggregateMetrics(AggregateMetrics),
    /// Resource use of one replica of a deployment at one moment.
    ReplicaStats(ReplicaStats),
}

impl Event {
    /// The event's `type` tag on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Prediction(_) => "prediction",
            Event::DelayedMetrics(_) => "delayed_metrics",
            Event::AggregateMetrics(_) => "aggregate_metrics",
            Event::ReplicaStats(_) => "replica_stats",
        }
    }

    /// The event as wire JSON, with `"v": 1`.
    pub fn to_wire_json(&self) -> String {
        serde_json::to_string(&WireEvent::from(self.clone())).expect("events always encode")
    }
}

/// One prediction: its inputs and outputs in `metrics`, identified by a UUID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    /// The prediction's UUID; delayed metrics refer to it.
    pub uuid: Uuid,
    /// The model's CRN.
    #[schemars(length(min = 1, max = 1024))]
    pub model_crn: String,
    /// The model build's CRN.
    #[schemars(length(min = 1, max = 1024))]
    pub model_build_crn: String,
    /// The model deployment's CRN.
    #[schemars(length(min = 1, max = 1024))]
    pub model_deployment_crn: String,
    /// When the prediction started, in milliseconds since the Unix epoch.
    #[schemars(range(min = 946_684_800_000_i64, max = 4_102_444_800_000_i64))]
    pub start_timestamp_ms: i64,
    /// When the prediction ended, in milliseconds since the Unix epoch; not before the start.
    #[schemars(range(min = 946_684_800_000_i64, max = 4_102_444_800_000_i64))]
    pub end_timestamp_ms: i64,
    /// Inputs, outputs and anything else about the prediction.
    pub metrics: MetricsJson,
}

/// Metrics that arrive after the prediction, such as its ground-truth label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelayedMetrics {
    /// The UUID of the prediction these metrics belong to. The prediction may arrive later.
    pub uuid: Uuid,
    /// When these metrics became known, in milliseconds since the Unix epoch.
    #[schemars(range(min = 946_684_800_000_i64, max = 4_102_444_800_000_i64))]
    pub timestamp_ms: i64,
    /// The metrics; their keys are merged into the prediction's metrics on read (later keys win).
    pub metrics: MetricsJson,
}

/// Metrics computed over a deployment's predictions in a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateMetrics {
    /// The model deployment's CRN.
    #[schemars(length(min = 1, max = 1024))]
    pub model_deployment_crn: String,
    /// Start of the range covered, in milliseconds since the Unix epoch.
    #[schemars(range(min = 946_684_800_000_i64, max = 4_102_444_800_000_i64))]
    pub start_timestamp_ms: i64,
    /// End of the range covered, in milliseconds since the Unix epoch; not before the start.
    #[schemars(range(min = 946_684_800_000_i64, max = 4_102_444_800_000_i64))]
    pub end_timestamp_ms: i64,
    /// The aggregate metrics.
    pub metrics: MetricsJson,
    /// Who computed them: `user`, or `drift:<job>` for a drift job. Defaults to `user` when
    /// absent or null.
    #[serde(default = "default_source", deserialize_with = "source_or_default")]
    #[schemars(with = "Option<String>")]
    #[schemars(regex(pattern = r"^(user|drift:.+)$"))]
    pub source: String,
}

/// Resource use of one replica (a process or pod serving a deployment) at one moment; rolled up
/// as the series `@replica.<replica_id>.cpu_percent` and `@replica.<replica_id>.memory_bytes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaStats {
    /// The model deployment's CRN.
    #[schemars(length(min = 1, max = 1024))]
    pub model_deployment_crn: String,
    /// The replica's name: letters, digits, `-`, `_` and `:` (no dots: it becomes part of a
    /// dotted series path).
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_:-]+$"))]
    pub replica_id: String,
    /// When the figures were taken, in milliseconds since the Unix epoch.
    #[schemars(range(min = 946_684_800_000_i64, max = 4_102_444_800_000_i64))]
    pub timestamp_ms: i64,
    /// CPU use in percent of one core (above 100 on several cores).
    #[schemars(range(min = 0.0, max = 100_000.0))]
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    #[schemars(range(max = 9_007_199_254_740_992_u64))]
    pub memory_bytes: u64,
}

fn default_source() -> String {
    "user".to_owned()
}

fn source_or_default<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_else(default_source))
}

/// The JSON Schema of v1 events, generated from these types (`docs/events.schema.json`).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(WireEvent);
    serde_json::to_string_pretty(&schema).expect("schemas always encode") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_event, Limits};

    const PREDICTION: &str = r#"{"v":1,"type":"prediction","uuid":"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42","model_crn":"crn:model/churn","model_build_crn":"crn:build/7","model_deployment_crn":"crn:dep/1","start_timestamp_ms":1700000000000,"end_timestamp_ms":1700000000012,"metrics":{"input":{"tenure":12,"plan":"basic"},"prediction":0.83}}"#;
    const DELAYED: &str = r#"{"v":1,"type":"delayed_metrics","uuid":"2f1c7a3e-9b0d-4c55-8e21-6a7f0d9c1b42","timestamp_ms":1700003600000,"metrics":{"label":1}}"#;
    const AGGREGATE: &str = r#"{"v":1,"type":"aggregate_metrics","model_deployment_crn":"crn:dep/1","start_timestamp_ms":1700000000000,"end_timestamp_ms":1700086400000,"metrics":{"roc_auc":0.91},"source":"drift:daily"}"#;

    #[test]
    fn wire_format_snapshots() {
        for (name, text) in [("prediction", PREDICTION), ("delayed_metrics", DELAYED), ("aggregate_metrics", AGGREGATE)]
        {
            let event = parse_event(text.as_bytes(), &Limits::default()).unwrap();
            assert_eq!(event.kind(), name);
            insta::assert_snapshot!(format!("wire_{name}"), event.to_wire_json());
            // serde's view of the same bytes agrees with the validating parser.
            let via_serde: WireEvent = serde_json::from_str(text).unwrap();
            assert_eq!(via_serde, WireEvent::from(event));
        }
    }

    /// `docs/events.schema.json` is generated from the types; regenerate it with
    /// `DRIFTLINE_BLESS=1 cargo test -p driftline-core`.
    #[test]
    fn published_schema_matches_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.schema.json");
        let generated = json_schema();
        if std::env::var("DRIFTLINE_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(path, &generated).unwrap();
        }
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            published == generated,
            "docs/events.schema.json is out of date; run DRIFTLINE_BLESS=1 cargo test -p driftline-core"
        );
        let schema: serde_json::Value = serde_json::from_str(&published).unwrap();
        let text = schema.to_string();
        for field in ["model_deployment_crn", "start_timestamp_ms", "timestamp_ms", "delayed_metrics", "source"] {
            assert!(text.contains(field), "schema names {field}");
        }
    }

    mod agreement {
        use super::*;
        use crate::{parse_event, parse_event_value, Limits};
        use proptest::prelude::*;
        use serde_json::{json, Value};

        const MIN: i64 = 946_684_800_000;
        const MAX: i64 = 4_102_444_800_000;

        fn crn() -> impl Strategy<Value = String> {
            "[a-z0-9:/._-]{1,40}"
        }

        fn metrics() -> impl Strategy<Value = MetricsJson> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (-1e12..1e12f64)
                    .prop_filter("no negative zero", |x| *x != 0.0 || x.is_sign_positive())
                    .prop_map(Value::from),
                "[^\\x00]{0,12}".prop_map(Value::from),
            ];
            let value = leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[^\\x00]{0,8}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            });
            // Top-level keys never start with `@` (reserved for the store's own series).
            prop::collection::btree_map("([^\\x00@][^\\x00]{0,7})?", value, 0..6)
                .prop_map(|m| MetricsJson::from(m.into_iter().collect::<Metrics>()))
        }

        fn range() -> impl Strategy<Value = (i64, i64)> {
            (MIN..MAX).prop_flat_map(|start| (Just(start), start..MAX))
        }

        fn event() -> impl Strategy<Value = Event> {
            prop_oneof![
                (any::<u128>(), crn(), crn(), crn(), range(), metrics()).prop_map(|(u, m, b, d, (s, e), x)| {
                    Event::Prediction(Prediction {
                        uuid: uuid::Uuid::from_u128(u),
                        model_crn: m,
                        model_build_crn: b,
                        model_deployment_crn: d,
                        start_timestamp_ms: s,
                        end_timestamp_ms: e,
                        metrics: x,
                    })
                }),
                (any::<u128>(), MIN..MAX, metrics()).prop_map(|(u, t, x)| {
                    Event::DelayedMetrics(DelayedMetrics {
                        uuid: uuid::Uuid::from_u128(u),
                        timestamp_ms: t,
                        metrics: x,
                    })
                }),
                (crn(), range(), metrics(), prop_oneof![Just("user".to_owned()), "drift:[a-z0-9._-]{1,20}"]).prop_map(
                    |(d, (s, e), x, source)| {
                        Event::AggregateMetrics(AggregateMetrics {
                            model_deployment_crn: d,
                            start_timestamp_ms: s,
                            end_timestamp_ms: e,
                            metrics: x,
                            source,
                        })
                    }
                ),
                (crn(), "[A-Za-z0-9_:-]{1,20}", MIN..MAX, 0.0..1000.0f64, 0u64..(1 << 40)).prop_map(
                    |(d, r, t, c, m)| {
                        Event::ReplicaStats(ReplicaStats {
                            model_deployment_crn: d,
                            replica_id: r,
                            timestamp_ms: t,
                            cpu_percent: c,
                            memory_bytes: m,
                        })
                    }
                ),
            ]
        }

        /// An event's JSON with one field changed: removed, set to a value of another kind, or
        /// an unknown field added.
        fn mutated() -> impl Strategy<Value = Value> {
            let odd = prop_oneof![
                Just(Value::Null),
                Just(json!(1.5)),
                Just(json!(-3)),
                Just(json!("")),
                Just(json!("x")),
                Just(json!([1])),
                Just(json!({})),
                Just(json!(18_446_744_073_709_551_615_u64)),
                Just(json!(1_700_000_000)),
            ];
            (event(), any::<prop::sample::Index>(), 0..3u8, odd).prop_map(|(event, field, how, value)| {
                let mut v = serde_json::to_value(WireEvent::from(event)).unwrap();
                let obj = v.as_object_mut().unwrap();
                let keys: Vec<String> = obj.keys().cloned().collect();
                let key = field.get(&keys).clone();
                match how {
                    0 => {
                        obj.remove(&key);
                    }
                    1 => {
                        obj.insert(key, value);
                    }
                    _ => {
                        obj.insert("extra".into(), value);
                    }
                }
                v
            })
        }

        proptest! {
            /// Whatever the types can hold within the rules, the validator accepts as the same event.
            #[test]
            fn the_validator_accepts_what_the_types_write(event in event()) {
                let text = serde_json::to_vec(&WireEvent::from(event.clone())).unwrap();
                prop_assert_eq!(parse_event(&text, &Limits::default()), Ok(event));
            }

            /// The one-pass read of an event's bytes and the read of its tree agree: the same
            /// event, or the same rejection.
            #[test]
            fn streaming_and_tree_reads_agree(value in mutated()) {
                let text = serde_json::to_vec(&value).unwrap();
                prop_assert_eq!(parse_event(&text, &Limits::default()), parse_event_value(value, &Limits::default()));
            }

            /// ... and so they do at the limits of keys and nesting, where the one-pass read gives
            /// up and the tree read names the rule.
            #[test]
            fn streaming_and_tree_reads_agree_at_the_limits(event in event(), keys in 0usize..8, depth in 1usize..4) {
                let limits = Limits { max_metric_keys: keys, max_depth: depth, ..Limits::default() };
                let value = serde_json::to_value(WireEvent::from(event)).unwrap();
                let text = serde_json::to_vec(&value).unwrap();
                prop_assert_eq!(parse_event(&text, &limits), parse_event_value(value, &limits));
            }

            /// Whatever the validator accepts, the types read as the same event; what it refuses is
            /// refused with the field named.
            #[test]
            fn the_types_read_what_the_validator_accepts(value in mutated()) {
                match parse_event_value(value.clone(), &Limits::default()) {
                    Ok(event) => {
                        let via_serde: WireEvent = serde_json::from_value(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(via_serde, WireEvent::from(event));
                    }
                    Err(rejection) => prop_assert!(!rejection.field.is_empty() && !rejection.rule.is_empty()),
                }
            }
        }
    }
}
