//! `driftline models` and `driftline governance`: the model inventory, folded from the
//! governance log, and the log's chain check.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use driftline_core::time::{date_string, now_ms};
use driftline_drift::job::spec::JobSpec;
use driftline_govern::audit::{self, Audit, Check, Facts, JobState};
use driftline_govern::chain::{self, ChainReport};
use driftline_govern::event::{check_name, new_event, MetadataUpdated, ModelRegistered, Payload};
use driftline_govern::inventory::{Inventory, Model, Status};
use driftline_govern::log::{check_new, read_log};
use driftline_govern::template::{parse_metadata, Metadata, Template};
use driftline_govern::Error as GovernError;

use crate::cli::StoreArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Register a model with its metadata (a flat YAML map). Refused, naming every missing or
    /// invalid field, when the governance template is not met.
    Register(ChangeArgs),
    /// Replace a registered model's metadata, checked against the template as at registration.
    Update(ChangeArgs),
    /// Every model: those registered and those only seen in predictions (`unregistered`).
    List {
        /// table or json (an array: crn, status, cluster, missing_metadata, …).
        #[arg(long, env = "DRIFTLINE_MODELS_FORMAT", value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        template: TemplateArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the audit report (`audit.html` and `audit.json`) into a directory and print its
    /// summary: models unregistered or missing metadata, promotions without approval, builds
    /// without a checksum, deployments without a drift job or without recent predictions,
    /// and models whose latest drift run alerted.
    Audit {
        /// The directory to write into (made when missing).
        #[arg(long, env = "DRIFTLINE_AUDIT_OUTPUT")]
        output: PathBuf,
        /// A serving deployment with no prediction for this many days is reported as orphaned.
        #[arg(long, env = "DRIFTLINE_AUDIT_ORPHANED_DAYS", default_value_t = 7)]
        orphaned_days: u32,
        #[command(flatten)]
        template: TemplateArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// One model: its metadata, builds, deployments and history.
    Show {
        /// The model's CRN.
        #[arg(env = "DRIFTLINE_MODEL_CRN")]
        crn: String,
        /// table or json.
        #[arg(long, env = "DRIFTLINE_MODELS_FORMAT", value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        template: TemplateArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GovernanceCommand {
    /// Check that every cluster's chain of governance events is whole (no event edited,
    /// removed or reordered); exits 1 when one is broken, naming where.
    Verify {
        /// table or json.
        #[arg(long, env = "DRIFTLINE_GOVERNANCE_FORMAT", value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

/// A registration or a metadata change.
#[derive(Debug, Args)]
pub(crate) struct ChangeArgs {
    /// The model's CRN.
    #[arg(env = "DRIFTLINE_MODEL_CRN")]
    crn: String,
    /// The metadata: a flat YAML map of the template's fields.
    #[arg(long, env = "DRIFTLINE_MODEL_METADATA")]
    metadata: PathBuf,
    #[command(flatten)]
    who: WhoArgs,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// Who acts, and in which cluster.
#[derive(Debug, Clone, Args)]
pub(crate) struct WhoArgs {
    /// Who is acting, as the log records it; the login name ($USER) by default.
    #[arg(long, env = "DRIFTLINE_ACTOR")]
    actor: Option<String>,
    /// This cluster's name; each cluster's events form their own chain.
    #[arg(long, env = "DRIFTLINE_CLUSTER", default_value = "local")]
    cluster: String,
}

impl WhoArgs {
    fn actor(&self) -> anyhow::Result<String> {
        let actor = self.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
        check_name("--actor", &actor)?;
        check_name("--cluster", &self.cluster)?;
        Ok(actor)
    }
}

/// Where the governance template is.
#[derive(Debug, Clone, Args)]
pub(crate) struct TemplateArgs {
    /// The governance template (YAML: `required:` and `optional:` fields, each a type or a list
    /// of allowed values); `<data-dir>/governance.yaml` when not given. Without one, no field
    /// is required.
    #[arg(long, env = "DRIFTLINE_GOVERNANCE_TEMPLATE")]
    governance_template: Option<PathBuf>,
}

impl TemplateArgs {
    /// The template file given, if one was.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        self.governance_template.clone()
    }

    /// The template given, or the data directory's when it has one.
    fn load(&self, store: &StoreArgs) -> anyhow::Result<Option<Template>> {
        let (path, given) = match &self.governance_template {
            Some(path) => (path.clone(), true),
            None => (store.data_dir.join("governance.yaml"), false),
        };
        if !given && !path.exists() {
            return Ok(None);
        }
        Template::load(&path).map(Some).map_err(|e| anyhow::anyhow!("--governance-template {e}"))
    }
}

pub(crate) async fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Register(args) => change(args, true).await,
        ModelsCommand::Update(args) => change(args, false).await,
        ModelsCommand::List { format, template, store } => {
            let template = template.load(&store)?;
            let inventory = inventory(&store, template.as_ref()).await?;
            let models: Vec<&Model> = inventory.models.values().collect();
            match format {
                Format::Json => {
                    let summaries: Vec<_> = models.iter().map(|m| m.summary()).collect();
                    println!("{}", serde_json::to_string_pretty(&summaries)?)
                }
                Format::Table => print!("{}", list_table(&models)),
            }
            Ok(())
        }
        ModelsCommand::Audit { output, orphaned_days, template, store } => {
            let template = template.load(&store)?;
            let audit = audit_of(&store, template.as_ref(), orphaned_days).await?;
            std::fs::create_dir_all(&output).with_context(|| format!("--output: cannot make {}", output.display()))?;
            let (json_path, html_path) = (output.join("audit.json"), output.join("audit.html"));
            let generated = driftline_drift::format::time(audit.generated_at_ms);
            std::fs::write(&json_path, serde_json::to_string_pretty(&audit)? + "\n")
                .with_context(|| format!("--output: cannot write {}", json_path.display()))?;
            std::fs::write(&html_path, audit::html(&audit, &generated))
                .with_context(|| format!("--output: cannot write {}", html_path.display()))?;
            print!("{}", audit_text(&audit));
            println!("wrote {} and {}", html_path.display(), json_path.display());
            Ok(())
        }
        ModelsCommand::Show { crn, format, template, store } => {
            let template = template.load(&store)?;
            let inventory = inventory(&store, template.as_ref()).await?;
            let Some(model) = inventory.models.get(&crn) else {
                anyhow::bail!("no model {crn} is registered or seen in predictions; see `driftline models list`");
            };
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(model)?),
                Format::Table => print!("{}", show_text(model)),
            }
            Ok(())
        }
    }
}

pub(crate) async fn governance(command: GovernanceCommand) -> anyhow::Result<()> {
    let GovernanceCommand::Verify { format, store } = command;
    let opened = store.open().await?;
    let events = read_log(opened.as_ref()).await;
    let heads = opened.governance_heads().await;
    opened.close().await;
    let report = chain::verify(&events?, &heads?);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", verify_text(&report)),
    }
    if !report.is_whole() {
        std::process::exit(1);
    }
    Ok(())
}

/// The audit of the store's inventory, its drift jobs and its deployments' latest predictions.
async fn audit_of(store: &StoreArgs, template: Option<&Template>, orphaned_days: u32) -> anyhow::Result<Audit> {
    let opened = store.open().await?;
    let result = async {
        let log = read_log(opened.as_ref()).await?;
        let seen = opened.seen_deployments().await?;
        let inventory = Inventory::build(&log, &seen, template)?;
        let mut facts =
            Facts { now_ms: now_ms(), orphaned_after_ms: i64::from(orphaned_days) * 86_400_000, ..Default::default() };
        for job in opened.jobs().await? {
            let spec = match JobSpec::from_stored(&job) {
                Ok(spec) => spec,
                Err(e) => {
                    eprintln!("note: drift job {} is left out of the audit: {e}", job.name);
                    continue;
                }
            };
            let runs = opened.runs(&job.name, 10).await?;
            let latest = runs.into_iter().find_map(|r| {
                let finished = r.finished_at_ms?;
                Some((r.status.as_str().to_string(), finished, run_findings(r.summary.as_deref())))
            });
            facts.jobs.push(JobState { job: job.name, deployment: spec.deployment, latest });
        }
        for model in inventory.models.values() {
            for deployment in model.deployments.keys() {
                if let Some(last) = opened.last_prediction_ms(deployment).await? {
                    facts.last_prediction_ms.insert(deployment.clone(), last);
                }
            }
        }
        Ok::<_, anyhow::Error>(audit::audit(&inventory, &facts))
    }
    .await;
    opened.close().await;
    result
}

/// What a run's stored summary says it found, in words: the drifted features, or the error.
fn run_findings(summary: Option<&str>) -> String {
    let Some(summary) = summary.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return String::new();
    };
    let drifted: Vec<&str> =
        summary["drifted"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    if !drifted.is_empty() {
        return format!("drifted: {}", drifted.join(", "));
    }
    summary["error"].as_str().map(str::to_string).unwrap_or_default()
}

/// The audit's summary for the terminal.
fn audit_text(audit: &Audit) -> String {
    let s = &audit.summary;
    let mut out = format!(
        "audit ready: {:.0}% ({} of {} models without findings; {} registered, {} unregistered, {} deployed)\n",
        s.readiness * 100.0,
        s.ready,
        s.models,
        s.registered,
        s.unregistered,
        s.deployed
    );
    let mut rows = vec![["CHECK", "FINDINGS"].map(String::from)];
    rows.extend(
        Check::ALL.iter().map(|c| [c.title().to_string(), s.findings.get(c).copied().unwrap_or(0).to_string()]),
    );
    out.push_str(&driftline_drift::report::text::text_table(&rows));
    out
}

/// Registers a model (`register`) or replaces its metadata.
async fn change(args: ChangeArgs, register: bool) -> anyhow::Result<()> {
    let ChangeArgs { crn, metadata, who, template, store } = args;
    check_name("CRN", &crn)?;
    let actor = who.actor()?;
    let template = template.load(&store)?;
    let metadata = read_metadata(&metadata)?;
    if let Some(template) = &template {
        let problems = template.check(&metadata);
        if !problems.is_empty() {
            let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            anyhow::bail!(
                "{crn} was not {}: its metadata does not meet the governance template ({} field{}):\n{}",
                if register { "registered" } else { "updated" },
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                lines.join("\n")
            );
        }
    }
    let opened = store.open().await?;
    let result = async {
        let inventory = Inventory::build(&read_log(opened.as_ref()).await?, &[], template.as_ref())?;
        let registered = inventory.models.get(&crn).is_some_and(|m| m.status != Status::Unregistered);
        let payload = if register {
            Payload::ModelRegistered(ModelRegistered { metadata })
        } else {
            Payload::MetadataUpdated(MetadataUpdated { metadata })
        };
        let event = new_event(&crn, &payload, &actor, &who.cluster, now_ms());
        match check_new(&event, &inventory, template.as_ref()) {
            Err(GovernError::Conflict { .. }) if register && registered => {
                let m = &inventory.models[&crn];
                anyhow::bail!(
                    "{crn} is registered already (by {} on {}); change its metadata with `driftline models update`",
                    m.registered_by.as_deref().unwrap_or("?"),
                    m.registered_at_ms.map(date_string).unwrap_or_default()
                )
            }
            Err(GovernError::Conflict { .. }) if !registered => {
                anyhow::bail!("{crn} is not registered; register it with `driftline models register`")
            }
            Err(GovernError::Conflict { .. }) => {
                anyhow::bail!("{crn} was deleted; register it again with `driftline models register`")
            }
            other => other?,
        }
        opened.append_governance(std::slice::from_ref(&event)).await?;
        Ok::<_, anyhow::Error>(event)
    }
    .await;
    opened.close().await;
    let event = result?;
    println!(
        "{} {crn} ({}, event {} in cluster {})",
        if register { "registered" } else { "updated" },
        event.kind,
        event.id,
        event.cluster
    );
    if template.is_none() {
        eprintln!(
            "note: no governance template (<data-dir>/governance.yaml or --governance-template); no field was required"
        );
    }
    Ok(())
}

fn read_metadata(path: &Path) -> anyhow::Result<Metadata> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--metadata: cannot read {}", path.display()))?;
    Ok(parse_metadata(&text, &format!("--metadata {}", path.display()))?)
}

/// The inventory from the store's log and the deployments its predictions name.
async fn inventory(store: &StoreArgs, template: Option<&Template>) -> anyhow::Result<Inventory> {
    let opened = store.open().await?;
    let events = read_log(opened.as_ref()).await;
    let seen = opened.seen_deployments().await;
    opened.close().await;
    Ok(Inventory::build(&events?, &seen?, template)?)
}

fn list_table(models: &[&Model]) -> String {
    let mut rows = vec![["MODEL", "STATUS", "CLUSTER", "DEPLOYMENTS", "MISSING METADATA"].map(String::from)];
    rows.extend(models.iter().map(|m| {
        [
            m.crn.clone(),
            m.status.name().to_string(),
            m.cluster.clone().unwrap_or_else(|| "-".into()),
            m.deployments.len().to_string(),
            if m.missing_metadata.is_empty() { "-".into() } else { m.missing_metadata.join(", ") },
        ]
    }));
    driftline_drift::report::text::text_table(&rows)
}

fn show_text(m: &Model) -> String {
    let mut out = format!("{}  {}", m.crn, m.status.name());
    if let Some(cluster) = &m.cluster {
        out.push_str(&format!("  (cluster {cluster})"));
    }
    out.push('\n');
    if let (Some(at), Some(by)) = (m.registered_at_ms, &m.registered_by) {
        out.push_str(&format!("registered {} by {by}\n", date_string(at)));
    }
    if !m.missing_metadata.is_empty() {
        out.push_str(&format!("missing metadata: {}\n", m.missing_metadata.join(", ")));
    }
    if !m.metadata.is_empty() {
        out.push_str("\nmetadata\n");
        for (field, value) in &m.metadata {
            let shown = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            out.push_str(&format!("  {field}: {shown}\n"));
        }
    }
    if !m.deployments.is_empty() {
        let mut rows = vec![["DEPLOYMENT", "STATUS", "BUILD", "ENVIRONMENT", "FIRST SEEN"].map(String::from)];
        rows.extend(m.deployments.values().map(|d| {
            [
                d.crn.clone(),
                serde_json::to_value(d.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                d.build.clone().unwrap_or_else(|| "-".into()),
                d.environment.clone().unwrap_or_else(|| "-".into()),
                d.first_seen_ms.map(date_string).unwrap_or_else(|| "-".into()),
            ]
        }));
        out.push('\n');
        out.push_str(&driftline_drift::report::text::text_table(&rows));
    }
    if !m.history.is_empty() {
        let mut rows = vec![["#", "TIME", "EVENT", "SUBJECT", "ACTOR", "CLUSTER"].map(String::from)];
        rows.extend(m.history.iter().map(|h| {
            [
                h.seq.to_string(),
                date_string(h.time_ms),
                h.kind.name().to_string(),
                h.subject.clone(),
                h.actor.clone(),
                h.cluster.clone(),
            ]
        }));
        out.push('\n');
        out.push_str(&driftline_drift::report::text::text_table(&rows));
    }
    out
}

fn verify_text(report: &ChainReport) -> String {
    let mut out = String::new();
    for (cluster, chain) in &report.clusters {
        out.push_str(&format!("cluster {cluster}: {}, last hash {}\n", events(chain.events), chain.last_hash));
    }
    if report.is_whole() {
        out.push_str(&format!("every chain is whole ({})\n", events(report.events)));
    } else {
        for b in &report.breaks {
            match b.seq {
                Some(seq) => out.push_str(&format!("BROKEN cluster {}: event {seq} {}\n", b.cluster, b.problem)),
                None => out.push_str(&format!("BROKEN cluster {}: {}\n", b.cluster, b.problem)),
            }
        }
    }
    out
}

/// "1 event", "3 events".
fn events(n: usize) -> String {
    if n == 1 {
        "1 event".into()
    } else {
        format!("{n} events")
    }
}
