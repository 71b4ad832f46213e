//! A run's values picked out of the stored metrics text: only the job's dotted paths are
//! decoded, everything else is skipped as it is parsed, and no map of the whole event is built.
//!
//! The result is what [`driftline_rollup::leaves::lookup`] finds in the metrics the store's
//! reads return: the prediction's metrics with its delayed metrics merged in, oldest first, each
//! delayed top-level key replacing the prediction's (so a late `{"input": {…}}` replaces every
//! `input.…` path, found or not).

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The paths a run reads, as a tree of their segments.
#[derive(Debug)]
pub(crate) struct Paths {
    /// Node 0 is the root, above the first segments.
    nodes: Vec<Node>,
    /// Each path's segments.
    segments: Vec<Vec<String>>,
}

#[derive(Debug, Default)]
struct Node {
    /// The segment below this node and the node it leads to.
    children: Vec<(String, usize)>,
    /// How many segments lead here.
    depth: usize,
    /// The paths that end at this node.
    ends: bool,
    /// The paths that end at or below this node.
    under: Vec<usize>,
}

impl Paths {
    pub(crate) fn new<S: AsRef<str>>(paths: &[S]) -> Self {
        let mut nodes = vec![Node::default()];
        let mut segments = Vec::with_capacity(paths.len());
        for (i, path) in paths.iter().enumerate() {
            let parts: Vec<String> = path.as_ref().split('.').map(str::to_owned).collect();
            let mut at = 0;
            nodes[0].under.push(i);
            for part in &parts {
                at = match nodes[at].children.iter().find(|(name, _)| name == part) {
                    Some(&(_, child)) => child,
                    None => {
                        let depth = nodes[at].depth + 1;
                        nodes.push(Node { depth, ..Node::default() });
                        let child = nodes.len() - 1;
                        nodes[at].children.push((part.clone(), child));
                        child
                    }
                };
                nodes[at].under.push(i);
            }
            nodes[at].ends = true;
            segments.push(parts);
        }
        Paths { nodes, segments }
    }

    /// How many paths there are: `read` fills one value per path, in the order given.
    pub(crate) fn len(&self) -> usize {
        self.segments.len()
    }

    /// Reads each path's value (`None` when missing) into `out` from a prediction's metrics (a
    /// JSON object) and its delayed metrics (a JSON array of objects, oldest first).
    pub(crate) fn read(
        &self,
        metrics: &str,
        delayed: Option<&str>,
        out: &mut Vec<Option<Value>>,
        scratch: &mut Scratch,
    ) -> Result<(), serde_json::Error> {
        out.clear();
        out.resize(self.len(), None);
        let mut de = serde_json::Deserializer::from_str(metrics);
        At { paths: self, node: 0, out, touched: None }.deserialize(&mut de)?;
        de.end()?;
        if let Some(delayed) = delayed {
            let mut de = serde_json::Deserializer::from_str(delayed);
            Delayed { paths: self, out, scratch }.deserialize(&mut de)?;
            de.end()?;
        }
        Ok(())
    }

    fn child(&self, node: usize, key: &str) -> Option<usize> {
        // Sibling names often differ only at the end (`f0` … `f9`): that byte first.
        let last = key.as_bytes().last();
        self.nodes[node]
            .children
            .iter()
            .find(|(name, _)| name.len() == key.len() && name.as_bytes().last() == last && name == key)
            .map(|&(_, child)| child)
    }

    /// Sets every path at or below `node` from `value`, the value found at `node`.
    fn fill(&self, node: usize, value: &Value, out: &mut [Option<Value>]) {
        let depth = self.nodes[node].depth;
        for &i in &self.nodes[node].under {
            let mut found = Some(value);
            for part in &self.segments[i][depth..] {
                found = found.and_then(|v| v.as_object()).and_then(|m| m.get(part));
            }
            out[i] = found.cloned();
        }
    }

    fn clear_under(&self, node: usize, out: &mut [Option<Value>]) {
        for &i in &self.nodes[node].under {
            out[i] = None;
        }
    }
}

/// Room that [`Paths::read`] reuses from row to row.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    values: Vec<Option<Value>>,
    touched: Vec<bool>,
}

/// Reads the paths at or below one node from the value there.
struct At<'a> {
    paths: &'a Paths,
    node: usize,
    out: &'a mut [Option<Value>],
    /// At the root of a delayed object: marks the top-level keys it holds (by node).
    touched: Option<&'a mut [bool]>,
}

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let node = &self.paths.nodes[self.node];
        if node.ends && node.children.is_empty() {
            // Only paths ending here (usually one): the value is theirs as it is.
            let value = Value::deserialize(d)?;
            if let Some((&last, others)) = node.under.split_last() {
                for &i in others {
                    self.out[i] = Some(value.clone());
                }
                self.out[last] = Some(value);
            }
            Ok(())
        } else if node.ends {
            // A path ends here: its value is wanted whole, and the paths below it are inside.
            let value = Value::deserialize(d)?;
            self.paths.fill(self.node, &value, self.out);
            Ok(())
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for At<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let At { paths, node, out, mut touched } = self;
        while let Some(Key(key)) = map.next_key()? {
            match paths.child(node, &key) {
                Some(child) => {
                    if let Some(touched) = touched.as_deref_mut() {
                        touched[child] = true;
                    }
                    // A repeated key: the last one counts, as in a parsed map.
                    paths.clear_under(child, out);
                    map.next_value_seed(At { paths, node: child, out: &mut *out, touched: None })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    // Any other value holds no path below it: they stay missing.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A delayed metrics array, merged into the values read so far, oldest object first.
struct Delayed<'a> {
    paths: &'a Paths,
    out: &'a mut [Option<Value>],
    scratch: &'a mut Scratch,
}

impl<'de> DeserializeSeed<'de> for Delayed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Delayed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of delayed metrics objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Delayed { paths, out, scratch } = self;
        let top = &paths.nodes[0].children;
        loop {
            scratch.values.clear();
            scratch.values.resize(paths.len(), None);
            scratch.touched.clear();
            scratch.touched.resize(paths.nodes.len(), false);
            let seed = At { paths, node: 0, out: &mut scratch.values, touched: Some(&mut scratch.touched) };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            for &(_, child) in top.iter().filter(|&&(_, child)| scratch.touched[child]) {
                for &i in &paths.nodes[child].under {
                    out[i] = scratch.values[i].take();
                }
            }
        }
    }
}

/// An object key, borrowed from the text unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftline_rollup::leaves::lookup;
    use proptest::prelude::*;
    use serde_json::{json, Map};

    /// What the store's read returns and the loader looked up before: the whole merged map.
    fn merged_lookup(metrics: &str, delayed: Option<&str>, paths: &[&str]) -> Vec<Option<Value>> {
        let mut merged: Map<String, Value> = serde_json::from_str(metrics).unwrap();
        if let Some(delayed) = delayed {
            let list: Vec<Value> = serde_json::from_str(delayed).unwrap();
            for item in list {
                if let Value::Object(obj) = item {
                    merged.extend(obj);
                }
            }
        }
        paths.iter().map(|p| lookup(&merged, p).cloned()).collect()
    }

    fn read(metrics: &str, delayed: Option<&str>, paths: &[&str]) -> Vec<Option<Value>> {
        let mut out = Vec::new();
        Paths::new(paths).read(metrics, delayed, &mut out, &mut Scratch::default()).unwrap();
        out
    }

    #[test]
    fn picks_paths_and_merges_delayed_keys_as_the_store_does() {
        let metrics = r#"{"input": {"age": 41, "plan": "gold", "deep": {"x": [1, 2]}}, "prediction": 0.7,
            "label": null, "skip": {"a": [{"b": "c\"d"}]}, "esc\u0061ped": 5}"#;
        let delayed = r#"[{"label": 0}, 7, {"label": 1, "note": "late"}, {"input": {"age": 42}}]"#;
        let paths = [
            "input.age",
            "input.plan",
            "input.deep",
            "input.deep.x",
            "prediction",
            "label",
            "note",
            "missing.path",
            "escaped",
            "prediction.inner",
        ];
        let got = read(metrics, Some(delayed), &paths);
        assert_eq!(got, merged_lookup(metrics, Some(delayed), &paths));
        assert_eq!(got[0], Some(json!(42)));
        assert_eq!(got[1], None, "a later `input` replaces the whole object");
        assert_eq!((got[5].clone(), got[6].clone()), (Some(json!(1)), Some(json!("late"))));
        assert_eq!(got[8], Some(json!(5)));
        assert_eq!(read(metrics, None, &paths), merged_lookup(metrics, None, &paths));
    }

    #[test]
    fn bad_text_is_an_error() {
        let mut out = Vec::new();
        let paths = Paths::new(&["a"]);
        assert!(paths.read("{\"a\": ", None, &mut out, &mut Scratch::default()).is_err());
        assert!(paths.read("{\"a\": 1} x", None, &mut out, &mut Scratch::default()).is_err());
        assert!(paths.read("{\"a\": 1}", Some("{}"), &mut out, &mut Scratch::default()).is_err());
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1e6f64..1e6).prop_map(|x| json!(x)),
            "[a-c]{0,3}".prop_map(Value::String),
        ]
    }

    /// Objects over a few keys, so that paths and repeated keys meet often.
    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(("[abc]", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = String> {
        prop::collection::vec(("[abc]", value()), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()).to_string())
    }

    proptest! {
        #[test]
        fn equals_a_lookup_in_the_merged_metrics(
            metrics in object(),
            delayed in prop::option::of(prop::collection::vec(object(), 0..3)),
            paths in prop::collection::vec("[abc](\\.[abc]){0,2}", 1..6),
        ) {
            let delayed = delayed.map(|d| format!("[{}]", d.join(",")));
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            prop_assert_eq!(
                read(&metrics, delayed.as_deref(), &paths),
                merged_lookup(&metrics, delayed.as_deref(), &paths)
            );
        }
    }
}
