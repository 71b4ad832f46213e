//! Drift jobs against a real store, on SQLite and on a fresh Postgres database: the window is
//! read with late labels joined on, results are written back as aggregate metrics, runs keep a
//! status and a history, one job never runs twice at once, reference files are read only from
//! the references directory, wide text and many categories give bounded reports, the
//! scheduler makes up for missed runs within its bounds, and performance is estimated before
//! labels arrive and checked once they have, and features are judged against thresholds from
//! the reference's chunks, the window whole or cut into chunks of its own.

use std::sync::Arc;
use std::time::Duration;

use driftline_core::{DelayedMetrics, MetricsJson, Prediction};
use driftline_drift::chunk::{self, Chunking, Period, Span as Rows};
use driftline_drift::chunked::{chunked_drift, ChunkColumn, ChunkMethod, ChunkThreshold, Values};
use driftline_drift::estimate::EstimateMetric;
use driftline_drift::job::estimates;
use driftline_drift::job::run::run_job;
use driftline_drift::job::schedule::ScheduleSpec;
use driftline_drift::job::scheduler::{self, SchedulerConfig};
use driftline_drift::job::spec::{default_chunk_methods, Alert, ChunksSpec, EstimateSpec, JobSpec, Reference, Span};
use driftline_drift::stats::performance::{self, Metrics as TaskMetrics, Task};
use driftline_drift::table::references::ReferenceFiles;
use driftline_drift::Error;
use driftline_store::postgres::PostgresStore;
use driftline_store::sqlite::SqliteStore;
use driftline_store::{NewRun, RunStatus, Selection, Store, StoredRun, Window, WriteBatch};
use driftline_testkit::TestDatabase;
use futures::TryStreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

const DAY: i64 = 86_400_000;
/// Midnight UTC, 2026-11-01.
const D0: i64 = 1_793_491_200_000;
const DEPLOYMENT: &str = "crn:test:deployment/churn";

fn metrics(value: serde_json::Value) -> MetricsJson {
    value.as_object().expect("object").clone().into()
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
            predictions.predictions.push(prediction(
                uuid,
                at,
                metrics(json!({"input": {"tenure": tenure, "plan": plan}, "prediction": score})),
            ));
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

/// A prediction of the test deployment starting at `at`.
fn prediction(uuid: Uuid, at: i64, metrics: MetricsJson) -> Prediction {
    Prediction {
        uuid,
        model_crn: "crn:test:model/churn".into(),
        model_build_crn: "crn:test:build/1".into(),
        model_deployment_crn: DEPLOYMENT.into(),
        start_timestamp_ms: at,
        end_timestamp_ms: at + 5,
        metrics,
    }
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

/// A references directory with nothing in it, for jobs that read no file.
fn no_files() -> ReferenceFiles {
    ReferenceFiles::new("/nonexistent/driftline-references")
}

async fn runs_windows_and_writes_results(store: Arc<dyn Store>) {
    let labels = load(store.as_ref(), 4, 400, 2).await;
    let s = spec("churn-daily");
    create(store.as_ref(), &s, D0).await;

    // Day 2 (index 1) is like the baseline; day 3 (index 2) has drifted.
    let calm = run_job(store.as_ref(), &no_files(), &s, D0 + 2 * DAY).await.unwrap();
    let drifted = run_job(store.as_ref(), &no_files(), &s, D0 + 3 * DAY).await.unwrap();
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
    let typed: driftline_drift::report::run::RunReport =
        serde_json::from_str(&json_report).expect("the JSON report reads back");
    assert_eq!(typed.roc_curve.first().map(|p| p.threshold), Some(None));
    let html = html.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && html.contains("ROC curve"));
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"), "self-contained");
    assert!(!html.contains("running"), "the report shows its own run as finished");

    // A window with no predictions: status no_data, and still an aggregate saying so.
    let empty = run_job(store.as_ref(), &no_files(), &s, D0 + 30 * DAY).await.unwrap();
    assert_eq!(empty.run.status, RunStatus::NoData);

    // The alert turns an otherwise calm run into a warning.
    let mut strict = spec("churn-strict");
    strict.alert = Some(Alert { metric: "roc_auc".into(), below: Some(0.99), above: None });
    create(store.as_ref(), &strict, D0).await;
    let warned = run_job(store.as_ref(), &no_files(), &strict, D0 + 2 * DAY).await.unwrap();
    assert_eq!(warned.run.status, RunStatus::Warning);
    assert!(warned.report.unwrap().alert.unwrap().contains("below 0.99"));
}

async fn previous_period_and_busy_and_failures(store: Arc<dyn Store>) {
    load(store.as_ref(), 4, 200, 3).await;
    let mut s = spec("week-over-day");
    s.reference = Reference::Previous { offset: Span { ms: DAY } };
    create(store.as_ref(), &s, D0).await;
    // Window day 3 against day 2: same distribution. Window day 4 against day 3: drifted.
    let same = run_job(store.as_ref(), &no_files(), &s, D0 + 3 * DAY).await.unwrap();
    let moved = run_job(store.as_ref(), &no_files(), &s, D0 + 4 * DAY).await.unwrap();
    assert_eq!(same.report.as_ref().unwrap().reference.rows, 200);
    assert_ne!(same.run.status, RunStatus::Drift);
    assert_eq!(moved.run.status, RunStatus::Drift);

    // A run in progress (here: recorded by another process) blocks a second one.
    let blocker = store
        .begin_run(&NewRun { job: &s.name, scheduled_ms: 1, window_start_ms: 0, window_end_ms: 1, started_at_ms: 1 })
        .await
        .unwrap()
        .expect("no run in progress");
    match run_job(store.as_ref(), &no_files(), &s, D0 + 4 * DAY).await {
        Err(Error::Busy { job }) => assert_eq!(job, s.name),
        other => panic!("expected Busy, got {other:?}"),
    }
    // A stale running run is abandoned, after which runs go ahead again.
    assert_eq!(store.abandon_runs(2).await.unwrap(), 1);
    assert_eq!(store.run(&s.name, blocker).await.unwrap().unwrap().status, RunStatus::Failed);
    run_job(store.as_ref(), &no_files(), &s, D0 + 4 * DAY).await.unwrap();

    // A failing run (a reference file that changed) is recorded as failed with the reason.
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("references");
    std::fs::create_dir(&dir).unwrap();
    let references = ReferenceFiles::new(&dir);
    std::fs::write(dir.join("ref.csv"), "input.tenure,input.plan,input.absent\n1,basic,\n").unwrap();
    let mut f = spec("from-file");
    f.reference = Reference::File { path: "ref.csv".into() };
    create(store.as_ref(), &f, D0).await;
    let ok = run_job(store.as_ref(), &references, &f, D0 + 2 * DAY).await.unwrap();
    assert_eq!(ok.report.unwrap().reference.rows, 1);
    std::fs::write(dir.join("ref.csv"), "other\n1\n").unwrap();
    let failed = run_job(store.as_ref(), &references, &f, D0 + 3 * DAY).await.unwrap();
    assert_eq!(failed.run.status, RunStatus::Failed);
    assert!(failed.run.summary.unwrap().contains("input.tenure"), "the failure names the missing column");
}

/// Jobs whose reference file is outside the references directory (stored before the rule, or
/// by another process with another directory) fail when they run, with one message whether
/// the file exists or not, and without reading it.
async fn reference_files_only_from_their_directory(store: Arc<dyn Store>) {
    load(store.as_ref(), 3, 50, 10).await;
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("references");
    std::fs::create_dir(&dir).unwrap();
    let references = ReferenceFiles::new(&dir);
    let secret = top.path().join("secret.csv");
    std::fs::write(&secret, "input.tenure,input.plan,input.absent\n31337,hunter2,\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, dir.join("link.csv")).unwrap();
    let mut summaries = Vec::new();
    for (name, path) in [
        ("outside", secret.clone()),
        ("missing", top.path().join("missing.csv")),
        ("escape", "../secret.csv".into()),
        ("link", "link.csv".into()),
    ] {
        let mut f = spec(name);
        f.reference = Reference::File { path: path.clone() };
        assert!(matches!(f.check_reference(&references), Err(Error::Reference { .. })), "{name}");
        create(store.as_ref(), &f, D0).await;
        let run = run_job(store.as_ref(), &references, &f, D0 + 2 * DAY).await.unwrap();
        assert_eq!(run.run.status, RunStatus::Failed, "{name}");
        let summary = run.run.summary.unwrap();
        assert!(!summary.contains("hunter2") && !summary.contains("31337"), "{summary}");
        summaries.push(summary.replace(&path.display().to_string(), "PATH"));
    }
    assert!(summaries.windows(2).all(|w| w[0] == w[1]), "one message for every refusal: {summaries:#?}");
    assert!(summaries[0].contains("references directory"), "{}", summaries[0]);
}

/// 900-character texts (a different one in every row) and 2,000 categories: the report keeps
/// the top 50 categories and "other" per feature, with names cut to 256 bytes.
async fn wide_text_and_many_categories_give_bounded_reports(store: Arc<dyn Store>) {
    let filler = "lorem ipsum dolor sit amet ".repeat(40);
    let mut batch = WriteBatch::new(D0);
    for day in 0..2i64 {
        for i in 0..3_000i64 {
            let at = D0 + day * DAY + i * (DAY / 3_000);
            let sku = if day == 0 { i % 2_000 } else { (i * 7) % 2_000 };
            batch.predictions.push(prediction(
                Uuid::new_v4(),
                at,
                metrics(json!({
                    "input": {"note": format!("{day}-{i:05} {}", &filler[..900]), "sku": format!("sku-{sku:04}")},
                    "prediction": 0.5,
                })),
            ));
        }
    }
    store.write(&batch).await.unwrap();
    let mut s = spec("wide");
    s.features = vec!["input.note".into(), "input.sku".into()];
    s.alert = None;
    create(store.as_ref(), &s, D0).await;
    let finished = run_job(store.as_ref(), &no_files(), &s, D0 + 2 * DAY).await.unwrap();
    let report = finished.report.unwrap_or_else(|| panic!("{:?}", finished.run.summary));
    for column in &report.drift.columns {
        let h = &column.histogram;
        assert_eq!(h.labels.len(), 51, "{}: the top 50 and other", column.column);
        assert!(h.labels.iter().all(|l| l.len() <= 256), "{}: names cut to 256 bytes", column.column);
        assert!(h.labels.last().unwrap().starts_with("other ("), "{:?}", h.labels.last());
        assert_eq!((column.reference.values, column.current.values), (3_000, 3_000));
    }
    let note = &report.drift.columns[0];
    assert_eq!(note.histogram.other_categories, Some(5_950), "6,000 distinct texts, 50 by name");
    assert!(note.statistic.is_some(), "{:?}", note.reason);
    let (json_report, html) = store.run_reports("wide", finished.run.id).await.unwrap().unwrap();
    let (json_report, html) = (json_report.unwrap(), html.unwrap());
    assert!(json_report.len() < 64 * 1024, "JSON report of {} bytes", json_report.len());
    assert!(html.len() < 256 * 1024, "HTML report of {} bytes", html.len());
}

/// Runs the scheduler with `config` until `job` has `expected` finished runs and a few more
/// ticks brought no other; returns its runs, oldest first.
async fn schedule_until(store: &Arc<dyn Store>, config: SchedulerConfig, job: &str, expected: usize) -> Vec<StoredRun> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scheduler::run(store.clone(), config, async {
        let _ = stopped.await;
    }));
    let finished = |runs: &[StoredRun]| runs.iter().filter(|r| r.status != RunStatus::Running).count();
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let runs = store.runs(job, 2_000).await.unwrap();
        if finished(&runs) >= expected && runs.iter().all(|r| r.status != RunStatus::Running) {
            break;
        }
    }
    // A few more ticks: nothing else is due, so nothing more runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut runs = store.runs(job, 2_000).await.unwrap();
    let _ = stop.send(());
    task.await.unwrap();
    runs.reverse();
    runs
}

fn hourly(name: &str) -> JobSpec {
    let mut s = spec(name);
    s.schedule = ScheduleSpec { expression: "hourly".into(), timezone: "UTC".into() };
    s.window = Span { ms: HOUR };
    s
}

const HOUR: i64 = 3_600_000;

fn fast(references: ReferenceFiles) -> SchedulerConfig {
    SchedulerConfig { tick: Duration::from_millis(100), ..SchedulerConfig::new(references) }
}

/// After downtime the scheduler makes up only the latest missed run; with backfill, every one,
/// oldest first.
async fn scheduler_makes_up_missed_runs(store: Arc<dyn Store>) {
    away_from_the_hour().await;
    // Hourly, created just before the tenth newest hour: 10 runs are due.
    let created = latest_hour() - 9 * HOUR - 1;
    create(store.as_ref(), &hourly("latest-only"), created).await;
    let runs = schedule_until(&store, fast(no_files()), "latest-only", 1).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].scheduled_ms >= created + 9 * HOUR && runs[0].scheduled_ms <= latest_hour(),
        "the latest: {runs:?}"
    );
    assert_eq!(runs[0].status, RunStatus::NoData, "the windows are empty (data is from 2026-11)");

    let created = latest_hour() - 9 * HOUR - 1;
    create(store.as_ref(), &hourly("all-missed"), created).await;
    let reports = tempfile::tempdir().unwrap();
    let config =
        SchedulerConfig { backfill: true, reports_dir: Some(reports.path().to_path_buf()), ..fast(no_files()) };
    let runs = schedule_until(&store, config, "all-missed", 10).await;
    let times: Vec<i64> = runs.iter().map(|r| r.scheduled_ms).collect();
    // Every hour since the job's creation, each once, oldest first (an hour that began during
    // the test is due too).
    let expected: Vec<i64> = (created + 1..=latest_hour()).step_by(HOUR as usize).collect();
    assert_eq!(times, expected, "{runs:?}");
    assert!(runs.windows(2).all(|w| w[0].id < w[1].id), "run in order");
    let files = std::fs::read_dir(reports.path()).unwrap().count();
    assert_eq!(files, 20, "a JSON and an HTML report per scheduled run");
}

/// Waits, when the next whole hour is less than 20 s away, until it has begun: these tests count
/// the runs due by the clock, and an hour beginning while they run adds one.
async fn away_from_the_hour() {
    let to_next = HOUR - driftline_core::time::now_ms().rem_euclid(HOUR);
    if to_next < 20_000 {
        tokio::time::sleep(Duration::from_millis(to_next as u64 + 100)).await;
    }
}

/// The newest whole hour.
fn latest_hour() -> i64 {
    driftline_core::time::now_ms().div_euclid(HOUR) * HOUR
}

/// Runs made by hand for other times, long before the job existed or far in the future, neither
/// queue the scheduled times since then nor stop the schedule.
async fn manual_runs_do_not_move_the_schedule(store: Arc<dyn Store>) {
    away_from_the_hour().await;
    let created = latest_hour() - 2 * HOUR - 1;
    let s = hourly("by-hand");
    create(store.as_ref(), &s, created).await;
    let past = created - 30 * 24 * HOUR;
    run_job(store.as_ref(), &no_files(), &s, past).await.unwrap();
    run_job(store.as_ref(), &no_files(), &s, 4_000_000_000_000).await.unwrap();
    let runs = schedule_until(&store, fast(no_files()), "by-hand", 3).await;
    let times: Vec<i64> = runs.iter().map(|r| r.scheduled_ms).collect();
    assert_eq!(times.len(), 3, "one scheduled run besides the two by hand: {runs:?}");
    assert_eq!((times[0], times[2]), (past, 4_000_000_000_000));
    assert!(times[1] > created + 2 * HOUR && times[1] <= latest_hour(), "the latest due time: {runs:?}");

    // Times outside 2000-01-01 .. 2100-01-01 are refused before anything is recorded.
    for at in [5_000_000_000_000, 0, -1] {
        match run_job(store.as_ref(), &no_files(), &s, at).await {
            Err(Error::Invalid { message, .. }) => assert!(message.contains("2100-01-01"), "{message}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(store.runs("by-hand", 100).await.unwrap().len(), 3);
    let err = scheduler::backfill(store.as_ref(), &no_files(), &s, 946_684_800_000, 4_102_444_799_000, |_, _, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shorter parts"), "{err}");
}

/// Predictions of a model whose scores rank well but are not calibrated (the score is the
/// square of the probability), `per_day` on each of `days` days from D0, with the predicted
/// class under `predicted`; the labels of the days in `labelled` are written, the others are
/// returned to write later.
async fn load_scores(store: &dyn Store, days: i64, per_day: usize, labelled: std::ops::Range<i64>) -> WriteBatch {
    let mut rng = StdRng::seed_from_u64(5);
    let (mut now, mut later) = (WriteBatch::new(D0), WriteBatch::new(D0));
    for day in 0..days {
        for i in 0..per_day {
            let at = D0 + day * DAY + (i as i64 * DAY) / per_day as i64;
            let p: f64 = rng.random();
            let truth = rng.random::<f64>() < p;
            let score = p * p;
            let uuid = Uuid::new_v4();
            now.predictions.push(prediction(
                uuid,
                at,
                metrics(json!({"input": {"p": p}, "prediction": score, "predicted": u8::from(score >= 0.25)})),
            ));
            let label =
                DelayedMetrics { uuid, timestamp_ms: at + 1, metrics: metrics(json!({"label": u8::from(truth)})) };
            if labelled.contains(&day) {
                now.delayed_metrics.push(label);
            } else {
                later.delayed_metrics.push(label);
            }
        }
    }
    store.write(&now).await.expect("write");
    later
}

/// A job that estimates performance: a window without labels gets estimates from its scores
/// alone (calibrated on the labelled reference), written as aggregate metrics and shown in the
/// report; once the labels arrive, the check puts each estimate beside the realised value.
async fn estimates_before_labels_and_checks_them_after(store: Arc<dyn Store>) {
    let later = load_scores(store.as_ref(), 2, 3_000, 0..1).await;
    let mut s = spec("churn-estimate");
    s.features = vec!["input.p".into()];
    s.alert = None;
    s.estimate = Some(EstimateSpec { prediction: Some("predicted".into()), ..EstimateSpec::default() });
    create(store.as_ref(), &s, D0).await;

    let err = estimates::check(store.as_ref(), &spec("no-estimates"), 10).await.unwrap_err();
    assert!(err.to_string().contains("does not estimate"), "{err}");

    let run = run_job(store.as_ref(), &no_files(), &s, D0 + 2 * DAY).await.unwrap();
    let report = run.report.unwrap_or_else(|| panic!("no report: {:?}", run.run));
    assert_eq!((report.rows, report.labelled), (3_000, 0));
    let estimate = report.estimate.as_ref().expect("an estimate");
    let calibration = estimate.calibration.as_ref().unwrap();
    assert!(calibration.calibrated, "squared probabilities need calibrating: {calibration:?}");
    assert!(estimate.reference_chunks >= 10, "{estimate:?}");
    let chunk = estimate.chunk.as_ref().unwrap_or_else(|| panic!("{estimate:?}"));
    assert_eq!((chunk.rows_used, chunk.rows_labelled), (3_000, 0));
    for (metric, v) in &chunk.metrics {
        let value = v.value.unwrap_or_else(|| panic!("{metric}: {v:?}"));
        assert!((0.0..=1.0).contains(&value), "{metric}: {v:?}");
        assert_eq!(v.realized, None, "{metric}: no labels yet");
        assert!(v.lower_confidence_boundary.unwrap() < value && value < v.upper_confidence_boundary.unwrap());
    }
    let written = report.aggregate["estimated_performance"]["roc_auc"].as_f64().unwrap();
    assert_eq!(Some(written), chunk.metrics[&EstimateMetric::RocAuc].value);
    let html = store.run_reports("churn-estimate", run.run.id).await.unwrap().unwrap().1.unwrap();
    assert!(html.contains("Estimated performance") && html.contains("roc_auc estimated"), "the report shows them");

    // Before the labels: the check has estimates and nothing realised.
    let before = estimates::check(store.as_ref(), &s, 10).await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].labelled, 0);
    assert!(before[0].metrics.values().all(|m| m.realized_now.is_none() && m.within_band.is_none()));

    // The labels arrive: each estimate is within a few hundredths of what they give, and ROC
    // AUC and accuracy within their bands.
    store.write(&later).await.unwrap();
    let after = estimates::check(store.as_ref(), &s, 10).await.unwrap();
    assert_eq!((after[0].rows, after[0].labelled), (3_000, 3_000));
    for (metric, m) in &after[0].metrics {
        let (estimated, realized) = (m.estimated.value.unwrap(), m.realized_now.unwrap());
        assert!((estimated - realized).abs() < 0.03, "{metric}: estimated {estimated}, realised {realized}");
    }
    for metric in [EstimateMetric::RocAuc, EstimateMetric::Accuracy] {
        assert_eq!(after[0].metrics[&metric].within_band, Some(true), "{metric}: {:?}", after[0].metrics[&metric]);
    }
    assert!(estimates::table(&after).contains("3000 of 3000"));
    assert!(estimates::page("churn-estimate", &after).contains("<svg"));

    // A job whose task is not binary cannot estimate.
    let mut regression = s.clone();
    regression.task = driftline_drift::stats::performance::Task::Regression;
    let err = regression.validate().unwrap_err();
    assert!(err.to_string().starts_with("estimate:"), "{err}");
}

/// One feature's values in a window of the store, read back as the job should see them.
async fn values_of(store: &dyn Store, window: Window, path: &[&str]) -> Values {
    let records: Vec<_> =
        store.read_window(Selection::Deployment(DEPLOYMENT.into()), window).try_collect().await.unwrap();
    let at = |m: &serde_json::Map<String, serde_json::Value>| -> Option<serde_json::Value> {
        let mut v = m.get(path[0])?;
        for key in &path[1..] {
            v = v.get(key)?;
        }
        Some(v.clone())
    };
    let cells: Vec<Option<serde_json::Value>> = records.iter().map(|r| at(&r.metrics)).collect();
    if cells.iter().flatten().all(serde_json::Value::is_number) {
        Values::Numbers(cells.iter().map(|c| c.as_ref().and_then(serde_json::Value::as_f64)).collect())
    } else {
        Values::categories(cells.iter().map(|c| c.as_ref().and_then(serde_json::Value::as_str)))
    }
}

async fn chunk_thresholds_judge_each_window(store: Arc<dyn Store>) {
    load(store.as_ref(), 4, 400, 2).await;
    let mut s = spec("churn-chunks");
    s.alert = None;
    s.chunks = Some(ChunksSpec::default());
    create(store.as_ref(), &s, D0).await;
    let calm = run_job(store.as_ref(), &no_files(), &s, D0 + 2 * DAY).await.unwrap();
    let drifted = run_job(store.as_ref(), &no_files(), &s, D0 + 3 * DAY).await.unwrap();
    let drifted_id = drifted.run.id;
    let (calm, drifted) = (calm.report.unwrap(), drifted.report.unwrap());

    // The reference day's 400 rows in ten chunks of 40 (the window holds 400): each value and
    // threshold is what the chunked comparison gives on the same rows read back from the store.
    let reference = Window { start_ms: D0, end_ms: D0 + DAY };
    let spans = chunk::split(400, None, Chunking::Size(40)).unwrap();
    for report in [&calm, &drifted] {
        let chunks = report.chunks.as_ref().expect("chunk results");
        assert_eq!((chunks.reference_chunks, chunks.note.as_deref()), (10, None), "{chunks:?}");
        let window = Window { start_ms: report.window_start_ms, end_ms: report.window_end_ms };
        let mut columns = Vec::new();
        for feature in ["input.tenure", "input.plan"] {
            let path: Vec<&str> = feature.split('.').collect();
            columns.push(ChunkColumn {
                name: feature.into(),
                reference: values_of(store.as_ref(), reference, &path).await,
                analysis: values_of(store.as_ref(), window, &path).await,
            });
        }
        let whole = Rows { key: "window".into(), start: 0, end: 400, start_ms: None, end_ms: None };
        let expected = chunked_drift(&columns, &spans, &[whole], &default_chunk_methods(), ChunkThreshold::default())
            .unwrap()
            .chunks
            .pop()
            .unwrap();
        for feature in ["input.tenure", "input.plan"] {
            assert_eq!(chunks.results[feature], expected.results[feature], "{feature}");
        }
        // A feature no prediction has: all missing on both sides, which is no alert.
        let absent = &chunks.results["input.absent"];
        assert_eq!(absent[&ChunkMethod::MissingValues].value, Some(1.0));
        assert!(!absent.values().any(|v| v.alert), "{absent:?}");
    }
    let alerting = |r: &driftline_drift::report::run::RunReport, feature: &str| {
        r.chunks.as_ref().unwrap().results[feature][&ChunkMethod::JensenShannon].alert
    };
    assert!(!alerting(&calm, "input.tenure") && !alerting(&calm, "input.plan"), "{:?}", calm.chunks);
    assert!(alerting(&drifted, "input.tenure") && alerting(&drifted, "input.plan"), "{:?}", drifted.chunks);
    let alert = drifted.alert.as_deref().unwrap();
    assert!(alert.contains("input.tenure jensen_shannon = ") && alert.contains(" is outside "), "{alert}");
    assert_eq!(
        drifted.aggregate["chunk_drift"]["input.tenure"]["jensen_shannon"].as_f64(),
        drifted.chunks.as_ref().unwrap().results["input.tenure"][&ChunkMethod::JensenShannon].value
    );

    // The page shows the table, and each statistic over the runs so far.
    let html = store.run_reports("churn-chunks", drifted_id).await.unwrap().unwrap().1.unwrap();
    assert!(html.contains("Drift against reference chunks"), "the report shows them");
    assert!(html.contains("input.tenure · jensen_shannon at each run"), "with their history");

    // A window whose feature turns to text against a numeric reference is compared as
    // categories; settings a job cannot use are refused by field.
    let mut words = WriteBatch::new(D0);
    for i in 0..50 {
        let at = D0 + 4 * DAY + i * 1_000;
        words.predictions.push(prediction(
            Uuid::new_v4(),
            at,
            metrics(json!({"input": {"tenure": "long", "plan": "basic"}, "prediction": 0.5})),
        ));
    }
    store.write(&words).await.unwrap();
    let text = run_job(store.as_ref(), &no_files(), &s, D0 + 5 * DAY).await.unwrap().report.unwrap();
    let tenure = &text.chunks.as_ref().unwrap().results["input.tenure"];
    assert!(tenure.contains_key(&ChunkMethod::UnseenValues), "compared as categories: {tenure:?}");
    assert!(tenure[&ChunkMethod::UnseenValues].alert, "{tenure:?}");
    let mut bad = s.clone();
    bad.chunks = Some(ChunksSpec { methods: vec![], ..ChunksSpec::default() });
    assert!(bad.validate().unwrap_err().to_string().starts_with("chunks.methods:"));
    bad.chunks = Some(ChunksSpec { threshold: ChunkThreshold::StandardDeviations(-1.0), ..ChunksSpec::default() });
    assert!(bad.validate().unwrap_err().to_string().starts_with("chunks.threshold:"));
}

async fn multiclass_jobs_score_each_class_one_vs_rest(store: Arc<dyn Store>) {
    // A day of predictions with a predicted class and three class scores; labels arrive later,
    // one prediction lacks a score, one label never comes.
    let mut rng = StdRng::seed_from_u64(9);
    let classes = ["bird", "cat", "dog"];
    let (mut batch, mut labels) = (WriteBatch::new(D0), WriteBatch::new(D0));
    let mut kept: Vec<([f64; 3], &str, &str)> = Vec::new();
    for i in 0..600 {
        let at = D0 + DAY + i * 100_000;
        let truth = classes[rng.random_range(0..3)];
        let mut scores: [f64; 3] =
            std::array::from_fn(|c| rng.random::<f64>() + if classes[c] == truth { 0.6 } else { 0.0 });
        let total: f64 = scores.iter().sum();
        scores.iter_mut().for_each(|s| *s /= total);
        let best = (0..3).max_by(|a, b| scores[*a].total_cmp(&scores[*b])).unwrap();
        let mut metrics_json = json!({"input": {"tenure": i % 40}, "prediction": classes[best],
            "scores": {"bird": scores[0], "cat": scores[1], "dog": scores[2]}});
        if i == 7 {
            metrics_json["scores"].as_object_mut().unwrap().remove("dog");
        }
        let uuid = Uuid::new_v4();
        batch.predictions.push(prediction(uuid, at, metrics(metrics_json)));
        if i != 11 {
            let label = json!({"label": truth});
            labels.delayed_metrics.push(DelayedMetrics { uuid, timestamp_ms: at + 60_000, metrics: metrics(label) });
            if i != 7 {
                kept.push((scores, classes[best], truth));
            }
        }
    }
    // The reference day: inputs only.
    for i in 0..100 {
        batch.predictions.push(prediction(
            Uuid::new_v4(),
            D0 + i * 600_000,
            metrics(json!({"input": {"tenure": i % 40}})),
        ));
    }
    store.write(&batch).await.unwrap();
    store.write(&labels).await.unwrap();

    let mut s = spec("species");
    s.alert = None;
    s.features = vec!["input.tenure".into()];
    s.task = Task::Multiclass;
    s.class_scores = classes.iter().map(|c| (c.to_string(), format!("scores.{c}"))).collect();
    create(store.as_ref(), &s, D0).await;
    let report = run_job(store.as_ref(), &no_files(), &s, D0 + 2 * DAY).await.unwrap().report.unwrap();
    assert_eq!((report.labelled, report.unlabelled, report.invalid), (599, 1, 1));
    let Some(TaskMetrics::Multiclass(m)) = &report.performance else { panic!("multiclass: {:?}", report.performance) };
    let scores: std::collections::BTreeMap<String, Vec<f64>> =
        (0..3).map(|c| (classes[c].to_string(), kept.iter().map(|k| k.0[c]).collect())).collect();
    let truths: Vec<&str> = kept.iter().map(|k| k.2).collect();
    let predicted: Vec<&str> = kept.iter().map(|k| k.1).collect();
    let expected = performance::one_vs_rest(&scores, &truths);
    let ovr = m.one_vs_rest.as_ref().expect("class scores were given");
    assert_eq!(ovr.per_class, expected.per_class);
    assert_eq!(
        (ovr.macro_roc_auc.value, ovr.weighted_roc_auc.value),
        (expected.macro_roc_auc.value, expected.weighted_roc_auc.value)
    );
    assert!(expected.macro_roc_auc.value.unwrap() > 0.7, "{expected:?}");
    assert_eq!(m.accuracy.value, performance::multiclass(&predicted, &truths).accuracy.value);
    assert_eq!(report.aggregate["performance"]["macro_roc_auc"].as_f64(), expected.macro_roc_auc.value);
    let html = store.run_reports("species", report.run_id).await.unwrap().unwrap().1.unwrap();
    assert!(
        html.contains("macro_roc_auc (one-vs-rest)") && html.contains("roc_auc of class dog"),
        "the report shows them"
    );

    // Class scores are for the multiclass task, as dotted paths.
    let mut binary = s.clone();
    binary.task = Task::Binary;
    assert!(binary.validate().unwrap_err().to_string().starts_with("class_scores:"));
    let mut bad = s.clone();
    bad.class_scores.insert("fish".into(), "scores..fish".into());
    let refused = bad.validate().unwrap_err().to_string();
    assert!(refused.starts_with("class_scores:") && refused.contains("scores..fish"), "{refused}");
}

/// The start times of the predictions in `window`, in the order reads return them.
async fn times_of(store: &dyn Store, window: Window) -> Vec<i64> {
    let records: Vec<_> =
        store.read_window(Selection::Deployment(DEPLOYMENT.into()), window).try_collect().await.unwrap();
    records.iter().map(|r| r.start_timestamp_ms).collect()
}

async fn split_windows_judge_each_chunk(store: Arc<dyn Store>) {
    // 40 predictions an hour over two days; the second day's tenure moves up from noon on.
    let mut rng = StdRng::seed_from_u64(5);
    let mut batch = WriteBatch::new(D0);
    for hour in 0..48 {
        for i in 0..40 {
            let at = D0 + hour * 3_600_000 + i * 90_000;
            let tenure: f64 = rng.random_range(0.0..40.0) + if hour >= 36 { 25.0 } else { 0.0 };
            let plan = if rng.random::<f64>() < 0.3 { "premium" } else { "basic" };
            let input = json!({"input": {"tenure": tenure, "plan": plan}, "prediction": 0.5});
            batch.predictions.push(prediction(Uuid::new_v4(), at, metrics(input)));
        }
    }
    store.write(&batch).await.unwrap();
    let mut s = spec("churn-hourly");
    s.alert = None;
    s.chunks = Some(ChunksSpec { split: Some(Chunking::Period(Period::Hour)), ..ChunksSpec::default() });
    create(store.as_ref(), &s, D0).await;
    let run = run_job(store.as_ref(), &no_files(), &s, D0 + 2 * DAY).await.unwrap();
    let report = run.report.unwrap();
    let chunks = report.chunks.as_ref().expect("chunk results");
    assert_eq!((chunks.reference_chunks, chunks.chunks.len(), chunks.note.as_deref()), (24, 24, None), "{chunks:?}");
    assert!(chunks.results.is_empty(), "a split window has no whole-window results");
    let note = chunks.performance.as_ref().and_then(|p| p.note.as_deref()).unwrap_or_default();
    assert!(note.starts_with("not computed: label: the reference's 0 rows"), "no labels, no performance: {note}");

    // Each chunk's values and thresholds are what the chunked comparison gives on the rows read
    // back from the store, both days cut by the hour.
    let (reference, window) =
        (Window { start_ms: D0, end_ms: D0 + DAY }, Window { start_ms: D0 + DAY, end_ms: D0 + 2 * DAY });
    let hourly = |times: &[i64]| chunk::split(times.len(), Some(times), Chunking::Period(Period::Hour)).unwrap();
    let reference_spans = hourly(&times_of(store.as_ref(), reference).await);
    let window_spans = hourly(&times_of(store.as_ref(), window).await);
    let mut columns = Vec::new();
    for feature in ["input.tenure", "input.plan", "input.absent"] {
        let path: Vec<&str> = feature.split('.').collect();
        columns.push(ChunkColumn {
            name: feature.into(),
            reference: values_of(store.as_ref(), reference, &path).await,
            analysis: values_of(store.as_ref(), window, &path).await,
        });
    }
    let expected =
        chunked_drift(&columns, &reference_spans, &window_spans, &default_chunk_methods(), ChunkThreshold::default())
            .unwrap();
    let expected: Vec<_> = expected.chunks.into_iter().filter(|c| !c.chunk.is_reference()).collect();
    assert_eq!(chunks.chunks, expected);
    assert_eq!(
        (chunks.chunks[0].chunk.key.as_str(), chunks.chunks[0].chunk.size, chunks.chunks[0].chunk.start_timestamp_ms),
        ("2026-11-02 00:00", 40, Some(D0 + DAY))
    );
    for (hour, c) in chunks.chunks.iter().enumerate() {
        assert_eq!(c.results["input.tenure"][&ChunkMethod::JensenShannon].alert, hour >= 12, "hour {hour}: {c:?}");
    }
    let alert = report.alert.as_deref().unwrap();
    let tenure_alert = alert.split("; ").find(|a| a.starts_with("input.tenure jensen_shannon")).expect("named");
    assert!(
        tenure_alert.contains(" is outside - .. ")
            && tenure_alert.contains(" in 12 of 24 chunks, from 2026-11-02 12:00 ("),
        "{alert}"
    );
    assert!(matches!(report.status, RunStatus::Warning | RunStatus::Drift), "{:?}", report.status);
    let per_chunk = report.aggregate["chunk_drift"].as_array().expect("a list of chunks");
    assert_eq!(per_chunk.len(), 24);
    assert_eq!(per_chunk[12]["chunk"], json!("2026-11-02 12:00"));
    assert_eq!(
        per_chunk[12]["values"]["input.tenure"]["jensen_shannon"].as_f64(),
        chunks.chunks[12].results["input.tenure"][&ChunkMethod::JensenShannon].value
    );
    let html = store.run_reports("churn-hourly", run.run.id).await.unwrap().unwrap().1.unwrap();
    assert!(html.contains("input.tenure · jensen_shannon per chunk"), "each statistic over the chunks");
    assert!(html.contains("<td class=\"drift\">12 of 24</td><td>2026-11-02 12:00 ("), "chunks outside, per statistic");
    assert!(html.contains("<tr><td>2026-11-02 23:00</td><td>40</td><td>input.tenure</td>"), "a row per chunk outside");

    // By size and by number: the window and the reference cut alike.
    for (name, split, count) in [("by-size", Chunking::Size(100), 10), ("by-number", Chunking::Number(6), 6)] {
        let mut by = s.clone();
        by.name = name.into();
        by.chunks = Some(ChunksSpec { split: Some(split), ..ChunksSpec::default() });
        create(store.as_ref(), &by, D0).await;
        let report = run_job(store.as_ref(), &no_files(), &by, D0 + 2 * DAY).await.unwrap().report.unwrap();
        let c = report.chunks.unwrap();
        assert_eq!((c.reference_chunks, c.chunks.len()), (count, count), "{name}");
        assert_eq!(c.chunks.iter().map(|k| k.chunk.size).sum::<usize>(), 960, "{name}");
        assert!(c.chunks.last().unwrap().results["input.tenure"][&ChunkMethod::JensenShannon].alert, "{name}");
    }

    // Splits a job cannot use are refused by field.
    let mut bad = s.clone();
    bad.chunks = Some(ChunksSpec { split: Some(Chunking::Size(0)), ..ChunksSpec::default() });
    assert!(bad.validate().unwrap_err().to_string().starts_with("chunks.split.size:"));
    bad.chunks = Some(ChunksSpec { split: Some(Chunking::Period(Period::Day)), ..ChunksSpec::default() });
    bad.reference = Reference::File { path: "reference.csv".into() };
    let refused = bad.validate().unwrap_err().to_string();
    assert!(refused.starts_with("chunks.split.period:") && refused.contains("reference file"), "{refused}");
}

async fn split_windows_judge_each_chunks_performance(store: Arc<dyn Store>) {
    // A regression model and a three-class classifier, 40 predictions an hour over two days,
    // every label arriving later; from noon of the second day both models get worse.
    let mut rng = StdRng::seed_from_u64(17);
    let classes = ["bird", "cat", "dog"];
    let (mut batch, mut labels) = (WriteBatch::new(D0), WriteBatch::new(D0));
    // Per hour: the absolute errors, and whether each class prediction was right.
    let mut errors: Vec<Vec<f64>> = vec![Vec::new(); 48];
    let mut right: Vec<Vec<bool>> = vec![Vec::new(); 48];
    for hour in 0..48 {
        for i in 0..40 {
            let at = D0 + hour as i64 * 3_600_000 + i * 90_000;
            let worse = hour >= 36;
            let target: f64 = rng.random_range(10.0..50.0);
            let predicted = target + rng.random_range(-1.0..1.0) * if worse { 6.0 } else { 1.0 };
            errors[hour].push((target - predicted).abs());
            let scores: [f64; 3] = std::array::from_fn(|_| rng.random::<f64>());
            let best = (0..3).max_by(|a, b| scores[*a].total_cmp(&scores[*b])).unwrap();
            let truth = if !worse && rng.random::<f64>() < 0.85 { best } else { rng.random_range(0..3) };
            right[hour].push(truth == best);
            let uuid = Uuid::new_v4();
            let m = json!({"input": {"tenure": i % 40}, "value": predicted, "class": classes[best],
                "scores": {"bird": scores[0], "cat": scores[1], "dog": scores[2]}});
            batch.predictions.push(prediction(uuid, at, metrics(m)));
            let label = json!({"target": target, "species": classes[truth]});
            labels.delayed_metrics.push(DelayedMetrics { uuid, timestamp_ms: at + 60_000, metrics: metrics(label) });
        }
    }
    store.write(&batch).await.unwrap();
    store.write(&labels).await.unwrap();

    let mut s = spec("values-hourly");
    s.alert = None;
    s.features = vec!["input.tenure".into()];
    s.task = Task::Regression;
    s.score = "value".into();
    s.label = "target".into();
    s.chunks = Some(ChunksSpec { split: Some(Chunking::Period(Period::Hour)), ..ChunksSpec::default() });
    create(store.as_ref(), &s, D0).await;
    let report = run_job(store.as_ref(), &no_files(), &s, D0 + 2 * DAY).await.unwrap().report.unwrap();
    let chunks = report.chunks.as_ref().expect("chunk results");
    let p = chunks.performance.as_ref().expect("performance per chunk");
    assert_eq!((p.note.as_deref(), p.chunks.len()), (None, 24), "{p:?}");
    assert_eq!(p.metrics, EstimateMetric::REGRESSION);
    // Each hour's MAE is the mean of its absolute errors; the thresholds are the mean of the
    // reference hours' MAE ± 3 population standard deviations (the lower one at least 0).
    let mae: Vec<f64> = errors.iter().map(|e| e.iter().sum::<f64>() / e.len() as f64).collect();
    let mean = mae[..24].iter().sum::<f64>() / 24.0;
    let sd = (mae[..24].iter().map(|m| (m - mean) * (m - mean)).sum::<f64>() / 24.0).sqrt();
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0));
    for (hour, c) in p.chunks.iter().enumerate() {
        let v = &c.metrics[&EstimateMetric::Mae];
        assert!(close(v.value, mae[24 + hour]), "hour {hour}: {v:?} against {}", mae[24 + hour]);
        assert!(close(v.upper_threshold, mean + 3.0 * sd) && close(v.lower_threshold, (mean - 3.0 * sd).max(0.0)));
        assert_eq!(v.alert, hour >= 12, "hour {hour}: {v:?}");
        assert_eq!((c.chunk.size, c.rows_labelled), (40, 40));
    }
    let alert = report.alert.as_deref().unwrap();
    assert!(
        alert.contains("realised mae is outside ") && alert.contains(" in 12 of 24 chunks, from 2026-11-02 12:00 ("),
        "{alert}"
    );
    let per_chunk = report.aggregate["chunk_drift"].as_array().unwrap();
    assert!(close(per_chunk[13]["performance"]["mae"].as_f64(), mae[37]), "{}", per_chunk[13]);
    let html = store.run_reports("values-hourly", report.run_id).await.unwrap().unwrap().1.unwrap();
    assert!(html.contains("Realised performance per chunk") && html.contains("<h3>rmse</h3>"), "charts per metric");

    // The classifier: macro averages of its classes, ROC AUC with the class scores.
    let mut m = s.clone();
    m.name = "species-hourly".into();
    m.task = Task::Multiclass;
    m.score = "class".into();
    m.label = "species".into();
    m.class_scores = classes.iter().map(|c| (c.to_string(), format!("scores.{c}"))).collect();
    create(store.as_ref(), &m, D0).await;
    let report = run_job(store.as_ref(), &no_files(), &m, D0 + 2 * DAY).await.unwrap().report.unwrap();
    let p = report.chunks.as_ref().unwrap().performance.as_ref().unwrap();
    assert_eq!(p.metrics, EstimateMetric::CLASSIFICATION);
    for (hour, c) in p.chunks.iter().enumerate() {
        let accuracy = &c.metrics[&EstimateMetric::Accuracy];
        let want = right[24 + hour].iter().filter(|r| **r).count() as f64 / 40.0;
        assert!(close(accuracy.value, want), "hour {hour}: {accuracy:?} against {want}");
        assert_eq!(accuracy.alert, hour >= 12, "hour {hour}: {accuracy:?}");
        assert!(c.metrics[&EstimateMetric::RocAuc].value.is_some());
    }
    // Without class scores: no ROC AUC.
    m.name = "species-unscored".into();
    m.class_scores.clear();
    create(store.as_ref(), &m, D0).await;
    let report = run_job(store.as_ref(), &no_files(), &m, D0 + 2 * DAY).await.unwrap().report.unwrap();
    let p = report.chunks.as_ref().unwrap().performance.as_ref().unwrap();
    assert!(!p.metrics.contains(&EstimateMetric::RocAuc) && p.metrics.len() == 5, "{:?}", p.metrics);
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

#[tokio::test]
async fn sqlite_reference_files_only_from_their_directory() {
    let (_dir, store) = sqlite().await;
    reference_files_only_from_their_directory(store).await;
}

#[tokio::test]
async fn postgres_reference_files_only_from_their_directory() {
    let Some((_db, store)) = postgres().await else { return };
    reference_files_only_from_their_directory(store).await;
}

#[tokio::test]
async fn sqlite_wide_text_and_many_categories_give_bounded_reports() {
    let (_dir, store) = sqlite().await;
    wide_text_and_many_categories_give_bounded_reports(store).await;
}

#[tokio::test]
async fn postgres_wide_text_and_many_categories_give_bounded_reports() {
    let Some((_db, store)) = postgres().await else { return };
    wide_text_and_many_categories_give_bounded_reports(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scheduler_makes_up_missed_runs() {
    let (_dir, store) = sqlite().await;
    scheduler_makes_up_missed_runs(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scheduler_makes_up_missed_runs() {
    let Some((_db, store)) = postgres().await else { return };
    scheduler_makes_up_missed_runs(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_manual_runs_do_not_move_the_schedule() {
    let (_dir, store) = sqlite().await;
    manual_runs_do_not_move_the_schedule(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_manual_runs_do_not_move_the_schedule() {
    let Some((_db, store)) = postgres().await else { return };
    manual_runs_do_not_move_the_schedule(store).await;
}

#[tokio::test]
async fn sqlite_estimates_before_labels_and_checks_them_after() {
    let (_dir, store) = sqlite().await;
    estimates_before_labels_and_checks_them_after(store).await;
}

#[tokio::test]
async fn postgres_estimates_before_labels_and_checks_them_after() {
    let Some((_db, store)) = postgres().await else { return };
    estimates_before_labels_and_checks_them_after(store).await;
}

#[tokio::test]
async fn sqlite_chunk_thresholds_judge_each_window() {
    let (_dir, store) = sqlite().await;
    chunk_thresholds_judge_each_window(store).await;
}

#[tokio::test]
async fn postgres_chunk_thresholds_judge_each_window() {
    let Some((_db, store)) = postgres().await else { return };
    chunk_thresholds_judge_each_window(store).await;
}

#[tokio::test]
async fn sqlite_split_windows_judge_each_chunk() {
    let (_dir, store) = sqlite().await;
    split_windows_judge_each_chunk(store).await;
}

#[tokio::test]
async fn postgres_split_windows_judge_each_chunk() {
    let Some((_db, store)) = postgres().await else { return };
    split_windows_judge_each_chunk(store).await;
}

#[tokio::test]
async fn sqlite_split_windows_judge_each_chunks_performance() {
    let (_dir, store) = sqlite().await;
    split_windows_judge_each_chunks_performance(store).await;
}

#[tokio::test]
async fn postgres_split_windows_judge_each_chunks_performance() {
    let Some((_db, store)) = postgres().await else { return };
    split_windows_judge_each_chunks_performance(store).await;
}

#[tokio::test]
async fn sqlite_multiclass_jobs_score_each_class_one_vs_rest() {
    let (_dir, store) = sqlite().await;
    multiclass_jobs_score_each_class_one_vs_rest(store).await;
}

#[tokio::test]
async fn postgres_multiclass_jobs_score_each_class_one_vs_rest() {
    let Some((_db, store)) = postgres().await else { return };
    multiclass_jobs_score_each_class_one_vs_rest(store).await;
}
