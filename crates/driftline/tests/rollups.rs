//! Rollups end to end: the worker inside `serve` and the series API over it, `driftline series`,
//! and `driftline rollup --once` killed with SIGKILL at random moments.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cli, sqlite_args, Server, ADMIN};
use driftline_core::{MetricsJson, Prediction};
use driftline_rollup::{Worker, WorkerOptions};
use driftline_store::rollups::RollupRow;
use driftline_store::{Resolution, Store, StoreConfig, Window, WriteBatch};
use driftline_testkit::TestDatabase;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};

const DEP: &str = "crn:test:deployment/churn";
const OTHER: &str = "crn:test:deployment/other";
/// 2023-11-14T00:00:00Z.
const T0: i64 = 1_699_920_000_000;

fn event(n: u32, deployment: &str, start: i64, tenure: u32, plan: &str) -> Value {
    json!({"v":1,"type":"prediction","uuid":format!("00000000-0000-4000-8000-{n:012}"),"model_crn":"crn:test:model/churn",
           "model_build_crn":"crn:test:build/1","model_deployment_crn":deployment,"start_timestamp_ms":start,
           "end_timestamp_ms":start + 3 + i64::from(n % 9),"metrics":{"input":{"tenure":tenure,"plan":plan},"prediction":f64::from(n % 100) / 100.0}})
}

async fn series_flow(store_args: Vec<String>) {
    let server = Server::start_admin(&store_args, &["--rollup-lateness-secs", "0", "--rollup-poll-secs", "1"]);
    let events: Vec<Value> = (0..600)
        .map(|n| {
            let d = if n % 4 == 0 { OTHER } else { DEP };
            event(n, d, T0 + i64::from(n) * 37_000, n % 50, ["basic", "pro", "team"][n as usize % 3])
        })
        .collect();
    let (status, _, report) =
        server.post("/api/v1/events", ADMIN, "application/json", Value::Array(events).to_string()).await;
    assert_eq!((status, report["accepted"].clone()), (StatusCode::OK, json!(600)), "{report}");

    let path = |metric: &str, source: &str| {
        format!(
            "/api/v1/series?model_deployment_crn={DEP}&metric={metric}&start_timestamp_ms={T0}&end_timestamp_ms={}\
             &step=1h&quantiles=0.5,0.9&source={source}",
            T0 + 86_400_000
        )
    };
    // The worker in the server rolls everything up within a few rounds.
    let started = Instant::now();
    let rolled = loop {
        let (status, _, answer) = server.get(&path("input.tenure", "rollup"), Some(ADMIN)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let count: u64 = answer["series"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum();
        if count == 450 {
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "rolled within 30 s: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rolled["resolution"], json!("1h"));
    let first = &rolled["series"][0];
    assert_eq!(first["bucketStartMs"], json!(T0));
    for field in ["count", "sum", "min", "max", "mean", "stddev"] {
        assert!(first[field].is_number(), "{field} in {first}");
    }
    assert!(first["quantiles"]["0.5"].is_number() && first["quantiles"]["0.9"].is_number(), "{first}");
    let raw = server.get(&path("input.tenure", "raw"), Some(ADMIN)).await.2;
    assert_eq!(raw, rolled, "rollups answer exactly what raw rows do");
    let categorical = server.get(&path("input.plan", "auto"), Some(ADMIN)).await.2;
    let counts = &categorical["series"][0]["counts"];
    assert!(counts["basic"].is_u64() && counts["pro"].is_u64() && counts["team"].is_u64(), "{categorical}");
    let sketched = server.get(&(path("prediction", "auto") + "&include=sketch"), Some(ADMIN)).await.2;
    let sketch = sketched["series"][0]["sketch"].as_str().unwrap();
    assert!(sketch.len() > 16 && sketch.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
    let latency = server.get(&path("@latency_ms", "auto"), Some(ADMIN)).await.2;
    assert!(latency["series"][0]["max"].as_f64().unwrap() <= 11.0, "{latency}");

    // Bad parameters name the field.
    for (query, field) in [
        (format!("model_deployment_crn={DEP}"), "metric"),
        (format!("model_deployment_crn={DEP}&metric=x&step=5m"), "step"),
        (format!("model_deployment_crn={DEP}&metric=x&quantiles=0.5,2"), "quantiles"),
        (format!("model_deployment_crn={DEP}&metric=x&source=cache"), "source"),
        (format!("model_deployment_crn={DEP}&metric=x&include=everything"), "include"),
        (format!("model_deployment_crn={DEP}&metric=x&step=1m&start_timestamp_ms=0"), "buckets"),
        ("metric=x".to_owned(), "model_deployment_crn"),
    ] {
        let (status, content_type, problem) = server.get(&format!("/api/v1/series?{query}"), Some(ADMIN)).await;
        assert_eq!((status, content_type.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"), "{query}");
        assert!(problem["detail"].as_str().unwrap().contains(field), "{query}: {problem}");
    }

    // A key scoped to a deployment reads its series and no other's.
    let scoped = cli(&["keys", "create", "--name", "dash", "--scope", "read", "--deployment", OTHER], &store_args);
    let scoped = String::from_utf8(scoped.stdout).unwrap().trim().to_owned();
    let started = Instant::now();
    while server.get(&path("input.tenure", "auto").replace(DEP, OTHER), Some(&scoped)).await.0 != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(10), "a new key takes effect within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.get(&path("input.tenure", "auto"), Some(&scoped)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(server.get(&path("input.tenure", "auto"), None).await.0, StatusCode::UNAUTHORIZED);

    // The command line reads the same store.
    let out = cli(
        &[
            "series",
            "--deployment",
            DEP,
            "--metric",
            "input.tenure",
            "--step",
            "1d",
            "--start-timestamp-ms",
            &T0.to_string(),
            "--end-timestamp-ms",
            &(T0 + 86_400_000).to_string(),
            "--format",
            "csv",
            "--quantiles",
            "0.5",
        ],
        &store_args,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "bucket_start,count,mean,stddev,min,max,p50");
    assert!(lines[1].starts_with("2023-11-14 00:00 UTC,450,"), "{csv}");
    assert!(server.stop().success());
}

#[tokio::test]
async fn series_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    series_flow(sqlite_args(&dir)).await;
}

#[tokio::test]
async fn series_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    series_flow(vec!["--database-url".into(), db.url.clone()]).await;
}

fn predictions(seed: u64) -> Vec<Prediction> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..120_000u32)
        .map(|n| {
            let start = T0 + i64::from(n) * 6_000 + rng.random_range(0..6_000);
            let plan = ["basic", "pro", "team"][rng.random_range(0..3)];
            let (tenure, charges, score) =
                (rng.random_range(0..72), rng.random_range(18.0..120.0), rng.random::<f64>());
            let metrics: MetricsJson =
                json!({"input": {"tenure": tenure, "charges": charges, "plan": plan}, "prediction": score})
                    .as_object()
                    .unwrap()
                    .clone()
                    .into();
            Prediction {
                uuid: uuid::Uuid::from_u128(u128::from(n) + 1),
                model_crn: "crn:test:model/churn".into(),
                model_build_crn: "crn:test:build/1".into(),
                model_deployment_crn: if n % 5 == 0 { OTHER.into() } else { DEP.into() },
                start_timestamp_ms: start,
                end_timestamp_ms: start + i64::from(n % 17),
                metrics,
            }
        })
        .collect()
}

async fn open(config: StoreConfig) -> Arc<dyn Store> {
    driftline_store::open(&config).await.unwrap()
}

async fn rows(store: &dyn Store, resolution: Resolution) -> BTreeMap<(String, String, i64), RollupRow> {
    let mut out = BTreeMap::new();
    for d in store.deployments().await.unwrap() {
        for r in store.rollup_rows(resolution, &d, None, Window { start_ms: i64::MIN, end_ms: i64::MAX }).await.unwrap()
        {
            out.insert((r.model_deployment_crn.clone(), r.path.clone(), r.bucket_start_ms), r);
        }
    }
    out
}

/// The row with its sketch replaced by the sketch's count: the parts that do not depend on the
/// sketch's random compaction.
fn settled(row: &RollupRow) -> (RollupRow, u64) {
    let n = row.sketch.as_ref().map_or(0, |b| driftline_rollup::Sketch::from_bytes(b).unwrap().n());
    (RollupRow { sketch: None, ..row.clone() }, n)
}

/// Kills `driftline rollup --once` at random moments until one run finishes on its own; the
/// rollups then equal those of one uninterrupted run over the same events.
async fn sigkill_flow(config: StoreConfig, store_args: Vec<String>, reference: StoreConfig) {
    let events = predictions(5);
    let store = open(config).await;
    let twin = open(reference).await;
    for chunk in events.chunks(5_000) {
        let batch = WriteBatch { predictions: chunk.to_vec(), ..WriteBatch::new(T0) };
        store.write(&batch).await.unwrap();
        twin.write(&batch).await.unwrap();
    }
    store.close().await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut kills = 0;
    for attempt in 0.. {
        assert!(attempt < 40, "a run finished within 40 attempts");
        let mut child = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(["rollup", "--once", "--rollup-lateness-secs", "0"])
            // These 2023 events would be past every default retention.
            .args([
                "--retain-raw",
                "forever",
                "--retain-1m",
                "forever",
                "--retain-1h",
                "forever",
                "--retain-dead-letters",
                "forever",
            ])
            .args(&store_args)
            .env("DRIFTLINE_LOG", "warn,sqlx=error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(300..2_500));
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "driftline rollup --once failed");
                break true;
            }
            if Instant::now() >= deadline {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if finished {
            break;
        }
    }
    assert!(kills >= 2, "the worker was killed mid-way at least twice ({kills})");

    let store = open(config_of(&store_args)).await;
    let mut worker = Worker::new(twin.clone(), WorkerOptions { lateness: Duration::ZERO, ..WorkerOptions::default() });
    worker.catch_up(driftline_core::time::now_ms(), |_| {}).await.unwrap();
    assert!(store.rollup_state().await.unwrap().rolled_to_ms.unwrap() > T0 + 9 * 86_400_000);
    for resolution in Resolution::ALL {
        let (killed, whole) = (rows(&*store, resolution).await, rows(&*twin, resolution).await);
        let missing = whole.keys().find(|k| !killed.contains_key(*k));
        let extra = killed.keys().find(|k| !whole.contains_key(*k));
        assert_eq!((missing, extra, killed.len()), (None, None, whole.len()), "buckets at {}", resolution.name());
        for (key, row) in &whole {
            assert_eq!(settled(&killed[key]), settled(row), "{key:?} at {}", resolution.name());
        }
    }
}

fn config_of(store_args: &[String]) -> StoreConfig {
    match store_args {
        [flag, dir] if flag == "--data-dir" => {
            StoreConfig { database_url: None, data_dir: dir.into(), options: Default::default() }
        }
        [flag, url] if flag == "--database-url" => {
            StoreConfig { database_url: Some(url.clone()), data_dir: ".".into(), options: Default::default() }
        }
        other => panic!("unexpected store flags {other:?}"),
    }
}

#[tokio::test]
async fn rollup_survives_sigkill_on_sqlite() {
    let (dir, twin) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = sqlite_args(&dir);
    sigkill_flow(config_of(&args), args.clone(), config_of(&sqlite_args(&twin))).await;
}

#[tokio::test]
async fn rollup_survives_sigkill_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    let twin = tempfile::tempdir().unwrap();
    let args = vec!["--database-url".to_owned(), db.url.clone()];
    sigkill_flow(config_of(&args), args, config_of(&sqlite_args(&twin))).await;
}

#[tokio::test]
async fn rollup_once_applies_retention_and_replay_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let args = sqlite_args(&dir);
    let store = open(config_of(&args)).await;
    let now = driftline_core::time::now_ms();
    // Four days up to an hour ago, one prediction every 10 minutes.
    let events: Vec<Prediction> = predictions(8)
        .into_iter()
        .take(4 * 144)
        .enumerate()
        .map(|(i, mut p)| {
            p.start_timestamp_ms = now - 4 * 86_400_000 + i as i64 * 600_000 - 3_600_000;
            p.end_timestamp_ms = p.start_timestamp_ms + 5;
            p
        })
        .collect();
    // Received five days ago too: retention keeps what was received recently, however old.
    store.write(&WriteBatch { predictions: events.clone(), ..WriteBatch::new(now - 5 * 86_400_000) }).await.unwrap();
    store.close().await;

    let out =
        cli(&["rollup", "--once", "--retain-raw", "2d", "--retain-1m", "forever", "--retain-1h", "forever"], &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let removed: u64 = text
        .split("retention removed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a retention line in {text}"));
    let cut = now - 2 * 86_400_000;
    let old = events.iter().filter(|p| p.start_timestamp_ms < cut).count() as u64;
    assert!(removed > 0 && removed.abs_diff(old) <= 1, "removed {removed} of {old} older than 2 days: {text}");

    let out = cli(&["replay", "--retain-raw", "2d"], &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("replayed rollups from "), "{text}");
    let store = open(config_of(&args)).await;
    let day = store
        .rollup_rows(Resolution::Day, DEP, Some("@predictions"), Window { start_ms: 0, end_ms: i64::MAX })
        .await
        .unwrap();
    let counted: i64 = day.iter().map(|r| r.n_numeric).sum();
    let complete_days = events
        .iter()
        .filter(|p| p.model_deployment_crn == DEP && p.start_timestamp_ms < Resolution::Day.floor(now - 300_000))
        .count();
    assert_eq!(counted as usize, complete_days, "day rollups count every prediction of complete days, replay or not");
}
