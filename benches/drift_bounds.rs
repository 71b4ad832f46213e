//! The memory and report size of one drift job over wide text: two windows of N predictions
//! each (the reference day and the current day) in a fresh Postgres database, every prediction
//! with a long text feature (900 characters, a different value in every row), a categorical
//! feature with 60,000 categories, a number, a score and a label. Runs
//! `driftline drift job run` as its own process under `/usr/bin/time` and prints its peak RSS,
//! its time and the sizes of the two reports it wrote.
//!
//! ```text
//! cargo build --release -p driftline -p driftline-benches
//! $CARGO_TARGET_DIR/release/drift_bounds [--rows 200000] [--categories 60000] [--text-chars 900]
//! ```

use std::time::Instant;

use anyhow::Context;
use driftline_benches::{create_and_time_job, fresh_database, TimedRun};
use driftline_core::{DelayedMetrics, MetricsJson, Prediction};
use driftline_store::postgres::PostgresStore;
use driftline_store::{EventStore, WriteBatch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const DEPLOYMENT: &str = "crn:bench:deployment/bounds";
/// Midnight UTC, 2026-11-01.
const D0: i64 = 1_793_491_200_000;
const DAY: i64 = 86_400_000;

struct Settings {
    rows: usize,
    categories: usize,
    text_chars: usize,
}

fn settings() -> anyhow::Result<Settings> {
    let mut s = Settings { rows: 200_000, categories: 60_000, text_chars: 900 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            anyhow::bail!("usage: drift_bounds [--rows N] [--categories N] [--text-chars N]")
        };
        let n: usize = value.parse().with_context(|| format!("{flag} takes a number"))?;
        match flag.as_str() {
            "--rows" => s.rows = n,
            "--categories" => s.categories = n.max(1),
            "--text-chars" => s.text_chars = n.max(10),
            other => anyhow::bail!("unknown flag {other}; use --rows, --categories or --text-chars"),
        }
    }
    Ok(s)
}

fn metrics(v: serde_json::Value) -> MetricsJson {
    v.as_object().expect("object").clone().into()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let s = settings()?;
    let server = std::env::var("DRIFTLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| driftline_testkit::DEFAULT_TEST_SERVER.to_owned());
    let url = fresh_database(&server, "driftline_bench_drift_bounds").await?;
    let store = PostgresStore::connect(&url).await?;

    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(17);
    let filler: String = (0..s.text_chars).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect();
    for day in 0..2i64 {
        let mut batch = WriteBatch::new(D0);
        for i in 0..s.rows {
            let at = D0 + day * DAY + (i as i64 * DAY) / s.rows as i64;
            let uuid = uuid::Uuid::new_v4();
            // A different long text in every row: its number, then filler to the full length.
            let number = format!("{day}-{i:09} ");
            let note = format!("{number}{}", &filler[..s.text_chars - number.len()]);
            // Categories with a long tail; on the current day the head moves.
            let rank = (rng.random::<f64>().powi(3) * s.categories as f64) as usize;
            let sku = if day == 1 { (rank + 7) % s.categories } else { rank };
            let truth = rng.random::<f64>() < 0.3;
            let score: f64 = if truth { rng.random_range(0.25..1.0) } else { rng.random_range(0.0..0.75) };
            batch.predictions.push(Prediction {
                uuid,
                model_crn: "crn:bench:model/bounds".into(),
                model_build_crn: "crn:bench:build/1".into(),
                model_deployment_crn: DEPLOYMENT.into(),
                start_timestamp_ms: at,
                end_timestamp_ms: at + 5,
                metrics: metrics(json!({
                    "input": {"note": note, "sku": format!("sku-{sku:06}"), "amount": rng.random_range(0.0..100.0f64)},
                    "prediction": (score * 1e4).round() / 1e4,
                })),
            });
            batch.delayed_metrics.push(DelayedMetrics {
                uuid,
                timestamp_ms: at + 3_600_000,
                metrics: metrics(json!({"label": u8::from(truth)})),
            });
            if batch.predictions.len() == 5_000 {
                store.write(&std::mem::replace(&mut batch, WriteBatch::new(D0))).await?;
            }
        }
        store.write(&batch).await?;
    }
    store.close().await;
    println!(
        "loaded 2 x {} predictions ({}-character text, {} categories) with labels in {:.1} s",
        s.rows,
        s.text_chars,
        s.categories,
        started.elapsed().as_secs_f64()
    );

    let flags: Vec<String> =
        ["--deployment", DEPLOYMENT, "--window", "1d", "--features", "input.note,input.sku,input.amount"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([format!("--reference=baseline:{D0}..{}", D0 + DAY)])
            .collect();
    let reports = tempfile::tempdir()?;
    let TimedRun { stdout, seconds, peak_kib: kib } =
        create_and_time_job("bounds", &flags, D0 + 2 * DAY, &url, reports.path())?;
    print!("{stdout}");
    let size = |extension: &str| -> anyhow::Result<u64> {
        let path = reports.path().join(format!("bounds-run1.{extension}"));
        Ok(std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?.len())
    };
    println!(
        "| 2 x {} predictions, {}-character text, {} categories, Postgres | {seconds:.2} s | {:.0} MiB peak RSS | JSON report {} bytes | HTML report {} bytes |",
        s.rows,
        s.text_chars,
        s.categories,
        kib / 1024.0,
        size("json")?,
        size("html")?
    );
    Ok(())
}
