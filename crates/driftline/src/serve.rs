//! `driftline serve`: the HTTP API, and optionally the Kafka consumer and the drift scheduler,
//! in one process.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use driftline_core::time::now_ms;
use driftline_ingest::{Ingest, IngestMetrics};
use driftline_store::keys::hash_key;
use driftline_store::{NewKey, Scope};
use tokio::net::TcpListener;

use crate::auth::KeyCache;
use crate::cli::{AdminKeyArgs, HttpArgs, KafkaArgs, LimitArgs, StoreArgs};
use crate::server;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DRIFTLINE_LISTEN", default_value_t = crate::cli::default_listen())]
    listen: SocketAddr,
    #[command(flatten)]
    admin_key: AdminKeyArgs,
    /// Also consume v1 events from these Kafka bootstrap servers, like `driftline ingest`.
    #[arg(long, env = "DRIFTLINE_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    #[command(flatten)]
    drift: crate::drift::DriftServeArgs,
    /// Do not run the rollup worker in this process (run `driftline rollup` elsewhere).
    #[arg(long, env = "DRIFTLINE_NO_ROLLUP")]
    no_rollup: bool,
    #[command(flatten)]
    rollup: crate::rollup::RollupArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    sql: crate::sql::SqlLimitArgs,
    /// Also serve Arrow Flight SQL (ADBC, JDBC, DBeaver, Grafana) on this address, with the same
    /// API keys as the HTTP API.
    #[arg(long, env = "DRIFTLINE_FLIGHT_SQL_LISTEN")]
    flight_sql_listen: Option<SocketAddr>,
    /// This cluster's name: governance events posted without one join its chain.
    #[arg(long, env = "DRIFTLINE_CLUSTER", default_value = "local")]
    cluster: String,
    #[command(flatten)]
    governance_template: crate::models::TemplateArgs,
    #[command(flatten)]
    sync: crate::sync::ServeSyncArgs,
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let limits = args.limits.limits()?;
    let rollup_options = args.rollup.worker()?;
    let http = args.http.settings(&limits)?;
    let syncer = args.sync.syncer(&args.cluster)?;
    let admin_key = args.admin_key.key()?;
    let store = args.store.open().await?;
    if admin_key.is_none() && store.list_keys().await?.iter().all(|k| k.revoked_at_ms.is_some()) {
        let new = NewKey::generate("bootstrap-admin", Scope::Admin, None, now_ms());
        store.insert_key(&new.key, &new.hash).await?;
        println!("created admin key {} (shown once, keep it): {}", new.key.id, new.secret);
    }
    let keys = KeyCache::load(store.clone(), admin_key.as_deref().map(hash_key)).await?;
    let key_refresh = keys.spawn_refresh(http.key_refresh);
    let metrics = Arc::new(IngestMetrics::default());
    let drift = args.drift.settings(&args.store);
    let mut state = server::AppState::new(store.clone(), limits, keys, metrics.clone(), http, drift);
    state.rollup = args.rollup.summary();
    state.sql = args.sql.limits();
    state.governance = crate::governance_api::GovernanceSettings {
        cluster: args.cluster.clone(),
        template: args.governance_template.path(),
        data_dir: args.store.data_dir.clone(),
        appending: Arc::default(),
    };
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let flight_listener = match args.flight_sql_listen {
        Some(at) => Some(TcpListener::bind(at).await.with_context(|| format!("listening for Flight SQL on {at}"))?),
        None => None,
    };
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
    let (stop_rollup, rollup_stopped) = tokio::sync::oneshot::channel::<()>();
    let rollup = (!args.no_rollup).then(|| {
        let worker = driftline_rollup::Worker::new(store.clone(), rollup_options);
        tokio::spawn(worker.run(async {
            let _ = rollup_stopped.await;
        }))
    });
    let (stop_sync, sync_stopped) = tokio::sync::oneshot::channel::<()>();
    let sync = syncer.map(|syncer| {
        tokio::spawn(syncer.run(store.clone(), async {
            let _ = sync_stopped.await;
        }))
    });
    let (stop_flight, flight_stopped) = tokio::sync::oneshot::channel::<()>();
    let flight = match flight_listener {
        Some(flight_listener) => {
            let service = server::flight::FlightSql {
                store: store.clone(),
                keys: state.keys.clone(),
                limits: state.sql,
                permits: state.sql_permits.clone(),
            };
            println!("driftline serving Flight SQL on grpc://{}", flight_listener.local_addr()?);
            Some(tokio::spawn(server::flight::serve(service, flight_listener, async {
                let _ = flight_stopped.await;
            })))
        }
        None => None,
    };
    println!("driftline listening on http://{addr} (store: {})", args.store.config().location());
    tracing::info!(%addr, store = %args.store.config().location(), kafka = args.kafka_brokers.is_some(), "serving");
    server::serve(state, listener, crate::shutdown_signal()).await?;
    let _ = stop_scheduler.send(());
    let _ = stop_sync.send(());
    if let Some(sync) = sync {
        sync.await?;
    }
    let _ = stop_flight.send(());
    if let Some(flight) = flight {
        flight.await??;
    }
    let _ = stop_rollup.send(());
    if let Some(rollup) = rollup {
        rollup.await?;
    }
    if let Some(scheduler) = scheduler {
        scheduler.await?;
    }
    if let Some(consumer) = consumer {
        tokio::task::spawn_blocking(move || consumer.stop()).await??;
    }
    key_refresh.abort();
    store.close().await;
    tracing::info!("stopped; every acknowledged event is committed");
    Ok(())
}
