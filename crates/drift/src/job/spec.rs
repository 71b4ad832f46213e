//! Drift jobs: what a job compares, and its settings as stored; the times a job accepts.

use super::schedule::{Schedule, ScheduleSpec};
use crate::chunk::Chunking;
use crate::chunked::{ChunkMethod, ChunkThreshold};
use crate::compare::{Method, Options};
use crate::estimate::Calibrate;
use crate::stats::categories::DEFAULT_KEEP;
use crate::stats::drift::Chi2Correction;
use crate::stats::performance::Task;
use crate::table::references::ReferenceFiles;
use crate::Error;
use driftline_core::limits::{DEFAULT_MAX_TIMESTAMP_MS as TIME_END_MS, DEFAULT_MIN_TIMESTAMP_MS as TIME_START_MS};
use driftline_store::{Store, StoredJob, Window};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Most features of one job.
pub const MAX_FEATURES: usize = 256;
/// Most classes a multiclass job scores one-vs-rest.
pub const MAX_CLASS_SCORES: usize = 256;
/// The longest window, offset or span: 100 years.
pub const MAX_SPAN_MS: i64 = 36_525 * 86_400_000;

/// A drift job's settings, stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique name: letters, digits, `.`, `_` and `-`, at most 64 characters.
    pub name: String,
    /// The model deployment's CRN.
    pub deployment: String,
    /// Length of the current window, ending at the scheduled time (`30m`, `24h`, `7d`, `1w`).
    pub window: Span,
    /// What the current window is compared with.
    pub reference: Reference,
    /// Dotted paths into the prediction's `metrics`, e.g. `input.tenure`.
    pub features: Vec<String>,
    /// Dotted path of the model's score in the prediction's metrics.
    #[serde(default = "default_score")]
    pub score: String,
    /// Dotted path of the ground truth in the delayed metrics.
    #[serde(default = "default_label")]
    pub label: String,
    #[serde(default = "default_task")]
    pub task: Task,
    /// Multiclass: each class's score (its probability), class name to dotted path, for
    /// one-vs-rest ROC AUC per class, macro and weighted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class_scores: BTreeMap<String, String>,
    /// The drift test; `auto` chooses per column.
    #[serde(default = "default_method")]
    pub method: Method,
    /// Drift threshold; the method's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Share of drifted features from which the run's status is `drift`.
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
    /// Reference-quantile bins for PSI, JS on numbers and the histograms.
    #[serde(default = "default_bins")]
    pub bins: usize,
    /// Categories of a categorical feature kept by name in statistics and reports; the others
    /// are compared as one, "other".
    #[serde(default = "default_max_categories")]
    pub max_categories: usize,
    /// Continuity correction of the chi-square test (`none` or `yates`).
    #[serde(default, skip_serializing_if = "is_uncorrected")]
    pub chi2_correction: Chi2Correction,
    /// A performance metric that turns the status to `warning` when it crosses a bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    /// Also estimate performance from the scores, for windows whose labels have not arrived
    /// (binary task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<EstimateSpec>,
    /// Also judge each feature against thresholds from the reference's own chunks, NannyML's
    /// way (raw windows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunksSpec>,
    pub schedule: ScheduleSpec,
}

/// A job's drift against reference chunks ([`crate::chunked`]). Without `split`, the current
/// window is one chunk, compared with the whole reference by each statistic; the reference is
/// cut into chunks of the current window's size (into ten when it holds fewer than ten such
/// windows), each compared with the whole reference in the same way, and the statistic's
/// thresholds come from how much it varies across those chunks. With `split`, the window is cut
/// into several chunks (by size, number or calendar period), and the reference the same way: by
/// the same size or period, or into the same number of chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunksSpec {
    /// The statistics; each feature gets those for its type.
    #[serde(default = "default_chunk_methods")]
    pub methods: Vec<ChunkMethod>,
    #[serde(default)]
    pub threshold: ChunkThreshold,
    /// How the window is cut into chunks; one chunk when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Chunking>,
}

impl Default for ChunksSpec {
    fn default() -> Self {
        ChunksSpec { methods: default_chunk_methods(), threshold: ChunkThreshold::default(), split: None }
    }
}

/// Jensen–Shannon for every feature, and the data-quality measures (as `drift compare`).
pub fn default_chunk_methods() -> Vec<ChunkMethod> {
    vec![ChunkMethod::JensenShannon, ChunkMethod::MissingValues, ChunkMethod::UnseenValues]
}

/// A job's performance estimate (CBPE, [`crate::estimate`]): the current window is one chunk,
/// the reference is cut into chunks of the current window's size (into ten when it holds fewer
/// than ten such windows) for the thresholds, and the reference's labels calibrate the scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateSpec {
    /// Dotted path of the predicted class (0/1 or true/false) in the prediction's metrics;
    /// without it a score at or above `decision_threshold` predicts class 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    #[serde(default = "default_decision_threshold")]
    pub decision_threshold: f64,
    #[serde(default)]
    pub calibration: Calibrate,
}

impl Default for EstimateSpec {
    fn default() -> Self {
        EstimateSpec {
            prediction: None,
            decision_threshold: default_decision_threshold(),
            calibration: Calibrate::Auto,
        }
    }
}

fn default_decision_threshold() -> f64 {
    0.5
}

fn default_score() -> String {
    "prediction".into()
}
fn default_label() -> String {
    "label".into()
}
fn default_task() -> Task {
    Task::Binary
}
fn default_method() -> Method {
    Method::Auto
}
fn default_drift_share() -> f64 {
    0.5
}
fn default_bins() -> usize {
    crate::stats::drift::DEFAULT_BINS
}
fn is_uncorrected(c: &Chi2Correction) -> bool {
    *c == Chi2Correction::None
}

fn default_max_categories() -> usize {
    DEFAULT_KEEP
}

/// The reference a job compares its current window with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reference {
    /// A fixed window of the same deployment, `[start_ms, end_ms)`.
    Baseline { start_ms: i64, end_ms: i64 },
    /// The same window, `offset` earlier (e.g. `7d`: the same day last week).
    Previous { offset: Span },
    /// A dataset file (CSV or Parquet) with one column per feature path, in the references
    /// directory: a path relative to it, or absolute inside it.
    File { path: PathBuf },
}

impl Reference {
    /// Parses the command-line form: `baseline:START..END` (ms or RFC 3339), `previous:7d`, or
    /// `file:PATH`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |message: String| Error::Invalid { field: "reference".into(), message };
        let (kind, rest) = text.split_once(':').ok_or_else(|| {
            invalid(format!("`{text}` is not a reference; use baseline:START..END, previous:7d or file:PATH"))
        })?;
        match kind {
            "baseline" => {
                let (a, b) = rest.split_once("..").ok_or_else(|| {
                    invalid(format!("`{rest}` is not START..END, e.g. 2026-11-01T00:00:00Z..2026-11-08T00:00:00Z"))
                })?;
                Ok(Reference::Baseline { start_ms: parse_time(a, "reference")?, end_ms: parse_time(b, "reference")? })
            }
            "previous" => Ok(Reference::Previous { offset: rest.parse().map_err(invalid)? }),
            "file" => Ok(Reference::File { path: PathBuf::from(rest) }),
            other => Err(invalid(format!("`{other}` is not a kind of reference; use baseline, previous or file"))),
        }
    }
}

/// Parses a time as milliseconds since the epoch or RFC 3339, in the accepted range (see
/// [`check_time`]); `field` names it in errors.
pub fn parse_time(text: &str, field: &str) -> Result<i64, Error> {
    let text = text.trim();
    let ms = match text.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => {
            chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).map_err(|_| Error::Invalid {
                field: field.into(),
                message: format!(
                    "`{text}` is not a time; use milliseconds since the epoch or RFC 3339 like 2026-11-01T00:00:00Z"
                ),
            })?
        }
    };
    check_time(ms, field)
}

/// `ms` when it is in the range of times driftline accepts, the same as for events: from
/// 2000-01-01T00:00:00Z up to (not including) 2100-01-01T00:00:00Z. A time outside is refused
/// with an error naming the range, rather than run (or scheduled) for a window that can hold no
/// event.
pub fn check_time(ms: i64, field: &str) -> Result<i64, Error> {
    if (TIME_START_MS..TIME_END_MS).contains(&ms) {
        return Ok(ms);
    }
    let seconds = ms.checked_mul(1000).is_some_and(|t| (TIME_START_MS..TIME_END_MS).contains(&t));
    Err(Error::Invalid {
        field: field.into(),
        message: format!(
            "{ms} ({}) is outside the accepted range, from 2000-01-01T00:00:00Z ({TIME_START_MS}) up to but not \
             including 2100-01-01T00:00:00Z ({TIME_END_MS}){}",
            crate::format::time(ms),
            if seconds { "; it looks like seconds, give milliseconds" } else { "; give a time in that range" }
        ),
    })
}

/// A performance bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// A metric of the job's task, e.g. `roc_auc`, `accuracy`, `rmse`.
    pub metric: String,
    /// Warn when the metric falls below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Warn when the metric rises above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
}

/// A length of time, written `30m`, `24h`, `7d` or `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span {
    pub ms: i64,
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let n: i64 =
            number.parse().map_err(|_| format!("`{s}` is not a length of time; write e.g. 30m, 24h, 7d or 2w"))?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(format!("`{s}` has no known unit; write e.g. 30m, 24h, 7d or 2w")),
        };
        if n <= 0 {
            return Err(format!("`{s}` must be longer than zero"));
        }
        match n.checked_mul(unit_ms) {
            Some(ms) if ms <= MAX_SPAN_MS => Ok(Span { ms }),
            _ => Err(format!("`{s}` is longer than 100 years (36525d)")),
        }
    }
}

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        s.to_string()
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, ms) in [("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
            if self.ms % ms == 0 {
                return write!(f, "{}{unit}", self.ms / ms);
            }
        }
        write!(f, "{}s", self.ms / 1_000)
    }
}

impl JobSpec {
    /// A job with the defaults for everything not named: score `prediction`, label `label`,
    /// binary task, `auto` method, drift share 0.5, 10 bins, 50 categories, no alert.
    pub fn new(
        name: &str,
        deployment: &str,
        window: Span,
        reference: Reference,
        features: Vec<String>,
        schedule: ScheduleSpec,
    ) -> Self {
        JobSpec {
            name: name.into(),
            deployment: deployment.into(),
            window,
            reference,
            features,
            score: default_score(),
            label: default_label(),
            task: default_task(),
            class_scores: BTreeMap::new(),
            method: default_method(),
            threshold: None,
            drift_share: default_drift_share(),
            bins: default_bins(),
            max_categories: default_max_categories(),
            chi2_correction: Chi2Correction::None,
            alert: None,
            estimate: None,
            chunks: None,
            schedule,
        }
    }

    /// The job as the store keeps it, created at `now_ms`.
    pub fn stored(&self, now_ms: i64) -> StoredJob {
        StoredJob {
            name: self.name.clone(),
            spec: serde_json::to_string(self).expect("job settings serialize"),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// The settings of a stored job. Settings that no longer parse are an internal error: the
    /// store holds only settings that parsed when the job was created.
    pub fn from_stored(job: &StoredJob) -> Result<Self, Error> {
        serde_json::from_str(&job.spec).map_err(|e| Error::Internal {
            what: format!("the stored settings of drift job `{}`", job.name),
            message: format!("{e}; delete the job and create it again"),
        })
    }

    /// The settings of the job named `name` in `store`.
    pub async fn find(store: &dyn Store, name: &str) -> Result<Self, Error> {
        let job = store.job(name).await?.ok_or_else(|| Error::NoJob { job: name.to_string() })?;
        JobSpec::from_stored(&job)
    }

    /// The comparison settings of the job.
    pub fn options(&self) -> Options {
        Options {
            method: self.method,
            threshold: self.threshold,
            bins: self.bins,
            drift_share: self.drift_share,
            max_categories: self.max_categories,
            chi2_correction: self.chi2_correction,
        }
    }

    /// The current window of the run at `scheduled_ms`: the window's length, ending there.
    pub fn window_ending(&self, scheduled_ms: i64) -> Window {
        Window { start_ms: scheduled_ms - self.window.ms, end_ms: scheduled_ms }
    }

    /// Checks that a file reference names a file this process may read; other references
    /// pass. Made where jobs are created, and again by every run.
    pub fn check_reference(&self, references: &ReferenceFiles) -> Result<(), Error> {
        if let Reference::File { path } = &self.reference {
            references.resolve(path)?;
        }
        Ok(())
    }

    /// Checks every setting; the error names the field and what to do. The file of a file
    /// reference is checked by [`JobSpec::check_reference`].
    pub fn validate(&self) -> Result<Schedule, Error> {
        let invalid = |field: &str, message: String| Error::Invalid { field: field.into(), message };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(invalid(
                "name",
                format!("`{}` is not a job name; use 1 to 64 letters, digits, `.`, `_` or `-`", self.name),
            ));
        }
        if self.deployment.trim().is_empty() {
            return Err(invalid("deployment", "is empty; give the model deployment's CRN".into()));
        }
        if self.features.is_empty() {
            return Err(invalid("features", "is empty; name at least one dotted path such as input.tenure".into()));
        }
        if self.features.len() > MAX_FEATURES {
            return Err(invalid(
                "features",
                format!(
                    "names {} features, more than {MAX_FEATURES}; split them over several jobs",
                    self.features.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.features {
            if f.is_empty() || f.split('.').any(str::is_empty) {
                return Err(invalid("features", format!("`{f}` is not a dotted path such as input.tenure")));
            }
            if !seen.insert(f) {
                return Err(invalid("features", format!("`{f}` is named twice")));
            }
        }
        for (field, path) in [("score", &self.score), ("label", &self.label)] {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(invalid(field, format!("`{path}` is not a dotted path such as prediction")));
            }
        }
        match &self.reference {
            Reference::Baseline { start_ms, end_ms } => {
                check_time(*start_ms, "reference")?;
                check_time(*end_ms, "reference")?;
                if start_ms >= end_ms {
                    return Err(invalid(
                        "reference",
                        format!("the baseline window starts ({start_ms}) at or after its end ({end_ms})"),
                    ));
                }
            }
            Reference::File { path } if path.as_os_str().is_empty() => {
                return Err(invalid(
                    "reference",
                    "the file path is empty; name a file in the references directory".into(),
                ));
            }
            _ => {}
        }
        self.options().validate()?;
        if let Some(alert) = &self.alert {
            let known = self.task.metric_names();
            if !known.contains(&alert.metric.as_str()) {
                return Err(invalid(
                    "alert.metric",
                    format!("`{}` is not a {} metric; use one of {}", alert.metric, self.task.name(), known.join(", ")),
                ));
            }
            if alert.below.is_none() && alert.above.is_none() {
                return Err(invalid("alert", "needs `below` or `above`".into()));
            }
        }
        if !self.class_scores.is_empty() && self.task != Task::Multiclass {
            return Err(invalid(
                "class_scores",
                format!("are for the multiclass task; this job's task is {}", self.task.name()),
            ));
        }
        if self.class_scores.len() > MAX_CLASS_SCORES {
            return Err(invalid(
                "class_scores",
                format!("{} classes are more than the {MAX_CLASS_SCORES} a job scores", self.class_scores.len()),
            ));
        }
        if let Some((class, path)) =
            self.class_scores.iter().find(|(_, path)| path.is_empty() || path.split('.').any(str::is_empty))
        {
            return Err(invalid(
                "class_scores",
                format!("`{path}` (class `{class}`) is not a dotted path such as scores.{class}"),
            ));
        }
        if let Some(estimate) = &self.estimate {
            if self.task != Task::Binary {
                return Err(invalid(
                    "estimate",
                    format!("estimates performance of a binary classifier; this job's task is {}", self.task.name()),
                ));
            }
            if let Some(path) = &estimate.prediction {
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(invalid(
                        "estimate.prediction",
                        format!("`{path}` is not a dotted path such as predicted_class"),
                    ));
                }
            }
            if !estimate.decision_threshold.is_finite() {
                return Err(invalid("estimate.decision_threshold", "must be a number, such as 0.5".into()));
            }
        }
        if let Some(chunks) = &self.chunks {
            if chunks.methods.is_empty() {
                return Err(invalid(
                    "chunks.methods",
                    format!("is empty; name at least one of {}", ChunkMethod::ALL.map(ChunkMethod::name).join(", ")),
                ));
            }
            let (ChunkThreshold::StandardDeviations(k) | ChunkThreshold::Constant(k)) = chunks.threshold;
            if !k.is_finite() || k < 0.0 {
                return Err(invalid(
                    "chunks.threshold",
                    format!("{k} is not a non-negative number; give standard deviations such as 3, or a constant"),
                ));
            }
            match chunks.split {
                Some(Chunking::Size(0)) => {
                    return Err(invalid("chunks.split.size", "must be at least 1 prediction".into()));
                }
                Some(Chunking::Number(0)) => {
                    return Err(invalid("chunks.split.number", "must be at least 1 chunk".into()));
                }
                Some(Chunking::Period(_)) if matches!(self.reference, Reference::File { .. }) => {
                    return Err(invalid(
                        "chunks.split.period",
                        "cuts the reference by the predictions' times, which a reference file does not have; \
                         use a baseline or previous-window reference, or split by size or number"
                            .into(),
                    ));
                }
                _ => {}
            }
        }
        Schedule::parse(&self.schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> JobSpec {
        let mut spec = JobSpec::new(
            "churn-daily",
            "crn:demo:deployment/churn-prod",
            "24h".parse().unwrap(),
            Reference::Previous { offset: "7d".parse().unwrap() },
            vec!["input.tenure".into(), "input.plan".into()],
            ScheduleSpec { expression: "daily@06:00".into(), timezone: "UTC".into() },
        );
        spec.alert = Some(Alert { metric: "roc_auc".into(), below: Some(0.7), above: None });
        spec
    }

    #[test]
    fn spans_parse_and_print() {
        assert_eq!("24h".parse::<Span>().unwrap().ms, 86_400_000);
        assert_eq!("2w".parse::<Span>().unwrap().to_string(), "2w");
        assert_eq!(Span { ms: 90 * 60_000 }.to_string(), "90m");
        assert!("24".parse::<Span>().unwrap_err().contains("unit"));
        assert!("0d".parse::<Span>().is_err());
    }

    #[test]
    fn spec_round_trips_through_json() {
        let s = spec();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""window":"1d""#), "{json}");
        assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), s);
        s.validate().unwrap();
    }

    #[test]
    fn invalid_settings_name_their_field() {
        let mut s = spec();
        s.name = "churn daily".into();
        assert!(s.validate().unwrap_err().to_string().starts_with("name:"));
        let mut s = spec();
        s.features.push("input.tenure".into());
        assert!(s.validate().unwrap_err().to_string().contains("named twice"));
        let mut s = spec();
        s.alert = Some(Alert { metric: "rmse".into(), below: Some(1.0), above: None });
        assert!(s.validate().unwrap_err().to_string().starts_with("alert.metric:"));
        let mut s = spec();
        s.reference = Reference::Baseline { start_ms: 10, end_ms: 5 };
        assert!(s.validate().unwrap_err().to_string().starts_with("reference:"));
        assert!(serde_json::from_str::<JobSpec>(r#"{"name":"x","colour":"red"}"#).is_err());
    }

    #[test]
    fn times_outside_2000_to_2100_are_refused_with_the_range() {
        assert_eq!(parse_time("4000000000000", "at").unwrap(), 4_000_000_000_000);
        assert_eq!(parse_time("2099-12-31T23:59:59Z", "at").unwrap(), 4_102_444_799_000);
        for (text, hint) in [
            ("5000000000000", "give a time in that range"),
            ("2100-01-01T00:00:00Z", "give a time in that range"),
            ("1999-12-31T23:59:59Z", "give a time in that range"),
            ("-9223372036854775808", "give a time in that range"),
            ("1794096000", "looks like seconds"),
        ] {
            let err = parse_time(text, "at").unwrap_err().to_string();
            assert!(err.starts_with("at: ") && err.contains("2000-01-01T00:00:00Z"), "{err}");
            assert!(err.contains("2100-01-01T00:00:00Z") && err.contains(hint), "{err}");
        }
        let mut s = spec();
        s.reference = Reference::Baseline { start_ms: 0, end_ms: 86_400_000 };
        assert!(s.validate().unwrap_err().to_string().contains("accepted range"));
        assert!("99999999999999w".parse::<Span>().unwrap_err().contains("100 years"));
        assert!("36526d".parse::<Span>().is_err());
    }

    #[test]
    fn settings_that_could_exhaust_memory_are_refused() {
        let mut s = spec();
        s.bins = 1_000_000_000;
        assert!(s.validate().unwrap_err().to_string().starts_with("bins:"));
        let mut s = spec();
        s.max_categories = 0;
        assert!(s.validate().unwrap_err().to_string().starts_with("max_categories:"));
        let mut s = spec();
        s.features = (0..=MAX_FEATURES).map(|i| format!("input.f{i}")).collect();
        assert!(s.validate().unwrap_err().to_string().starts_with("features:"));
    }

    #[test]
    fn stored_settings_that_do_not_parse_are_internal_errors() {
        let job = StoredJob { name: "x".into(), spec: "{".into(), created_at_ms: 0, updated_at_ms: 0 };
        assert!(matches!(JobSpec::from_stored(&job), Err(Error::Internal { .. })));
        let old = r#"{"name":"x","deployment":"d","window":"1d","reference":{"kind":"previous","offset":"7d"},
            "features":["a"],"schedule":{"expression":"hourly"}}"#;
        let job = StoredJob { name: "x".into(), spec: old.into(), created_at_ms: 0, updated_at_ms: 0 };
        assert_eq!(JobSpec::from_stored(&job).unwrap().max_categories, 50, "jobs stored before the setting existed");
    }

    #[test]
    fn references_parse_from_the_command_line() {
        assert_eq!(
            Reference::parse("baseline:2026-11-01T00:00:00Z..1794096000000").unwrap(),
            Reference::Baseline { start_ms: 1_793_491_200_000, end_ms: 1_794_096_000_000 }
        );
        assert_eq!(
            Reference::parse("previous:7d").unwrap(),
            Reference::Previous { offset: Span { ms: 7 * 86_400_000 } }
        );
        assert!(Reference::parse("yesterday").unwrap_err().to_string().contains("previous:7d"));
    }
}
