//! The kinds of governance event and their payloads. An event's subject is the CRN it happened
//! to: a model (`model.registered`, `metadata.updated`, `model.deleted`), a build
//! (`build.registered`) or a deployment (`deployment.evaluated`, `deployment.promoted`,
//! `deployment.retired`). Payloads are JSON objects; each kind's fields are below, and a
//! payload with a field its kind does not know is refused, so a typo is not stored as fact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::template::Metadata;
use crate::Error;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "model.registered")]
    ModelRegistered,
    #[serde(rename = "metadata.updated")]
    MetadataUpdated,
    #[serde(rename = "build.registered")]
    BuildRegistered,
    #[serde(rename = "deployment.evaluated")]
    DeploymentEvaluated,
    #[serde(rename = "deployment.promoted")]
    DeploymentPromoted,
    #[serde(rename = "deployment.retired")]
    DeploymentRetired,
    #[serde(rename = "model.deleted")]
    ModelDeleted,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::ModelRegistered,
        Kind::MetadataUpdated,
        Kind::BuildRegistered,
        Kind::DeploymentEvaluated,
        Kind::DeploymentPromoted,
        Kind::DeploymentRetired,
        Kind::ModelDeleted,
    ];

    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ModelRegistered => "model.registered",
            Kind::MetadataUpdated => "metadata.updated",
            Kind::BuildRegistered => "build.registered",
            Kind::DeploymentEvaluated => "deployment.evaluated",
            Kind::DeploymentPromoted => "deployment.promoted",
            Kind::DeploymentRetired => "deployment.retired",
            Kind::ModelDeleted => "model.deleted",
        }
    }

    /// The kind of a stored name.
    pub fn parse(name: &str) -> Result<Kind, Error> {
        Kind::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| Error::Invalid {
            field: "kind".into(),
            message: format!(
                "unknown governance event kind `{name}`; use one of {}",
                Kind::ALL.map(Kind::name).join(", ")
            ),
        })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `model.registered`: a model enters the inventory with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRegistered {
    pub metadata: Metadata,
}

/// `metadata.updated`: a registered model's metadata replaced as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataUpdated {
    pub metadata: Metadata,
}

/// A file a build or an evaluation refers to, with its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub uri: String,
    /// SHA-256, lowercase hex; absent when it was not given (the audit lists such builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// `build.registered`: a trained build of a model, its artifact, schemas and training data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRegistered {
    /// The model's CRN.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// Input fields and their types (`{"tenure_months": "number"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<BTreeMap<String, Value>>,
    /// The tables or files it was trained on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub training_data: Vec<String>,
    /// Rows it was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_rows: Option<u64>,
    /// The tables it was trained from, with the queries that read them (a `lineage.yaml`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<crate::lineage::Source>,
    /// The training run it came from (an MLflow run id, for an imported version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The run's parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The run's metrics, under their driftline names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// `deployment.evaluated`: a build evaluated for a deployment, with its metrics and the files
/// that document it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentEvaluated {
    pub model: String,
    pub build: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Rows it was evaluated on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Artifact>,
}

/// An approval of a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `deployment.promoted`: a build put into an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentPromoted {
    pub model: String,
    pub build: String,
    pub environment: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// `deployment.retired` and `model.deleted`: why, when said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ended {
    /// For a deployment, its model's CRN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A payload of a known kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    ModelRegistered(ModelRegistered),
    MetadataUpdated(MetadataUpdated),
    BuildRegistered(BuildRegistered),
    DeploymentEvaluated(DeploymentEvaluated),
    DeploymentPromoted(DeploymentPromoted),
    DeploymentRetired(Ended),
    ModelDeleted(Ended),
}

impl Payload {
    /// Reads a payload of `kind` from its JSON text; the error names the field at fault.
    pub fn parse(kind: Kind, json: &str) -> Result<Payload, Error> {
        fn read<T: serde::de::DeserializeOwned>(kind: Kind, json: &str) -> Result<T, Error> {
            serde_json::from_str(json).map_err(|e| Error::Invalid {
                field: "payload".into(),
                message: format!("is not a valid {kind} payload ({e})"),
            })
        }
        Ok(match kind {
            Kind::ModelRegistered => Payload::ModelRegistered(read(kind, json)?),
            Kind::MetadataUpdated => Payload::MetadataUpdated(read(kind, json)?),
            Kind::BuildRegistered => Payload::BuildRegistered(read(kind, json)?),
            Kind::DeploymentEvaluated => Payload::DeploymentEvaluated(read(kind, json)?),
            Kind::DeploymentPromoted => Payload::DeploymentPromoted(read(kind, json)?),
            Kind::DeploymentRetired => Payload::DeploymentRetired(read(kind, json)?),
            Kind::ModelDeleted => Payload::ModelDeleted(read(kind, json)?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Payload::ModelRegistered(_) => Kind::ModelRegistered,
            Payload::MetadataUpdated(_) => Kind::MetadataUpdated,
            Payload::BuildRegistered(_) => Kind::BuildRegistered,
            Payload::DeploymentEvaluated(_) => Kind::DeploymentEvaluated,
            Payload::DeploymentPromoted(_) => Kind::DeploymentPromoted,
            Payload::DeploymentRetired(_) => Kind::DeploymentRetired,
            Payload::ModelDeleted(_) => Kind::ModelDeleted,
        }
    }

    /// The payload as the JSON text that is stored and hashed.
    pub fn to_json(&self) -> String {
        let value = match self {
            Payload::ModelRegistered(p) => serde_json::to_string(p),
            Payload::MetadataUpdated(p) => serde_json::to_string(p),
            Payload::BuildRegistered(p) => serde_json::to_string(p),
            Payload::DeploymentEvaluated(p) => serde_json::to_string(p),
            Payload::DeploymentPromoted(p) => serde_json::to_string(p),
            Payload::DeploymentRetired(p) | Payload::ModelDeleted(p) => serde_json::to_string(p),
        };
        value.expect("payloads are plain data")
    }
}

/// Checks a CRN or name given for `field`: non-empty, at most the event format's CRN length,
/// no control characters.
pub fn check_name(field: &str, value: &str) -> Result<(), Error> {
    let problem = if value.trim().is_empty() {
        "must not be empty".to_string()
    } else if value.len() > driftline_core::validate::MAX_CRN_BYTES {
        format!("is {} bytes, over the limit of {}", value.len(), driftline_core::validate::MAX_CRN_BYTES)
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(Error::Invalid { field: field.to_string(), message: problem })
}

/// A new event of `payload`'s kind about `subject`.
pub fn new_event(
    subject: &str,
    payload: &Payload,
    actor: &str,
    cluster: &str,
    time_ms: i64,
) -> driftline_store::NewGovernanceEvent {
    driftline_store::NewGovernanceEvent {
        id: uuid::Uuid::new_v4(),
        kind: payload.kind().name().to_string(),
        subject: subject.to_string(),
        actor: actor.to_string(),
        cluster: cluster.to_string(),
        time_ms,
        payload: payload.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_ones_are_refused() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.name()).unwrap(), kind);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{}\"", kind.name()));
        }
        let err = Kind::parse("model.promoted").unwrap_err().to_string();
        assert!(err.starts_with("kind: unknown governance event kind `model.promoted`"), "{err}");
    }

    #[test]
    fn payloads_round_trip_and_unknown_fields_are_refused() {
        let promoted =
            r#"{"model":"crn:m","build":"crn:b","environment":"prod","approvals":[{"by":"lee","role":"risk"}]}"#;
        let payload = Payload::parse(Kind::DeploymentPromoted, promoted).unwrap();
        assert_eq!(payload.kind(), Kind::DeploymentPromoted);
        assert_eq!(Payload::parse(Kind::DeploymentPromoted, &payload.to_json()).unwrap(), payload);
        let err = Payload::parse(Kind::DeploymentPromoted, r#"{"model":"m","build":"b","environmnet":"prod"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("deployment.promoted payload") && err.contains("environmnet"), "{err}");
        let err = Payload::parse(Kind::BuildRegistered, r#"{"artifact":{"uri":"s3://a"}}"#).unwrap_err().to_string();
        assert!(err.contains("missing field `model`"), "{err}");
        let retired = Payload::parse(Kind::DeploymentRetired, "{}").unwrap();
        assert_eq!(retired.to_json(), "{}");
    }
}
