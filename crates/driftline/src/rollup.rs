//! `driftline rollup` (the rollup worker on its own) and `driftline series` (a metric's series
//! from the command line), and the rollup settings `serve` shares.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use driftline_rollup::worker::Step;
use driftline_rollup::{Retention, SeriesQuery, Source, SummaryOptions, Worker, WorkerOptions};
use driftline_store::{Resolution, Window};

use crate::cli::StoreArgs;

/// How rollups are made.
#[derive(Debug, Clone, Args)]
pub(crate) struct RollupArgs {
    /// A minute is rolled up once its end is this many seconds in the past; events later than
    /// that mark it for a re-roll.
    #[arg(long, env = "DRIFTLINE_ROLLUP_LATENESS_SECS", default_value_t = 300)]
    rollup_lateness_secs: u64,
    /// Metric paths rolled up per deployment; values of further paths are counted, not rolled.
    #[arg(long, env = "DRIFTLINE_ROLLUP_MAX_PATHS", default_value_t = 1_000)]
    rollup_max_paths: usize,
    /// KLL sketch parameter k (rank error about 1.3 % at 200).
    #[arg(long, env = "DRIFTLINE_SKETCH_K", default_value_t = driftline_rollup::sketch::DEFAULT_K,
          value_parser = clap::value_parser!(u16).range(8..))]
    sketch_k: u16,
    /// Categorical values kept per bucket; the rest are counted as "other".
    #[arg(long, env = "DRIFTLINE_ROLLUP_TOP_K", default_value_t = 100)]
    rollup_top_k: usize,
    /// Seconds between rounds of the worker once it has caught up.
    #[arg(long, env = "DRIFTLINE_ROLLUP_POLL_SECS", default_value_t = 10)]
    rollup_poll_secs: u64,
    /// Keep raw predictions and delayed metrics this long (by prediction start), then remove
    /// them once their minutes are rolled up: 14d, 48h, 2y, or forever.
    #[arg(long, env = "DRIFTLINE_RETAIN_RAW", default_value = "14d", value_parser = parse_retention)]
    retain_raw: Retention1,
    /// Keep 1-minute rollups this long.
    #[arg(long = "retain-1m", env = "DRIFTLINE_RETAIN_1M", default_value = "90d", value_parser = parse_retention)]
    retain_1m: Retention1,
    /// Keep 1-hour rollups this long (1-day rollups are kept for ever).
    #[arg(long = "retain-1h", env = "DRIFTLINE_RETAIN_1H", default_value = "2y", value_parser = parse_retention)]
    retain_1h: Retention1,
    /// Keep dead letters this long (by when they were received).
    #[arg(long, env = "DRIFTLINE_RETAIN_DEAD_LETTERS", default_value = "30d", value_parser = parse_retention)]
    retain_dead_letters: Retention1,
}

/// One retention setting: how long, or for ever (`None`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention1(Option<Duration>);

fn parse_retention(text: &str) -> Result<Retention1, String> {
    driftline_rollup::retention::parse_retention(text).map(Retention1)
}

impl RollupArgs {
    pub(crate) fn summary(&self) -> SummaryOptions {
        SummaryOptions { k: self.sketch_k, top_k: self.rollup_top_k.max(1) }
    }

    pub(crate) fn retention(&self) -> anyhow::Result<Retention> {
        let retention = Retention {
            raw: self.retain_raw.0,
            minute: self.retain_1m.0,
            hour: self.retain_1h.0,
            dead_letters: self.retain_dead_letters.0,
        };
        retention.check().map_err(anyhow::Error::msg)?;
        Ok(retention)
    }

    pub(crate) fn worker(&self) -> anyhow::Result<WorkerOptions> {
        Ok(WorkerOptions {
            lateness: Duration::from_secs(self.rollup_lateness_secs),
            summary: self.summary(),
            max_paths: self.rollup_max_paths,
            poll: Duration::from_secs(self.rollup_poll_secs.max(1)),
            retention: self.retention()?,
            ..WorkerOptions::default()
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct RollupCommandArgs {
    /// Roll up what is complete, apply the retention, then exit (otherwise keep rolling until
    /// interrupted).
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    rollup: RollupArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) async fn run(args: RollupCommandArgs) -> anyhow::Result<()> {
    let options = args.rollup.worker()?;
    let store = args.store.open().await?;
    let mut worker = Worker::new(store.clone(), options);
    if !args.once {
        println!("rolling up {} until interrupted", args.store.config().location());
        worker.run(crate::shutdown_signal()).await;
        store.close().await;
        return Ok(());
    }
    let started = std::time::Instant::now();
    let progress = worker
        .catch_up(driftline_core::time::now_ms(), |step| {
            if let Step::Rolled { window, predictions, .. } = step {
                tracing::info!(from = window.start_ms, to = window.end_ms, predictions, "rolled");
            }
        })
        .await?;
    let rolled_to = progress.rolled_to_ms.map_or_else(|| "nothing yet".to_owned(), format_time);
    println!(
        "rolled up {} predictions in {} steps ({} rows written, {} minutes re-rolled for late events) in {:.1} s; \
         complete up to {rolled_to}",
        progress.predictions,
        progress.steps,
        progress.rows,
        progress.minutes_rerolled,
        started.elapsed().as_secs_f64()
    );
    if progress.beyond_retention > 0 {
        println!(
            "{} late events were for minutes whose raw events retention had removed; those rollups stay as they were",
            progress.beyond_retention
        );
    }
    let retained =
        driftline_rollup::retention::apply(store.as_ref(), &options.retention, driftline_core::time::now_ms()).await?;
    let raw = retained.raw;
    if raw.predictions + raw.delayed_metrics + retained.minute_rollups + retained.hour_rollups + retained.dead_letters
        > 0
    {
        println!(
            "retention removed {} predictions and {} delayed metrics{}, {} 1-minute and {} 1-hour rollups, {} dead letters",
            raw.predictions,
            raw.delayed_metrics,
            if raw.partitions > 0 { format!(" ({} day partitions dropped)", raw.partitions) } else { String::new() },
            retained.minute_rollups,
            retained.hour_rollups,
            retained.dead_letters
        );
    }
    for d in store.deployments().await? {
        let refused: Vec<_> = store.rollup_paths(&d).await?.into_iter().filter(|p| !p.admitted).collect();
        if !refused.is_empty() {
            let values: i64 = refused.iter().map(|p| p.refused_values).sum();
            println!(
                "{d}: {} metric paths over the limit of {} were not rolled up ({values} values; first: {}); \
                 raise --rollup-max-paths",
                refused.len(),
                args.rollup.rollup_max_paths,
                refused[0].path
            );
        }
    }
    store.close().await;
    Ok(())
}

/// Output formats of `driftline series`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SeriesFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct SeriesArgs {
    /// The deployment's CRN.
    #[arg(long)]
    deployment: String,
    /// The metric's dotted path (`input.tenure`, `label`, `@latency_ms`, `@predictions`).
    #[arg(long)]
    metric: String,
    /// Bucket length: 1m, 1h or 1d.
    #[arg(long, default_value = "1h")]
    step: Resolution,
    /// Window start, ms since the epoch (default: a day before the end at 1m, 30 days at 1h,
    /// a year at 1d).
    #[arg(long)]
    start_timestamp_ms: Option<i64>,
    /// Window end, ms since the epoch, exclusive (default: now).
    #[arg(long)]
    end_timestamp_ms: Option<i64>,
    /// Quantiles to estimate, comma-separated ranks.
    #[arg(long, default_value = "0.5,0.9,0.99", value_delimiter = ',')]
    quantiles: Vec<f64>,
    /// auto (rollups, and raw rows for what is not rolled yet), rollup, or raw.
    #[arg(long, default_value = "auto")]
    source: Source,
    /// table, csv or json (the API's answer).
    #[arg(long, value_enum, default_value_t = SeriesFormat::Table)]
    format: SeriesFormat,
    #[command(flatten)]
    rollup: RollupArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    rollup: RollupArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let options = args.rollup.worker()?;
    let store = args.store.open().await?;
    let bar = indicatif::ProgressBar::hidden();
    let started = std::time::Instant::now();
    let replayed = driftline_rollup::replay::replay(
        store.clone(),
        options,
        driftline_core::time::now_ms(),
        |total| {
            bar.set_length(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} rolling {pos}/{len} predictions [{bar:40}] {percent}% {per_sec} eta {eta}",
                )
                .expect("a valid progress template")
                .progress_chars("=> "),
            );
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        },
        |predictions| bar.inc(predictions),
    )
    .await?;
    bar.finish_and_clear();
    store.close().await;
    let p = replayed.progress;
    let from =
        replayed.from_ms.map_or_else(|| "all rollups".to_owned(), |t| format!("rollups from {}", format_time(t)));
    println!(
        "replayed {from}: {} predictions rolled in {} steps, {} rows written, in {:.1} s; complete up to {}",
        p.predictions,
        p.steps,
        p.rows,
        started.elapsed().as_secs_f64(),
        p.rolled_to_ms.map_or_else(|| "nothing yet".to_owned(), format_time)
    );
    Ok(())
}

pub(crate) async fn series(args: SeriesArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let end = args.end_timestamp_ms.unwrap_or_else(driftline_core::time::now_ms);
    let start = args.start_timestamp_ms.unwrap_or_else(|| end - crate::server::default_span(args.step));
    let query = SeriesQuery {
        deployment: args.deployment,
        path: args.metric,
        window: Window { start_ms: start, end_ms: end },
        step: args.step,
        source: args.source,
        quantiles: args.quantiles,
        include_sketch: false,
    };
    let answer = driftline_query::series::series(store.clone(), None, &query, args.rollup.summary()).await?;
    store.close().await;
    let mut out = String::new();
    match args.format {
        SeriesFormat::Json => out = serde_json::to_string_pretty(&answer).context("encoding the series")? + "\n",
        SeriesFormat::Csv => write_delimited(&mut out, &answer, &query, ","),
        SeriesFormat::Table => write_table(&mut out, &answer, &query),
    }
    print!("{out}");
    Ok(())
}

/// `2026-11-29 05:33` (UTC).
fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

fn number(x: Option<f64>) -> String {
    match x {
        None => String::new(),
        Some(v) if v == v.trunc() && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn header(query: &SeriesQuery, categorical: bool) -> Vec<String> {
    let mut cols: Vec<String> = ["bucket_start", "count", "mean", "stddev", "min", "max"].map(String::from).to_vec();
    cols.extend(query.quantiles.iter().map(|q| format!("p{}", q * 100.0)));
    if categorical {
        cols.push("top_values".into());
    }
    cols
}

/// Whether any bucket has categorical values (then a column shows the most frequent).
fn categorical(answer: &driftline_rollup::Series) -> bool {
    answer.series.iter().any(|p| !p.counts.is_empty() || p.other_count > 0)
}

fn cells(point: &driftline_rollup::SeriesPoint, query: &SeriesQuery, categorical: bool) -> Vec<String> {
    let mut cells = vec![
        format_time(point.bucket_start_ms),
        point.count.to_string(),
        number(point.mean),
        number(point.stddev),
        number(point.min),
        number(point.max),
    ];
    cells.extend(query.quantiles.iter().map(|q| number(point.quantiles.get(&format!("{q}")).copied())));
    if categorical {
        let mut top: Vec<(&String, &u64)> = point.counts.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        cells.push(top.iter().take(3).map(|(v, c)| format!("{v}={c}")).collect::<Vec<_>>().join(" "));
    }
    cells
}

fn write_delimited(out: &mut String, answer: &driftline_rollup::Series, query: &SeriesQuery, sep: &str) {
    let categorical = categorical(answer);
    out.push_str(&header(query, categorical).join(sep));
    out.push('\n');
    for p in &answer.series {
        let row: Vec<String> = cells(p, query, categorical)
            .into_iter()
            .map(|c| if c.contains(sep) || c.contains('"') { format!("\"{}\"", c.replace('"', "\"\"")) } else { c })
            .collect();
        out.push_str(&row.join(sep));
        out.push('\n');
    }
}

pub(crate) fn write_table(out: &mut String, answer: &driftline_rollup::Series, query: &SeriesQuery) {
    let categorical = categorical(answer);
    let head = header(query, categorical);
    let rows: Vec<Vec<String>> = answer.series.iter().map(|p| cells(p, query, categorical)).collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> =
            cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 0 || (categorical && i + 1 == cells.len()) {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    out.push_str(&line(&head));
    for r in &rows {
        out.push_str(&line(r));
    }
    if rows.is_empty() {
        out.push_str(&format!("(no values of {} in this window)\n", query.path));
    }
}
