//! The model inventory: a view folded from the governance log, in log order, and from the
//! deployments the stored predictions name. Nothing here is stored or edited; the same log
//! always gives the same inventory. A model that sends predictions but was never registered
//! is in it as `unregistered`, so nothing runs unrecorded.

use std::collections::{BTreeMap, BTreeSet};

use driftline_store::{GovernanceEvent, SeenDeployment};
use serde::Serialize;

use crate::event::{Approval, Artifact, Kind, Payload};
use crate::lineage::Source;
use crate::template::{Metadata, Template};
use crate::Error;

/// Where a model stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Seen in predictions (or named by a build or deployment) but never registered.
    Unregistered,
    /// Registered; no deployment evaluated or promoted yet.
    Registered,
    /// Some deployment evaluated, none promoted and still serving.
    Evaluated,
    /// Some deployment promoted and not retired.
    Deployed,
    /// Every promoted deployment retired.
    Retired,
    /// Deleted; kept in the inventory with its history.
    Deleted,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Unregistered => "unregistered",
            Status::Registered => "registered",
            Status::Evaluated => "evaluated",
            Status::Deployed => "deployed",
            Status::Retired => "retired",
            Status::Deleted => "deleted",
        }
    }
}

/// A deployment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Known from its predictions only.
    Seen,
    Evaluated,
    Promoted,
    Retired,
}

/// One model of the inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub crn: String,
    pub status: Status,
    /// The cluster it was registered in (or first named in).
    pub cluster: Option<String>,
    /// Every cluster with activity about it.
    pub clusters: BTreeSet<String>,
    pub metadata: Metadata,
    /// Required fields of the template it lacks or holds invalid values for (all of them for
    /// an unregistered model).
    pub missing_metadata: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    pub builds: BTreeMap<String, Build>,
    pub deployments: BTreeMap<String, Deployment>,
    /// The tables its builds were trained from (lineage and training data), sorted.
    pub tables: Vec<String>,
    /// Every event about it, its builds and its deployments, in log order.
    pub history: Vec<HistoryEntry>,
}

/// A build of a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Build {
    pub crn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub training_data: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_rows: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<Source>,
    /// The id of the event that registered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_event: Option<uuid::Uuid>,
}

/// A deployment of a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub crn: String,
    pub status: DeploymentStatus,
    /// The build it serves (the last promoted, evaluated or seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_at_ms: Option<i64>,
    /// When the first of its predictions was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen_ms: Option<i64>,
}

/// One event in a model's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub seq: i64,
    pub time_ms: i64,
    pub kind: Kind,
    pub subject: String,
    pub actor: String,
    pub cluster: String,
    /// The event's payload as stored.
    pub payload: serde_json::Value,
}

/// Every model, by CRN.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Inventory {
    pub models: BTreeMap<String, Model>,
    /// Which model each build and deployment belongs to, as the log says.
    #[serde(skip)]
    owners: Owners,
}

/// Which model each build and deployment belongs to, learnt from the log in order: the model
/// an event is about is its subject (model events), its payload's `model` (builds,
/// evaluations, promotions), or, for a retirement that names none, the owner of the retired
/// deployment. The inventory and the sync both ask it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owners(BTreeMap<String, String>);

impl Owners {
    /// The model `payload` (about `subject`) concerns, learning the owner of a build or a
    /// deployment it names; `Err` for a retirement of a deployment no earlier event names.
    pub fn model_of(&mut self, subject: &str, payload: &Payload) -> Result<String, String> {
        let model = match payload {
            Payload::ModelRegistered(_) | Payload::MetadataUpdated(_) | Payload::ModelDeleted(_) => subject.to_string(),
            Payload::BuildRegistered(p) => p.model.clone(),
            Payload::DeploymentEvaluated(p) => p.model.clone(),
            Payload::DeploymentPromoted(p) => p.model.clone(),
            Payload::DeploymentRetired(p) => match (&p.model, self.0.get(subject)) {
                (Some(model), _) => model.clone(),
                (None, Some(owner)) => owner.clone(),
                (None, None) => {
                    return Err(format!("retires {subject}, which no earlier event names; name its model in `model`"))
                }
            },
        };
        if matches!(
            payload,
            Payload::BuildRegistered(_) | Payload::DeploymentEvaluated(_) | Payload::DeploymentPromoted(_)
        ) {
            self.0.insert(subject.to_string(), model.clone());
        }
        Ok(model)
    }

    /// The model a deployment or build belongs to, if the log has said.
    pub fn owner(&self, subject: &str) -> Option<&str> {
        self.0.get(subject).map(String::as_str)
    }
}

impl Inventory {
    /// Folds the log (in log order) and the deployments seen in predictions into the
    /// inventory; `template` decides each model's missing metadata (none without one). A
    /// stored event whose kind or payload is not valid is an error naming it: the log is
    /// written through this crate, so such an event was written by something else.
    pub fn build(
        events: &[GovernanceEvent],
        seen: &[SeenDeployment],
        template: Option<&Template>,
    ) -> Result<Inventory, Error> {
        let mut inventory = Inventory::default();
        for stored in events {
            inventory.apply(stored)?;
        }
        for s in seen {
            let model = inventory.model(&s.model, "");
            model.build(&s.build);
            let deployment = model.deployment(&s.deployment);
            deployment.build.get_or_insert_with(|| s.build.clone());
            let first = deployment.first_seen_ms.map_or(s.first_seen_ms, |f| f.min(s.first_seen_ms));
            deployment.first_seen_ms = Some(first);
        }
        for model in inventory.models.values_mut() {
            let tables: BTreeSet<&String> = model
                .builds
                .values()
                .flat_map(|b| b.training_data.iter().chain(b.lineage.iter().map(|s| &s.table)))
                .collect();
            model.tables = tables.into_iter().cloned().collect();
            model.status = model.derived_status();
            model.missing_metadata = match (template, model.status) {
                (Some(t), Status::Unregistered) => t.required_of_all(),
                (Some(t), _) => t.missing(&model.metadata),
                (None, _) => Vec::new(),
            };
        }
        Ok(inventory)
    }

    /// Folds one more event of the log into the inventory (the deployments seen in predictions,
    /// the missing metadata and the tables are [`Inventory::build`]'s last step).
    pub fn apply(&mut self, stored: &GovernanceEvent) -> Result<(), Error> {
        let e = &stored.event;
        let corrupt = |detail: String| Error::Corrupt { seq: stored.seq, kind: e.kind.clone(), detail };
        let kind = Kind::parse(&e.kind).map_err(|err| corrupt(err.to_string()))?;
        let payload = Payload::parse(kind, &e.payload).map_err(|err| corrupt(err.to_string()))?;
        let model_crn = self.owners.model_of(&e.subject, &payload).map_err(corrupt)?;
        let model = self.model(&model_crn, &e.cluster);
        model.clusters.insert(e.cluster.clone());
        model.history.push(HistoryEntry {
            seq: stored.seq,
            time_ms: e.time_ms,
            kind,
            subject: e.subject.clone(),
            actor: e.actor.clone(),
            cluster: e.cluster.clone(),
            payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
        });
        match payload {
            Payload::ModelRegistered(p) => {
                model.metadata = p.metadata;
                model.registered_at_ms = Some(e.time_ms);
                model.registered_by = Some(e.actor.clone());
                model.cluster = Some(e.cluster.clone());
                if model.status == Status::Unregistered || model.status == Status::Deleted {
                    model.status = Status::Registered;
                }
            }
            Payload::MetadataUpdated(p) => model.metadata = p.metadata,
            Payload::ModelDeleted(_) => model.status = Status::Deleted,
            Payload::BuildRegistered(p) => {
                let build = model.build(&e.subject);
                build.registered_at_ms = Some(e.time_ms);
                build.artifact = p.artifact;
                build.input_schema = p.input_schema;
                build.training_data = p.training_data;
                build.training_rows = p.training_rows;
                build.lineage = p.lineage;
                build.registered_event = Some(e.id);
            }
            Payload::DeploymentEvaluated(p) => {
                model.build(&p.build);
                let deployment = model.deployment(&e.subject);
                if deployment.status == DeploymentStatus::Seen {
                    deployment.status = DeploymentStatus::Evaluated;
                }
                deployment.build = Some(p.build);
                deployment.environment = p.environment.or(deployment.environment.take());
            }
            Payload::DeploymentPromoted(p) => {
                model.build(&p.build);
                let deployment = model.deployment(&e.subject);
                deployment.status = DeploymentStatus::Promoted;
                deployment.build = Some(p.build);
                deployment.environment = Some(p.environment);
                deployment.approvals = p.approvals;
                deployment.promoted_at_ms = Some(e.time_ms);
            }
            Payload::DeploymentRetired(_) => model.deployment(&e.subject).status = DeploymentStatus::Retired,
        }
        model.status = model.derived_status();
        Ok(())
    }

    /// The model a build or deployment belongs to, as the log says.
    pub fn owners_of(&self, subject: &str) -> Option<&str> {
        self.owners.owner(subject)
    }

    /// The model of `crn`, added (unregistered, first named in `cluster`) when new.
    fn model(&mut self, crn: &str, cluster: &str) -> &mut Model {
        self.models.entry(crn.to_string()).or_insert_with(|| Model {
            crn: crn.to_string(),
            status: Status::Unregistered,
            cluster: (!cluster.is_empty()).then(|| cluster.to_string()),
            clusters: BTreeSet::new(),
            metadata: Metadata::new(),
            missing_metadata: Vec::new(),
            registered_at_ms: None,
            registered_by: None,
            builds: BTreeMap::new(),
            deployments: BTreeMap::new(),
            tables: Vec::new(),
            history: Vec::new(),
        })
    }
}

/// A model as a list shows it: without its history, builds counted, deployments named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary<'a> {
    pub crn: &'a str,
    pub status: Status,
    pub cluster: Option<&'a str>,
    pub clusters: &'a BTreeSet<String>,
    pub missing_metadata: &'a [String],
    pub metadata: &'a Metadata,
    pub registered_at_ms: Option<i64>,
    pub builds: usize,
    pub deployments: Vec<&'a str>,
}

impl Model {
    /// The model as a list shows it.
    pub fn summary(&self) -> ModelSummary<'_> {
        ModelSummary {
            crn: &self.crn,
            status: self.status,
            cluster: self.cluster.as_deref(),
            clusters: &self.clusters,
            missing_metadata: &self.missing_metadata,
            metadata: &self.metadata,
            registered_at_ms: self.registered_at_ms,
            builds: self.builds.len(),
            deployments: self.deployments.keys().map(String::as_str).collect(),
        }
    }

    fn build(&mut self, crn: &str) -> &mut Build {
        self.builds.entry(crn.to_string()).or_insert_with(|| Build {
            crn: crn.to_string(),
            registered_at_ms: None,
            artifact: None,
            input_schema: None,
            training_data: Vec::new(),
            training_rows: None,
            lineage: Vec::new(),
            registered_event: None,
        })
    }

    fn deployment(&mut self, crn: &str) -> &mut Deployment {
        self.deployments.entry(crn.to_string()).or_insert_with(|| Deployment {
            crn: crn.to_string(),
            status: DeploymentStatus::Seen,
            build: None,
            environment: None,
            approvals: Vec::new(),
            promoted_at_ms: None,
            first_seen_ms: None,
        })
    }

    /// The status its events and deployments give: deleted stays deleted; a registered model
    /// is deployed while any deployment is promoted, retired when all promoted ones are,
    /// evaluated when one was evaluated.
    fn derived_status(&self) -> Status {
        if self.status == Status::Deleted {
            return Status::Deleted;
        }
        if self.registered_at_ms.is_none() {
            return Status::Unregistered;
        }
        let states: BTreeSet<DeploymentStatus> = self.deployments.values().map(|d| d.status).collect();
        if states.contains(&DeploymentStatus::Promoted) {
            Status::Deployed
        } else if states.contains(&DeploymentStatus::Retired) {
            Status::Retired
        } else if states.contains(&DeploymentStatus::Evaluated) {
            Status::Evaluated
        } else {
            Status::Registered
        }
    }
}

impl PartialOrd for DeploymentStatus {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DeploymentStatus {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{new_event, BuildRegistered, DeploymentPromoted, Ended, ModelRegistered};
    use crate::stored_for_tests as stored;
    use crate::template::parse_metadata;

    #[test]
    fn the_log_and_the_predictions_fold_into_the_inventory() {
        let template = Template::parse("required:\n  owner: string\n  risk_tier: [low, high]\n", "t").unwrap();
        let metadata = parse_metadata("owner: ana\n", "m").unwrap();
        let registered = Payload::ModelRegistered(ModelRegistered { metadata });
        let build = Payload::BuildRegistered(BuildRegistered {
            model: "crn:churn".into(),
            artifact: Some(Artifact { uri: "s3://m/1".into(), sha256: None, size_bytes: None }),
            training_data: vec!["warehouse.customers".into()],
            training_rows: Some(10_000),
            ..Default::default()
        });
        let promoted = Payload::DeploymentPromoted(DeploymentPromoted {
            model: "crn:churn".into(),
            build: "crn:churn/b1".into(),
            environment: "prod".into(),
            approvals: vec![Approval { by: "lee".into(), role: None }],
        });
        let retired = Payload::DeploymentRetired(Ended { model: None, reason: Some("replaced".into()) });
        let events = stored(vec![
            new_event("crn:churn", &registered, "ana", "east", 1),
            new_event("crn:churn/b1", &build, "ana", "east", 2),
            new_event("crn:churn/prod", &promoted, "lee", "west", 3),
            new_event("crn:fraud", &registered, "bo", "east", 4),
            new_event("crn:fraud", &Payload::ModelDeleted(Ended { model: None, reason: None }), "bo", "east", 5),
        ]);
        let seen = vec![
            SeenDeployment {
                deployment: "crn:churn/prod".into(),
                build: "crn:churn/b1".into(),
                model: "crn:churn".into(),
                first_seen_ms: 9,
            },
            SeenDeployment {
                deployment: "crn:shadow/d".into(),
                build: "crn:shadow/b".into(),
                model: "crn:shadow".into(),
                first_seen_ms: 7,
            },
        ];
        let inventory = Inventory::build(&events, &seen, Some(&template)).unwrap();
        let names: Vec<(&str, Status)> = inventory.models.values().map(|m| (m.crn.as_str(), m.status)).collect();
        assert_eq!(
            names,
            [("crn:churn", Status::Deployed), ("crn:fraud", Status::Deleted), ("crn:shadow", Status::Unregistered)]
        );
        let churn = &inventory.models["crn:churn"];
        assert_eq!(churn.missing_metadata, ["risk_tier"]);
        assert_eq!((churn.cluster.as_deref(), churn.clusters.len()), (Some("east"), 2));
        assert_eq!(churn.history.iter().map(|h| h.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let prod = &churn.deployments["crn:churn/prod"];
        assert_eq!((prod.status, prod.first_seen_ms, prod.approvals.len()), (DeploymentStatus::Promoted, Some(9), 1));
        assert_eq!(churn.builds["crn:churn/b1"].training_rows, Some(10_000));
        assert_eq!(inventory.models["crn:shadow"].missing_metadata, ["owner", "risk_tier"]);
        assert!(inventory.models["crn:shadow"].cluster.is_none());

        // Retiring the deployment (its model known from the promotion) retires the model.
        let mut more = events.clone();
        more.extend(stored(vec![new_event("crn:churn/prod", &retired, "lee", "west", 6)]).into_iter().map(|mut e| {
            e.seq = 6;
            e
        }));
        let after = Inventory::build(&more, &seen, Some(&template)).unwrap();
        assert_eq!(after.models["crn:churn"].status, Status::Retired);
        // The same log gives the same inventory.
        assert_eq!(Inventory::build(&more, &seen, Some(&template)).unwrap(), after);
    }

    #[test]
    fn an_event_written_by_something_else_is_named() {
        let mut events =
            stored(vec![new_event("crn:m", &Payload::ModelDeleted(Ended { model: None, reason: None }), "a", "c", 1)]);
        events[0].event.payload = "{\"why\":1}".into();
        let err = Inventory::build(&events, &[], None).unwrap_err().to_string();
        assert!(err.starts_with("governance event 1 (model.deleted) is not valid"), "{err}");
        events[0].event.kind = "model.exploded".into();
        let err = Inventory::build(&events, &[], None).unwrap_err().to_string();
        assert!(err.contains("unknown governance event kind `model.exploded`"), "{err}");
    }
}
