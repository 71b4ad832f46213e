//! Promotion of a build into an environment: every check made before the
//! `deployment.promoted` event is written, each reported, passed or not. The build must be
//! registered; the environment configured in the template, with its earlier environment
//! already reached by this build and its approvals given; the artifact's SHA-256 equal to the
//! registered one; and the build's input schema compatible with what the deployment serves now
//! (its build's declared schema, or the schema seen in its stored predictions): a removed or
//! retyped field is incompatible, an added field only when it is required.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::event::{Approval, DeploymentPromoted, Kind, Payload};
use crate::inventory::Inventory;
use crate::template::Template;
use crate::Error;

/// What is asked.
#[derive(Debug, Clone)]
pub struct PromotionRequest {
    pub build: String,
    pub deployment: String,
    pub environment: String,
    pub approvals: Vec<Approval>,
    /// The SHA-256 of the artifact file given, computed by the caller; `None` when no artifact
    /// was given.
    pub artifact_sha256: Option<String>,
    /// The input schema seen in the deployment's stored predictions (field → type, and whether
    /// every prediction had it), used when no build declares what the deployment serves.
    pub observed_schema: Option<BTreeMap<String, FieldType>>,
}

/// A field of an input schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldType {
    /// `number`, `string`, `boolean`, `object`, `array`, or a declared type's name.
    pub kind: String,
    pub optional: bool,
}

/// One check and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    pub check: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// One difference between the served schema and the build's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaDifference {
    pub field: String,
    /// `removed`, `retyped`, `added` or `added_optional`.
    pub change: &'static str,
    pub compatible: bool,
    pub detail: String,
}

/// Every check of a promotion, and the schema differences found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromotionReport {
    pub build: String,
    pub deployment: String,
    pub environment: String,
    pub checks: Vec<CheckOutcome>,
    pub schema_differences: Vec<SchemaDifference>,
}

impl PromotionReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Checks a promotion; the report, and the event's payload when every check passed.
pub fn check_promotion(
    inventory: &Inventory,
    template: Option<&Template>,
    request: &PromotionRequest,
) -> Result<(PromotionReport, Option<Payload>), Error> {
    let mut checks = Vec::new();
    let mut check =
        |check: &'static str, passed: bool, detail: String| checks.push(CheckOutcome { check, passed, detail });
    let owner =
        inventory.models.values().find(|m| m.builds.get(&request.build).is_some_and(|b| b.registered_at_ms.is_some()));
    let Some(model) = owner else {
        check(
            "build",
            false,
            format!("{} is not registered; register it with a build.registered event", request.build),
        );
        return Ok((report(request, checks, Vec::new()), None));
    };
    let build = &model.builds[&request.build];
    check("build", true, format!("{} of {}", request.build, model.crn));
    if let Some(d) =
        inventory.models.values().find_map(|m| m.deployments.get(&request.deployment).filter(|_| m.crn != model.crn))
    {
        check("deployment", false, format!("{} serves another model ({})", d.crn, d.build.as_deref().unwrap_or("?")));
    }

    // The environment, the order of environments, the approvals.
    let environments = template.map(|t| &t.environments).filter(|e| !e.is_empty());
    match environments.and_then(|e| e.get(&request.environment)) {
        None => {
            let known: Vec<&str> = environments.map(|e| e.keys().map(String::as_str).collect()).unwrap_or_default();
            check(
                "environment",
                false,
                if known.is_empty() {
                    "no environments are configured; add `environments:` to the governance template".into()
                } else {
                    format!("`{}` is not configured; the environments are {}", request.environment, known.join(", "))
                },
            );
        }
        Some(environment) => {
            check("environment", true, request.environment.clone());
            if let Some(after) = &environment.after {
                let reached = model.history.iter().any(|h| {
                    h.kind == Kind::DeploymentPromoted
                        && h.payload["build"] == request.build.as_str()
                        && h.payload["environment"] == after.as_str()
                });
                check(
                    "order",
                    reached,
                    if reached {
                        format!("promoted to {after} before")
                    } else {
                        format!("{} must be promoted to {after} before {}", request.build, request.environment)
                    },
                );
            }
            let approvers: BTreeSet<&str> = request.approvals.iter().map(|a| a.by.as_str()).collect();
            let enough = approvers.len() as u32 >= environment.approvals;
            check(
                "approvals",
                enough,
                format!(
                    "{} of {} required{}",
                    approvers.len(),
                    environment.approvals,
                    if approvers.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", approvers.into_iter().collect::<Vec<_>>().join(", "))
                    }
                ),
            );
        }
    }

    // The artifact's integrity.
    let registered = build.artifact.as_ref().and_then(|a| a.sha256.as_deref());
    match (registered, &request.artifact_sha256) {
        (None, _) => check("artifact", false, format!("{} was registered without an artifact SHA-256", request.build)),
        (Some(_), None) => {
            check("artifact", false, "give the artifact file to check it against its registered SHA-256".into())
        }
        (Some(expected), Some(actual)) if expected.eq_ignore_ascii_case(actual) => {
            check("artifact", true, format!("SHA-256 {actual} as registered"))
        }
        (Some(expected), Some(actual)) => {
            check("artifact", false, format!("the file's SHA-256 is {actual}, the registered one {expected}"))
        }
    }

    // The input schema against what the deployment serves now.
    let served_build = model.deployments.get(&request.deployment).and_then(|d| d.build.as_deref());
    let served: Option<(BTreeMap<String, FieldType>, String)> = served_build
        .and_then(|b| model.builds.get(b))
        .and_then(|b| Some((declared(b.input_schema.as_ref()?), format!("the input schema of {}", b.crn))))
        .or_else(|| request.observed_schema.clone().map(|s| (s, "the inputs of its stored predictions".to_string())));
    let mut differences = Vec::new();
    match (served, build.input_schema.as_ref()) {
        (None, _) => check("schema", true, format!("{} serves nothing yet", request.deployment)),
        (Some(_), None) => check(
            "schema",
            false,
            format!("{} declares no input schema; register it with input_schema to check it", request.build),
        ),
        (Some((served, source)), Some(new)) => {
            differences = compare_schemas(&served, &declared(new));
            let incompatible = differences.iter().filter(|d| !d.compatible).count();
            check(
                "schema",
                incompatible == 0,
                match (incompatible, differences.len()) {
                    (0, 0) => format!("the same as {source}"),
                    (0, 1) => format!("compatible with {source} (1 compatible difference)"),
                    (0, n) => format!("compatible with {source} ({n} differences, all compatible)"),
                    (1, _) => format!("1 incompatible difference from {source}"),
                    (n, _) => format!("{n} incompatible differences from {source}"),
                },
            );
        }
    }

    let report = report(request, checks, differences);
    let payload = report.passed().then(|| {
        Payload::DeploymentPromoted(DeploymentPromoted {
            model: model.crn.clone(),
            build: request.build.clone(),
            environment: request.environment.clone(),
            approvals: request.approvals.clone(),
        })
    });
    Ok((report, payload))
}

fn report(
    request: &PromotionRequest,
    checks: Vec<CheckOutcome>,
    schema_differences: Vec<SchemaDifference>,
) -> PromotionReport {
    PromotionReport {
        build: request.build.clone(),
        deployment: request.deployment.clone(),
        environment: request.environment.clone(),
        checks,
        schema_differences,
    }
}

/// A declared schema: each field's type as a name (`"number"`), or as an object with `type`
/// and `optional`.
pub fn declared(schema: &BTreeMap<String, Value>) -> BTreeMap<String, FieldType> {
    schema
        .iter()
        .map(|(field, declared)| {
            let (kind, optional) = match declared {
                Value::String(kind) => (kind.clone(), false),
                Value::Object(o) => (
                    o.get("type").and_then(Value::as_str).unwrap_or("any").to_string(),
                    o.get("optional").and_then(Value::as_bool).unwrap_or(false),
                ),
                other => (other.to_string(), false),
            };
            (field.clone(), FieldType { kind, optional })
        })
        .collect()
}

/// The differences from `served` to `new`: a removed or retyped field breaks the callers that
/// send it; an added field is fine when optional.
pub fn compare_schemas(
    served: &BTreeMap<String, FieldType>,
    new: &BTreeMap<String, FieldType>,
) -> Vec<SchemaDifference> {
    let mut differences = Vec::new();
    for (field, old) in served {
        match new.get(field) {
            None => differences.push(SchemaDifference {
                field: field.clone(),
                change: "removed",
                compatible: false,
                detail: format!("{} field removed", old.kind),
            }),
            Some(t) if t.kind != old.kind => differences.push(SchemaDifference {
                field: field.clone(),
                change: "retyped",
                compatible: false,
                detail: format!("{} became {}", old.kind, t.kind),
            }),
            Some(_) => {}
        }
    }
    for (field, t) in new.iter().filter(|(f, _)| !served.contains_key(*f)) {
        differences.push(SchemaDifference {
            field: field.clone(),
            change: if t.optional { "added_optional" } else { "added" },
            compatible: t.optional,
            detail: if t.optional {
                format!("optional {} field added", t.kind)
            } else {
                format!("required {} field added; callers do not send it yet", t.kind)
            },
        });
    }
    differences
}

/// The SHA-256 (lowercase hex) of a file, read in blocks; `path` may be a `file://` URI.
pub fn sha256_file(path: &str) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let local = path.strip_prefix("file://").unwrap_or(path);
    let fail =
        |e: std::io::Error| Error::Invalid { field: "artifact".into(), message: format!("cannot read {local}: {e}") };
    let mut file = std::fs::File::open(local).map_err(fail)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer).map_err(fail)? {
            0 => return Ok(hex::encode(hasher.finalize())),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// The schema of predictions' inputs: each field's JSON type (a field of mixed types is
/// `mixed`), optional unless every input had it.
pub fn observed_schema<'a>(
    inputs: impl Iterator<Item = &'a serde_json::Map<String, Value>>,
) -> BTreeMap<String, FieldType> {
    let mut seen: BTreeMap<String, (BTreeSet<&'static str>, usize)> = BTreeMap::new();
    let mut count = 0;
    for input in inputs {
        count += 1;
        for (field, value) in input {
            let kind = match value {
                Value::Null => continue,
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let entry = seen.entry(field.clone()).or_default();
            entry.0.insert(kind);
            entry.1 += 1;
        }
    }
    seen.into_iter()
        .map(|(field, (kinds, n))| {
            let kind =
                if kinds.len() == 1 { kinds.into_iter().next().unwrap_or("mixed").to_string() } else { "mixed".into() };
            (field, FieldType { kind, optional: n < count })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{new_event, Artifact, BuildRegistered, ModelRegistered};
    use crate::stored_for_tests as stored;

    fn build(sha256: Option<&str>, schema: Value) -> Payload {
        Payload::BuildRegistered(BuildRegistered {
            model: "crn:m".into(),
            artifact: Some(Artifact {
                uri: "file:///m.pkl".into(),
                sha256: sha256.map(String::from),
                size_bytes: None,
            }),
            input_schema: serde_json::from_value(schema).unwrap(),
            ..Default::default()
        })
    }

    fn request(build: &str, environment: &str, approvers: &[&str], sha: Option<&str>) -> PromotionRequest {
        PromotionRequest {
            build: build.into(),
            deployment: "crn:m/prod".into(),
            environment: environment.into(),
            approvals: approvers.iter().map(|a| Approval { by: (*a).into(), role: None }).collect(),
            artifact_sha256: sha.map(String::from),
            observed_schema: None,
        }
    }

    fn failed(report: &PromotionReport) -> Vec<&str> {
        report.checks.iter().filter(|c| !c.passed).map(|c| c.check).collect()
    }

    #[test]
    fn every_check_is_made_and_a_failure_writes_nothing() {
        let template = Template::parse(
            "environments:\n  staging:\n    approvals: 1\n  prod:\n    approvals: 2\n    after: staging\n",
            "t",
        )
        .unwrap();
        let registered = Payload::ModelRegistered(ModelRegistered { metadata: Default::default() });
        let mut events = vec![
            new_event("crn:m", &registered, "a", "c", 1),
            new_event(
                "crn:m/b1",
                &build(Some("aa11"), serde_json::json!({"tenure": "number", "plan": "string"})),
                "a",
                "c",
                2,
            ),
            new_event(
                "crn:m/b2",
                &build(
                    Some("bb22"),
                    serde_json::json!({"tenure": "string", "region": {"type": "string", "optional": true}, "age": "number"}),
                ),
                "a",
                "c",
                3,
            ),
        ];
        let inventory = Inventory::build(&stored(events.clone()), &[], Some(&template)).unwrap();

        // Straight to prod: order and approvals fail; a wrong file fails the artifact check.
        let (report, payload) =
            check_promotion(&inventory, Some(&template), &request("crn:m/b1", "prod", &["kim"], Some("ffff"))).unwrap();
        assert!(payload.is_none());
        assert_eq!(failed(&report), ["order", "approvals", "artifact"]);
        assert_eq!(report.checks.iter().find(|c| c.check == "approvals").unwrap().detail, "1 of 2 required (kim)");

        // Staging first: all pass (the deployment serves nothing yet).
        let (report, payload) =
            check_promotion(&inventory, Some(&template), &request("crn:m/b1", "staging", &["kim"], Some("AA11")))
                .unwrap();
        assert!(report.passed(), "{report:?}");
        let payload = payload.expect("passed");
        events.push(new_event("crn:m/prod", &payload, "a", "c", 4));
        let inventory = Inventory::build(&stored(events.clone()), &[], Some(&template)).unwrap();
        let (report, _) =
            check_promotion(&inventory, Some(&template), &request("crn:m/b1", "prod", &["kim", "lee"], Some("aa11")))
                .unwrap();
        assert!(report.passed(), "{report:?}");

        // b2 against b1 served there: tenure retyped, plan removed, age added required, region optional.
        let (report, _) =
            check_promotion(&inventory, Some(&template), &request("crn:m/b2", "staging", &["kim"], Some("bb22")))
                .unwrap();
        assert_eq!(failed(&report), ["schema"]);
        let changes: Vec<(&str, &str, bool)> =
            report.schema_differences.iter().map(|d| (d.field.as_str(), d.change, d.compatible)).collect();
        assert_eq!(
            changes,
            [
                ("plan", "removed", false),
                ("tenure", "retyped", false),
                ("age", "added", false),
                ("region", "added_optional", true)
            ]
        );

        // Unknown builds and environments are named.
        let (report, _) =
            check_promotion(&inventory, Some(&template), &request("crn:m/b9", "prod", &[], None)).unwrap();
        assert_eq!(failed(&report), ["build"]);
        let (report, _) = check_promotion(&inventory, None, &request("crn:m/b1", "qa", &[], Some("aa11"))).unwrap();
        assert!(report
            .checks
            .iter()
            .any(|c| c.check == "environment" && c.detail.contains("no environments are configured")));
        let (report, _) =
            check_promotion(&inventory, Some(&template), &request("crn:m/b1", "qa", &[], Some("aa11"))).unwrap();
        assert!(report.checks.iter().any(|c| c.detail == "`qa` is not configured; the environments are prod, staging"));
    }

    #[test]
    fn files_hash_as_sha256_by_path_or_file_uri() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.pkl");
        std::fs::write(&path, "abc").unwrap();
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(path.to_str().unwrap()).unwrap(), expected);
        assert_eq!(sha256_file(&format!("file://{}", path.display())).unwrap(), expected);
        let err = sha256_file("/nowhere/m.pkl").unwrap_err().to_string();
        assert!(err.starts_with("artifact: cannot read /nowhere/m.pkl"), "{err}");
    }

    #[test]
    fn schemas_seen_in_predictions() {
        let inputs: Vec<serde_json::Map<String, Value>> = [
            serde_json::json!({"tenure": 3, "plan": "basic", "note": null}),
            serde_json::json!({"tenure": 4, "plan": "pro", "promo": true}),
            serde_json::json!({"tenure": "5", "plan": "pro"}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let schema = observed_schema(inputs.iter());
        let shown: Vec<(&str, &str, bool)> =
            schema.iter().map(|(f, t)| (f.as_str(), t.kind.as_str(), t.optional)).collect();
        assert_eq!(shown, [("plan", "string", false), ("promo", "boolean", true), ("tenure", "mixed", false)]);
    }
}
