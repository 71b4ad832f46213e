//! Lineage: the tables a build was trained from, read at build registration from a
//! `lineage.yaml` in the shape model platforms write (model name to a list of source tables,
//! each a name or a map with `table:`, optionally `query:` and `namespace:`), and asked the
//! other way round (which builds and deployments use a table). Exported as OpenLineage run
//! events, one per build, for the tools that read that standard.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::inventory::{DeploymentStatus, Inventory};
use crate::Error;

/// The namespace of a table that names none, and of driftline's own jobs and models in
/// OpenLineage events.
pub const NAMESPACE: &str = "driftline";

/// The OpenLineage specification the exported events follow.
pub const OPENLINEAGE_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SQL_FACET_SCHEMA: &str = "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet";

/// One table a build was trained from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub table: String,
    /// The query that read it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Where the table lives (a warehouse, a database URI); [`NAMESPACE`] when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Reads the sources of `model` from a lineage file: the entry named by the model's CRN or by
/// its last segment (`churn` for `crn:demo:model/churn`). `source` names the file in errors.
pub fn parse(yaml: &str, source: &str, model: &str) -> Result<Vec<Source>, Error> {
    let invalid = |message: String| Error::Invalid { field: source.to_string(), message };
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| invalid(format!("is not YAML ({e})")))?;
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(invalid("must map model names to lists of source tables (`churn: [warehouse.customers]`)".into()));
    };
    let short = model.rsplit(['/', ':']).next().unwrap_or(model);
    let names: Vec<String> = map.keys().map(|k| k.as_str().map_or_else(|| format!("{k:?}"), str::to_string)).collect();
    let entry = map
        .iter()
        .find(|(k, _)| k.as_str() == Some(model))
        .or_else(|| map.iter().find(|(k, _)| k.as_str() == Some(short)));
    let Some((name, list)) = entry else {
        return Err(invalid(format!(
            "has no entry for {model} (nor `{short}`); its entries are {}",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        )));
    };
    let name = name.as_str().unwrap_or_default();
    let serde_yaml::Value::Sequence(list) = list else {
        return Err(invalid(format!("`{name}` must be a list of source tables")));
    };
    let mut sources = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = format!("`{name}[{i}]`");
        let source = match item {
            serde_yaml::Value::String(table) => Source { table: table.clone(), query: None, namespace: None },
            serde_yaml::Value::Mapping(_) => serde_yaml::from_value(item.clone()).map_err(|e| {
                invalid(format!("{at}: {e}; write a table name or a map with `table:`, `query:` and `namespace:`"))
            })?,
            _ => return Err(invalid(format!("{at} must be a table name or a map with `table:`"))),
        };
        for (field, value) in [("table", Some(&source.table)), ("namespace", source.namespace.as_ref())] {
            if let Some(value) = value {
                crate::event::check_name(field, value).map_err(|e| match e {
                    Error::Invalid { field, message } => invalid(format!("`{name}[{i}].{field}`: {message}")),
                    other => other,
                })?;
            }
        }
        sources.push(source);
    }
    Ok(sources)
}

/// A build that used a table, with the deployments serving it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableUse {
    pub model: String,
    pub build: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_at_ms: Option<i64>,
    pub deployments: Vec<DeploymentUse>,
}

/// A deployment of a build that used a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentUse {
    pub crn: String,
    pub status: DeploymentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// Every build that names `table` in its lineage or its training data, with the deployments
/// that serve it, in model then build order.
pub fn uses_of(inventory: &Inventory, table: &str) -> Vec<TableUse> {
    let mut uses = Vec::new();
    for model in inventory.models.values() {
        for build in model.builds.values() {
            let from_lineage = build.lineage.iter().find(|s| s.table == table);
            if from_lineage.is_none() && !build.training_data.iter().any(|t| t == table) {
                continue;
            }
            let deployments = model
                .deployments
                .values()
                .filter(|d| d.build.as_deref() == Some(build.crn.as_str()))
                .map(|d| DeploymentUse { crn: d.crn.clone(), status: d.status, environment: d.environment.clone() })
                .collect();
            uses.push(TableUse {
                model: model.crn.clone(),
                build: build.crn.clone(),
                query: from_lineage.and_then(|s| s.query.clone()),
                registered_at_ms: build.registered_at_ms,
                deployments,
            });
        }
    }
    uses
}

/// One OpenLineage run event per registered build that names a table: the build is the job
/// (in the `driftline` namespace), its tables the inputs, its model the output; a build whose
/// sources have queries carries them as the job's `sql` facet. `producer` is a URI naming
/// this software.
pub fn openlineage(inventory: &Inventory, producer: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for model in inventory.models.values() {
        for build in model.builds.values() {
            let (Some(at), Some(run_id)) = (build.registered_at_ms, build.registered_event) else { continue };
            let mut inputs: BTreeMap<(String, String), ()> = BTreeMap::new();
            for s in &build.lineage {
                inputs.insert((s.namespace.clone().unwrap_or_else(|| NAMESPACE.into()), s.table.clone()), ());
            }
            for t in &build.training_data {
                inputs.insert((NAMESPACE.into(), t.clone()), ());
            }
            if inputs.is_empty() {
                continue;
            }
            let queries: Vec<&str> = build.lineage.iter().filter_map(|s| s.query.as_deref()).collect();
            let mut job = json!({ "namespace": NAMESPACE, "name": build.crn });
            if !queries.is_empty() {
                job["facets"] = json!({ "sql": {
                    "_producer": producer,
                    "_schemaURL": SQL_FACET_SCHEMA,
                    "query": queries.join(";\n"),
                }});
            }
            events.push(json!({
                "eventType": "COMPLETE",
                "eventTime": chrono::DateTime::from_timestamp_millis(at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                "run": { "runId": run_id },
                "job": job,
                "inputs": inputs.keys().map(|(ns, name)| json!({ "namespace": ns, "name": name })).collect::<Vec<_>>(),
                "outputs": [{ "namespace": NAMESPACE, "name": model.crn }],
                "producer": producer,
                "schemaURL": OPENLINEAGE_SCHEMA,
            }));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{new_event, BuildRegistered, DeploymentPromoted, ModelRegistered, Payload};
    use crate::stored_for_tests as stored;
    use crate::template::Metadata;

    const LINEAGE: &str = "churn:\n  - warehouse.customers\n  - table: warehouse.events\n    \
                           query: SELECT customer_id, count(*) FROM warehouse.events GROUP BY 1\n    \
                           namespace: postgres://wh:5432\nfraud:\n  - payments\n";

    #[test]
    fn a_models_sources_are_found_by_its_crn_or_its_last_segment() {
        let sources = parse(LINEAGE, "lineage.yaml", "crn:demo:model/churn").unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0], Source { table: "warehouse.customers".into(), query: None, namespace: None });
        assert_eq!(sources[1].namespace.as_deref(), Some("postgres://wh:5432"));
        assert!(sources[1].query.as_deref().unwrap().starts_with("SELECT customer_id"));
        assert_eq!(parse("crn:x:model/a: [t]\n", "l", "crn:x:model/a").unwrap()[0].table, "t");
        for (yaml, model, expected) in [
            (
                LINEAGE,
                "crn:demo:model/spam",
                "has no entry for crn:demo:model/spam (nor `spam`); its entries are churn, fraud",
            ),
            ("churn: warehouse.customers\n", "churn", "`churn` must be a list of source tables"),
            ("churn:\n  - tabel: x\n", "churn", "`churn[0]`: unknown field `tabel`"),
            ("churn:\n  - [a]\n", "churn", "`churn[0]` must be a table name"),
            ("churn:\n  - ''\n", "churn", "`churn[0].table`: must not be empty"),
            ("- churn\n", "churn", "must map model names to lists"),
        ] {
            let err = parse(yaml, "lineage.yaml", model).unwrap_err().to_string();
            assert!(err.starts_with("lineage.yaml: ") && err.contains(expected), "{err}");
        }
    }

    fn log() -> Inventory {
        let registered = Payload::ModelRegistered(ModelRegistered { metadata: Metadata::new() });
        let build = |crn: &str, lineage: Vec<Source>, training: Vec<String>| {
            let payload = Payload::BuildRegistered(BuildRegistered {
                model: "crn:churn".into(),
                training_data: training,
                lineage,
                ..Default::default()
            });
            new_event(crn, &payload, "ana", "east", 1_795_000_000_000)
        };
        let promoted = Payload::DeploymentPromoted(DeploymentPromoted {
            model: "crn:churn".into(),
            build: "crn:churn/b2".into(),
            environment: "prod".into(),
            approvals: vec![],
        });
        let events = stored(vec![
            new_event("crn:churn", &registered, "ana", "east", 1),
            build("crn:churn/b1", vec![], vec!["warehouse.customers".into()]),
            build("crn:churn/b2", parse(LINEAGE, "l", "churn").unwrap(), vec![]),
            build("crn:churn/b3", vec![], vec![]),
            new_event("crn:churn/prod", &promoted, "lee", "east", 2),
        ]);
        Inventory::build(&events, &[], None).unwrap()
    }

    #[test]
    fn a_table_leads_to_the_builds_and_deployments_that_use_it() {
        let inventory = log();
        let uses = uses_of(&inventory, "warehouse.customers");
        assert_eq!(uses.iter().map(|u| u.build.as_str()).collect::<Vec<_>>(), ["crn:churn/b1", "crn:churn/b2"]);
        assert!(uses[0].deployments.is_empty());
        assert_eq!(uses[1].deployments[0].crn, "crn:churn/prod");
        assert_eq!(uses[1].deployments[0].status, DeploymentStatus::Promoted);
        let events = uses_of(&inventory, "warehouse.events");
        assert!(events[0].query.as_deref().unwrap().contains("GROUP BY 1"));
        assert!(uses_of(&inventory, "nowhere").is_empty());
        assert_eq!(inventory.models["crn:churn"].tables, ["warehouse.customers", "warehouse.events"]);
    }

    #[test]
    fn builds_export_as_openlineage_run_events() {
        let inventory = log();
        let events = openlineage(&inventory, "urn:driftline:0.1.0");
        // b3 names no table, so two events.
        assert_eq!(events.len(), 2);
        let b2 = &events[1];
        assert_eq!(b2["eventType"], "COMPLETE");
        assert_eq!(b2["eventTime"], "2026-11-18T11:06:40.000Z");
        assert_eq!(
            b2["job"],
            json!({"namespace": "driftline", "name": "crn:churn/b2", "facets": {"sql": {
            "_producer": "urn:driftline:0.1.0", "_schemaURL": SQL_FACET_SCHEMA,
            "query": "SELECT customer_id, count(*) FROM warehouse.events GROUP BY 1"}}})
        );
        assert_eq!(
            b2["inputs"],
            json!([{"namespace": "driftline", "name": "warehouse.customers"},
                   {"namespace": "postgres://wh:5432", "name": "warehouse.events"}])
        );
        assert_eq!(b2["outputs"], json!([{"namespace": "driftline", "name": "crn:churn"}]));
        assert_eq!(b2["schemaURL"], OPENLINEAGE_SCHEMA);
        let run_id = b2["run"]["runId"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(run_id).is_ok());
        assert_ne!(events[0]["run"]["runId"], b2["run"]["runId"]);
        assert!(events[0]["job"].get("facets").is_none());
    }
}
