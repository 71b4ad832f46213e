//! `driftline mlflow sync` and `driftline mlflow history`: imports an MLflow model registry
//! into the governance log (what each thing becomes is `driftline_govern::mlflow`'s), once or on
//! a schedule, and keeps each run's activity record (created, updated, skipped, failed, and
//! why) in the store.
//!
//! Incremental: registered models and versions are listed (a page at a time), and only what is
//! new or changed is written; a version's run is fetched only when the version is not imported
//! yet. Idempotent: imported events carry ids derived from what they import, and builds are
//! registered once, so a sync repeated (or killed and run again) adds nothing twice. The run
//! metrics of an imported version are also written as aggregate metrics of its build
//! (`model_deployment_crn` = the build's CRN, `source` = `mlflow:<tracking URI>`), before its
//! `build.registered`, so a crash between the two repeats an idempotent write.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use driftline_core::time::now_ms;
use driftline_core::AggregateMetrics;
use driftline_drift::job::schedule::{Schedule, ScheduleSpec};
use driftline_govern::inventory::Inventory;
use driftline_govern::log::read_log;
use driftline_govern::mlflow::{
    model_event, version_event, version_imported, Item, Mapping, ModelVersion, Outcome, RegisteredModel, Run,
};
use driftline_govern::template::Template;
use driftline_store::{Appended, GovernanceEvent, NewGovernanceEvent, Store, SyncRun, WriteBatch};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cli::StoreArgs;
use crate::models::{Format, TemplateArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum MlflowCommand {
    /// Import the MLflow registry's models (as registrations, with their tags as metadata) and
    /// versions (as builds, with their run's parameters and metrics); once, or with
    /// --schedule at each scheduled time until interrupted.
    Sync(Box<SyncArgs>),
    /// The activity records of past syncs, newest first.
    History {
        /// How many runs.
        #[arg(long, env = "DRIFTLINE_MLFLOW_HISTORY_LIMIT", default_value_t = 20)]
        limit: u32,
        /// table or json.
        #[arg(long, env = "DRIFTLINE_MLFLOW_FORMAT", value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// The MLflow tracking server (`http://mlflow.internal:5000`).
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    tracking_uri: String,
    /// The mapping file: `metrics:` from MLflow metric name to driftline name
    /// (`val_auc: roc_auc`; others keep their names), optionally `models:` from MLflow model
    /// name to driftline CRN (others become `crn:mlflow:model/NAME`).
    #[arg(long, env = "DRIFTLINE_MLFLOW_MAPPING")]
    mapping: Option<PathBuf>,
    /// A bearer token for the tracking server.
    #[arg(long, env = "MLFLOW_TRACKING_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A user name for the tracking server's basic authentication (with --password).
    #[arg(long, env = "MLFLOW_TRACKING_USERNAME")]
    username: Option<String>,
    #[arg(long, env = "MLFLOW_TRACKING_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Sync at each time of this schedule until interrupted: daily@06:00, weekly:mon@06:00,
    /// monthly:first-mon@06:00, hourly, or a cron expression. Without it, sync once and exit.
    #[arg(long, env = "DRIFTLINE_MLFLOW_SCHEDULE")]
    schedule: Option<String>,
    /// The schedule's time zone (an IANA name).
    #[arg(long, env = "DRIFTLINE_MLFLOW_TIMEZONE", default_value = "UTC")]
    timezone: String,
    /// This cluster's name; the imported events join its chain.
    #[arg(long, env = "DRIFTLINE_CLUSTER", default_value = "local")]
    cluster: String,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// Most entries a page of a registry listing asks for.
const PAGE: u32 = 1_000;

/// Most items an activity record lists (the counts are always whole).
const MAX_ITEMS: usize = 1_000;

/// A tracking server's REST API.
struct Registry {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    basic: Option<(String, String)>,
}

impl Registry {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<T> {
        let mut request = self.client.get(format!("{}/api/2.0/mlflow/{path}", self.base)).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the MLflow server at {}: {e}", self.base))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(body);
            anyhow::bail!("the MLflow server at {} answered {path} with {status}: {message}", self.base);
        }
        serde_json::from_str(&body).with_context(|| format!("the MLflow server's answer to {path} does not read"))
    }

    /// Every entry of a paged listing.
    async fn all<T: serde::de::DeserializeOwned>(&self, path: &str, field: &str) -> anyhow::Result<Vec<T>> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(flatten)]
            rest: serde_json::Map<String, Value>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let max = PAGE.to_string();
        // A bounded walk: a server that never stops paging is an error, not a hang.
        for _ in 0..100_000 {
            let mut query = vec![("max_results", max.as_str())];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let mut page: Page = self.get(path, &query).await?;
            if let Some(items) = page.rest.remove(field) {
                out.extend(
                    serde_json::from_value::<Vec<T>>(items)
                        .with_context(|| format!("the MLflow server's {field} do not read"))?,
                );
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
        anyhow::bail!("the MLflow server at {} kept paging {path}; stopped after 100000 pages", self.base)
    }

    async fn run(&self, run_id: &str) -> anyhow::Result<Run> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        Ok(self.get::<Answer>("runs/get", &[("run_id", run_id)]).await?.run)
    }
}

/// One sync's tally.
#[derive(Debug, Default)]
struct Tally {
    created: i64,
    updated: i64,
    skipped: i64,
    failed: i64,
    items: Vec<Item>,
}

impl Tally {
    fn add(&mut self, item: Item) {
        match item.outcome {
            Outcome::Created => self.created += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => self.failed += 1,
        }
        // A skip is kept when it has a reason (a version not READY); one that only means "had
        // it already" is counted.
        if (item.outcome != Outcome::Skipped || item.reason.is_some()) && self.items.len() < MAX_ITEMS {
            self.items.push(item);
        }
    }
}

/// What a sync needs besides the store.
struct Sync {
    registry: Registry,
    mapping: Mapping,
    /// `mlflow <tracking URI>`: the cursor's and the activity records' name.
    name: String,
    source: String,
    cluster: String,
}

impl Sync {
    /// One sync; its activity record is kept whether it succeeded or not.
    async fn once(&self, store: &dyn Store, template: Option<&Template>) -> anyhow::Result<SyncRun> {
        let started = now_ms();
        let mut tally = Tally::default();
        let cursor = store.sync_cursor(&self.name).await?;
        let result = self.import(store, template, &mut tally).await;
        let mut detail = json!({ "cursor_before": cursor, "items": tally.items });
        let high_water = match &result {
            Ok(high_water) => *high_water,
            Err(e) => {
                detail["error"] = json!(format!("{e:#}"));
                None
            }
        };
        if let Some(mark) = high_water {
            let mark = cursor.map_or(mark, |c| c.max(mark));
            store.set_sync_cursor(&self.name, mark, now_ms()).await?;
            detail["cursor_after"] = json!(mark);
        }
        let mut run = SyncRun {
            id: 0,
            name: self.name.clone(),
            started_at_ms: started,
            finished_at_ms: now_ms(),
            created: tally.created,
            updated: tally.updated,
            skipped: tally.skipped,
            failed: tally.failed,
            detail: detail.to_string(),
        };
        run.id = store.record_sync_run(&run).await?;
        result.map(|_| run)
    }

    /// Lists the registry and writes what is new or changed; returns the newest
    /// `last_updated_timestamp` seen.
    async fn import(
        &self,
        store: &dyn Store,
        template: Option<&Template>,
        tally: &mut Tally,
    ) -> anyhow::Result<Option<i64>> {
        let mut models: Vec<RegisteredModel> =
            self.registry.all("registered-models/search", "registered_models").await?;
        let mut versions: Vec<ModelVersion> = self.registry.all("model-versions/search", "model_versions").await?;
        models.sort_by(|a, b| a.name.cmp(&b.name));
        versions.sort_by(|a, b| (&a.name, version_number(a)).cmp(&(&b.name, version_number(b))));
        let high_water = models
            .iter()
            .filter_map(|m| m.last_updated_timestamp)
            .chain(versions.iter().filter_map(|v| v.last_updated_timestamp))
            .max();
        let log = read_log(store).await?;
        let mut inventory = Inventory::build(&log, &[], template)?;
        // Appends an event and folds it in; false when the store had it already (an import
        // repeated after a crash), which then counts as skipped.
        let append = async |event: NewGovernanceEvent, inventory: &mut Inventory| -> anyhow::Result<bool> {
            let seq = match store.append_governance(std::slice::from_ref(&event)).await?.first() {
                Some(Appended::New { seq }) => *seq,
                _ => return Ok(false),
            };
            let stored = GovernanceEvent { seq, cluster_seq: 0, event, prev_hash: String::new(), hash: String::new() };
            inventory.apply(&stored)?;
            Ok(true)
        };
        for model in &models {
            let crn = self.mapping.model_crn(&model.name);
            let item = |outcome, reason: Option<String>| Item {
                item: format!("model {}", model.name),
                crn: crn.clone(),
                outcome,
                reason,
            };
            match model_event(model, &self.mapping, &inventory, template, &self.source, &self.cluster, now_ms()) {
                Ok(None) => tally.add(item(Outcome::Skipped, None)),
                Ok(Some((event, outcome))) => {
                    let outcome = if append(event, &mut inventory).await? { outcome } else { Outcome::Skipped };
                    tally.add(item(outcome, None));
                }
                Err(e) => tally.add(item(Outcome::Failed, Some(e.to_string()))),
            }
        }
        for version in &versions {
            let crn = self.mapping.build_crn(&version.name, &version.version);
            let item = |outcome, reason: Option<String>| Item {
                item: format!("version {}/{}", version.name, version.version),
                crn: crn.clone(),
                outcome,
                reason,
            };
            if version_imported(version, &self.mapping, &inventory) {
                tally.add(item(Outcome::Skipped, None));
                continue;
            }
            if let Some(status) = version.status.as_deref().filter(|s| *s != "READY") {
                tally.add(item(Outcome::Skipped, Some(format!("its status is {status}, not READY"))));
                continue;
            }
            let run = match version.run_id.as_deref().filter(|r| !r.is_empty()) {
                None => None,
                Some(run_id) => match self.registry.run(run_id).await {
                    Ok(run) => Some(run),
                    Err(e) => {
                        tally.add(item(Outcome::Failed, Some(format!("its run {run_id} does not read: {e:#}"))));
                        continue;
                    }
                },
            };
            let event = match version_event(
                version,
                run.as_ref(),
                &self.mapping,
                &inventory,
                &self.source,
                &self.cluster,
                now_ms(),
            ) {
                Ok(event) => event,
                Err(e) => {
                    tally.add(item(Outcome::Failed, Some(e.to_string())));
                    continue;
                }
            };
            if let Some(run) = &run {
                self.write_metrics(store, &crn, version, run).await?;
            }
            let outcome = if append(event, &mut inventory).await? { Outcome::Created } else { Outcome::Skipped };
            tally.add(item(outcome, None));
        }
        Ok(high_water)
    }

    /// A version's run metrics as aggregate metrics of its build, over the run's time.
    async fn write_metrics(
        &self,
        store: &dyn Store,
        build: &str,
        version: &ModelVersion,
        run: &Run,
    ) -> anyhow::Result<()> {
        let metrics = driftline_govern::mlflow::metrics(run, &self.mapping);
        if metrics.is_empty() {
            return Ok(());
        }
        let start = run.info.start_time.or(version.creation_timestamp).unwrap_or_else(now_ms);
        let end = run.info.end_time.unwrap_or(start).max(start);
        let map: serde_json::Map<String, Value> = metrics.into_iter().map(|(k, v)| (k, json!(v))).collect();
        let mut batch = WriteBatch::new(now_ms());
        batch.aggregate_metrics.push(AggregateMetrics {
            model_deployment_crn: build.to_string(),
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            metrics: map.into(),
            source: self.source.clone(),
        });
        store.write(&batch).await?;
        Ok(())
    }
}

/// A version's number for ordering (`10` after `9`); text that is not a number sorts last.
fn version_number(v: &ModelVersion) -> (u64, String) {
    (v.version.parse().unwrap_or(u64::MAX), v.version.clone())
}

pub(crate) async fn run(command: MlflowCommand) -> anyhow::Result<()> {
    match command {
        MlflowCommand::Sync(args) => sync(*args).await,
        MlflowCommand::History { limit, format, store } => {
            let opened = store.open().await?;
            let runs = opened.sync_runs("mlflow ", limit.max(1)).await;
            opened.close().await;
            let runs = runs?;
            match format {
                Format::Json => {
                    let shown: Vec<Value> = runs
                        .iter()
                        .map(|r| {
                            let mut v = serde_json::to_value(r).unwrap_or_default();
                            v["detail"] = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
                            v
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&shown)?);
                }
                Format::Table => print!("{}", history_text(&runs)),
            }
            Ok(())
        }
    }
}

async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    driftline_govern::event::check_name("--cluster", &args.cluster)?;
    let base = args.tracking_uri.trim_end_matches('/').to_string();
    let url = reqwest::Url::parse(&base).with_context(|| format!("--tracking-uri: `{base}` is not a URL"))?;
    anyhow::ensure!(
        url.scheme() != "https",
        "--tracking-uri: `{base}`: this build speaks plain HTTP only; reach an https:// tracking server through a \
         local TLS proxy"
    );
    anyhow::ensure!(
        url.scheme() == "http",
        "--tracking-uri: `{base}` is not an http:// address of an MLflow tracking server"
    );
    let basic = match (args.username, args.password) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        _ => anyhow::bail!("--username and --password go together (MLflow's basic authentication)"),
    };
    let mapping = match &args.mapping {
        None => Mapping::default(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("--mapping: cannot read {}", path.display()))?;
            Mapping::parse(&text, &format!("--mapping {}", path.display()))?
        }
    };
    let schedule = match &args.schedule {
        None => None,
        Some(expression) => {
            Some(Schedule::parse(&ScheduleSpec { expression: expression.clone(), timezone: args.timezone.clone() })?)
        }
    };
    let registry = Registry {
        client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
        base: base.clone(),
        token: args.token,
        basic,
    };
    let sync = Sync {
        registry,
        mapping,
        name: format!("mlflow {base}"),
        source: format!("mlflow:{base}"),
        cluster: args.cluster,
    };
    let store = args.store.open().await?;
    let Some(schedule) = schedule else {
        let template = args.template.load(&args.store);
        let result = match template {
            Ok(template) => sync.once(store.as_ref(), template.as_ref()).await,
            Err(e) => Err(e),
        };
        store.close().await;
        let run = result?;
        print!("{}", summary(&run, &base));
        return Ok(());
    };
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    while let Some(next) = schedule.next_after(now_ms()) {
        println!("next MLflow sync from {base} at {}", driftline_drift::format::time(next));
        let wait = Duration::from_millis(u64::try_from(next - now_ms()).unwrap_or(0));
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
        // The template is read at each run, so a changed one applies at once.
        let outcome = match args.template.load(&args.store) {
            Ok(template) => sync.once(store.as_ref(), template.as_ref()).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(run) => print!("{}", summary(&run, &base)),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the MLflow sync failed; it runs again at the next scheduled time")
            }
        }
    }
    store.close().await;
    Ok(())
}

/// A run's summary for the terminal: the counts, then each failure and why.
fn summary(run: &SyncRun, base: &str) -> String {
    let mut out = format!(
        "synced MLflow {base}: {} created, {} updated, {} skipped, {} failed (activity record {})\n",
        run.created, run.updated, run.skipped, run.failed, run.id
    );
    if let Ok(detail) = serde_json::from_str::<Value>(&run.detail) {
        for item in detail["items"].as_array().into_iter().flatten().filter(|i| i["outcome"] == "failed") {
            out.push_str(&format!(
                "  failed {}: {}\n",
                item["item"].as_str().unwrap_or_default(),
                item["reason"].as_str().unwrap_or_default()
            ));
        }
    }
    out
}

fn history_text(runs: &[SyncRun]) -> String {
    if runs.is_empty() {
        return "no MLflow sync has run against this store\n".into();
    }
    let mut rows =
        vec![["#", "FINISHED", "REGISTRY", "CREATED", "UPDATED", "SKIPPED", "FAILED", "ERROR"].map(String::from)];
    rows.extend(runs.iter().map(|r| {
        let error = serde_json::from_str::<Value>(&r.detail)
            .ok()
            .and_then(|d| d["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| "-".into());
        [
            r.id.to_string(),
            driftline_drift::format::time(r.finished_at_ms),
            r.name.trim_start_matches("mlflow ").to_string(),
            r.created.to_string(),
            r.updated.to_string(),
            r.skipped.to_string(),
            r.failed.to_string(),
            error,
        ]
    }));
    driftline_drift::report::text::text_table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(outcome: Outcome, reason: Option<&str>) -> Item {
        Item { item: "version churn/2".into(), crn: "crn:b".into(), outcome, reason: reason.map(String::from) }
    }

    #[test]
    fn the_activity_record_keeps_every_change_and_every_skip_with_a_reason() {
        let mut tally = Tally::default();
        tally.add(item(Outcome::Created, None));
        tally.add(item(Outcome::Skipped, None));
        tally.add(item(Outcome::Skipped, Some("its status is PENDING_REGISTRATION, not READY")));
        tally.add(item(Outcome::Failed, Some("refused")));
        assert_eq!((tally.created, tally.updated, tally.skipped, tally.failed), (1, 0, 2, 1));
        let kept: Vec<(Outcome, Option<&str>)> = tally.items.iter().map(|i| (i.outcome, i.reason.as_deref())).collect();
        assert_eq!(
            kept,
            vec![
                (Outcome::Created, None),
                (Outcome::Skipped, Some("its status is PENDING_REGISTRATION, not READY")),
                (Outcome::Failed, Some("refused")),
            ]
        );
    }
}
