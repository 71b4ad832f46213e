//! `driftline`: the metrics store and drift engine's command line. One module per command
//! (`serve`, `ingest`, `demo`, `drift`, `keys`), the clap tree in `cli`, the HTTP API in
//! `server` with its guards, `auth` and `problem`.

mod auth;
mod cli;
mod demo;
mod drift;
mod drift_api;
mod governance_api;
mod ingest;
mod keys;
mod mlflow;
mod models;
mod problem;
mod rollup;
mod serve;
mod server;
mod sql;
mod sync;

use clap::Parser;

pub(crate) use cli::StoreArgs;

fn main() -> std::process::ExitCode {
    match run(cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(found) = e.downcast_ref::<drift::DriftFound>() {
                eprintln!("drift: {found}");
                return std::process::ExitCode::from(drift::DriftFound::EXIT_CODE);
            }
            // The chain of causes on one line; no backtrace, whatever RUST_BACKTRACE says.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DRIFTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            cli::Command::Serve(args) => serve::run(*args).await,
            cli::Command::Ingest(args) => ingest::run(*args).await,
            cli::Command::Demo(args) => demo::run(args).await,
            cli::Command::Rollup(args) => rollup::run(*args).await,
            cli::Command::Series(args) => rollup::series(*args).await,
            cli::Command::Replay(args) => rollup::replay(*args).await,
            cli::Command::Sql(args) => sql::run(*args).await,
            cli::Command::Keys { command } => keys::run(command).await,
            cli::Command::Models { command } => models::run(command).await,
            cli::Command::Sync(args) => sync::run(*args).await,
            cli::Command::Mlflow { command } => mlflow::run(command).await,
            cli::Command::Governance { command } => models::governance(command).await,
            cli::Command::Drift { command } => drift::run(command).await,
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
