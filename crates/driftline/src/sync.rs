//! `driftline sync` (and the sync service `serve --sync-to` runs): forwards this cluster's
//! evaluation, deployment and deletion activity (with the models it concerns) to a primary
//! driftline. The batches are cut by `driftline_govern::sync`; the cursor lives in this
//! cluster's store and moves only after the primary has answered, and the primary stores each
//! event once by its id, so a sync killed at any point and started again sends what is missing
//! and nothing twice. While the primary is down this cluster keeps working; the sync retries,
//! backing off, and catches up.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use driftline_core::time::now_ms;
use driftline_govern::event::check_name;
use driftline_govern::log::read_log;
use driftline_govern::sync::{next_batch, SyncRequest, SyncResponse, MAX_SYNC_EVENTS};
use driftline_store::Store;

use crate::cli::StoreArgs;

/// `driftline sync`.
#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// The primary driftline's base URL (`http://primary.internal:8080`).
    #[arg(long = "to", env = "DRIFTLINE_SYNC_TO")]
    to: String,
    /// An API key of the primary's with the govern (or admin) scope.
    #[arg(long, env = "DRIFTLINE_SYNC_KEY", hide_env_values = true)]
    key: String,
    /// This cluster's name, as its governance events carry it and the primary shows it.
    #[arg(long, env = "DRIFTLINE_CLUSTER", default_value = "local")]
    cluster: String,
    /// Send what is due and exit (exit 1 when the primary cannot be reached or refuses);
    /// without it, keep syncing until interrupted.
    #[arg(long, env = "DRIFTLINE_SYNC_ONCE")]
    once: bool,
    #[command(flatten)]
    pace: PaceArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// How often and how much a sync sends.
#[derive(Debug, Clone, Args)]
pub(crate) struct PaceArgs {
    /// Seconds between syncs while nothing is due (and the longest a new event waits).
    #[arg(long, env = "DRIFTLINE_SYNC_INTERVAL_SECS", default_value_t = 30)]
    sync_interval_secs: u64,
    /// Most events in one batch (a model released with a longer history goes in one batch).
    #[arg(long, env = "DRIFTLINE_SYNC_BATCH_SIZE", default_value_t = 500)]
    sync_batch_size: usize,
}

/// The sync service `serve` runs beside the API.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeSyncArgs {
    /// Forward this cluster's governance activity to the primary driftline at this base URL.
    #[arg(long, env = "DRIFTLINE_SYNC_TO")]
    sync_to: Option<String>,
    /// The primary's API key (govern or admin scope), with --sync-to.
    #[arg(long, env = "DRIFTLINE_SYNC_KEY", hide_env_values = true)]
    sync_key: Option<String>,
    #[command(flatten)]
    pace: PaceArgs,
}

impl ServeSyncArgs {
    /// The sync to run, when --sync-to is given.
    pub(crate) fn syncer(&self, cluster: &str) -> anyhow::Result<Option<Syncer>> {
        match (&self.sync_to, &self.sync_key) {
            (None, None) => Ok(None),
            (Some(to), Some(key)) => Syncer::new(to, key, cluster, &self.pace).map(Some),
            (Some(_), None) => anyhow::bail!("--sync-to needs --sync-key, a key of the primary with the govern scope"),
            (None, Some(_)) => anyhow::bail!("--sync-key is for --sync-to; give the primary's URL with --sync-to"),
        }
    }
}

/// A sync of one cluster to one primary.
#[derive(Debug, Clone)]
pub(crate) struct Syncer {
    client: reqwest::Client,
    endpoint: String,
    primary: String,
    key: String,
    cluster: String,
    interval: Duration,
    batch_size: usize,
}

/// What one pass sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pass {
    pub(crate) batches: u64,
    pub(crate) stored: u64,
    pub(crate) duplicates: u64,
    pub(crate) through_seq: i64,
}

/// The longest wait between attempts while the primary is down.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Syncer {
    pub(crate) fn new(to: &str, key: &str, cluster: &str, pace: &PaceArgs) -> anyhow::Result<Syncer> {
        check_name("--cluster", cluster)?;
        let primary = to.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&primary).with_context(|| format!("--to: `{to}` is not a URL"))?;
        anyhow::ensure!(
            url.scheme() != "https",
            "--to: `{to}`: this build speaks plain HTTP only; reach an https:// primary through a local TLS proxy"
        );
        anyhow::ensure!(url.scheme() == "http", "--to: `{to}` is not an http:// address of a driftline");
        anyhow::ensure!(!key.trim().is_empty(), "--key: give an API key of the primary's (govern scope)");
        anyhow::ensure!(pace.sync_batch_size > 0, "--sync-batch-size: send at least one event per batch");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Syncer {
            client,
            endpoint: format!("{primary}/api/v1/governance/sync"),
            primary,
            key: key.to_string(),
            cluster: cluster.to_string(),
            interval: Duration::from_secs(pace.sync_interval_secs.max(1)),
            batch_size: pace.sync_batch_size,
        })
    }

    /// The cursor's name in this store: one per primary and cluster (a sync run once under
    /// another cluster's name does not move this one).
    fn cursor_name(&self) -> String {
        format!("governance {} {}", self.primary, self.cluster)
    }

    /// Sends every due batch, each followed by the cursor; stops at the first failure (the
    /// cursor then stands after the last batch the primary took).
    pub(crate) async fn pass(&self, store: &dyn Store) -> anyhow::Result<Pass> {
        let name = self.cursor_name();
        let mut cursor = store.sync_cursor(&name).await?.unwrap_or(0);
        let log = read_log(store).await?;
        let mut pass = Pass { through_seq: cursor, ..Pass::default() };
        loop {
            let batch = next_batch(&log, &self.cluster, cursor, self.batch_size)?;
            // A batch longer than the primary takes at once (a model released with a long
            // history) goes in parts; only the last moves the cursor.
            let parts: Vec<&[driftline_store::GovernanceEvent]> =
                if batch.events.is_empty() { vec![&[]] } else { batch.events.chunks(MAX_SYNC_EVENTS).collect() };
            let last = parts.len() - 1;
            let mut answer = SyncResponse { stored: 0, duplicates: 0, through_seq: cursor };
            for (i, part) in parts.into_iter().enumerate() {
                let request = SyncRequest {
                    cluster: self.cluster.clone(),
                    through_seq: if i == last { batch.through_seq } else { cursor },
                    pending: (batch.pending + batch.events.len().saturating_sub(MAX_SYNC_EVENTS * (i + 1))) as u64,
                    oldest_pending_ms: batch.oldest_pending_ms,
                    events: part.iter().map(|e| e.event.clone()).collect(),
                };
                let part_answer = self.send(&request).await?;
                answer.stored += part_answer.stored;
                answer.duplicates += part_answer.duplicates;
            }
            if batch.through_seq != cursor {
                store.set_sync_cursor(&name, batch.through_seq, now_ms()).await?;
                cursor = batch.through_seq;
            }
            pass.batches += 1;
            pass.stored += answer.stored;
            pass.duplicates += answer.duplicates;
            pass.through_seq = cursor;
            if batch.pending == 0 {
                return Ok(pass);
            }
        }
    }

    async fn send(&self, request: &SyncRequest) -> anyhow::Result<SyncResponse> {
        let response = self
            .client
            .post(&self.endpoint)
            .bearer_auth(&self.key)
            .json(request)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the primary at {}: {e}", self.primary))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let detail = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_string))
                .unwrap_or(body);
            anyhow::bail!("the primary at {} refused the batch ({status}): {detail}", self.primary);
        }
        serde_json::from_str(&body).with_context(|| {
            format!("the primary at {} answered with something other than a sync result", self.primary)
        })
    }

    /// Syncs until `shutdown` resolves: a pass, then a wait of the interval (or, after a
    /// failure, a wait that doubles up to five minutes).
    pub(crate) async fn run(self, store: std::sync::Arc<dyn Store>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = self.interval;
        loop {
            let wait = tokio::select! {
                biased;
                () = &mut shutdown => return,
                result = self.pass(store.as_ref()) => match result {
                    Ok(pass) => {
                        if pass.stored > 0 {
                            tracing::info!(primary = %self.primary, stored = pass.stored, through_seq = pass.through_seq, "governance events synced");
                        }
                        backoff = self.interval;
                        self.interval
                    }
                    Err(e) => {
                        tracing::warn!(primary = %self.primary, error = %format!("{e:#}"), retry_in_secs = backoff.as_secs(), "governance sync failed; this cluster keeps working and will catch up");
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                },
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

pub(crate) async fn run(args: SyncArgs) -> anyhow::Result<()> {
    let syncer = Syncer::new(&args.to, &args.key, &args.cluster, &args.pace)?;
    let store = args.store.open().await?;
    if args.once {
        let result = syncer.pass(store.as_ref()).await;
        store.close().await;
        let pass = result?;
        println!(
            "synced cluster {} to {}: {} event{} stored, {} already there, cursor at {}",
            syncer.cluster,
            syncer.primary,
            pass.stored,
            if pass.stored == 1 { "" } else { "s" },
            pass.duplicates,
            pass.through_seq
        );
        return Ok(());
    }
    println!("syncing cluster {} to {} every {} s", syncer.cluster, syncer.primary, syncer.interval.as_secs());
    syncer.run(store.clone(), crate::shutdown_signal()).await;
    store.close().await;
    Ok(())
}
