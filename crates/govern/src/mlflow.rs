//! What an MLflow model registry becomes in the governance log. A registered model is a
//! `model.registered` (its tags, and its description, as metadata; a later change of them a
//! `metadata.updated`); a model version is a `build.registered` of that model, with its source
//! as the artifact and its run's parameters, tags and metrics (named by the mapping), once.
//! Each event's id is derived from what it imports, so importing the same thing twice stores
//! it once. The HTTP side lives in the binary; everything here is pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{new_event, Artifact, BuildRegistered, MetadataUpdated, ModelRegistered, Payload};
use crate::inventory::{Inventory, Status};
use crate::log::check_new;
use crate::template::{Metadata, Template};
use crate::Error;

/// The actor of imported events.
pub const ACTOR: &str = "mlflow-sync";

/// A key and a value, as MLflow lists tags and parameters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// A registered model, as `registered-models/search` gives it (fields not used here are
/// ignored, so a newer MLflow's additions do not break the sync).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    #[serde(default)]
    pub creation_timestamp: Option<i64>,
    #[serde(default)]
    pub last_updated_timestamp: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A model version, as `model-versions/search` gives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub creation_timestamp: Option<i64>,
    #[serde(default)]
    pub last_updated_timestamp: Option<i64>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A run, as `runs/get` gives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunInfo {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub start_time: Option<i64>,
    #[serde(default)]
    pub end_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<RunMetric>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A run's latest value of one metric.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunMetric {
    pub key: String,
    pub value: f64,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// The mapping file: `metrics:` from MLflow metric name to driftline name (`val_auc: roc_auc`;
/// others keep their names) and, optionally, `models:` from MLflow model name to driftline
/// model CRN (others become `crn:mlflow:model/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default)]
    pub metrics: BTreeMap<String, String>,
    #[serde(default)]
    pub models: BTreeMap<String, String>,
}

impl Mapping {
    /// Reads a mapping file's YAML; `source` names it in errors.
    pub fn parse(yaml: &str, source: &str) -> Result<Mapping, Error> {
        let mapping: Mapping = serde_yaml::from_str(yaml).map_err(|e| Error::Invalid {
            field: source.to_string(),
            message: format!("is not a metric mapping ({e}); write `metrics:` with lines such as `val_auc: roc_auc`"),
        })?;
        for (from, to) in mapping.metrics.iter().chain(mapping.models.iter()) {
            if to.trim().is_empty() || from.trim().is_empty() {
                return Err(Error::Invalid {
                    field: source.to_string(),
                    message: format!("`{from}: {to}` maps to or from nothing; write both names"),
                });
            }
        }
        Ok(mapping)
    }

    /// The driftline CRN of an MLflow model.
    pub fn model_crn(&self, name: &str) -> String {
        self.models.get(name).cloned().unwrap_or_else(|| format!("crn:mlflow:model/{name}"))
    }

    /// The driftline CRN of a model version.
    pub fn build_crn(&self, name: &str, version: &str) -> String {
        format!("{}/v{version}", self.model_crn(name))
    }

    /// A run metric's driftline name.
    pub fn metric<'a>(&'a self, key: &'a str) -> &'a str {
        self.metrics.get(key).map_or(key, String::as_str)
    }
}

/// What became of one imported thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    Skipped,
    Failed,
}

/// One line of a sync's activity record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// `model churn` or `version churn/3`.
    pub item: String,
    /// The driftline CRN it became.
    pub crn: String,
    pub outcome: Outcome,
    /// Why it failed, or why it was skipped when that is not "imported already".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A model's metadata from MLflow: its tags, and its description when it has one and no tag
/// of that name.
pub fn model_metadata(model: &RegisteredModel) -> Metadata {
    let mut metadata: Metadata = model.tags.iter().map(|t| (t.key.clone(), Value::String(t.value.clone()))).collect();
    if let Some(description) = model.description.as_deref().filter(|d| !d.trim().is_empty()) {
        metadata.entry("description".into()).or_insert_with(|| Value::String(description.to_string()));
    }
    metadata
}

/// An id derived from what an event imports (the same import always has the same id).
fn import_id(parts: &[&str]) -> uuid::Uuid {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The event a registered model needs, if any: a registration when the inventory does not
/// have it (or has it deleted), a metadata change when its metadata differs. Checked against
/// the log and the template like any registration; `Err` says why it cannot be imported.
pub fn model_event(
    model: &RegisteredModel,
    mapping: &Mapping,
    inventory: &Inventory,
    template: Option<&Template>,
    source: &str,
    cluster: &str,
    now_ms: i64,
) -> Result<Option<(driftline_store::NewGovernanceEvent, Outcome)>, Error> {
    let crn = mapping.model_crn(&model.name);
    let metadata = model_metadata(model);
    let current = inventory.models.get(&crn).filter(|m| !matches!(m.status, Status::Unregistered | Status::Deleted));
    let (payload, outcome, at) = match current {
        Some(m) if m.metadata == metadata => return Ok(None),
        Some(_) => (Payload::MetadataUpdated(MetadataUpdated { metadata: metadata.clone() }), Outcome::Updated, now_ms),
        None => (
            Payload::ModelRegistered(ModelRegistered { metadata: metadata.clone() }),
            Outcome::Created,
            model.creation_timestamp.unwrap_or(now_ms),
        ),
    };
    let mut event = new_event(&crn, &payload, ACTOR, cluster, at);
    // The id names the change and the model's place in the log (how many events it has), so
    // the same change retried is stored once, and a later return to earlier metadata is new.
    let fingerprint = payload.to_json();
    let place = inventory.models.get(&crn).map_or(0, |m| m.history.len()).to_string();
    event.id = import_id(&[source, event.kind.as_str(), &model.name, &fingerprint, &place]);
    check_new(&event, inventory, template)?;
    Ok(Some((event, outcome)))
}

/// Whether a version is imported already (its build registered).
pub fn version_imported(version: &ModelVersion, mapping: &Mapping, inventory: &Inventory) -> bool {
    let build = mapping.build_crn(&version.name, &version.version);
    inventory.models.values().any(|m| m.builds.get(&build).is_some_and(|b| b.registered_at_ms.is_some()))
}

/// The build registration of a version, with its run's parameters, tags (the version's and the
/// run's own, MLflow's `mlflow.*` bookkeeping left out) and metrics under their mapped names.
pub fn version_event(
    version: &ModelVersion,
    run: Option<&Run>,
    mapping: &Mapping,
    inventory: &Inventory,
    source: &str,
    cluster: &str,
    now_ms: i64,
) -> Result<driftline_store::NewGovernanceEvent, Error> {
    let build = mapping.build_crn(&version.name, &version.version);
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    let mut parameters = BTreeMap::new();
    if let Some(run) = run {
        tags.extend(
            run.data.tags.iter().filter(|t| !t.key.starts_with("mlflow.")).map(|t| (t.key.clone(), t.value.clone())),
        );
        parameters.extend(run.data.params.iter().map(|p| (p.key.clone(), p.value.clone())));
    }
    tags.extend(version.tags.iter().map(|t| (t.key.clone(), t.value.clone())));
    let payload = Payload::BuildRegistered(BuildRegistered {
        model: mapping.model_crn(&version.name),
        artifact: version.source.clone().map(|uri| Artifact { uri, sha256: None, size_bytes: None }),
        input_schema: None,
        output_schema: None,
        training_data: Vec::new(),
        training_rows: None,
        lineage: Vec::new(),
        run_id: version.run_id.clone().filter(|r| !r.is_empty()),
        parameters,
        tags,
        metrics: run.map(|r| metrics(r, mapping)).unwrap_or_default(),
    });
    let mut event = new_event(&build, &payload, ACTOR, cluster, version.creation_timestamp.unwrap_or(now_ms));
    event.id = import_id(&[source, event.kind.as_str(), &version.name, &version.version]);
    check_new(&event, inventory, None)?;
    Ok(event)
}

/// A run's metrics under their driftline names (a finite value each; when two MLflow metrics
/// map to one name, the one listed in the mapping wins).
pub fn metrics(run: &Run, mapping: &Mapping) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let finite = run.data.metrics.iter().filter(|m| m.value.is_finite());
    for m in finite.clone().filter(|m| !mapping.metrics.contains_key(&m.key)) {
        out.insert(m.key.clone(), m.value);
    }
    for m in finite.filter(|m| mapping.metrics.contains_key(&m.key)) {
        out.insert(mapping.metric(&m.key).to_string(), m.value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stored_for_tests as stored;

    fn registered(tags: &[(&str, &str)], description: Option<&str>) -> RegisteredModel {
        RegisteredModel {
            name: "churn".into(),
            creation_timestamp: Some(1_000),
            last_updated_timestamp: Some(2_000),
            description: description.map(str::to_string),
            tags: tags.iter().map(|(k, v)| KeyValue { key: (*k).into(), value: (*v).into() }).collect(),
        }
    }

    fn version(n: &str) -> ModelVersion {
        ModelVersion {
            name: "churn".into(),
            version: n.into(),
            creation_timestamp: Some(3_000),
            last_updated_timestamp: Some(3_000),
            source: Some("runs:/abc/model".into()),
            run_id: Some("abc".into()),
            status: Some("READY".into()),
            tags: vec![KeyValue { key: "validated".into(), value: "yes".into() }],
        }
    }

    fn run() -> Run {
        serde_json::from_str(
            r#"{"info": {"run_id": "abc", "start_time": 10, "end_time": 20, "status": "FINISHED"},
                "data": {"metrics": [{"key": "val_auc", "value": 0.93, "timestamp": 5, "step": 2},
                                     {"key": "train_loss", "value": 0.2}],
                         "params": [{"key": "max_depth", "value": "6"}],
                         "tags": [{"key": "mlflow.user", "value": "root"}, {"key": "team", "value": "risk"}]}}"#,
        )
        .unwrap()
    }

    #[test]
    fn mappings_name_metrics_and_models() {
        let mapping =
            Mapping::parse("metrics:\n  val_auc: roc_auc\nmodels:\n  churn: crn:demo:model/churn\n", "m").unwrap();
        assert_eq!(mapping.metric("val_auc"), "roc_auc");
        assert_eq!(mapping.metric("train_loss"), "train_loss");
        assert_eq!(mapping.build_crn("churn", "3"), "crn:demo:model/churn/v3");
        assert_eq!(Mapping::default().model_crn("fraud"), "crn:mlflow:model/fraud");
        assert_eq!(metrics(&run(), &mapping), BTreeMap::from([("roc_auc".into(), 0.93), ("train_loss".into(), 0.2)]));
        for (yaml, expected) in [
            ("metric:\n  a: b\n", "unknown field `metric`"),
            ("metrics:\n  a: ''\n", "maps to or from nothing"),
            ("metrics: [a]\n", "is not a metric mapping"),
        ] {
            let err = Mapping::parse(yaml, "mapping.yaml").unwrap_err().to_string();
            assert!(err.starts_with("mapping.yaml: ") && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn a_registry_imports_once_and_follows_metadata_changes() {
        let mapping = Mapping::default();
        let model = registered(&[("owner", "ana")], Some("churn classifier"));
        let empty = Inventory::default();
        let (event, outcome) = model_event(&model, &mapping, &empty, None, "http://m", "local", 9).unwrap().unwrap();
        assert_eq!((outcome, event.kind.as_str(), event.time_ms), (Outcome::Created, "model.registered", 1_000));
        assert_eq!(event.payload, r#"{"metadata":{"description":"churn classifier","owner":"ana"}}"#);
        // The same import has the same id (stored once); another registry's, another.
        let (again, _) = model_event(&model, &mapping, &empty, None, "http://m", "local", 99).unwrap().unwrap();
        assert_eq!(again.id, event.id);
        let (other, _) = model_event(&model, &mapping, &empty, None, "http://n", "local", 9).unwrap().unwrap();
        assert_ne!(other.id, event.id);

        let log = stored(vec![event.clone()]);
        let inventory = Inventory::build(&log, &[], None).unwrap();
        assert!(model_event(&model, &mapping, &inventory, None, "http://m", "local", 9).unwrap().is_none());
        let changed = registered(&[("owner", "bo")], Some("churn classifier"));
        let (update, outcome) =
            model_event(&changed, &mapping, &inventory, None, "http://m", "local", 50).unwrap().unwrap();
        assert_eq!((outcome, update.kind.as_str(), update.time_ms), (Outcome::Updated, "metadata.updated", 50));

        // A template the tags do not meet: refused, every field named.
        let template = Template::parse("required:\n  owner: string\n  risk_tier: [low, high]\n", "t").unwrap();
        let err =
            model_event(&model, &mapping, &empty, Some(&template), "http://m", "local", 9).unwrap_err().to_string();
        assert!(
            err.contains("description: is not in the governance template") && err.contains("risk_tier: missing"),
            "{err}"
        );

        // A version: once, with its run.
        assert!(!version_imported(&version("1"), &mapping, &inventory));
        let build = version_event(&version("1"), Some(&run()), &mapping, &inventory, "http://m", "local", 9).unwrap();
        assert_eq!(build.subject, "crn:mlflow:model/churn/v1");
        let payload: Value = serde_json::from_str(&build.payload).unwrap();
        assert_eq!(payload["artifact"], serde_json::json!({"uri": "runs:/abc/model"}));
        assert_eq!(payload["run_id"], "abc");
        assert_eq!(payload["parameters"], serde_json::json!({"max_depth": "6"}));
        assert_eq!(payload["tags"], serde_json::json!({"team": "risk", "validated": "yes"}));
        assert_eq!(payload["metrics"], serde_json::json!({"train_loss": 0.2, "val_auc": 0.93}));
        let mut log = log;
        log.extend(stored(vec![build]).into_iter().map(|mut e| {
            e.seq = 2;
            e
        }));
        let inventory = Inventory::build(&log, &[], None).unwrap();
        assert!(version_imported(&version("1"), &mapping, &inventory));
        let err =
            version_event(&version("1"), None, &mapping, &inventory, "http://m", "local", 9).unwrap_err().to_string();
        assert!(err.contains("registered already"), "{err}");
        // A version of a model that is not registered (its import failed) is refused.
        let stranger = ModelVersion { name: "fraud".into(), ..version("1") };
        let err = version_event(&stranger, None, &mapping, &inventory, "http://m", "local", 9).unwrap_err().to_string();
        assert!(err.contains("crn:mlflow:model/fraud is not registered"), "{err}");
    }
}
