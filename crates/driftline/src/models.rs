//! `driftline models` and `driftline governance`: the model inventory, folded from the
//! governance log, and the log's chain check.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use driftline_core::time::{date_string, now_ms};
use driftline_drift::job::spec::JobSpec;
use driftline_govern::audit::{self, Audit, Check, Facts, JobState};
use driftline_govern::chain::{self, ChainReport};
use driftline_govern::event::{
    check_name, new_event, Approval, Artifact, BuildRegistered, DeploymentEvaluated, Ended, MetadataUpdated,
    ModelRegistered, Payload,
};
use driftline_govern::inventory::{Inventory, Model, Status};
use driftline_govern::lineage::{self, TableUse};
use driftline_govern::log::{check_new, read_log};
use driftline_govern::promote::{check_promotion, observed_schema, sha256_file, PromotionReport, PromotionRequest};
use driftline_govern::template::{parse_metadata, Metadata, Template};
use driftline_govern::Error as GovernError;
use driftline_store::{NewGovernanceEvent, Selection, Store, Window};
use futures::{StreamExt, TryStreamExt};

use crate::cli::StoreArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Register a model with its metadata (a flat YAML map). Refused, naming every missing or
    /// invalid field, when the governance template is not met.
    Register(ChangeArgs),
    /// Replace a registered model's metadata, checked against the template as at registration.
    Update(ChangeArgs),
    /// Register a build of a registered model: its artifact (a local file, whose SHA-256 is
    /// computed, or a URI with --sha256), its input schema and its training data.
    Build {
        /// The build's CRN.
        #[arg(env = "DRIFTLINE_BUILD_CRN")]
        crn: String,
        /// The model it is a build of.
        #[arg(long, env = "DRIFTLINE_MODEL_CRN")]
        model: String,
        /// The artifact: a local file or `file://` URI (hashed here), or any URI with --sha256.
        #[arg(long, env = "DRIFTLINE_BUILD_ARTIFACT")]
        artifact: Option<String>,
        /// The artifact's SHA-256, for an artifact that is not a local file.
        #[arg(long, env = "DRIFTLINE_BUILD_SHA256")]
        sha256: Option<String>,
        /// The input schema: a JSON object from field to type (`"number"`), or to
        /// `{"type": …, "optional": true}`.
        #[arg(long, env = "DRIFTLINE_BUILD_INPUT_SCHEMA")]
        input_schema: Option<PathBuf>,
        /// A table or file it was trained on (repeat for several).
        #[arg(long, env = "DRIFTLINE_BUILD_TRAINING_DATA", value_delimiter = ',')]
        training_data: Vec<String>,
        /// A lineage file: a YAML map from model name (its CRN or last segment) to the tables
        /// it was trained from, each a name or `{table:, query:, namespace:}`.
        #[arg(long, env = "DRIFTLINE_BUILD_LINEAGE")]
        lineage: Option<PathBuf>,
        /// Rows it was trained on.
        #[arg(long, env = "DRIFTLINE_BUILD_TRAINING_ROWS")]
        training_rows: Option<u64>,
        #[command(flatten)]
        who: WhoArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Promote a build into an environment (configured under `environments:` in the template,
    /// with the approvals each needs). Every check is made and reported: the build, the
    /// environment and its order, the approvals, the artifact's SHA-256, the input schema
    /// against what the deployment serves. A failed check writes nothing (exit 1).
    Promote {
        /// The build's CRN.
        #[arg(env = "DRIFTLINE_BUILD_CRN")]
        build: String,
        /// The environment.
        #[arg(long = "to", env = "DRIFTLINE_PROMOTE_TO")]
        environment: String,
        /// The deployment that will serve it.
        #[arg(long, env = "DRIFTLINE_DEPLOYMENT_CRN")]
        deployment: String,
        /// The artifact file (or `file://` URI) to check against the registered SHA-256; the
        /// registered `file://` artifact when not given.
        #[arg(long, env = "DRIFTLINE_PROMOTE_ARTIFACT")]
        artifact: Option<String>,
        /// An approval, `NAME` or `NAME:ROLE` (repeat for several).
        #[arg(long = "approved-by", env = "DRIFTLINE_PROMOTE_APPROVED_BY", value_delimiter = ',')]
        approvals: Vec<String>,
        /// table or json (the report of every check).
        #[arg(long, env = "DRIFTLINE_MODELS_FORMAT", value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        who: WhoArgs,
        #[command(flatten)]
        template: TemplateArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Retire a deployment: it no longer serves.
    Retire {
        /// The deployment's CRN.
        #[arg(env = "DRIFTLINE_DEPLOYMENT_CRN")]
        deployment: String,
        /// Why.
        #[arg(long, env = "DRIFTLINE_RETIRE_REASON")]
        reason: Option<String>,
        #[command(flatten)]
        who: WhoArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Record an evaluation of a registered build for a deployment: its metrics, the rows it
    /// was evaluated on and the files that document it (each hashed).
    Evaluate {
        /// The deployment the build is evaluated for.
        #[arg(env = "DRIFTLINE_DEPLOYMENT_CRN")]
        deployment: String,
        /// The build's CRN.
        #[arg(long, env = "DRIFTLINE_BUILD_CRN")]
        build: String,
        /// The environment it was evaluated in.
        #[arg(long, env = "DRIFTLINE_EVALUATE_ENVIRONMENT")]
        environment: Option<String>,
        /// A metric, `NAME=VALUE` (repeat for several).
        #[arg(long = "metric", env = "DRIFTLINE_EVALUATE_METRICS", value_delimiter = ',')]
        metrics: Vec<String>,
        /// Rows it was evaluated on.
        #[arg(long, env = "DRIFTLINE_EVALUATE_ROWS")]
        evaluation_rows: Option<u64>,
        /// A file documenting the evaluation (a report, a model card); its SHA-256 and size
        /// are recorded (repeat for several).
        #[arg(long = "attachment", env = "DRIFTLINE_EVALUATE_ATTACHMENTS", value_delimiter = ',')]
        attachments: Vec<PathBuf>,
        #[command(flatten)]
        who: WhoArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a model: it leaves service but stays in the inventory, with its history, as
    /// `deleted` (the log is never edited).
    Delete {
        /// The model's CRN.
        #[arg(env = "DRIFTLINE_MODEL_CRN")]
        crn: String,
        /// Why.
        #[arg(long, env = "DRIFTLINE_DELETE_REASON")]
        reason: Option<String>,
        #[command(flatten)]
        who: WhoArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The lineage of builds: with --table, the builds and deployments that use a table;
    /// without, every table and its builds. `--format openlineage` prints OpenLineage run
    /// events, one JSON object per line.
    Lineage {
        /// One table.
        #[arg(long, env = "DRIFTLINE_LINEAGE_TABLE")]
        table: Option<String>,
        /// table, json or openlineage.
        #[arg(long, env = "DRIFTLINE_LINEAGE_FORMAT", value_enum, default_value = "table")]
        format: LineageFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
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
    /// On a primary: each remote cluster that syncs to it, with the events it has still to
    /// send, its lag (how long ago the oldest of them happened) and when it was last heard from.
    Clusters {
        /// table or json.
        #[arg(long, env = "DRIFTLINE_GOVERNANCE_FORMAT", value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
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

/// How to print lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LineageFormat {
    Table,
    Json,
    /// OpenLineage run events, one per line.
    Openlineage,
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
    pub(crate) fn load(&self, store: &StoreArgs) -> anyhow::Result<Option<Template>> {
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
        ModelsCommand::Build {
            crn,
            model,
            artifact,
            sha256,
            input_schema,
            training_data,
            lineage,
            training_rows,
            who,
            store,
        } => {
            check_name("CRN", &crn)?;
            let actor = who.actor()?;
            let artifact = match (artifact, sha256) {
                (None, None) => None,
                (None, Some(_)) => {
                    anyhow::bail!("--sha256 is the artifact's checksum; give the artifact with --artifact")
                }
                (Some(uri), Some(sha)) => {
                    anyhow::ensure!(
                        sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                        "--sha256: `{sha}` is not a SHA-256 (64 hex digits)"
                    );
                    Some(Artifact { uri, sha256: Some(sha.to_ascii_lowercase()), size_bytes: None })
                }
                (Some(path), None) => Some(local_artifact("--artifact", &path)?),
            };
            let input_schema = match input_schema {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("--input-schema: cannot read {}", path.display()))?;
                    Some(serde_json::from_str(&text).map_err(|e| {
                        anyhow::anyhow!("--input-schema {}: not a JSON object of field types ({e})", path.display())
                    })?)
                }
            };
            let lineage = match lineage {
                None => Vec::new(),
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("--lineage: cannot read {}", path.display()))?;
                    lineage::parse(&text, &format!("--lineage {}", path.display()), &model)?
                }
            };
            let payload = Payload::BuildRegistered(BuildRegistered {
                model,
                artifact,
                input_schema,
                output_schema: None,
                training_data,
                training_rows,
                lineage,
                ..Default::default()
            });
            let event = append_checked(&store, None, new_event(&crn, &payload, &actor, &who.cluster, now_ms())).await?;
            println!("registered build {crn} (event {} in cluster {})", event.id, event.cluster);
            Ok(())
        }
        ModelsCommand::Promote {
            build,
            environment,
            deployment,
            artifact,
            approvals,
            format,
            who,
            template,
            store,
        } => {
            check_name("--deployment", &deployment)?;
            let actor = who.actor()?;
            let template = template.load(&store)?;
            let approvals = approvals
                .iter()
                .map(|a| match a.split_once(':') {
                    Some((by, role)) => Approval { by: by.trim().into(), role: Some(role.trim().into()) },
                    None => Approval { by: a.trim().into(), role: None },
                })
                .collect::<Vec<_>>();
            if let Some(empty) = approvals.iter().find(|a| a.by.is_empty()) {
                anyhow::bail!(
                    "--approved-by: `{}` names no one; write NAME or NAME:ROLE",
                    empty.role.as_deref().unwrap_or("")
                );
            }
            let (report, event) = with_store(&store, async |opened| {
                let (report, payload) =
                    promote(opened, template.as_ref(), &build, &deployment, &environment, approvals, artifact).await?;
                let Some(payload) = payload else { return Ok((report, None)) };
                let event = new_event(&deployment, &payload, &actor, &who.cluster, now_ms());
                opened.append_governance(std::slice::from_ref(&event)).await?;
                Ok((report, Some(event)))
            })
            .await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => print!("{}", promotion_text(&report)),
            }
            match event {
                Some(event) => println!("promoted {build} to {environment} as {deployment} (event {})", event.id),
                None => {
                    eprintln!("{build} was not promoted: a check failed; nothing was written");
                    std::process::exit(1);
                }
            }
            Ok(())
        }
        ModelsCommand::Retire { deployment, reason, who, store } => {
            let actor = who.actor()?;
            let event = with_store(&store, async |opened| {
                let inventory = Inventory::build(&read_log(opened).await?, &[], None)?;
                let Some(model) = inventory.models.values().find(|m| m.deployments.contains_key(&deployment)) else {
                    anyhow::bail!(
                        "{deployment} is not a deployment the governance log knows; see `driftline models show`"
                    );
                };
                let payload = Payload::DeploymentRetired(Ended { model: Some(model.crn.clone()), reason });
                let event = new_event(&deployment, &payload, &actor, &who.cluster, now_ms());
                opened.append_governance(std::slice::from_ref(&event)).await?;
                Ok(event)
            })
            .await?;
            println!("retired {deployment} (event {})", event.id);
            Ok(())
        }
        ModelsCommand::Evaluate {
            deployment,
            build,
            environment,
            metrics,
            evaluation_rows,
            attachments,
            who,
            store,
        } => {
            check_name("DEPLOYMENT", &deployment)?;
            let actor = who.actor()?;
            let metrics = metrics.iter().map(|m| parse_metric(m)).collect::<anyhow::Result<_>>()?;
            let attachments = attachments
                .iter()
                .map(|path| local_artifact("--attachment", &path.display().to_string()))
                .collect::<anyhow::Result<_>>()?;
            let event = with_store(&store, async |opened| {
                let inventory = Inventory::build(&read_log(opened).await?, &[], None)?;
                let Some(model) = inventory.models.values().find(|m| m.builds.contains_key(&build)) else {
                    anyhow::bail!(
                        "{build} is not a build the governance log knows; register it with `driftline models build`"
                    );
                };
                let payload = Payload::DeploymentEvaluated(DeploymentEvaluated {
                    model: model.crn.clone(),
                    build: build.clone(),
                    environment,
                    metrics,
                    evaluation_rows,
                    attachments,
                });
                let event = new_event(&deployment, &payload, &actor, &who.cluster, now_ms());
                check_new(&event, &inventory, None)?;
                opened.append_governance(std::slice::from_ref(&event)).await?;
                Ok(event)
            })
            .await?;
            println!("evaluated {build} for {deployment} (event {} in cluster {})", event.id, event.cluster);
            Ok(())
        }
        ModelsCommand::Delete { crn, reason, who, store } => {
            let actor = who.actor()?;
            let payload = Payload::ModelDeleted(Ended { model: None, reason });
            let event = append_checked(&store, None, new_event(&crn, &payload, &actor, &who.cluster, now_ms())).await?;
            println!("deleted {crn} (event {}); it stays in the inventory as deleted, with its history", event.id);
            Ok(())
        }
        ModelsCommand::Lineage { table, format, store } => {
            let inventory = inventory(&store, None).await?;
            match (format, table) {
                (LineageFormat::Openlineage, table) => {
                    let producer = format!("urn:driftline:{}", env!("CARGO_PKG_VERSION"));
                    for event in lineage::openlineage(&inventory, &producer) {
                        let uses_table = |list: &serde_json::Value| {
                            list.as_array().is_some_and(|l| l.iter().any(|d| d["name"].as_str() == table.as_deref()))
                        };
                        if table.is_none() || uses_table(&event["inputs"]) {
                            println!("{}", serde_json::to_string(&event)?);
                        }
                    }
                }
                (LineageFormat::Json, Some(table)) => {
                    let uses = lineage::uses_of(&inventory, &table);
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "table": table, "uses": uses }))?);
                }
                (LineageFormat::Table, Some(table)) => {
                    print!("{}", lineage_text(&lineage::uses_of(&inventory, &table)))
                }
                (format, None) => {
                    let tables: std::collections::BTreeSet<&String> =
                        inventory.models.values().flat_map(|m| &m.tables).collect();
                    let all: Vec<_> = tables
                        .into_iter()
                        .map(|t| serde_json::json!({ "table": t, "uses": lineage::uses_of(&inventory, t) }))
                        .collect();
                    match format {
                        LineageFormat::Json => println!("{}", serde_json::to_string_pretty(&all)?),
                        _ => {
                            let mut rows = vec![["TABLE", "BUILDS", "DEPLOYMENTS"].map(String::from)];
                            for t in &all {
                                let uses = t["uses"].as_array().map(Vec::as_slice).unwrap_or_default();
                                let deployments: usize =
                                    uses.iter().map(|u| u["deployments"].as_array().map_or(0, Vec::len)).sum();
                                rows.push([
                                    t["table"].as_str().unwrap_or_default().to_string(),
                                    uses.len().to_string(),
                                    deployments.to_string(),
                                ]);
                            }
                            print!("{}", driftline_drift::report::text::text_table(&rows));
                        }
                    }
                }
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
    let (format, store) = match command {
        GovernanceCommand::Verify { format, store } => (format, store),
        GovernanceCommand::Clusters { format, store } => {
            let remotes = with_store(&store, async |opened| Ok(opened.remotes().await?)).await?;
            let now = now_ms();
            match format {
                Format::Json => {
                    let shown: Vec<_> = remotes.iter().map(|r| crate::governance_api::remote_json(r, now)).collect();
                    println!("{}", serde_json::to_string_pretty(&shown)?);
                }
                Format::Table => print!("{}", clusters_text(&remotes, now)),
            }
            return Ok(());
        }
    };
    let report = with_store(&store, async |opened| {
        Ok(chain::verify(&read_log(opened).await?, &opened.governance_heads().await?))
    })
    .await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", verify_text(&report)),
    }
    if !report.is_whole() {
        std::process::exit(1);
    }
    Ok(())
}

/// An artifact that is a local file (a path or `file://` URI): its absolute `file://` URI,
/// SHA-256 and size. `flag` names the option in errors.
fn local_artifact(flag: &str, path: &str) -> anyhow::Result<Artifact> {
    let local = path.strip_prefix("file://").unwrap_or(path);
    let absolute = std::fs::canonicalize(local).with_context(|| format!("{flag}: cannot read {local}"))?;
    let size = std::fs::metadata(&absolute).with_context(|| format!("{flag}: cannot read {local}"))?.len();
    let sha = sha256_file(&absolute.display().to_string())?;
    Ok(Artifact { uri: format!("file://{}", absolute.display()), sha256: Some(sha), size_bytes: Some(size) })
}

/// Opens the store, does `work` with it and closes it, whatever `work` gave.
async fn with_store<T>(
    store: &StoreArgs,
    work: impl AsyncFnOnce(&dyn Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let opened = store.open().await?;
    let result = work(opened.as_ref()).await;
    opened.close().await;
    result
}

/// Appends one event after checking it against the log (and the template, if any).
async fn append_checked(
    store: &StoreArgs,
    template: Option<&Template>,
    event: NewGovernanceEvent,
) -> anyhow::Result<NewGovernanceEvent> {
    with_store(store, async |opened| {
        let inventory = Inventory::build(&read_log(opened).await?, &[], template)?;
        check_new(&event, &inventory, template)?;
        opened.append_governance(std::slice::from_ref(&event)).await?;
        Ok(event)
    })
    .await
}

/// Checks a promotion: the artifact hashed, the served schema inferred from the deployment's
/// latest predictions when no build declares it.
async fn promote(
    store: &dyn Store,
    template: Option<&Template>,
    build: &str,
    deployment: &str,
    environment: &str,
    approvals: Vec<Approval>,
    artifact: Option<String>,
) -> anyhow::Result<(PromotionReport, Option<Payload>)> {
    let log = read_log(store).await?;
    let seen = store.seen_deployments().await?;
    let inventory = Inventory::build(&log, &seen, template)?;
    let registered = inventory.models.values().find_map(|m| m.builds.get(build)).and_then(|b| b.artifact.clone());
    // The file to hash: the one given, or the registered one when it is local.
    let file = artifact.or_else(|| registered.map(|a| a.uri).filter(|uri| uri.starts_with("file://")));
    let artifact_sha256 = file.map(|f| sha256_file(&f)).transpose()?;
    let observed_schema = match store.last_prediction_ms(deployment).await? {
        None => None,
        Some(last) => {
            let window = Window { start_ms: last - 86_400_000, end_ms: last + 1 };
            let records: Vec<_> = store
                .read_window(Selection::Deployment(deployment.to_string()), window)
                .take(1_000)
                .try_collect()
                .await?;
            let inputs = records.iter().filter_map(|r| r.metrics.get("input").and_then(serde_json::Value::as_object));
            Some(observed_schema(inputs))
        }
    };
    let request = PromotionRequest {
        build: build.to_string(),
        deployment: deployment.to_string(),
        environment: environment.to_string(),
        approvals,
        artifact_sha256,
        observed_schema,
    };
    Ok(check_promotion(&inventory, template, &request)?)
}

/// A promotion's checks for the terminal.
fn promotion_text(report: &PromotionReport) -> String {
    let mut rows = vec![["CHECK", "", "DETAIL"].map(String::from)];
    rows.extend(
        report
            .checks
            .iter()
            .map(|c| [c.check.to_string(), if c.passed { "ok" } else { "FAILED" }.to_string(), c.detail.clone()]),
    );
    let mut out = driftline_drift::report::text::text_table(&rows);
    if !report.schema_differences.is_empty() {
        let mut rows = vec![["FIELD", "CHANGE", "COMPATIBLE", "DETAIL"].map(String::from)];
        rows.extend(report.schema_differences.iter().map(|d| {
            [
                d.field.clone(),
                d.change.to_string(),
                if d.compatible { "yes" } else { "no" }.to_string(),
                d.detail.clone(),
            ]
        }));
        out.push('\n');
        out.push_str(&driftline_drift::report::text::text_table(&rows));
    }
    out
}

/// The audit of the store's inventory, its drift jobs and its deployments' latest predictions.
async fn audit_of(store: &StoreArgs, template: Option<&Template>, orphaned_days: u32) -> anyhow::Result<Audit> {
    with_store(store, async |opened| {
        let log = read_log(opened).await?;
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
        Ok(audit::audit(&inventory, &facts))
    })
    .await
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
    let done = if register { "registered" } else { "updated" };
    let event = with_store(&store, async |opened| {
        let inventory = Inventory::build(&read_log(opened).await?, &[], template.as_ref())?;
        let registered = inventory.models.get(&crn).is_some_and(|m| m.status != Status::Unregistered);
        let payload = if register {
            Payload::ModelRegistered(ModelRegistered { metadata })
        } else {
            Payload::MetadataUpdated(MetadataUpdated { metadata })
        };
        let event = new_event(&crn, &payload, &actor, &who.cluster, now_ms());
        match check_new(&event, &inventory, template.as_ref()) {
            Err(GovernError::Template { problems }) => {
                let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
                anyhow::bail!(
                    "{crn} was not {done}: its metadata does not meet the governance template ({} field{}):\n{}",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" },
                    lines.join("\n")
                );
            }
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
        Ok(event)
    })
    .await?;
    println!("{done} {crn} ({}, event {} in cluster {})", event.kind, event.id, event.cluster);
    if template.is_none() {
        eprintln!(
            "note: no governance template (<data-dir>/governance.yaml or --governance-template); no field was required"
        );
    }
    Ok(())
}

/// `NAME=VALUE`, a finite number.
fn parse_metric(text: &str) -> anyhow::Result<(String, f64)> {
    let Some((name, value)) = text.split_once('=') else {
        anyhow::bail!("--metric: `{text}` is not NAME=VALUE (roc_auc=0.91)")
    };
    let name = name.trim();
    anyhow::ensure!(!name.is_empty(), "--metric: `{text}` names no metric; write NAME=VALUE");
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok((name.to_string(), v)),
        _ => anyhow::bail!("--metric {name}: `{}` is not a finite number", value.trim()),
    }
}

/// The builds and deployments that use a table, for the terminal.
fn lineage_text(uses: &[TableUse]) -> String {
    if uses.is_empty() {
        return "no registered build names this table\n".into();
    }
    let mut rows = vec![["MODEL", "BUILD", "DEPLOYMENTS", "QUERY"].map(String::from)];
    rows.extend(uses.iter().map(|u| {
        let deployments: Vec<String> = u
            .deployments
            .iter()
            .map(|d| match &d.environment {
                Some(env) => format!("{} ({env})", d.crn),
                None => d.crn.clone(),
            })
            .collect();
        [
            u.model.clone(),
            u.build.clone(),
            if deployments.is_empty() { "-".into() } else { deployments.join(", ") },
            u.query.as_deref().map_or_else(|| "-".into(), |q| q.split_whitespace().collect::<Vec<_>>().join(" ")),
        ]
    }));
    driftline_drift::report::text::text_table(&rows)
}

fn read_metadata(path: &Path) -> anyhow::Result<Metadata> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--metadata: cannot read {}", path.display()))?;
    Ok(parse_metadata(&text, &format!("--metadata {}", path.display()))?)
}

/// The inventory from the store's log and the deployments its predictions name.
async fn inventory(store: &StoreArgs, template: Option<&Template>) -> anyhow::Result<Inventory> {
    with_store(store, async |opened| {
        Ok(Inventory::build(&read_log(opened).await?, &opened.seen_deployments().await?, template)?)
    })
    .await
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
    if !m.builds.is_empty() {
        let mut rows = vec![["BUILD", "REGISTERED", "ARTIFACT", "SHA-256", "TRAINING ROWS"].map(String::from)];
        rows.extend(m.builds.values().map(|b| {
            let artifact = b.artifact.as_ref();
            [
                b.crn.clone(),
                b.registered_at_ms.map_or_else(|| "-".into(), date_string),
                artifact.map_or_else(|| "-".into(), |a| a.uri.clone()),
                artifact
                    .and_then(|a| a.sha256.as_deref())
                    .map_or_else(|| "-".into(), |s| format!("{}…", &s[..12.min(s.len())])),
                b.training_rows.map_or_else(|| "-".into(), |r| r.to_string()),
            ]
        }));
        out.push('\n');
        out.push_str(&driftline_drift::report::text::text_table(&rows));
    }
    if !m.tables.is_empty() {
        out.push_str(&format!("\ntrained from: {}\n", m.tables.join(", ")));
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

/// The remote clusters, for the terminal.
fn clusters_text(remotes: &[driftline_store::RemoteSync], now: i64) -> String {
    if remotes.is_empty() {
        return "no remote cluster has synced to this store\n".into();
    }
    let mut rows = vec![["CLUSTER", "SYNCED THROUGH", "PENDING", "LAG", "LAST CONTACT"].map(String::from)];
    rows.extend(remotes.iter().map(|r| {
        let shown = crate::governance_api::remote_json(r, now);
        [
            r.cluster.clone(),
            r.remote_seq.to_string(),
            r.pending.to_string(),
            format!("{} s", shown["lag_seconds"]),
            format!("{} ({} s ago)", driftline_drift::format::time(r.contacted_at_ms), shown["seconds_since_contact"]),
        ]
    }));
    driftline_drift::report::text::text_table(&rows)
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
