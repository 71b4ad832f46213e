//! A drift job over 1,000,000 labelled predictions with 10 features, from Postgres: loads the
//! predictions (the last day drifted) and their labels into a fresh database, creates a job,
//! then times `driftline drift job run` as its own process and reads its peak RSS, and, as the
//! reference, `psql` reading the same rows with `COPY … TO STDOUT`, alternating with the job.
//!
//! ```text
//! cargo build --release -p driftline -p driftline-benches
//! $CARGO_TARGET_DIR/release/drift_job [--predictions 1000000]
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

const DEPLOYMENT: &str = "crn:bench:deployment/drift";
/// Midnight UTC, 2026-11-01.
const D0: i64 = 1_793_491_200_000;
const DAY: i64 = 86_400_000;

fn metrics(v: serde_json::Value) -> MetricsJson {
    v.as_object().expect("object").clone().into()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut predictions = 1_000_000usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n] = args.as_slice() {
        anyhow::ensure!(flag == "--predictions", "usage: drift_job [--predictions N]");
        predictions = n.parse().context("--predictions takes a number")?;
    }
    let server = std::env::var("DRIFTLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| driftline_testkit::DEFAULT_TEST_SERVER.to_owned());
    let url = fresh_database(&server, "driftline_bench_drift_job").await?;
    let store = PostgresStore::connect(&url).await?;

    // Two days: the reference day and the current day, half the predictions each; on the
    // current day five of the ten features drift.
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(3);
    let per_day = predictions / 2;
    for day in 0..2 {
        let mut batch = WriteBatch::new(D0);
        for i in 0..per_day {
            let at = D0 + day * DAY + (i as i64 * DAY) / per_day as i64;
            let uuid = uuid::Uuid::new_v4();
            let mut input = serde_json::Map::new();
            for f in 0..10 {
                let shift = if day == 1 && f < 5 { 0.3 } else { 0.0 };
                let value: f64 = rng.random::<f64>() * 2.0 - 1.0 + rng.random::<f64>() + f as f64 + shift;
                input.insert(format!("f{f}"), json!((value * 1e4).round() / 1e4));
            }
            let truth = rng.random::<f64>() < 0.3;
            let score: f64 = if truth { rng.random_range(0.25..1.0) } else { rng.random_range(0.0..0.75) };
            batch.predictions.push(Prediction {
                uuid,
                model_crn: "crn:bench:model/drift".into(),
                model_build_crn: "crn:bench:build/1".into(),
                model_deployment_crn: DEPLOYMENT.into(),
                start_timestamp_ms: at,
                end_timestamp_ms: at + 5,
                metrics: metrics(json!({"input": input, "prediction": (score * 1e4).round() / 1e4})),
            });
            batch.delayed_metrics.push(DelayedMetrics {
                uuid,
                timestamp_ms: at + 3_600_000,
                metrics: metrics(json!({"label": u8::from(truth)})),
            });
            if batch.predictions.len() == 10_000 {
                store.write(&std::mem::replace(&mut batch, WriteBatch::new(D0))).await?;
            }
        }
        store.write(&batch).await?;
    }
    // As autovacuum would after a bulk load: statistics for the planner, and the visibility
    // map and hint bits set, so that neither side below pays for them on its first read.
    sqlx::query("VACUUM ANALYZE").execute(store.pool()).await?;
    store.close().await;
    println!("loaded {predictions} predictions with labels in {:.1} s", started.elapsed().as_secs_f64());

    let features: Vec<String> = (0..10).map(|f| format!("input.f{f}")).collect();
    let flags: Vec<String> = ["--deployment", DEPLOYMENT, "--window", "1d"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("--reference=baseline:{D0}..{}", D0 + DAY), format!("--features={}", features.join(","))])
        .collect();
    let reports = tempfile::tempdir()?;
    let TimedRun { stdout, seconds, peak_kib: kib } =
        create_and_time_job("bench", &flags, D0 + 2 * DAY, &url, reports.path())?;
    print!("{stdout}");
    let job = |seconds: f64, kib: f64| {
        println!(
            "| drift job over {predictions} labelled predictions (reference day {per_day}, current day {per_day}), \
             10 features, Postgres | {seconds:.2} s | {:.0} MiB peak RSS |",
            kib / 1024.0
        )
    };
    job(seconds, kib);

    // The reference: psql reading the same rows, each prediction's metrics with its delayed
    // metrics, of both days, to /dev/null; then the job again, alternating.
    let copy = |day: i64| {
        format!(
            "COPY (SELECT p.metrics, d.metrics FROM predictions p LEFT JOIN delayed_metrics d ON d.uuid = p.uuid \
             WHERE p.model_deployment_crn = '{DEPLOYMENT}' AND p.start_timestamp_ms >= {} \
             AND p.start_timestamp_ms < {}) TO STDOUT",
            D0 + day * DAY,
            D0 + (day + 1) * DAY
        )
    };
    for round in 0..2 {
        let timing = reports.path().join("psql-time.txt");
        let psql = std::process::Command::new("/usr/bin/time")
            .args(["-f", "%e %M", "-o"])
            .arg(&timing)
            .args(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", &copy(0), "-c", &copy(1)])
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(psql.success(), "psql COPY failed");
        let measured = std::fs::read_to_string(&timing)?;
        let (copy_seconds, copy_kib) = measured
            .split_once(' ')
            .and_then(|(s, k)| Some((s.parse::<f64>().ok()?, k.trim().parse::<f64>().ok()?)))
            .context("time output")?;
        println!(
            "| psql COPY … TO STDOUT of the same rows (both days, metrics and delayed metrics) | {copy_seconds:.2} s | {:.0} MiB peak RSS |",
            copy_kib / 1024.0
        );
        if round == 0 {
            let again = tempfile::tempdir()?;
            let TimedRun { seconds: s2, peak_kib: k2, .. } =
                create_and_time_job("bench-again", &flags, D0 + 2 * DAY, &url, again.path())?;
            job(s2, k2);
        }
    }
    Ok(())
}
