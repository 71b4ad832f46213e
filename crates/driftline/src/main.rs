//! `driftline`: the metrics store and drift engine's command line.

mod auth;
mod demo;
mod problem;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use driftline_core::time::now_ms;
use driftline_core::Limits;
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
    /// Generate a realistic prediction stream with drift and late labels, send it through the
    /// HTTP API into a fresh embedded store, and summarise what happened.
    Demo(demo::DemoArgs),
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

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DRIFTLINE_LISTEN", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// A bootstrap admin key. Without it, and with no key stored, serve creates an admin key
    /// and prints it once.
    #[arg(long, env = "DRIFTLINE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
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
            Command::Demo(args) => demo::run(args).await,
            Command::Keys { command } => keys(command).await,
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
    let state = server::AppState { store: store.clone(), limits: args.limits.limits(), admin_key_hash };
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("driftline listening on http://{addr} (store: {})", args.store.config().location());
    tracing::info!(%addr, store = %args.store.config().location(), "serving");
    server::serve(state, listener, shutdown_signal()).await?;
    store.close().await;
    tracing::info!("stopped; every acknowledged event is committed");
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
