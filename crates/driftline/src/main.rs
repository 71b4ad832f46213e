//! `driftline`: the metrics store and drift engine's command line.

mod auth;
mod demo;
mod drift;
mod drift_api;
mod problem;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use driftline_core::time::now_ms;
use driftline_core::Limits;
use driftline_ingest::{Ingest, IngestMetrics};
use driftline_store::keys::hash_key;
use driftline_store::{NewKey, Scope, Store, StoreConfig};
use tokio::net::TcpListener;

/// Event-sourced metrics store and drift engine for ML models in production.
#[derive(Debug, Parser)]
#[command(name = "driftline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API on the embedded SQLite store, or on Postgres with --database-url.
    Serve(ServeArgs),
    /// Consume v1 events from Kafka into the store, exactly once.
    Ingest(IngestArgs),
    /// Generate a realistic prediction stream with drift and late labels, send it through the
    /// HTTP API into a fresh embedded store, and summarise what happened.
    Demo(demo::DemoArgs),
    /// Drift and performance: compare files, score predictions, run drift jobs.
    Drift {
        #[command(subcommand)]
        command: drift::DriftCommand,
    },
    /// Create, list and revoke API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Where the store lives.
#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Directory of the embedded SQLite store (used when --database-url is not given).
    #[arg(long, env = "DRIFTLINE_DATA_DIR", default_value = "./driftline-data")]
    data_dir: PathBuf,
    /// Database URL: postgres://USER@HOST/DB for production, or sqlite://PATH.
    #[arg(long, env = "DRIFTLINE_DATABASE_URL")]
    database_url: Option<String>,
}

impl StoreArgs {
    fn config(&self) -> StoreConfig {
        StoreConfig { database_url: self.database_url.clone(), data_dir: self.data_dir.clone() }
    }

    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        // The store's errors name the file or URL already.
        Ok(driftline_store::open(&self.config()).await?)
    }
}

/// Limits on events and requests.
#[derive(Debug, Clone, Args)]
struct LimitArgs {
    /// Largest event, in bytes.
    #[arg(long, env = "DRIFTLINE_MAX_EVENT_BYTES", default_value_t = Limits::default().max_event_bytes)]
    max_event_bytes: usize,
    /// Largest HTTP request body, in bytes.
    #[arg(long, env = "DRIFTLINE_MAX_REQUEST_BYTES", default_value_t = Limits::default().max_request_bytes)]
    max_request_bytes: usize,
    /// Most keys in one event's metrics, counted at every level.
    #[arg(long, env = "DRIFTLINE_MAX_METRIC_KEYS", default_value_t = Limits::default().max_metric_keys)]
    max_metric_keys: usize,
    /// Deepest nesting of one event's metrics.
    #[arg(long, env = "DRIFTLINE_MAX_DEPTH", default_value_t = Limits::default().max_depth)]
    max_depth: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_event_bytes: self.max_event_bytes,
            max_request_bytes: self.max_request_bytes,
            max_metric_keys: self.max_metric_keys,
            max_depth: self.max_depth,
            ..Limits::default()
        }
    }
}

/// Kafka intake.
#[derive(Debug, Clone, Args)]
struct KafkaArgs {
    /// The topic of v1 events.
    #[arg(long, env = "DRIFTLINE_KAFKA_TOPIC", default_value = "driftline.events")]
    topic: String,
    /// The consumer group; consumers of one group share the topic's partitions.
    #[arg(long, env = "DRIFTLINE_KAFKA_GROUP", default_value = "driftline-ingest")]
    group: String,
    /// Most messages in one store transaction.
    #[arg(long, env = "DRIFTLINE_BATCH_SIZE", default_value_t = 5_000)]
    batch_size: usize,
    /// Store transactions in flight at once; partitions are spread over this many writers.
    #[arg(long, env = "DRIFTLINE_WRITERS", default_value_t = 4)]
    writers: usize,
    /// Longest time a message waits in a batch, in milliseconds.
    #[arg(long, env = "DRIFTLINE_LINGER_MS", default_value_t = 200)]
    linger_ms: u64,
    /// Where partitions without a stored offset start: earliest or latest.
    #[arg(long, env = "DRIFTLINE_AUTO_OFFSET_RESET", default_value = "earliest", value_parser = ["earliest", "latest"])]
    auto_offset_reset: String,
    /// Read these partitions (`all`, or a list such as `0,1,2`) without a consumer group, instead
    /// of letting the group assign them. Exactly once either way.
    #[arg(long, env = "DRIFTLINE_KAFKA_PARTITIONS")]
    partitions: Option<String>,
    /// Extra librdkafka setting as KEY=VALUE (repeatable, or comma-separated in the env var).
    #[arg(long = "kafka-option", env = "DRIFTLINE_KAFKA_OPTIONS", value_delimiter = ',')]
    kafka_options: Vec<String>,
    /// Also forward every refused message to this topic: key and bytes as received, the reason
    /// in header `driftline-reason`, where it was read in `driftline-source`. At least once on
    /// the topic; the store's dead_letters table holds each exactly once.
    #[arg(long, env = "DRIFTLINE_DEAD_LETTER_TOPIC")]
    dead_letter_topic: Option<String>,
}

impl KafkaArgs {
    fn config(&self, brokers: &str, limits: driftline_core::Limits) -> anyhow::Result<driftline_ingest::KafkaConfig> {
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        let mut c = driftline_ingest::KafkaConfig::new(brokers);
        c.topic = self.topic.clone();
        c.group = self.group.clone();
        c.batch_size = self.batch_size;
        anyhow::ensure!(self.writers > 0, "--writers must be at least 1");
        c.writers = self.writers;
        c.linger = std::time::Duration::from_millis(self.linger_ms);
        c.offset_reset = if self.auto_offset_reset == "latest" {
            driftline_ingest::OffsetReset::Latest
        } else {
            driftline_ingest::OffsetReset::Earliest
        };
        c.limits = limits;
        c.partitions = match self.partitions.as_deref().map(str::trim) {
            None | Some("") => driftline_ingest::Partitions::Group,
            Some("all") => driftline_ingest::Partitions::All,
            Some(list) => driftline_ingest::Partitions::Only(
                list.split(',')
                    .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
                    .collect::<Option<Vec<_>>>()
                    .with_context(|| {
                    format!("--partitions `{list}` is not `all` or a list of partition numbers like 0,1,2")
                })?,
            ),
        };
        c.dead_letter_topic = match self.dead_letter_topic.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(topic) if topic == c.topic => {
                anyhow::bail!("--dead-letter-topic `{topic}` is the topic being consumed; name another topic")
            }
            Some(topic) => Some(topic.to_owned()),
        };
        for option in &self.kafka_options {
            let (key, value) = option
                .split_once('=')
                .with_context(|| format!("--kafka-option `{option}` is not KEY=VALUE, e.g. fetch.min.bytes=1"))?;
            c.overrides.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(c)
    }
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// Kafka bootstrap servers, host:port[,host:port…].
    #[arg(long, env = "DRIFTLINE_KAFKA_BROKERS")]
    kafka_brokers: String,
    /// Serve GET /metrics (Prometheus) and /healthz on this address.
    #[arg(long, env = "DRIFTLINE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DRIFTLINE_LISTEN", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// A bootstrap admin key. Without it, and with no key stored, serve creates an admin key
    /// and prints it once.
    #[arg(long, env = "DRIFTLINE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Also consume v1 events from these Kafka bootstrap servers, like `driftline ingest`.
    #[arg(long, env = "DRIFTLINE_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    #[command(flatten)]
    drift: drift::DriftServeArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it once; only its hash is stored.
    Create {
        /// A name for people ("replica-eu", "notebook").
        #[arg(long, env = "DRIFTLINE_KEY_NAME")]
        name: String,
        /// read, write or admin.
        #[arg(long, env = "DRIFTLINE_KEY_SCOPE", value_parser = parse_scope)]
        scope: Scope,
        /// Limit the key to one deployment.
        #[arg(long, env = "DRIFTLINE_KEY_DEPLOYMENT")]
        deployment: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by its id.
    Revoke {
        /// The key's id, as `keys list` shows it.
        #[arg(env = "DRIFTLINE_KEY_ID")]
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes on one line; no backtrace, whatever RUST_BACKTRACE says.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DRIFTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Ingest(args) => ingest(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Keys { command } => keys(command).await,
            Command::Drift { command } => drift::run(command).await,
        }
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let admin_key_hash = match &args.admin_key {
        Some(key) if key.len() < 16 => {
            anyhow::bail!("--admin-key must be at least 16 characters; use a long random value")
        }
        Some(key) => Some(hash_key(key)),
        None => {
            if store.list_keys().await?.iter().all(|k| k.revoked_at_ms.is_some()) {
                let new = NewKey::generate("bootstrap-admin", Scope::Admin, None, now_ms());
                store.insert_key(&new.key, &new.hash).await?;
                println!("created admin key {} (shown once, keep it): {}", new.key.id, new.secret);
            }
            None
        }
    };
    let metrics = Arc::new(IngestMetrics::default());
    let limits = args.limits.limits();
    let drift = args.drift.settings(&args.store);
    let state = server::AppState { store: store.clone(), limits, admin_key_hash, metrics: metrics.clone(), drift };
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let consumer = match &args.kafka_brokers {
        Some(brokers) => {
            let config = args.kafka.config(brokers, limits)?;
            let runtime = tokio::runtime::Handle::current();
            Some(Ingest::start(config, store.clone(), runtime, metrics.clone())?)
        }
        None => None,
    };
    let (stop_scheduler, scheduler_stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = args.drift.scheduler(&args.store)?.map(|config| {
        tokio::spawn(driftline_drift::job::scheduler::run(store.clone(), config, async {
            let _ = scheduler_stopped.await;
        }))
    });
    println!("driftline listening on http://{addr} (store: {})", args.store.config().location());
    tracing::info!(%addr, store = %args.store.config().location(), kafka = args.kafka_brokers.is_some(), "serving");
    server::serve(state, listener, shutdown_signal()).await?;
    let _ = stop_scheduler.send(());
    if let Some(scheduler) = scheduler {
        scheduler.await?;
    }
    if let Some(consumer) = consumer {
        tokio::task::spawn_blocking(move || consumer.stop()).await??;
    }
    store.close().await;
    tracing::info!("stopped; every acknowledged event is committed");
    Ok(())
}

async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let metrics = Arc::new(IngestMetrics::default());
    let config = args.kafka.config(&args.kafka_brokers, args.limits.limits())?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = match args.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            println!("driftline metrics on http://{}/metrics", listener.local_addr()?);
            let router = server::metrics_router(metrics.clone());
            Some(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = metrics_stopped.await;
                    })
                    .await
            }))
        }
        None => None,
    };
    let consumer = Ingest::start(config.clone(), store.clone(), tokio::runtime::Handle::current(), metrics)?;
    println!(
        "driftline ingest consuming {} from {} (group {}) into {}",
        config.topic,
        config.brokers,
        config.group,
        args.store.config().location()
    );
    let stopped_by_itself = tokio::select! {
        _ = shutdown_signal() => false,
        _ = async {
            while !consumer.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        } => true,
    };
    let result = tokio::task::spawn_blocking(move || consumer.stop()).await?;
    let _ = stop_metrics.send(());
    if let Some(server) = metrics_server {
        server.await??;
    }
    store.close().await;
    result?;
    anyhow::ensure!(!stopped_by_itself, "the consumer stopped unexpectedly");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing requests in flight");
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, scope, deployment, store } => {
            let store = store.open().await?;
            let new = NewKey::generate(&name, scope, deployment, now_ms());
            store.insert_key(&new.key, &new.hash).await?;
            store.close().await;
            eprintln!("created key {} ({scope}); it is shown once and stored only as a hash:", new.key.id);
            println!("{}", new.secret);
        }
        KeysCommand::List { store } => {
            let store = store.open().await?;
            let keys = store.list_keys().await?;
            store.close().await;
            let rows: Vec<[String; 6]> = keys
                .iter()
                .map(|k| {
                    [
                        k.id.clone(),
                        k.name.clone(),
                        k.scope.to_string(),
                        k.deployment.clone().unwrap_or_else(|| "*".into()),
                        driftline_core::time::date_string(k.created_at_ms),
                        if k.revoked_at_ms.is_some() { "revoked".into() } else { "active".into() },
                    ]
                })
                .collect();
            let header = ["ID", "NAME", "SCOPE", "DEPLOYMENT", "CREATED", "STATUS"].map(String::from);
            let widths: Vec<usize> =
                (0..6).map(|i| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
            for row in [&header].into_iter().chain(&rows) {
                let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                println!("{}", cells.join("  ").trim_end());
            }
        }
        KeysCommand::Revoke { id, store } => {
            let store = store.open().await?;
            let revoked = store.revoke_key(&id).await?;
            store.close().await;
            if !revoked {
                anyhow::bail!("no active key has id `{id}`; see `driftline keys list`");
            }
            println!("revoked key {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kafka settings `driftline ingest` would run with for these flags.
    fn ingest_config(flags: &[&str]) -> anyhow::Result<driftline_ingest::KafkaConfig> {
        let argv = ["driftline", "ingest", "--kafka-brokers", "127.0.0.1:9092"].iter().chain(flags);
        let Command::Ingest(args) = Cli::try_parse_from(argv)?.command else { unreachable!("parsed as ingest") };
        args.kafka.config(&args.kafka_brokers, args.limits.limits())
    }

    #[test]
    fn dead_letter_topic_flag() {
        assert_eq!(ingest_config(&[]).unwrap().dead_letter_topic, None);
        let c = ingest_config(&["--dead-letter-topic", "driftline.dead"]).unwrap();
        assert_eq!(c.dead_letter_topic.as_deref(), Some("driftline.dead"));
        // The consumed topic itself would feed refused messages back in.
        let e = ingest_config(&["--topic", "events", "--dead-letter-topic", "events"]).unwrap_err().to_string();
        assert!(e.contains("--dead-letter-topic `events` is the topic being consumed"), "{e}");
    }

    #[test]
    fn partitions_flag() {
        assert_eq!(
            ingest_config(&["--partitions", "0, 2"]).unwrap().partitions,
            driftline_ingest::Partitions::Only(vec![0, 2])
        );
        let e = ingest_config(&["--partitions", "0,x"]).unwrap_err().to_string();
        assert!(e.contains("--partitions `0,x`"), "{e}");
    }
}
