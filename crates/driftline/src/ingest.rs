//! `driftline ingest`: the Kafka consumer on its own, with an optional metrics endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use driftline_ingest::{Ingest, IngestMetrics};
use tokio::net::TcpListener;

use crate::cli::{KafkaArgs, LimitArgs, StoreArgs};

#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// Kafka bootstrap servers, host:port[,host:port…].
    #[arg(long, env = "DRIFTLINE_KAFKA_BROKERS")]
    pub(crate) kafka_brokers: String,
    /// Serve GET /metrics (Prometheus) and /healthz on this address. Anyone who can reach it can
    /// read the metrics: bind it to an address only your monitoring reaches.
    #[arg(long, env = "DRIFTLINE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

pub(crate) async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let config = args.kafka.config(&args.kafka_brokers, args.limits.limits()?)?;
    let store = args.store.open().await?;
    let metrics = Arc::new(IngestMetrics::default());
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = match args.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            println!("driftline metrics on http://{}/metrics", listener.local_addr()?);
            let router = crate::server::metrics_router(metrics.clone());
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
        _ = crate::shutdown_signal() => false,
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
