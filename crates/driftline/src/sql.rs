//! `driftline sql`: one read-only SQL statement over the store, answered on standard output as
//! a table, CSV, JSON (the array of row objects `POST /api/v1/sql` answers), NDJSON or an Arrow
//! IPC stream; without a statement, an interactive prompt (line editing, history, statements
//! over several lines ending with `;`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use datafusion::prelude::SessionContext;
use driftline_query::sql::output::{Encoder, Format};
use driftline_query::sql::{self, SqlLimits};
use driftline_store::Store;
use futures::StreamExt;

use crate::cli::StoreArgs;

/// Arguments of `driftline sql`.
#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// The statement, e.g. "SELECT count(*) FROM predictions"; without one, an interactive prompt.
    query: Option<String>,
    /// How answers are written: table, csv, json, ndjson or arrow.
    #[arg(long, default_value = "table", value_parser = |s: &str| s.parse::<Format>())]
    format: Format,
    #[command(flatten)]
    limits: SqlLimitArgs,
    /// Where the prompt keeps its history; `<data-dir>/sql_history` by default.
    #[arg(long, env = "DRIFTLINE_SQL_HISTORY")]
    history: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

/// The limits of one query (`driftline sql` and `serve`'s `POST /api/v1/sql`).
#[derive(Debug, Clone, Args)]
pub(crate) struct SqlLimitArgs {
    /// Most rows one SQL answer may have.
    #[arg(long = "sql-max-rows", env = "DRIFTLINE_SQL_MAX_ROWS", default_value_t = SqlLimits::default().rows)]
    max_rows: u64,
    /// Longest one SQL query may run, answer included, in seconds.
    #[arg(long = "sql-timeout-secs", env = "DRIFTLINE_SQL_TIMEOUT_SECS", default_value_t = SqlLimits::default().time.as_secs())]
    timeout_secs: u64,
    /// Most memory one SQL query's sorts, aggregates and joins may hold, in MiB.
    #[arg(long = "sql-memory-mib", env = "DRIFTLINE_SQL_MEMORY_MIB", default_value_t = SqlLimits::default().memory_bytes >> 20)]
    memory_mib: usize,
}

impl SqlLimitArgs {
    pub(crate) fn limits(&self) -> SqlLimits {
        SqlLimits {
            time: Duration::from_secs(self.timeout_secs.max(1)),
            rows: self.max_rows.max(1),
            memory_bytes: self.memory_mib.max(1) << 20,
        }
    }
}

pub(crate) async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = args.store.open().await?;
    let limits = args.limits.limits();
    let ctx = sql::session(store.clone(), None, &limits)?;
    let result = match &args.query {
        Some(query) => answer(&ctx, query, args.format, &limits).await,
        None => prompt(&ctx, &args, &limits).await,
    };
    store.close().await;
    result
}

/// Runs one statement and writes its answer to standard output as it comes.
async fn answer(ctx: &SessionContext, query: &str, format: Format, limits: &SqlLimits) -> anyhow::Result<()> {
    let mut answer = sql::run(ctx, query, limits).await?;
    let mut encoder = Encoder::new(format, answer.schema.clone())?;
    let mut out = std::io::stdout().lock();
    out.write_all(&encoder.start())?;
    while let Some(batch) = answer.batches.next().await {
        out.write_all(&encoder.batch(&batch?)?)?;
    }
    out.write_all(&encoder.finish()?)?;
    out.flush()?;
    Ok(())
}

/// The interactive prompt: reads statements (ending with `;`, over as many lines as they take)
/// until end of input, `\q` or `exit`, answering each as a table.
async fn prompt(ctx: &SessionContext, args: &SqlArgs, limits: &SqlLimits) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let history = args.history.clone().unwrap_or_else(|| args.store.data_dir.join("sql_history"));
    let mut editor = rustyline::DefaultEditor::new().context("starting the prompt")?;
    // No history yet is the usual first run.
    let _ = editor.load_history(&history);
    eprintln!("driftline sql: statements end with `;`; \\q to quit. Tables: predictions, delayed_metrics, labelled_predictions, aggregate_metrics, dead_letters, rollups_1m, rollups_1h, rollups_1d.");
    let mut statement = String::new();
    loop {
        let line = match editor.readline(if statement.is_empty() { "sql> " } else { "...> " }) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading the prompt"),
        };
        let trimmed = line.trim();
        if statement.is_empty() && matches!(trimmed, "\\q" | "exit" | "quit") {
            break;
        }
        if trimmed.is_empty() {
            continue;
        }
        statement.push_str(&line);
        statement.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut statement);
        let _ = editor.add_history_entry(text.trim_end());
        let query = text.trim_end().trim_end_matches(';');
        if let Err(e) = answer(ctx, query, Format::Table, limits).await {
            eprintln!("error: {e:#}");
        }
    }
    if let Some(dir) = history.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = editor.save_history(&history) {
        eprintln!("note: the prompt's history was not saved to {}: {e}", history.display());
    }
    Ok(())
}
