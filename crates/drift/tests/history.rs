//! Drift from history: once retention has removed a window's raw rows, a drift job reads it
//! from the rollups (each part at the finest resolution still kept) and gives the verdicts the
//! raw rows gave, its statistics within the bounds it states and marked approximate, and ROC
//! AUC from the rollups' per-class score sketches. On SQLite and on a fresh Postgres database.

use std::sync::Arc;
use std::time::Duration;

use driftline_core::{DelayedMetrics, MetricsJson, Prediction};
use driftline_drift::compare::{ColumnDrift, Method};
use driftline_drift::job::run::run_job;
use driftline_drift::job::schedule::ScheduleSpec;
use driftline_drift::job::spec::{JobSpec, Reference, Span};
use driftline_drift::report::run::RunReport;
use driftline_drift::stats::performance::Metrics;
use driftline_drift::table::references::ReferenceFiles;
use driftline_rollup::retention::{self, Retention};
use driftline_rollup::{Worker, WorkerOptions};
use driftline_store::postgres::PostgresStore;
use driftline_store::sqlite::SqliteStore;
use driftline_store::{RunStatus, Selection, Store, Window, WriteBatch};
use driftline_testkit::TestDatabase;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

const DAY: i64 = 86_400_000;
/// Midnight UTC, 2026-11-01.
const D0: i64 = 1_793_491_200_000;
const DEPLOYMENT: &str = "crn:test:deployment/history";
const PER_DAY: usize = 3_000;

/// Four days of predictions, received when made; from day 2 on `tenure` moves up and the plan
/// mix changes. Most get a 0/1 label an hour later; the score separates the classes.
async fn load(store: &dyn Store) {
    let mut rng = StdRng::seed_from_u64(17);
    for day in 0..4 {
        let mut batch = WriteBatch::new(D0 + day * DAY);
        let drifted = day >= 2;
        for i in 0..PER_DAY {
            let at = D0 + day * DAY + (i as i64 * DAY) / PER_DAY as i64;
            let tenure: f64 = rng.random_range(0.0..40.0) + if drifted { 25.0 } else { 0.0 };
            let plan = if rng.random::<f64>() < if drifted { 0.7 } else { 0.2 } { "premium" } else { "basic" };
            let truth = rng.random::<f64>() < 0.3;
            let score: f64 = if truth { rng.random_range(0.3..1.0) } else { rng.random_range(0.0..0.7) };
            let uuid = Uuid::new_v4();
            batch.predictions.push(Prediction {
                uuid,
                model_crn: "crn:test:model/history".into(),
                model_build_crn: "crn:test:build/1".into(),
                model_deployment_crn: DEPLOYMENT.into(),
                start_timestamp_ms: at,
                end_timestamp_ms: at + 5,
                metrics: metrics(json!({"input": {"tenure": tenure, "plan": plan}, "prediction": score})),
            });
            if rng.random::<f64>() < 0.9 {
                batch.delayed_metrics.push(DelayedMetrics {
                    uuid,
                    timestamp_ms: at + 3_600_000,
                    metrics: metrics(json!({"label": u8::from(truth)})),
                });
            }
        }
        store.write(&batch).await.expect("write");
    }
}

fn metrics(value: serde_json::Value) -> MetricsJson {
    value.as_object().expect("object").clone().into()
}

fn spec() -> JobSpec {
    JobSpec::new(
        "history-daily",
        DEPLOYMENT,
        Span { ms: DAY },
        Reference::Baseline { start_ms: D0, end_ms: D0 + DAY },
        vec!["input.tenure".into(), "input.plan".into(), "input.absent".into()],
        ScheduleSpec { expression: "daily@00:00".into(), timezone: "UTC".into() },
    )
}

fn no_files() -> ReferenceFiles {
    ReferenceFiles::new("/nonexistent/driftline-references")
}

async fn run(store: &dyn Store, at: i64) -> (RunStatus, RunReport) {
    let finished = run_job(store, &no_files(), &spec(), at).await.unwrap();
    let report = finished.report.unwrap_or_else(|| panic!("no report: {:?}", finished.run));
    (finished.run.status, report)
}

fn column<'a>(report: &'a RunReport, name: &str) -> &'a ColumnDrift {
    report.drift.columns.iter().find(|c| c.column == name).expect("column")
}

fn roc_auc(report: &RunReport) -> f64 {
    let Some(Metrics::Binary(b)) = &report.performance else { panic!("binary metrics") };
    b.roc_auc.value.expect("roc auc")
}

async fn drift_from_history(store: Arc<dyn Store>) {
    load(store.as_ref()).await;
    let stored = spec().stored(D0);
    assert!(store.create_job(&stored).await.unwrap());

    // From raw rows: day 1 is like the baseline (day 0), day 2 has drifted.
    let (calm_status, calm) = run(store.as_ref(), D0 + 2 * DAY).await;
    let (drift_status, drifted) = run(store.as_ref(), D0 + 3 * DAY).await;
    assert_eq!((calm_status, drift_status), (RunStatus::Ok, RunStatus::Drift));
    assert!(calm.from_rollups.is_empty() && calm.drift.columns.iter().all(|c| c.approximate.is_none()));

    // Roll everything, then keep raw rows 1 day, minutes 3 days and hours 4 days, as of day 5:
    // every raw row goes, minutes before day 2 and hours before day 1.
    let now = D0 + 5 * DAY;
    let mut worker = Worker::new(store.clone(), WorkerOptions::default());
    worker.catch_up(now, |_| {}).await.unwrap();
    let days = |n: u64| Some(Duration::from_secs(n * 86_400));
    let keep = Retention { raw: days(1), minute: days(3), hour: days(4), dead_letters: days(30) };
    let removed = retention::apply(store.as_ref(), &keep, now).await.unwrap();
    assert_eq!(removed.raw.predictions, 4 * PER_DAY as u64, "{removed:?}");
    assert!(removed.minute_rollups > 0 && removed.hour_rollups > 0, "{removed:?}");
    let everything = Window { start_ms: D0, end_ms: D0 + 4 * DAY };
    assert_eq!(store.read_window(Selection::Deployment(DEPLOYMENT.into()), everything).count().await, 0);

    // From rollups: the same verdicts, marked approximate, within their bounds.
    let (calm_status2, calm2) = run(store.as_ref(), D0 + 2 * DAY).await;
    let (drift_status2, drifted2) = run(store.as_ref(), D0 + 3 * DAY).await;
    assert_eq!((calm_status2, drift_status2), (RunStatus::Ok, RunStatus::Drift));
    for (exact, approx) in [(&calm, &calm2), (&drifted, &drifted2)] {
        assert_eq!(approx.rows, PER_DAY);
        assert_eq!(approx.reference.rows, PER_DAY);
        let (e, a) = (column(exact, "input.tenure"), column(approx, "input.tenure"));
        assert_eq!((a.method, e.method), (Method::Wasserstein, Method::Wasserstein));
        let bound = a.approximate.as_ref().and_then(|x| x.error_bound).expect("a stated bound");
        let (av, ev) = (a.statistic.unwrap(), e.statistic.unwrap());
        assert!((av - ev).abs() <= bound, "tenure: {av} vs exact {ev} (bound {bound})");
        // The bound is the rank errors times the range over the spread: loose, not vacuous.
        assert!(bound < 0.2, "{bound}");
        assert_eq!(a.drifted, e.drifted);
        // Two plans, both kept by name in every bucket: the counts, so the statistic, are exact.
        let (e, a) = (column(exact, "input.plan"), column(approx, "input.plan"));
        assert_eq!((a.method, a.statistic, a.drifted), (e.method, e.statistic, e.drifted));
        assert_eq!(a.approximate.as_ref().unwrap().from, "value counts");
        assert!(column(approx, "input.absent").reason.is_some());
        // ROC AUC from the class score sketches.
        let bound = approx.performance_approximate.as_ref().and_then(|a| a.error_bound).expect("bound");
        let (av, ev) = (roc_auc(approx), roc_auc(exact));
        assert!((av - ev).abs() <= bound, "roc auc {av} vs exact {ev} (bound {bound})");
        assert_eq!(approx.labelled, exact.labelled);
        assert_eq!(approx.aggregate["drift"]["input.tenure"]["approximate"]["from"], "kll sketches");
    }
    // Each window at the finest resolution kept: the baseline (day 0) from days, day 1 from
    // hours, day 2 from minutes.
    let reads = |r: &RunReport| -> Vec<(String, String)> {
        r.from_rollups.iter().map(|x| (x.window.clone(), x.resolutions.clone())).collect()
    };
    let pair = |w: &str, r: &str| (w.to_string(), r.to_string());
    assert_eq!(reads(&calm2), [pair("reference", "1d"), pair("current", "1h")]);
    assert_eq!(reads(&drifted2), [pair("reference", "1d"), pair("current", "1m")]);
    let html = store.run_reports(&stored.name, drifted2.run_id).await.unwrap().and_then(|(_, html)| html).unwrap();
    assert!(html.contains("Approximate") && html.contains("within ±"), "the page says so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_drift_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.sqlite")).await.unwrap();
    drift_from_history(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drift_from_history() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    drift_from_history(Arc::new(store)).await;
}
