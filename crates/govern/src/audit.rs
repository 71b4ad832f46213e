//! The audit report: what an auditor asks of the inventory, each answer a list of findings
//! with the model and the subject it is about, and summary counts for a manager's view of
//! audit readiness. Computed from the inventory, the drift jobs (by deployment, with their
//! latest run) and the latest prediction of each deployment; written as JSON and as one
//! self-contained HTML page.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inventory::{DeploymentStatus, Inventory, Status};

/// What the audit checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The model sends predictions but was never registered.
    Unregistered,
    /// Required metadata missing or invalid under the current template.
    MissingMetadata,
    /// A deployment promoted without any approval recorded.
    PromotedWithoutApproval,
    /// A build registered without its artifact's SHA-256.
    BuildWithoutChecksum,
    /// A serving deployment that no drift job watches.
    NoDriftJob,
    /// A serving deployment with no prediction for the orphan period.
    Orphaned,
    /// The latest run of a drift job of the model's deployment found drift.
    DriftAlert,
}

impl Check {
    pub const ALL: [Check; 7] = [
        Check::Unregistered,
        Check::MissingMetadata,
        Check::PromotedWithoutApproval,
        Check::BuildWithoutChecksum,
        Check::NoDriftJob,
        Check::Orphaned,
        Check::DriftAlert,
    ];

    /// A heading for people.
    pub fn title(self) -> &'static str {
        match self {
            Check::Unregistered => "Models sending predictions, never registered",
            Check::MissingMetadata => "Models missing required metadata",
            Check::PromotedWithoutApproval => "Deployments promoted without approval",
            Check::BuildWithoutChecksum => "Builds without an artifact checksum",
            Check::NoDriftJob => "Deployments without a drift job",
            Check::Orphaned => "Deployments with no recent predictions",
            Check::DriftAlert => "Models whose latest drift run alerted",
        }
    }
}

/// A drift job as the audit needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub job: String,
    pub deployment: String,
    /// Its latest finished run: status (`drift`, `warning`, `ok`, …), when it finished, and what
    /// it found, in words (may be empty).
    pub latest: Option<(String, i64, String)>,
}

/// What else the audit reads besides the inventory.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub jobs: Vec<JobState>,
    /// The start time of each deployment's latest stored prediction.
    pub last_prediction_ms: BTreeMap<String, i64>,
    /// Now, ms since the epoch.
    pub now_ms: i64,
    /// A serving deployment without a prediction for this long is orphaned.
    pub orphaned_after_ms: i64,
}

/// One thing an auditor should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Check,
    pub model: String,
    /// The model, build or deployment it is about.
    pub subject: String,
    pub detail: String,
}

/// Counts for the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub models: usize,
    pub registered: usize,
    pub unregistered: usize,
    pub deployed: usize,
    /// Findings per check (every check named, zero included).
    pub findings: BTreeMap<Check, usize>,
    /// Models (deleted ones left out) without any finding.
    pub ready: usize,
    /// `ready` over the models not deleted, from 0 to 1 (1 with none).
    pub readiness: f64,
}

/// The audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audit {
    pub generated_at_ms: i64,
    pub orphaned_after_ms: i64,
    pub summary: Summary,
    pub findings: Vec<Finding>,
}

/// Audits the inventory.
pub fn audit(inventory: &Inventory, facts: &Facts) -> Audit {
    let mut findings = Vec::new();
    let mut jobs_by_deployment: BTreeMap<&str, Vec<&JobState>> = BTreeMap::new();
    for job in &facts.jobs {
        jobs_by_deployment.entry(job.deployment.as_str()).or_default().push(job);
    }
    for model in inventory.models.values().filter(|m| m.status != Status::Deleted) {
        let mut find = |check: Check, subject: &str, detail: String| {
            findings.push(Finding { check, model: model.crn.clone(), subject: subject.to_string(), detail });
        };
        if model.status == Status::Unregistered {
            let deployments: Vec<&str> = model.deployments.keys().map(String::as_str).collect();
            find(Check::Unregistered, &model.crn, format!("predictions from {}", deployments.join(", ")));
        } else if !model.missing_metadata.is_empty() {
            find(
                Check::MissingMetadata,
                &model.crn,
                format!("missing or invalid: {}", model.missing_metadata.join(", ")),
            );
        }
        for build in model.builds.values() {
            if build.registered_at_ms.is_some() && build.artifact.as_ref().is_none_or(|a| a.sha256.is_none()) {
                let detail = match &build.artifact {
                    Some(a) => format!("artifact {} has no SHA-256", a.uri),
                    None => "no artifact registered".to_string(),
                };
                find(Check::BuildWithoutChecksum, &build.crn, detail);
            }
        }
        for d in model.deployments.values() {
            if d.status == DeploymentStatus::Promoted && d.approvals.is_empty() {
                let to = d.environment.as_deref().unwrap_or("?");
                find(Check::PromotedWithoutApproval, &d.crn, format!("promoted to {to} with no approval recorded"));
            }
            // A deployment serves until it is retired.
            if d.status == DeploymentStatus::Retired {
                continue;
            }
            let jobs = jobs_by_deployment.get(d.crn.as_str()).map(Vec::as_slice).unwrap_or_default();
            if jobs.is_empty() {
                find(Check::NoDriftJob, &d.crn, "no drift job watches it".to_string());
            }
            match facts.last_prediction_ms.get(&d.crn) {
                Some(last) if facts.now_ms - last <= facts.orphaned_after_ms => {}
                Some(last) => find(
                    Check::Orphaned,
                    &d.crn,
                    format!("latest prediction {} days ago", (facts.now_ms - last) / 86_400_000),
                ),
                None => find(Check::Orphaned, &d.crn, "no stored prediction".to_string()),
            }
            for job in jobs {
                if let Some((status, finished_ms, summary)) = &job.latest {
                    if status == "drift" || status == "warning" {
                        let day = chrono::DateTime::from_timestamp_millis(*finished_ms)
                            .map_or_else(|| finished_ms.to_string(), |t| t.format("%Y-%m-%d").to_string());
                        let mut detail = format!("job {}: {status} (run finished {day})", job.job);
                        if !summary.is_empty() {
                            detail.push_str(&format!("; {summary}"));
                        }
                        find(Check::DriftAlert, &d.crn, detail);
                    }
                }
            }
        }
    }
    findings.sort_by(|a, b| (a.check, &a.model, &a.subject).cmp(&(b.check, &b.model, &b.subject)));
    let live: Vec<_> = inventory.models.values().filter(|m| m.status != Status::Deleted).collect();
    let with_findings: std::collections::BTreeSet<&str> = findings.iter().map(|f| f.model.as_str()).collect();
    let ready = live.iter().filter(|m| !with_findings.contains(m.crn.as_str())).count();
    let summary = Summary {
        models: live.len(),
        registered: live.iter().filter(|m| m.status != Status::Unregistered).count(),
        unregistered: live.iter().filter(|m| m.status == Status::Unregistered).count(),
        deployed: live.iter().filter(|m| m.status == Status::Deployed).count(),
        findings: Check::ALL.iter().map(|c| (*c, findings.iter().filter(|f| f.check == *c).count())).collect(),
        ready,
        readiness: if live.is_empty() { 1.0 } else { ready as f64 / live.len() as f64 },
    };
    Audit { generated_at_ms: facts.now_ms, orphaned_after_ms: facts.orphaned_after_ms, summary, findings }
}

/// The audit as one self-contained HTML page (inline CSS, no scripts, nothing fetched);
/// `generated` is the generation time as text.
pub fn html(audit: &Audit, generated: &str) -> String {
    let s = &audit.summary;
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>driftline model audit</title><style>\
         body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1f2328;padding:0 1rem}\
         h1{font-size:1.5rem;margin-bottom:.2rem}.sub{color:#59636e;margin-top:0}\
         .cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1.5rem 0}\
         .card{border:1px solid #d1d9e0;border-radius:6px;padding:.6rem .9rem;min-width:9rem}\
         .card b{display:block;font-size:1.4rem}.card.bad b{color:#cf222e}.card.good b{color:#1a7f37}\
         table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem;font-size:.9rem}\
         th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #d1d9e0;vertical-align:top}\
         th{background:#f6f8fa}h2{font-size:1.1rem;margin-top:1.8rem}.none{color:#1a7f37}\
         code{font-size:.85rem}</style></head><body>",
    );
    page.push_str("<h1>Model audit</h1>");
    page.push_str(&format!(
        "<p class=\"sub\">generated {} · orphaned after {} days without predictions</p>",
        escape(generated),
        audit.orphaned_after_ms / 86_400_000
    ));
    page.push_str("<div class=\"cards\">");
    let readiness = format!("{:.0}%", s.readiness * 100.0);
    let class = if s.readiness >= 1.0 { "good" } else { "bad" };
    page.push_str(&format!(
        "<div class=\"card {class}\"><b>{readiness}</b>audit ready ({} of {} models)</div>",
        s.ready, s.models
    ));
    for (label, n) in
        [("models", s.models), ("registered", s.registered), ("unregistered", s.unregistered), ("deployed", s.deployed)]
    {
        page.push_str(&format!("<div class=\"card\"><b>{n}</b>{label}</div>"));
    }
    for check in Check::ALL {
        let n = s.findings.get(&check).copied().unwrap_or(0);
        let class = if n == 0 { "good" } else { "bad" };
        page.push_str(&format!(
            "<div class=\"card {class}\"><b>{n}</b>{}</div>",
            escape(&check.title().to_lowercase())
        ));
    }
    page.push_str("</div>");
    // The checks with findings first, each with its table; then the clean ones in one line.
    let mut clean = Vec::new();
    for check in Check::ALL {
        let rows: Vec<&Finding> = audit.findings.iter().filter(|f| f.check == check).collect();
        if rows.is_empty() {
            clean.push(escape(&check.title().to_lowercase()));
            continue;
        }
        page.push_str(&format!("<h2>{} ({})</h2>", escape(check.title()), rows.len()));
        page.push_str("<table><tr><th>model</th><th>subject</th><th>finding</th></tr>");
        for f in rows {
            page.push_str(&format!(
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&f.model),
                escape(&f.subject),
                escape(&f.detail)
            ));
        }
        page.push_str("</table>");
    }
    if !clean.is_empty() {
        page.push_str(&format!("<h2>Nothing found</h2><p class=\"none\">{}.</p>", clean.join("; ")));
    }
    page.push_str("</body></html>\n");
    page
}

/// Text safe inside HTML elements and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{new_event, Approval, Artifact, BuildRegistered, DeploymentPromoted, ModelRegistered, Payload};
    use crate::stored_for_tests as stored;
    use crate::template::{parse_metadata, Template};
    use driftline_store::SeenDeployment;

    const DAY: i64 = 86_400_000;

    fn promoted(model: &str, build: &str, approvals: Vec<Approval>) -> Payload {
        Payload::DeploymentPromoted(DeploymentPromoted {
            model: model.into(),
            build: build.into(),
            environment: "prod".into(),
            approvals,
        })
    }

    fn build(model: &str, sha256: Option<&str>) -> Payload {
        Payload::BuildRegistered(BuildRegistered {
            model: model.into(),
            artifact: Some(Artifact { uri: "s3://m/x".into(), sha256: sha256.map(String::from), size_bytes: None }),
            ..Default::default()
        })
    }

    #[test]
    fn each_check_finds_what_it_names_and_only_that() {
        let template = Template::parse("required:\n  owner: string\n", "t").unwrap();
        let complete =
            Payload::ModelRegistered(ModelRegistered { metadata: parse_metadata("owner: ana\n", "m").unwrap() });
        let bare = Payload::ModelRegistered(ModelRegistered { metadata: Default::default() });
        let lee = vec![Approval { by: "lee".into(), role: None }];
        let events = stored(vec![
            // A model that passes every check.
            new_event("crn:good", &complete, "a", "c", 1),
            new_event("crn:good/b", &build("crn:good", Some("ab")), "a", "c", 2),
            new_event("crn:good/prod", &promoted("crn:good", "crn:good/b", lee.clone()), "a", "c", 3),
            // One finding of each kind on the others.
            new_event("crn:bare", &bare, "a", "c", 4),
            new_event("crn:risky", &complete, "a", "c", 5),
            new_event("crn:risky/b", &build("crn:risky", None), "a", "c", 6),
            new_event("crn:risky/prod", &promoted("crn:risky", "crn:risky/b", vec![]), "a", "c", 7),
        ]);
        let seen = vec![
            SeenDeployment {
                deployment: "crn:good/prod".into(),
                build: "crn:good/b".into(),
                model: "crn:good".into(),
                first_seen_ms: 1,
            },
            SeenDeployment {
                deployment: "crn:shadow/d".into(),
                build: "crn:shadow/b".into(),
                model: "crn:shadow".into(),
                first_seen_ms: 1,
            },
        ];
        let inventory = Inventory::build(&events, &seen, Some(&template)).unwrap();
        let now = 100 * DAY;
        let facts = Facts {
            jobs: vec![
                JobState {
                    job: "good".into(),
                    deployment: "crn:good/prod".into(),
                    latest: Some(("ok".into(), now, "{}".into())),
                },
                JobState {
                    job: "risky".into(),
                    deployment: "crn:risky/prod".into(),
                    latest: Some(("drift".into(), now, "3 <features> drifted".into())),
                },
            ],
            last_prediction_ms: [
                ("crn:good/prod".to_string(), now - DAY),
                ("crn:risky/prod".to_string(), now - 30 * DAY),
            ]
            .into_iter()
            .collect(),
            now_ms: now,
            orphaned_after_ms: 7 * DAY,
        };
        let audit = audit(&inventory, &facts);
        let found: Vec<(Check, &str)> = audit.findings.iter().map(|f| (f.check, f.subject.as_str())).collect();
        assert_eq!(
            found,
            [
                (Check::Unregistered, "crn:shadow"),
                (Check::MissingMetadata, "crn:bare"),
                (Check::PromotedWithoutApproval, "crn:risky/prod"),
                (Check::BuildWithoutChecksum, "crn:risky/b"),
                (Check::NoDriftJob, "crn:shadow/d"),
                (Check::Orphaned, "crn:risky/prod"),
                (Check::Orphaned, "crn:shadow/d"),
                (Check::DriftAlert, "crn:risky/prod"),
            ]
        );
        let orphaned = &audit.findings[5];
        assert_eq!(orphaned.detail, "latest prediction 30 days ago");
        let s = &audit.summary;
        assert_eq!((s.models, s.registered, s.unregistered, s.deployed, s.ready), (4, 3, 1, 2, 1));
        assert_eq!(s.findings[&Check::Orphaned], 2);
        assert_eq!(s.readiness, 0.25);

        let page = html(&audit, "2026-11-30 <now>");
        assert!(page.contains("<b>25%</b>audit ready (1 of 4 models)"), "{page}");
        assert!(page.contains("2026-11-30 &lt;now&gt;") && !page.contains("<now>"));
        assert!(page.contains("job risky: drift (run finished 1970-04-11); 3 &lt;features&gt; drifted"), "{page}");
        assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));
        // Every check found something here: a section each, none listed as clean.
        assert_eq!(page.matches("<h2>").count(), Check::ALL.len());
        assert!(page.contains("<h2>Deployments with no recent predictions (2)</h2>"), "{page}");
        assert!(!page.contains("Nothing found"));
    }

    #[test]
    fn an_empty_inventory_is_ready() {
        let audit = audit(&Inventory::default(), &Facts { now_ms: 5, orphaned_after_ms: DAY, ..Default::default() });
        assert!(audit.findings.is_empty());
        assert_eq!((audit.summary.readiness, audit.summary.models), (1.0, 0));
        assert_eq!(audit.summary.findings.len(), Check::ALL.len());
        let page = html(&audit, "now");
        assert!(!page.contains("<table>") && page.contains("<h2>Nothing found</h2>"), "{page}");
        assert!(page.contains("models sending predictions, never registered; models missing required metadata;"));
    }
}
