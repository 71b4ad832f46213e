//! What a prediction contributes to the rollups: the leaves of its metrics (delayed metrics
//! merged in, later keys winning, as `read_metrics` shows them) under dotted paths, and the
//! technical series the store derives itself.

use driftline_store::rollups::SourceRow;
use serde_json::{Map, Value};

use crate::Error;

/// Technical series: every prediction counts once in `@predictions`.
pub const PREDICTIONS: &str = "@predictions";
/// Technical series: end minus start of each prediction, ms.
pub const LATENCY_MS: &str = "@latency_ms";
/// Technical series: the size of each prediction event in its compact wire form, bytes.
pub const EVENT_BYTES: &str = "@event_bytes";
/// Technical series: delayed metrics events joined to each labelled prediction.
pub const LABELS: &str = "@labels";

/// Technical series: dead letters that name the deployment, by when they were received.
pub const REJECTED: &str = "@rejected";

/// The series of one replica's figure: `@replica.<id>.cpu_percent` or `….memory_bytes`.
pub fn replica_path(replica_id: &str, figure: &str) -> String {
    format!("@replica.{replica_id}.{figure}")
}

/// Whether a path is one of the store's fixed series or a class's scores, which the
/// per-deployment path limit does not count (replica series count: every replica adds two).
pub fn is_technical(path: &str) -> bool {
    matches!(path, PREDICTIONS | LATENCY_MS | EVENT_BYTES | LABELS | REJECTED) || ClassScores::parse(path).is_some()
}

/// The score and label paths of a binary classifier, for which the rollups keep the scores of
/// each class apart (`@score[<score>|<label>=1]` and `…=0]`): two sketches per bucket from which
/// ROC AUC is estimated once raw rows are gone. Deployments get them for every binary drift
/// job's paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassScores {
    /// Dotted path of the score in the prediction's metrics.
    pub score: String,
    /// Dotted path of the 0/1 ground truth (usually in the delayed metrics).
    pub label: String,
}

impl ClassScores {
    /// The series of the scores of predictions whose label is `positive`.
    pub fn path(&self, positive: bool) -> String {
        format!("@score[{}|{}={}]", self.score, self.label, u8::from(positive))
    }

    /// The paths and class of a class-score series name.
    pub fn parse(path: &str) -> Option<(ClassScores, bool)> {
        let inner = path.strip_prefix("@score[")?.strip_suffix(']')?;
        let (paths, class) = inner.rsplit_once('=')?;
        let positive = match class {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let (score, label) = paths.split_once('|')?;
        Some((ClassScores { score: score.to_owned(), label: label.to_owned() }, positive))
    }
}

/// The class of a binary label: 0, 1, `true`, `false`, or those as strings; `None` otherwise.
pub fn binary_class(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Walks a dotted path into metrics.
pub fn lookup<'a>(metrics: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = metrics.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// One leaf value.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'a> {
    /// A number.
    Number(f64),
    /// A string, or a boolean as `true` / `false`.
    Category(&'a str),
}

/// A prediction read for rolling: its merged metrics and what the technical series need.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Start, ms since the epoch.
    pub start_ms: i64,
    /// Merged metrics.
    pub metrics: Map<String, Value>,
    /// End minus start.
    pub latency_ms: f64,
    /// Compact event size.
    pub event_bytes: f64,
    /// Delayed metrics events merged in.
    pub labels: usize,
}

impl Point {
    /// Decodes a source row, merging its delayed metrics into its metrics.
    pub fn from_source(row: &SourceRow) -> Result<Self, Error> {
        let mut metrics: Map<String, Value> = serde_json::from_str(&row.metrics)
            .map_err(|e| Error::Stored(format!("metrics of prediction {}: {e}", row.uuid)))?;
        let event_bytes = event_bytes(row, &metrics);
        let mut labels = 0;
        if let Some(text) = &row.delayed {
            let delayed: Vec<Value> = serde_json::from_str(text)
                .map_err(|e| Error::Stored(format!("delayed metrics of prediction {}: {e}", row.uuid)))?;
            for item in delayed {
                if let Value::Object(obj) = item {
                    labels += 1;
                    metrics.extend(obj);
                }
            }
        }
        Ok(Point {
            start_ms: row.start_timestamp_ms,
            metrics,
            latency_ms: (row.end_timestamp_ms - row.start_timestamp_ms) as f64,
            event_bytes,
            labels,
        })
    }

    /// The score and class of this prediction for `classes`, when its label is a binary class
    /// and its score a finite number.
    pub fn class_score(&self, classes: &ClassScores) -> Option<(f64, bool)> {
        let positive = binary_class(lookup(&self.metrics, &classes.label)?)?;
        let score = lookup(&self.metrics, &classes.score)?.as_f64().filter(|x| x.is_finite())?;
        Some((score, positive))
    }

    /// Calls `f` with every leaf: the technical series first, then the metrics' leaves under
    /// their dotted paths (array elements under their index). Nulls, empty objects and empty
    /// arrays have no leaves.
    pub fn for_each_leaf(
        &self,
        path: &mut String,
        mut f: impl FnMut(&str, Leaf<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        f(PREDICTIONS, Leaf::Number(1.0))?;
        f(LATENCY_MS, Leaf::Number(self.latency_ms))?;
        f(EVENT_BYTES, Leaf::Number(self.event_bytes))?;
        if self.labels > 0 {
            f(LABELS, Leaf::Number(self.labels as f64))?;
        }
        path.clear();
        for (key, value) in &self.metrics {
            walk(path, key, value, &mut f)?;
        }
        Ok(())
    }
}

fn walk(
    path: &mut String,
    key: &str,
    value: &Value,
    f: &mut impl FnMut(&str, Leaf<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    let result = match value {
        Value::Null => Ok(()),
        Value::Bool(b) => f(path, Leaf::Category(if *b { "true" } else { "false" })),
        Value::Number(n) => f(path, Leaf::Number(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => f(path, Leaf::Category(s)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| walk(path, k, v, f)),
        Value::Array(items) => {
            let mut index = itoa_buf();
            items.iter().enumerate().try_for_each(|(i, v)| walk(path, index.format(i), v, f))
        }
    };
    path.truncate(len);
    result
}

/// A small reusable formatter of array indices.
struct IndexBuf(String);

fn itoa_buf() -> IndexBuf {
    IndexBuf(String::new())
}

impl IndexBuf {
    fn format(&mut self, i: usize) -> &str {
        use std::fmt::Write;
        self.0.clear();
        let _ = write!(self.0, "{i}");
        &self.0
    }
}

/// The size of the prediction event in its compact wire form as driftline stores it:
/// `{"v":1,"type":"prediction","uuid":…,"model_crn":…,"model_build_crn":…,
/// "model_deployment_crn":…,"start_timestamp_ms":…,"end_timestamp_ms":…,"metrics":…}`.
fn event_bytes(row: &SourceRow, metrics: &Map<String, Value>) -> f64 {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let fields = [row.uuid.as_str(), &row.model_crn, &row.model_build_crn, &row.model_deployment_crn];
    for s in fields {
        let _ = serde_json::to_writer(&mut count, s);
    }
    let _ = serde_json::to_writer(&mut count, metrics);
    let digits = |n: i64| n.to_string().len();
    let fixed = r#"{"v":1,"type":"prediction","uuid":,"model_crn":,"model_build_crn":,"model_deployment_crn":,"start_timestamp_ms":,"end_timestamp_ms":,"metrics":}"#.len();
    (fixed + count.0 + digits(row.start_timestamp_ms) + digits(row.end_timestamp_ms)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(metrics: &str, delayed: Option<&str>) -> SourceRow {
        SourceRow {
            model_deployment_crn: "crn:dep".into(),
            uuid: "6f9619ff-8b86-d011-b42d-00c04fc964ff".into(),
            model_crn: "crn:m".into(),
            model_build_crn: "crn:b".into(),
            start_timestamp_ms: 1_700_000_000_000,
            end_timestamp_ms: 1_700_000_000_012,
            metrics: metrics.into(),
            delayed: delayed.map(str::to_owned),
        }
    }

    fn leaves(p: &Point) -> Vec<(String, String)> {
        let mut out = Vec::new();
        p.for_each_leaf(&mut String::new(), |path, leaf| {
            out.push((path.to_owned(), format!("{leaf:?}")));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn leaves_have_dotted_paths_and_labels_merge_in() {
        let p = Point::from_source(&row(
            r#"{"input":{"tenure":12,"plan":"basic","flags":[true,null],"none":null},"prediction":0.83,"label":null}"#,
            Some(r#"[{"label":0},{"label":1,"note":"late"}]"#),
        ))
        .unwrap();
        let got = leaves(&p);
        let want: Vec<(String, String)> = [
            ("@predictions", "Number(1.0)"),
            ("@latency_ms", "Number(12.0)"),
            ("@event_bytes", &format!("Number({:?})", p.event_bytes)),
            ("@labels", "Number(2.0)"),
            ("input.flags.0", "Category(\"true\")"),
            ("input.plan", "Category(\"basic\")"),
            ("input.tenure", "Number(12.0)"),
            ("label", "Number(1.0)"),
            ("note", "Category(\"late\")"),
            ("prediction", "Number(0.83)"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn event_bytes_is_the_compact_wire_size() {
        let r = row(r#"{"a":1,"b":"x"}"#, None);
        let p = Point::from_source(&r).unwrap();
        let wire = serde_json::json!({"v":1,"type":"prediction","uuid":r.uuid,"model_crn":r.model_crn,
            "model_build_crn":r.model_build_crn,"model_deployment_crn":r.model_deployment_crn,
            "start_timestamp_ms":r.start_timestamp_ms,"end_timestamp_ms":r.end_timestamp_ms,"metrics":{"a":1,"b":"x"}});
        assert_eq!(p.event_bytes, serde_json::to_string(&wire).unwrap().len() as f64);
    }

    #[test]
    fn class_scores_name_their_series_and_read_binary_labels() {
        let classes = ClassScores { score: "out.p".into(), label: "label".into() };
        assert_eq!(classes.path(true), "@score[out.p|label=1]");
        assert_eq!(ClassScores::parse("@score[out.p|label=0]"), Some((classes.clone(), false)));
        assert_eq!(ClassScores::parse("@score[out.p|label=2]"), None);
        assert!(is_technical(&classes.path(true)) && !is_technical("score"));
        let with = |label: &str| {
            let metrics = format!(r#"{{"out":{{"p":0.7}},"label":{label}}}"#);
            Point::from_source(&row(&metrics, None)).unwrap().class_score(&classes)
        };
        assert_eq!(with("1"), Some((0.7, true)));
        assert_eq!(with("\"false\""), Some((0.7, false)));
        assert_eq!(with("true"), Some((0.7, true)));
        assert_eq!((with("2"), with("null"), with("\"yes\"")), (None, None, None));
    }

    #[test]
    fn stored_text_that_is_not_json_is_an_error() {
        assert!(Point::from_source(&row("{", None)).is_err());
        assert!(Point::from_source(&row("{}", Some("["))).is_err());
    }
}
