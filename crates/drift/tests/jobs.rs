//! Drift jobs against a real store, on SQLite and on a fresh Postgres database: the window is
//! read with late labels joined on, results are written back as aggregate metrics, runs keep a
//! status and a history, one job never runs twice at once, and the scheduler catches up.

use std::sync::Arc;
use std::time::Duration;

use driftline_core::{DelayedMetrics, Metrics, Prediction};
use driftline_drift::files::Metrics as TaskMetrics;
use driftline_drift::job::{Alert, JobSpec, Reference, Span};
use driftline_drift::runner::run_job;
use driftline_drift::schedule::ScheduleSpec;
use driftline_drift::scheduler::{self, SchedulerConfig};
use driftline_drift::Error;
use driftline_store::postgres::PostgresStore;
use driftline_store::sqlite::SqliteStore;
use driftline_store::{NewRun, RunStatus, Store, Window, WriteBatch};
use driftline_testkit::TestDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

const DAY: i64 = 86_400_000;
/// Midnight UTC, 2026-11-01.
const D0: i64 = 1_793_491_200_000;
const DEPLOYMENT: &str = "crn:test:deployment/churn";

fn metrics(value: serde_json::Value) -> Metrics {
    value.as_object().expect("object").clone()
}

/// `per_day` predictions on each of `days` days from D0; from `drift_from` on, `tenure` moves up
/// and the plan mix changes. About 80% get a label: half of those arrive before their prediction
/// is written, half after. Returns the number of labels.
async fn load(store: &dyn Store, days: i64, per_day: usize, drift_from: i64) -> usize {
    let mut rng = StdRng::seed_from_u64(11);
    let mut early = WriteBatch::new(D0);
    let mut predictions = WriteBatch::new(D0);
    let mut late = WriteBatch::new(D0);
    let mut labels = 0;
    for day in 0..days {
        let drifted = day >= drift_from;
        for i in 0..per_day {
            let at = D0 + day * DAY + (i as i64 * DAY) / per_day as i64;
            let tenure: f64 = rng.random_range(0.0..40.0) + if drifted { 25.0 } else { 0.0 };
            let plan = if rng.random::<f64>() < if drifted { 0.7 } else { 0.2 } { "premium" } else { "basic" };
            let truth = rng.random::<f64>() < 0.3;
            let score = if truth { rng.random_range(0.3..1.0) } else { rng.random_range(0.0..0.7) };
            let uuid = Uuid::new_v4();
            predictions.predictions.push(Prediction {
                uuid,
                model_crn: "crn:test:model/churn".into(),
                model_build_crn: "crn:test:build/1".into(),
                model_deployment_crn: DEPLOYMENT.into(),
                start_timestamp_ms: at,
                end_timestamp_ms: at + 5,
                metrics: metrics(json!({"input": {"tenure": tenure, "plan": plan}, "prediction": score})),
            });
            if rng.random::<f64>() < 0.8 {
                labels += 1;
                let label = DelayedMetrics {
                    uuid,
                    timestamp_ms: at + 3_600_000,
                    metrics: metrics(json!({"label": u8::from(truth)})),
                };
                if i % 2 == 0 {
                    early.delayed_metrics.push(label);
                } else {
                    late.delayed_metrics.push(label);
                }
            }
        }
    }
    for batch in [early, predictions, late] {
        store.write(&batch).await.expect("write");
    }
    labels
}

fn spec(name: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        name,
        DEPLOYMENT,
        Span { ms: DAY },
        Reference::Baseline { start_ms: D0, end_ms: D0 + DAY },
        vec!["input.tenure".into(), "input.plan".into(), "input.absent".into()],
        ScheduleSpec { expression: "daily@00:00".into(), timezone: "UTC".into() },
    );
    spec.alert = Some(Alert { metric: "roc_auc".into(), below: Some(0.2), above: None });
    spec
}

async fn create(store: &dyn Store, spec: &JobSpec, created_at_ms: i64) {
    assert!(store.create_job(&spec.stored(created_at_ms)).await.unwrap());
}

async fn runs_windows_and_writes_results(store: Arc<dyn Store>) {
    let labels = load(store.as_ref(), 4, 400, 2).await;
    let s = spec("churn-daily");
    create(store.as_ref(), &s, D0).await;

    // Day 2 (index 1) is like the baseline; day 3 (index 2) has drifted.
    let calm = run_job(store.as_ref(), &s, D0 + 2 * DAY).await.unwrap();
    let drifted = run_job(store.as_ref(), &s, D0 + 3 * DAY).await.unwrap();
    let calm_report = calm.report.unwrap_or_else(|| panic!("no report: {:?}", calm.run));
    let drift_report = drifted.report.expect("report");
    assert_eq!(calm_report.rows, 400);
    assert_eq!(calm_report.labelled + calm_report.unlabelled, 400);
    assert!(calm_report.unlabelled > 40 && calm_report.unlabelled < 130, "{}", calm_report.unlabelled);
    assert_eq!(calm.run.status, RunStatus::Ok, "{:?}", calm_report.drift);
    assert_eq!(drifted.run.status, RunStatus::Drift);
    let drifted_names: Vec<&str> =
        drift_report.drift.columns.iter().filter(|c| c.drifted).map(|c| c.column.as_str()).collect();
    assert_eq!(drifted_names, ["input.tenure", "input.plan"]);
    // A feature no prediction has: no verdict, a reason, and counted as excluded.
    let absent = &drift_report.drift.columns[2];
    assert!(absent.reason.is_some() && !absent.drifted && absent.current.excluded == 400);

    // Labels that arrived before their prediction count as much as later ones.
    let TaskMetrics::Binary(b) = drift_report.performance.as_ref().unwrap() else { panic!("binary") };
    assert_eq!(b.rows, drift_report.labelled);
    assert!(b.roc_auc.value.unwrap() > 0.6);
    assert!(!drift_report.roc_curve.is_empty());
    let labelled_total: usize = [&calm_report, &drift_report].iter().map(|r| r.labelled).sum();
    assert!(labelled_total <= labels);

    // Results are read back as aggregate metrics of the window, with the job as source.
    let aggregates: Vec<_> = futures::TryStreamExt::try_collect(
        store.aggregate_window(DEPLOYMENT, Window { start_ms: D0, end_ms: D0 + 4 * DAY }),
    )
    .await
    .unwrap();
    assert_eq!(aggregates.len(), 2);
    let last = &aggregates[1];
    assert_eq!(last.source, "drift:churn-daily");
    assert_eq!((last.start_timestamp_ms, last.end_timestamp_ms), (D0 + 2 * DAY, D0 + 3 * DAY));
    assert_eq!(last.metrics["status"], json!("drift"));
    assert_eq!(last.metrics["drift"]["input.tenure"]["drifted"], json!(true));
    assert_eq!(last.metrics["performance"]["roc_auc"], json!(b.roc_auc.value.unwrap()));

    // History, reports.
    let runs = store.runs("churn-daily", 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.status).collect::<Vec<_>>(), [RunStatus::Drift, RunStatus::Ok]);
    let (json_report, html) = store.run_reports("churn-daily", drifted.run.id).await.unwrap().unwrap();
    let json_report = json_report.unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&json_report).unwrap();
    assert_eq!(parsed["status"], json!("drift"));
    let typed: driftline_drift::runner::RunReport =
        serde_json::from_str(&json_report).expect("the JSON report reads back");
    assert_eq!(typed.roc_curve.first().map(|p| p.threshold), Some(None));
    let html = html.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && html.contains("ROC curve"));
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"), "self-contained");
    assert!(!html.contains("running"), "the report shows its own run as finished");

    // A window with no predictions: status no_data, and still an aggregate saying so.
    let empty = run_job(store.as_ref(), &s, D0 + 30 * DAY).await.unwrap();
    assert_eq!(empty.run.status, RunStatus::NoData);

    // The alert turns an otherwise calm run into a warning.
    let mut strict = spec("churn-strict");
    strict.alert = Some(Alert { metric: "roc_auc".into(), below: Some(0.99), above: None });
    create(store.as_ref(), &strict, D0).await;
    let warned = run_job(store.as_ref(), &strict, D0 + 2 * DAY).await.unwrap();
    assert_eq!(warned.run.status, RunStatus::Warning);
    assert!(warned.report.unwrap().alert.unwrap().contains("below 0.99"));
}

async fn previous_period_and_busy_and_failures(store: Arc<dyn Store>) {
    load(store.as_ref(), 4, 200, 3).await;
    let mut s = spec("week-over-day");
    s.reference = Reference::Previous { offset: Span { ms: DAY } };
    create(store.as_ref(), &s, D0).await;
    // Window day 3 against day 2: same distribution. Window day 4 against day 3: drifted.
    let same = run_job(store.as_ref(), &s, D0 + 3 * DAY).await.unwrap();
    let moved = run_job(store.as_ref(), &s, D0 + 4 * DAY).await.unwrap();
    assert_eq!(same.report.as_ref().unwrap().reference.rows, 200);
    assert_ne!(same.run.status, RunStatus::Drift);
    assert_eq!(moved.run.status, RunStatus::Drift);

    // A run in progress (here: recorded by another process) blocks a second one.
    let blocker = store
        .begin_run(&NewRun { job: &s.name, scheduled_ms: 1, window_start_ms: 0, window_end_ms: 1, started_at_ms: 1 })
        .await
        .unwrap()
        .expect("no run in progress");
    match run_job(store.as_ref(), &s, D0 + 4 * DAY).await {
        Err(Error::Busy { job }) => assert_eq!(job, s.name),
        other => panic!("expected Busy, got {other:?}"),
    }
    // A stale running run is abandoned, after which runs go ahead again.
    assert_eq!(store.abandon_runs(2).await.unwrap(), 1);
    assert_eq!(store.run(&s.name, blocker).await.unwrap().unwrap().status, RunStatus::Failed);
    run_job(store.as_ref(), &s, D0 + 4 * DAY).await.unwrap();

    // A failing run (a reference file that vanished) is recorded as failed with the reason.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ref.csv");
    std::fs::write(&path, "input.tenure,input.plan,input.absent\n1,basic,\n").unwrap();
    let mut f = spec("from-file");
    f.reference = Reference::File { path: path.clone() };
    create(store.as_ref(), &f, D0).await;
    let ok = run_job(store.as_ref(), &f, D0 + 2 * DAY).await.unwrap();
    assert_eq!(ok.report.unwrap().reference.rows, 1);
    std::fs::write(&path, "other\n1\n").unwrap();
    let failed = run_job(store.as_ref(), &f, D0 + 3 * DAY).await.unwrap();
    assert_eq!(failed.run.status, RunStatus::Failed);
    assert!(failed.run.summary.unwrap().contains("input.tenure"), "the failure names the missing column");
}

async fn scheduler_catches_up(store: Arc<dyn Store>) {
    load(store.as_ref(), 3, 100, 10).await;
    let now = driftline_core::time::now_ms();
    let mut s = spec("catch-up");
    // Hourly, created 10 hours ago: 10 runs are due; the scheduler catches up the newest 3.
    s.schedule = ScheduleSpec { expression: "hourly".into(), timezone: "UTC".into() };
    s.window = Span { ms: 3_600_000 };
    create(store.as_ref(), &s, now - 10 * 3_600_000 - 60_000).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reports = tempfile::tempdir().unwrap();
    let config = SchedulerConfig {
        tick: Duration::from_millis(100),
        catch_up: 3,
        reports_dir: Some(reports.path().to_path_buf()),
    };
    let task = tokio::spawn(scheduler::run(store.clone(), config, async {
        let _ = stopped.await;
    }));
    let mut runs = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        runs = store.runs("catch-up", 50).await.unwrap();
        if runs.len() >= 3 && runs.iter().all(|r| r.status != RunStatus::Running) {
            break;
        }
    }
    // A few more ticks: nothing else is due, so nothing more runs.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = store.runs("catch-up", 50).await.unwrap();
    let _ = stop.send(());
    task.await.unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(after.len(), 3, "no run twice: {after:?}");
    let mut times: Vec<i64> = after.iter().map(|r| r.scheduled_ms).collect();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), 3, "three distinct windows");
    let newest = times[2];
    assert!(newest <= now + 1000 && now - newest < 3_600_000, "the newest due time was run");
    assert!(after.iter().all(|r| r.status == RunStatus::NoData), "the windows are empty (data is from 2026-11)");
    let files = std::fs::read_dir(reports.path()).unwrap().count();
    assert_eq!(files, 6, "a JSON and an HTML report per scheduled run");
}

async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.sqlite")).await.unwrap();
    (dir, Arc::new(store))
}

async fn postgres() -> Option<(TestDatabase, Arc<dyn Store>)> {
    let db = TestDatabase::create().await?;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    Some((db, Arc::new(store)))
}

#[tokio::test]
async fn sqlite_runs_windows_and_writes_results() {
    let (_dir, store) = sqlite().await;
    runs_windows_and_writes_results(store).await;
}

#[tokio::test]
async fn postgres_runs_windows_and_writes_results() {
    let Some((_db, store)) = postgres().await else { return };
    runs_windows_and_writes_results(store).await;
}

#[tokio::test]
async fn sqlite_previous_period_busy_and_failures() {
    let (_dir, store) = sqlite().await;
    previous_period_and_busy_and_failures(store).await;
}

#[tokio::test]
async fn postgres_previous_period_busy_and_failures() {
    let Some((_db, store)) = postgres().await else { return };
    previous_period_and_busy_and_failures(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scheduler_catches_up_once() {
    let (_dir, store) = sqlite().await;
    scheduler_catches_up(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scheduler_catches_up_once() {
    let Some((_db, store)) = postgres().await else { return };
    scheduler_catches_up(store).await;
}
