//! `driftline demo`: a realistic stream through the real HTTP API into a fresh embedded store.
//!
//! A binary churn classifier serves 7 simulated days of traffic ending now. From day 5 the
//! customers change (newer, pricier plans, more support calls) and the world changes with them
//! (premium customers churn more than the model believes), so inputs drift and accuracy falls.
//! Ground truth arrives for most predictions hours later, a few events are malformed, and one
//! batch is sent twice, as a retrying client would.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use driftline_core::time::{date_string, now_ms, DAY_MS};
use driftline_core::Limits;
use driftline_drift::job::schedule::ScheduleSpec;
use driftline_drift::job::spec::{Alert, JobSpec, Reference, Span};
use driftline_drift::table::references::ReferenceFiles;
use driftline_ingest::IntakeReport;
use driftline_store::keys::hash_key;
use driftline_store::{RunStatus, Store, StoreConfig};
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::auth::KeyCache;
use crate::server::{self, AppState, HttpSettings};

const MODEL: &str = "crn:demo:model/churn";
const BUILD: &str = "crn:demo:build/churn-v3";
const DEPLOYMENT: &str = "crn:demo:deployment/churn-prod";
const HOUR_MS: i64 = 3_600_000;

/// Options of `driftline demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Directory for the demo's SQLite file (`demo.sqlite`, replaced on every run).
    #[arg(long, env = "DRIFTLINE_DATA_DIR", default_value = "./driftline-data")]
    data_dir: PathBuf,
    /// Number of predictions to generate.
    #[arg(long, env = "DRIFTLINE_DEMO_PREDICTIONS", default_value_t = 100_000)]
    predictions: usize,
    /// Simulated days of traffic, ending now; the drift starts on day 5.
    #[arg(long, env = "DRIFTLINE_DEMO_DAYS", default_value_t = 7)]
    days: i64,
    /// Events per HTTP request.
    #[arg(long, env = "DRIFTLINE_DEMO_BATCH", default_value_t = 1_000)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, env = "DRIFTLINE_DEMO_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Random seed, for a repeatable stream.
    #[arg(long, env = "DRIFTLINE_DEMO_SEED", default_value_t = 42)]
    seed: u64,
}

/// One event to send: its time (for ordering), its wire JSON, and what it is.
struct Outgoing {
    at_ms: i64,
    json: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Prediction,
    Label,
    Malformed,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.days >= 5, "--days must be at least 5: the drift starts on day 5");
    anyhow::ensure!(args.batch > 0 && args.concurrency > 0, "--batch and --concurrency must be positive");
    let path = args.data_dir.join("demo.sqlite");
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::remove_file(&file)
                .with_context(|| format!("removing the previous demo file {}", file.display()))?;
        }
    }
    let url = format!("sqlite://{}", path.display());
    let store = driftline_store::open(&StoreConfig {
        database_url: Some(url.clone()),
        data_dir: args.data_dir.clone(),
        options: Default::default(),
    })
    .await
    .with_context(|| format!("opening {}", path.display()))?;

    let admin_key = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let keys = KeyCache::load(store.clone(), Some(hash_key(&admin_key))).await?;
    let drift = crate::drift_api::DriftSettings { references: ReferenceFiles::new(args.data_dir.join("references")) };
    let state =
        AppState::new(store.clone(), Limits::default(), keys, Default::default(), HttpSettings::default(), drift);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(state, listener, async {
        let _ = stopped.await;
    }));

    let end_ms = now_ms() / 60_000 * 60_000;
    let start_ms = end_ms - args.days * DAY_MS;
    let events = generate(&args, start_ms, end_ms);
    let count = |k: Kind| events.iter().filter(|e| e.kind == k).count();
    let (predictions, labels, malformed) = (count(Kind::Prediction), count(Kind::Label), count(Kind::Malformed));
    println!(
        "driftline demo: churn classifier {DEPLOYMENT}, {} simulated days ({} to {}), inputs drift from day 5",
        args.days,
        date_string(start_ms),
        date_string(end_ms)
    );

    let mut bodies: Vec<(String, &'static str)> = events
        .chunks(args.batch)
        .map(|chunk| {
            (format!("[{}]", chunk.iter().map(|e| e.json.as_str()).collect::<Vec<_>>().join(",")), "application/json")
        })
        .collect();
    // A client retrying its first request, and an NDJSON request with one line cut short.
    let retry = bodies.first().cloned();
    bodies.extend(retry);
    let ndjson_events = generate_tail(&args, end_ms);
    bodies.push((ndjson_events, "application/x-ndjson"));

    let client = reqwest::Client::new();
    let started = Instant::now();
    let resent = args.batch.min(events.len());
    let sent_events = events.len() + resent + 3;
    let reports: Vec<IntakeReport> = futures::stream::iter(bodies.into_iter().map(|(body, content_type)| {
        let client = client.clone();
        let (url, key) = (format!("{base}/api/v1/events"), admin_key.clone());
        async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .context("sending a batch")?;
            let status = response.status();
            anyhow::ensure!(
                status.is_success(),
                "the server answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
            response.json::<IntakeReport>().await.context("reading the intake answer")
        }
    }))
    .buffer_unordered(args.concurrency)
    .try_collect()
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let requests = reports.len();
    let total = reports.iter().fold(IntakeReport::default(), |mut t, r| {
        t.accepted += r.accepted;
        t.duplicates += r.duplicates;
        t.rejected += r.rejected;
        t
    });

    let counts = store.counts().await?;
    let letters = store.dead_letters(3).await?;
    let sample = sample_answer(&client, &base, &admin_key, start_ms).await?;
    let _ = stop.send(());
    server.await??;
    let drift = drift_job(store.as_ref(), &args, start_ms, end_ms).await?;
    let rollup = rollup_series(store.clone(), start_ms, end_ms).await?;
    store.close().await;

    println!();
    println!(
        "  sent          {sent_events} events in {requests} requests: {} predictions, {labels} late labels, {} malformed, and {resent} resent",
        predictions + 2,
        malformed + 1
    );
    println!(
        "  throughput    {:.0} events/s through POST /api/v1/events ({elapsed:.2} s)",
        sent_events as f64 / elapsed
    );
    println!("  accepted      {} events stored", total.accepted);
    println!("  duplicates    {} (one request sent twice: nothing in it was stored again)", total.duplicates);
    println!("  dead letters  {} (each kept with its raw bytes and reason), for example:", counts.dead_letters);
    for letter in &letters {
        println!("                - {}", letter.reason);
    }
    println!("  in the store  {} predictions, {} delayed metrics", counts.predictions, counts.delayed_metrics);
    println!();
    println!("  GET /api/v1/read_metrics?model_deployment_crn={DEPLOYMENT}&start_timestamp_ms={start_ms}&end_timestamp_ms=… (first two predictions):");
    println!("{}", indent(&serde_json::to_string_pretty(&sample)?, 4));
    println!();
    println!("  drift job `{JOB}` (daily, 1-day windows against the first day, features {}):", FEATURES.join(", "));
    for line in &drift.lines {
        println!("    {line}");
    }
    println!("  report of the last run: {}", drift.report.display());
    println!();
    println!(
        "  rollups: {} predictions rolled into 1m/1h/1d summaries in {:.2} s; daily input.monthly_charges from them",
        rollup.predictions, rollup.seconds
    );
    println!("  (GET /api/v1/series?model_deployment_crn={DEPLOYMENT}&metric=input.monthly_charges&step=1d&quantiles=0.5,0.9&source=rollup):");
    for line in rollup.table.lines() {
        println!("    {line}");
    }
    println!();
    println!("  The demo data is in {}. Serve it with:", path.display());
    println!("    driftline serve --database-url {url}");
    Ok(())
}

/// What the demo's rollup step shows.
struct RollupSummary {
    predictions: u64,
    seconds: f64,
    table: String,
}

/// Rolls the demo's predictions up (as the worker in `serve` does) and reads a daily series of
/// a drifting input from the rollups alone.
async fn rollup_series(store: Arc<dyn Store>, start_ms: i64, end_ms: i64) -> anyhow::Result<RollupSummary> {
    let started = Instant::now();
    let options = driftline_rollup::WorkerOptions { lateness: std::time::Duration::ZERO, ..Default::default() };
    let mut worker = driftline_rollup::Worker::new(store.clone(), options);
    // Rolled up to the end of the demo's last complete day.
    let progress = worker.catch_up(end_ms / DAY_MS * DAY_MS, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let query = driftline_rollup::SeriesQuery {
        deployment: DEPLOYMENT.into(),
        path: "input.monthly_charges".into(),
        window: driftline_store::Window { start_ms, end_ms },
        step: driftline_store::Resolution::Day,
        source: driftline_rollup::Source::Rollup,
        quantiles: vec![0.5, 0.9],
        include_sketch: false,
    };
    let answer = driftline_query::series::series(store.clone(), None, &query, options.summary).await?;
    let mut table = String::new();
    crate::rollup::write_table(&mut table, &answer, &query);
    Ok(RollupSummary { predictions: progress.predictions, seconds, table })
}

const JOB: &str = "churn-daily";
const FEATURES: [&str; 5] =
    ["input.tenure_months", "input.monthly_charges", "input.support_calls", "input.plan", "input.contract"];

struct DriftSummary {
    lines: Vec<String>,
    report: PathBuf,
}

/// Creates a daily drift job on the demo stream (reference: the first day) and runs it for
/// every day after the first; the days from day 5 on must come out drifted.
async fn drift_job(store: &dyn Store, args: &DemoArgs, start_ms: i64, end_ms: i64) -> anyhow::Result<DriftSummary> {
    let minute_of_day = (end_ms.rem_euclid(DAY_MS)) / 60_000;
    let mut spec = JobSpec::new(
        JOB,
        DEPLOYMENT,
        Span { ms: DAY_MS },
        Reference::Baseline { start_ms, end_ms: start_ms + DAY_MS },
        FEATURES.iter().map(|f| f.to_string()).collect(),
        ScheduleSpec {
            expression: format!("daily@{:02}:{:02}", minute_of_day / 60, minute_of_day % 60),
            timezone: "UTC".into(),
        },
    );
    spec.alert = Some(Alert { metric: "roc_auc".into(), below: Some(0.7), above: None });
    store.create_job(&spec.stored(now_ms())).await?;
    let references = ReferenceFiles::new(args.data_dir.join("references"));
    let runs = driftline_drift::job::scheduler::backfill(
        store,
        &references,
        &spec,
        start_ms + 2 * DAY_MS,
        end_ms,
        |_, _, _| {},
    )
    .await?;
    let mut lines = Vec::new();
    for (day, finished) in (2..).zip(&runs) {
        let Some(report) = &finished.report else {
            anyhow::bail!("the drift run for day {day} failed: {}", finished.run.summary.clone().unwrap_or_default());
        };
        let auc = report.aggregate["performance"]["roc_auc"].as_f64().map(|a| format!("{a:.3}")).unwrap_or("—".into());
        let drifted: Vec<&str> =
            report.drift.columns.iter().filter(|c| c.drifted).map(|c| c.column.trim_start_matches("input.")).collect();
        lines.push(format!(
            "day {day}: {:<7} {}/{} features drifted{}, ROC AUC {auc} on {} labelled of {}",
            finished.run.status.as_str(),
            drifted.len(),
            report.drift.columns.len(),
            if drifted.is_empty() { String::new() } else { format!(" ({})", drifted.join(", ")) },
            report.labelled,
            report.rows
        ));
        let flagged = finished.run.status == RunStatus::Drift;
        anyhow::ensure!(
            flagged == (day >= 5),
            "day {day} came out {} but the stream drifts from day 5",
            finished.run.status.as_str()
        );
    }
    let last = runs.last().context("the demo covers at least 5 days")?;
    let (_, report) = driftline_drift::job::persist::write_reports(store, &last.run, &args.data_dir.join("reports"))
        .await?
        .context("the last drift run wrote no report")?;
    Ok(DriftSummary { lines, report })
}

async fn sample_answer(client: &reqwest::Client, base: &str, key: &str, start_ms: i64) -> anyhow::Result<Value> {
    let read = |end: i64| {
        client
            .get(format!("{base}/api/v1/read_metrics"))
            .bearer_auth(key)
            .query(&[
                ("model_deployment_crn", DEPLOYMENT.to_owned()),
                ("start_timestamp_ms", start_ms.to_string()),
                ("end_timestamp_ms", end.to_string()),
            ])
            .send()
    };
    // Widen the window until it holds two predictions.
    let mut end = start_ms + 60_000;
    loop {
        let answer: Value = read(end).await?.error_for_status()?.json().await?;
        let found = answer["metrics"].as_array().map_or(0, Vec::len);
        if found >= 2 || end - start_ms > DAY_MS {
            let mut answer = answer;
            if let Some(list) = answer["metrics"].as_array_mut() {
                list.truncate(2);
            }
            return Ok(answer);
        }
        end += 60_000;
    }
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

fn pick<'a>(rng: &mut StdRng, choices: &[(&'a str, f64)]) -> &'a str {
    let mut x = rng.random::<f64>() * choices.iter().map(|c| c.1).sum::<f64>();
    for (name, weight) in choices {
        if x < *weight {
            return name;
        }
        x -= weight;
    }
    choices[choices.len() - 1].0
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn generate(args: &DemoArgs, start_ms: i64, end_ms: i64) -> Vec<Outgoing> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let n = args.predictions.max(1);
    let step = (end_ms - start_ms) as f64 / n as f64;
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        let at = start_ms + (i as f64 * step) as i64 + rng.random_range(0..step.max(1.0) as i64);
        let drifted = (at - start_ms) / DAY_MS >= 4;
        let tenure = exponential(&mut rng, if drifted { 14.0 } else { 30.0 }).min(72.0).floor();
        let charges = (normal(&mut rng, if drifted { 82.0 } else { 65.0 }, 20.0)).clamp(18.0, 120.0);
        let charges = (charges * 100.0).round() / 100.0;
        let calls = exponential(&mut rng, if drifted { 2.2 } else { 1.2 }).floor();
        let plan_weights = if drifted {
            [("basic", 0.3), ("standard", 0.35), ("premium", 0.35)]
        } else {
            [("basic", 0.5), ("standard", 0.35), ("premium", 0.15)]
        };
        let plan = pick(&mut rng, &plan_weights);
        let contract = pick(&mut rng, &[("month-to-month", 0.55), ("one-year", 0.25), ("two-year", 0.2)]);
        let paperless = rng.random::<f64>() < 0.6;
        let region = pick(&mut rng, &[("north", 1.0), ("south", 1.0), ("east", 1.0), ("west", 1.0)]);
        let logit = -1.0 - 0.04 * tenure
            + 0.02 * (charges - 65.0)
            + 0.35 * calls
            + if contract == "month-to-month" { 0.8 } else { 0.0 }
            - if contract == "two-year" { 0.3 } else { 0.0 };
        let score = (sigmoid(logit) * 10_000.0).round() / 10_000.0;
        // After the shift the world differs from what the model learned: premium churns more.
        let truth = sigmoid(logit + if drifted && plan == "premium" { 1.2 } else { 0.0 });
        let uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let latency = rng.random_range(3..40);
        let event = json!({
            "v": 1, "type": "prediction", "uuid": uuid, "model_crn": MODEL, "model_build_crn": BUILD,
            "model_deployment_crn": DEPLOYMENT, "start_timestamp_ms": at, "end_timestamp_ms": at + latency,
            "metrics": {
                "input": {"tenure_months": tenure, "monthly_charges": charges, "support_calls": calls,
                          "plan": plan, "contract": contract, "paperless_billing": paperless, "region": region},
                "prediction": score,
            }
        });
        out.push(Outgoing { at_ms: at, json: event.to_string(), kind: Kind::Prediction });
        if rng.random::<f64>() < 0.85 {
            let arrives = at + HOUR_MS + exponential(&mut rng, 10.0 * HOUR_MS as f64) as i64;
            if arrives <= end_ms {
                let label = i32::from(rng.random::<f64>() < truth);
                let delayed = json!({"v": 1, "type": "delayed_metrics", "uuid": uuid, "timestamp_ms": arrives,
                                     "metrics": {"label": label}});
                out.push(Outgoing { at_ms: arrives, json: delayed.to_string(), kind: Kind::Label });
            }
        }
    }
    // A few malformed events spread over the stream, of the kinds real clients send.
    let bad = [
        json!({"v": 1, "type": "prediction", "model_crn": MODEL, "model_build_crn": BUILD, "model_deployment_crn": DEPLOYMENT,
               "start_timestamp_ms": start_ms, "end_timestamp_ms": start_ms + 5, "metrics": {"prediction": 0.4}}),
        json!({"v": 1, "type": "prediction", "uuid": uuid::Uuid::new_v4(), "model_crn": MODEL, "model_build_crn": BUILD,
               "model_deployment_crn": DEPLOYMENT, "start_timestamp_ms": start_ms / 1000, "end_timestamp_ms": start_ms / 1000,
               "metrics": {"prediction": 0.4}}),
        json!({"v": 1, "type": "delayed_metrics", "uuid": "order-1234", "timestamp_ms": start_ms, "metrics": {"label": 1}}),
        json!({"v": 1, "type": "prediction", "uuid": uuid::Uuid::new_v4(), "model_crn": MODEL, "model_build_crn": BUILD,
               "model_deployment_crn": DEPLOYMENT, "start_timestamp_ms": start_ms, "end_timestamp_ms": start_ms - 10,
               "metrics": {"prediction": 0.4}}),
        json!({"v": 1, "type": "prediction", "uuid": uuid::Uuid::new_v4(), "model_crn": MODEL, "model_build_crn": BUILD,
               "model_deployment_crn": DEPLOYMENT, "start_timestamp_ms": start_ms, "end_timestamp_ms": start_ms,
               "metrics": "0.4"}),
        json!({"v": 2, "type": "prediction"}),
        json!({"v": 1, "type": "click", "uuid": uuid::Uuid::new_v4()}),
    ];
    let spacing = (end_ms - start_ms) / (bad.len() as i64 * 3 + 1);
    for i in 0..bad.len() * 3 {
        out.push(Outgoing {
            at_ms: start_ms + spacing * (i as i64 + 1),
            json: bad[i % bad.len()].to_string(),
            kind: Kind::Malformed,
        });
    }
    out.sort_by_key(|e| e.at_ms);
    out
}

/// The last request: NDJSON with two good predictions around one cut-short line.
fn generate_tail(args: &DemoArgs, end_ms: i64) -> String {
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let one = |rng: &mut StdRng| {
        let uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        json!({"v": 1, "type": "prediction", "uuid": uuid, "model_crn": MODEL, "model_build_crn": BUILD,
               "model_deployment_crn": DEPLOYMENT, "start_timestamp_ms": end_ms - 1_000, "end_timestamp_ms": end_ms - 990,
               "metrics": {"input": {"tenure_months": 3.0, "plan": "basic"}, "prediction": 0.61}})
        .to_string()
    };
    let first = one(&mut rng);
    let second = one(&mut rng);
    let cut = &first[..first.len() / 2];
    format!("{first}\n{cut}\n{second}\n")
}
