//! Rollup benchmark, on SQLite and Postgres in one run:
//!
//! 1. **Series**: N predictions over 30 days are loaded and rolled up; then a 30-day, 1-hour
//!    series of one input with quantiles is read from the rollups and from raw rows
//!    (`source=raw`, the same code path the API runs), side by side.
//! 2. **Keeping up**: M events go in through `POST /api/v1/events` of the real `driftline serve`
//!    (its own worker off), then `driftline rollup --once` rolls them; the two times side by side.
//! 3. **Size**: bytes of rollup rows per (path, 1-hour bucket), the largest sketch, and bytes per
//!    raw event in the store.
//!
//! ```text
//! cargo build --release -p driftline -p driftline-benches
//! $CARGO_TARGET_DIR/release/rollup --predictions 10000000 --keep-up 1000000
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use driftline_benches::{fresh_database, generate, wire, ServeProcess, DEPLOYMENT, KEY};
use driftline_core::{MetricsJson, Prediction};
use driftline_rollup::{series, SeriesQuery, Source, SummaryOptions, Worker, WorkerOptions};
use driftline_store::{Resolution, Store, StoreConfig, Window, WriteBatch};
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DAY: i64 = 86_400_000;
const DAYS: i64 = 30;

struct Options {
    predictions: usize,
    keep_up: usize,
    server_url: String,
    driftline: PathBuf,
    backends: Vec<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        predictions: 10_000_000,
        keep_up: 1_000_000,
        server_url: std::env::var("DRIFTLINE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| driftline_testkit::DEFAULT_TEST_SERVER.to_owned()),
        driftline: std::env::current_exe()?.with_file_name("driftline"),
        backends: vec!["sqlite".into(), "postgres".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--predictions" => o.predictions = value.parse()?,
            "--keep-up" => o.keep_up = value.parse()?,
            "--postgres" => o.server_url = value.clone(),
            "--driftline" => o.driftline = PathBuf::from(value),
            "--backends" => o.backends = value.split(',').map(str::to_owned).collect(),
            other => bail!(
                "unknown flag {other}; use --predictions N --keep-up N --postgres URL --driftline PATH --backends sqlite,postgres"
            ),
        }
    }
    anyhow::ensure!(o.driftline.exists(), "no driftline binary at {}; build it with --release", o.driftline.display());
    Ok(o)
}

/// The `n`-th of `total` predictions spread evenly over the 30 days before `end`: churn-style
/// inputs and a score, drawn from a generator seeded by `n`'s chunk.
fn predictions(chunk: usize, size: usize, total: usize, end: i64) -> Vec<Prediction> {
    let mut rng = StdRng::seed_from_u64(chunk as u64);
    let start = end - DAYS * DAY;
    (chunk * size..((chunk + 1) * size).min(total))
        .map(|i| {
            let at = start + (i as i64 * DAYS * DAY) / total as i64;
            let plan = ["basic", "standard", "premium"][rng.random_range(0..3)];
            let region = ["north", "south", "east", "west"][rng.random_range(0..4)];
            let metrics: MetricsJson = serde_json::json!({
                "input": {"tenure_months": rng.random_range(0..72), "monthly_charges": (rng.random::<f64>() * 10_000.0).round() / 100.0,
                          "support_calls": rng.random_range(0..6), "plan": plan, "region": region},
                "prediction": (rng.random::<f64>() * 10_000.0).round() / 10_000.0,
            })
            .as_object()
            .expect("an object")
            .clone()
            .into();
            Prediction {
                uuid: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
                model_crn: "crn:bench:model/churn".into(),
                model_build_crn: "crn:bench:build/1".into(),
                model_deployment_crn: DEPLOYMENT.into(),
                start_timestamp_ms: at,
                end_timestamp_ms: at + rng.random_range(3..40),
                metrics,
            }
        })
        .collect()
}

fn no_retention() -> driftline_rollup::Retention {
    driftline_rollup::Retention { raw: None, minute: None, hour: None, dead_letters: None }
}

/// Times of the series reads, best of `runs`.
async fn time_series(store: &dyn Store, query: &SeriesQuery, runs: usize) -> anyhow::Result<(f64, usize)> {
    let mut best = f64::MAX;
    let mut points = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let answer = series(store, query, SummaryOptions::default()).await?;
        best = best.min(started.elapsed().as_secs_f64());
        points = answer.series.len();
    }
    Ok((best, points))
}

struct SeriesFigures {
    load_seconds: f64,
    roll_seconds: f64,
    rollup_seconds: f64,
    raw_seconds: f64,
    points: usize,
    rows_1h: u64,
    bytes_per_1h_row: f64,
    largest_1h_sketch: usize,
    raw_bytes_per_event: Option<f64>,
    rollup_bytes_total: Option<u64>,
}

async fn series_run(o: &Options, config: StoreConfig, end: i64) -> anyhow::Result<SeriesFigures> {
    let store = driftline_store::open(&config).await?;
    const CHUNK: usize = 20_000;
    let started = Instant::now();
    for chunk in 0..o.predictions.div_ceil(CHUNK) {
        let batch = WriteBatch { predictions: predictions(chunk, CHUNK, o.predictions, end), ..WriteBatch::new(end) };
        store.write(&batch).await?;
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let raw_bytes = store_bytes(&config, &store).await?;

    let started = Instant::now();
    let options = WorkerOptions { lateness: Duration::ZERO, retention: no_retention(), ..WorkerOptions::default() };
    let progress = Worker::new(store.clone(), options).catch_up(end, |_| {}).await?;
    let roll_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(progress.predictions == o.predictions as u64, "rolled {} predictions", progress.predictions);
    let all_bytes = store_bytes(&config, &store).await?;

    let query = |source| SeriesQuery {
        deployment: DEPLOYMENT.into(),
        path: "input.monthly_charges".into(),
        window: Window { start_ms: end - DAYS * DAY, end_ms: end },
        step: Resolution::Hour,
        source,
        quantiles: vec![0.5, 0.9, 0.99],
        include_sketch: false,
    };
    let (rollup_seconds, points) = time_series(store.as_ref(), &query(Source::Auto), 5).await?;
    let (raw_seconds, raw_points) = time_series(store.as_ref(), &query(Source::Raw), 1).await?;
    anyhow::ensure!(points == raw_points && points == (DAYS * 24) as usize, "{points} and {raw_points} points");

    let rows =
        store.rollup_rows(Resolution::Hour, DEPLOYMENT, None, Window { start_ms: i64::MIN, end_ms: i64::MAX }).await?;
    let row_bytes = |r: &driftline_store::rollups::RollupRow| {
        r.model_deployment_crn.len()
            + r.path.len()
            + 8 * 8
            + r.sketch.as_ref().map_or(0, Vec::len)
            + r.value_counts.as_ref().map_or(0, String::len)
    };
    let bytes: usize = rows.iter().map(row_bytes).sum();
    let largest = rows.iter().filter_map(|r| r.sketch.as_ref().map(Vec::len)).max().unwrap_or(0);
    store.close().await;
    Ok(SeriesFigures {
        load_seconds,
        roll_seconds,
        rollup_seconds,
        raw_seconds,
        points,
        rows_1h: rows.len() as u64,
        bytes_per_1h_row: bytes as f64 / rows.len().max(1) as f64,
        largest_1h_sketch: largest,
        raw_bytes_per_event: raw_bytes.map(|b| b as f64 / o.predictions as f64),
        rollup_bytes_total: all_bytes.zip(raw_bytes).map(|(a, r)| a.saturating_sub(r)),
    })
}

/// Bytes the store takes on disk: the SQLite file (and its WAL), or the Postgres database.
async fn store_bytes(config: &StoreConfig, store: &Arc<dyn Store>) -> anyhow::Result<Option<u64>> {
    match &config.database_url {
        None => {
            let file = config.data_dir.join(driftline_store::open::SQLITE_FILE);
            let wal = PathBuf::from(format!("{}-wal", file.display()));
            Ok(Some(file.metadata()?.len() + wal.metadata().map(|m| m.len()).unwrap_or(0)))
        }
        Some(url) => {
            let _ = store;
            let mut conn: sqlx::PgConnection = sqlx::Connection::connect(url).await?;
            let size: i64 =
                sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&mut conn).await?;
            Ok(Some(size as u64))
        }
    }
}

/// Seconds to send `n` events over HTTP (worker off), then seconds for `driftline rollup
/// --once` to roll them.
async fn keep_up_run(o: &Options, store_args: &[String]) -> anyhow::Result<(f64, f64)> {
    let rows = generate(o.keep_up);
    let bodies: Vec<String> =
        rows.chunks(1_000).map(|c| format!("[{}]", c.iter().map(wire).collect::<Vec<_>>().join(","))).collect();
    drop(rows);
    let server = ServeProcess::start(&o.driftline, store_args)?;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/events");
    let started = Instant::now();
    let accepted: Vec<u64> = futures::stream::iter(bodies.into_iter().map(|body| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r =
                client.post(url).bearer_auth(KEY).header("content-type", "application/json").body(body).send().await?;
            anyhow::ensure!(r.status().is_success(), "server answered {}", r.status());
            let report: serde_json::Value = r.json().await?;
            Ok(report["accepted"].as_u64().unwrap_or(0))
        }
    }))
    .buffer_unordered(4)
    .try_collect()
    .await?;
    let ingest = started.elapsed().as_secs_f64();
    anyhow::ensure!(accepted.iter().sum::<u64>() == o.keep_up as u64, "not every event was stored");
    server.stop()?;

    let started = Instant::now();
    let out = Command::new(&o.driftline)
        .args(["rollup", "--once", "--rollup-lateness-secs", "0", "--retain-raw", "forever", "--retain-1m", "forever"])
        .args(["--retain-1h", "forever", "--retain-dead-letters", "forever"])
        .args(store_args)
        .env("DRIFTLINE_LOG", "warn,sqlx=error")
        .output()?;
    let roll = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "driftline rollup failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(text.contains(&format!("rolled up {} predictions", o.keep_up)), "{text}");
    Ok((ingest, roll))
}

fn sqlite_config(dir: &Path) -> StoreConfig {
    StoreConfig { database_url: None, data_dir: dir.to_path_buf(), options: Default::default() }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    // The 30 days end at the start of yesterday (UTC): every bucket is complete.
    let end = (driftline_core::time::now_ms() / DAY - 1) * DAY;
    println!("{} predictions over {DAYS} days; keeping up: {} events over HTTP", o.predictions, o.keep_up);
    let mut series_rows = Vec::new();
    let mut keep_rows = Vec::new();
    for backend in &o.backends {
        let dir = tempfile::tempdir()?;
        let config = match backend.as_str() {
            "sqlite" => sqlite_config(dir.path()),
            "postgres" => {
                let url = fresh_database(&o.server_url, "driftline_bench_rollup").await?;
                StoreConfig { database_url: Some(url), ..sqlite_config(dir.path()) }
            }
            other => bail!("unknown backend {other}"),
        };
        let f = series_run(&o, config, end).await?;
        println!(
            "{backend}: loaded in {:.1} s, rolled in {:.1} s, series {:.3} s from rollups, {:.1} s from raw rows",
            f.load_seconds, f.roll_seconds, f.rollup_seconds, f.raw_seconds
        );
        series_rows.push((backend.clone(), f));

        let keep_dir = tempfile::tempdir()?;
        let keep_args = match backend.as_str() {
            "sqlite" => vec!["--data-dir".to_owned(), keep_dir.path().display().to_string()],
            _ => vec!["--database-url".into(), fresh_database(&o.server_url, "driftline_bench_keepup").await?],
        };
        let (ingest, roll) = keep_up_run(&o, &keep_args).await?;
        println!("{backend}: {} events ingested over HTTP in {ingest:.1} s, rolled up in {roll:.1} s", o.keep_up);
        keep_rows.push((backend.clone(), ingest, roll));
    }

    println!();
    println!(
        "| backend | 30-day 1h series from rollups | from raw rows | speed-up | points | load N | roll N (rows/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (backend, f) in &series_rows {
        println!(
            "| {backend} | {:.3} s | {:.1} s | {:.0}× | {} | {:.1} s | {:.1} s ({:.0}) |",
            f.rollup_seconds,
            f.raw_seconds,
            f.raw_seconds / f.rollup_seconds,
            f.points,
            f.load_seconds,
            f.roll_seconds,
            o.predictions as f64 / f.roll_seconds
        );
    }
    println!();
    println!("| backend | ingest M over HTTP | driftline rollup --once | rolling time / ingest time |");
    println!("|---|---:|---:|---:|");
    for (backend, ingest, roll) in &keep_rows {
        println!("| {backend} | {ingest:.1} s | {roll:.1} s | {:.2} |", roll / ingest);
    }
    println!();
    println!("| backend | 1h rollup rows | bytes per (path, 1h bucket), mean | largest 1h sketch | raw bytes per event | all rollups |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (backend, f) in &series_rows {
        println!(
            "| {backend} | {} | {:.0} | {} B | {} | {} |",
            f.rows_1h,
            f.bytes_per_1h_row,
            f.largest_1h_sketch,
            f.raw_bytes_per_event.map_or("—".into(), |b| format!("{b:.0} B")),
            f.rollup_bytes_total.map_or("—".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
        );
    }
    Ok(())
}
