//! A metrics object as events carry it to the store: compact JSON text, checked and normalised
//! in one streaming pass over the received bytes, with no tree of values built on the way.
//!
//! Ingest's hot path is here: an event's metrics are read once and written once, straight into
//! the text the store is sent. Anything the pass is not sure of (a NUL character, a payload over
//! a limit, anything that is not an object) makes it give up, and the validator then reads the
//! payload the slow way, as a tree, to say exactly what is wrong; so the rules and their
//! messages live in one place, `validate`, and this pass only has to agree with them on what is
//! clean.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::event::Metrics;

/// A metrics object as compact JSON text. Numbers are written as `serde_json` writes the value
/// it reads (so `1e2` becomes `100.0`, and `-0.0` becomes `0.0`, which Postgres's `jsonb` could
/// not keep apart anyway); keys keep the order they came in.
#[derive(Clone)]
pub struct MetricsJson(String);

impl MetricsJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The metrics as a tree of values (repeated keys: the last one counts, as everywhere).
    pub fn to_map(&self) -> Metrics {
        serde_json::from_str(&self.0).expect("metrics text is a JSON object by construction")
    }

    /// The JSON text with keys sorted at every level: the same metrics give the same text
    /// whatever order their keys came in.
    pub fn canonical(&self) -> String {
        serde_json::to_string(&self.to_map()).expect("metrics serialise to JSON")
    }

    /// Reads a metrics object in one pass within `bounds`; `None` when the text is not a clean
    /// object within them (the caller finds out why on the slow path).
    pub(crate) fn transcode(text: &[u8], bounds: &Bounds) -> Option<MetricsJson> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let metrics = MetricsJson::seed(bounds).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(metrics)
    }

    /// Reads the value of a `metrics` field as a deserializer hands it over, within `bounds`.
    pub(crate) fn seed(bounds: &Bounds) -> MetricsSeed<'_> {
        MetricsSeed(bounds)
    }
}

impl From<Metrics> for MetricsJson {
    fn from(metrics: Metrics) -> Self {
        let text = serde_json::to_string(&metrics).expect("metrics serialise to JSON");
        // Normalised the same way as received metrics; a tree deeper than the JSON reader's own
        // nesting limit is kept as written.
        MetricsJson::transcode(text.as_bytes(), &Bounds::NONE).unwrap_or(MetricsJson(text))
    }
}

impl fmt::Debug for MetricsJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Two metrics objects are equal when they hold the same values, whatever the order of keys.
impl PartialEq for MetricsJson {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.to_map() == other.to_map()
    }
}

impl Serialize for MetricsJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MetricsJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Metrics::deserialize(deserializer).map(MetricsJson::from)
    }
}

impl JsonSchema for MetricsJson {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Metrics::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Metrics::json_schema(generator)
    }

    fn inline_schema() -> bool {
        Metrics::inline_schema()
    }
}

/// What the streaming pass accepts: at most `max_keys` object keys in all, containers at most
/// `max_depth` levels deep (the metrics object is level 1), NUL characters only if allowed, and
/// top-level keys starting with `@` (reserved for the series the store derives) only if allowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) max_keys: usize,
    pub(crate) max_depth: usize,
    pub(crate) allow_nul: bool,
    pub(crate) allow_reserved: bool,
}

impl Bounds {
    /// No bounds beyond the JSON reader's own.
    const NONE: Bounds = Bounds { max_keys: usize::MAX, max_depth: usize::MAX, allow_nul: true, allow_reserved: true };
}

/// The state of one pass: the text written so far and the keys seen.
struct Pass<'b> {
    out: Vec<u8>,
    bounds: &'b Bounds,
    keys: usize,
}

/// Why the pass gave up; never shown (the slow path says why).
fn give_up<E: de::Error>() -> E {
    E::custom("not a clean metrics object")
}

/// The value of a `metrics` field, read within its bounds.
pub(crate) struct MetricsSeed<'b>(&'b Bounds);

impl<'de> DeserializeSeed<'de> for MetricsSeed<'_> {
    type Value = MetricsJson;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<MetricsJson, D::Error> {
        let mut pass = Pass { out: Vec::with_capacity(256), bounds: self.0, keys: 0 };
        Root(&mut pass).deserialize(deserializer)?;
        String::from_utf8(pass.out).map(MetricsJson).map_err(|_| give_up())
    }
}

/// The metrics object itself: an object, nothing else.
struct Root<'p, 'b>(&'p mut Pass<'b>);

impl<'de> DeserializeSeed<'de> for Root<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Node { pass: self.0, level: 1 }.visit_map(map)
    }
}

/// Any value inside the metrics; `level` is the level it has if it is an object or an array.
struct Node<'p, 'b> {
    pass: &'p mut Pass<'b>,
    level: usize,
}

impl Node<'_, '_> {
    fn write<E: de::Error>(&mut self, value: impl Serialize) -> Result<(), E> {
        serde_json::to_writer(&mut self.pass.out, &value).map_err(|_| give_up())
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.write(v)
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.write(v)
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.write(v)
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        // `-0.0 == 0.0`: negative zero is written as zero.
        self.write(if v == 0.0 { 0.0 } else { v })
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if !self.pass.bounds.allow_nul && v.contains('\0') {
            return Err(give_up());
        }
        self.write(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.pass.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.level > self.pass.bounds.max_depth {
            return Err(give_up());
        }
        self.pass.out.push(b'[');
        let mut first = true;
        loop {
            if !first {
                self.pass.out.push(b',');
            }
            if seq.next_element_seed(Node { pass: &mut *self.pass, level: self.level + 1 })?.is_none() {
                if !first {
                    self.pass.out.pop();
                }
                break;
            }
            first = false;
        }
        self.pass.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.level > self.pass.bounds.max_depth {
            return Err(give_up());
        }
        self.pass.out.push(b'{');
        let mut first = true;
        loop {
            if !first {
                self.pass.out.push(b',');
            }
            if map.next_key_seed(Key { pass: &mut *self.pass, top: self.level == 1 })?.is_none() {
                if !first {
                    self.pass.out.pop();
                }
                break;
            }
            self.pass.out.push(b':');
            map.next_value_seed(Node { pass: &mut *self.pass, level: self.level + 1 })?;
            first = false;
        }
        self.pass.out.push(b'}');
        Ok(())
    }
}

/// An object key: counted, checked for NUL (and, at the top, for the reserved `@`), written.
struct Key<'p, 'b> {
    pass: &'p mut Pass<'b>,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let bounds = self.pass.bounds;
        self.pass.keys += 1;
        if self.pass.keys > bounds.max_keys
            || (!bounds.allow_nul && v.contains('\0'))
            || (self.top && !bounds.allow_reserved && v.starts_with('@'))
        {
            return Err(give_up());
        }
        serde_json::to_writer(&mut self.pass.out, v).map_err(|_| give_up())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const LOOSE: Bounds = Bounds { max_keys: 1_000, max_depth: 64, allow_nul: false, allow_reserved: false };

    fn pass(text: &str) -> Option<String> {
        MetricsJson::transcode(text.as_bytes(), &LOOSE).map(|m| m.0)
    }

    #[test]
    fn writes_what_the_json_reader_reads() {
        assert_eq!(
            pass(r#" { "a" : 1e2 , "b":[ -0.0, 1.50, "x\"y\u00e9", true, null, {} ], "c": {"d": []} } "#).unwrap(),
            r#"{"a":100.0,"b":[0.0,1.5,"x\"yé",true,null,{}],"c":{"d":[]}}"#
        );
        assert_eq!(
            pass(r#"{"n":18446744073709551615,"m":-9223372036854775808}"#).unwrap(),
            r#"{"n":18446744073709551615,"m":-9223372036854775808}"#
        );
    }

    #[test]
    fn gives_up_on_what_the_validator_must_judge() {
        for text in [
            "[1]",
            "null",
            r#"{"a":"x\u0000"}"#,
            r#"{"a\u0000":1}"#,
            r#"{"a":1} {"b":2}"#,
            r#"{"a":1e400}"#,
            r#"{"a":}"#,
        ] {
            assert_eq!(pass(text), None, "{text}");
        }
        let deep = format!("{}1{}", r#"{"a":"#.repeat(64), "}".repeat(64));
        assert!(pass(&deep).is_some(), "64 levels are allowed");
        let deeper = format!("{}1{}", r#"{"a":"#.repeat(65), "}".repeat(65));
        assert_eq!(pass(&deeper), None);
        let wide: Value = (0..1_001).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>().into();
        assert_eq!(pass(&wide.to_string()), None);
    }

    #[test]
    fn a_tree_converts_to_the_same_text_as_its_json() {
        let tree: Metrics = serde_json::from_value(json!({"z": -0.0, "a": [1, 2.5, {"b": null}]})).unwrap();
        let m = MetricsJson::from(tree.clone());
        assert_eq!(m.as_str(), r#"{"a":[1,2.5,{"b":null}],"z":0.0}"#);
        assert_eq!(m.to_map()["z"], json!(0.0));
        assert_eq!(m, MetricsJson::transcode(br#"{"z":0.0,"a":[1,2.5,{"b":null}]}"#, &LOOSE).unwrap());
        assert_eq!(m.canonical(), m.as_str());
        assert_eq!(serde_json::to_string(&m).unwrap(), m.as_str());
    }
}
