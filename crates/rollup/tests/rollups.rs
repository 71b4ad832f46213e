//! The rollup worker and series reads against both store backends.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftline_core::{DelayedMetrics, MetricsJson, Prediction};
use driftline_rollup::replay::replay;
use driftline_rollup::retention::{apply, Retention};
use driftline_rollup::worker::{Progress, Step};
use driftline_rollup::{series, SeriesQuery, Source, SummaryOptions, Worker, WorkerOptions};
use driftline_store::postgres::PostgresStore;
use driftline_store::rollups::RollupRow;
use driftline_store::sqlite::SqliteStore;
use driftline_store::{DeadLetter, Selection};
use driftline_store::{Resolution, Store, Window, WriteBatch};
use driftline_testkit::TestDatabase;
use futures::TryStreamExt;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// 2023-11-14T00:00:00Z, a day boundary.
const T0: i64 = 1_699_920_000_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn metrics(value: serde_json::Value) -> MetricsJson {
    value.as_object().expect("object").clone().into()
}

fn prediction(deployment: &str, start: i64, tenure: i64, plan: &str, score: f64) -> Prediction {
    Prediction {
        uuid: Uuid::new_v4(),
        model_crn: "crn:model/churn".into(),
        model_build_crn: "crn:build/1".into(),
        model_deployment_crn: deployment.into(),
        start_timestamp_ms: start,
        end_timestamp_ms: start + 5 + tenure % 7,
        metrics: metrics(json!({"input": {"tenure": tenure, "plan": plan}, "prediction": score})),
    }
}

fn label(uuid: Uuid, at: i64, value: i64) -> DelayedMetrics {
    DelayedMetrics { uuid, timestamp_ms: at, metrics: metrics(json!({"label": value})) }
}

async fn write(store: &dyn Store, predictions: Vec<Prediction>, labels: Vec<DelayedMetrics>) {
    let batch = WriteBatch { predictions, delayed_metrics: labels, ..WriteBatch::new(T0) };
    store.write(&batch).await.expect("write");
}

fn options() -> WorkerOptions {
    WorkerOptions { dirty_batch: 7, ..WorkerOptions::default() }
}

async fn catch_up(store: &Arc<dyn Store>, now_ms: i64) -> Progress {
    let mut worker = Worker::new(store.clone(), options());
    worker.catch_up(now_ms, |_| {}).await.expect("catch up")
}

async fn all_rows(store: &dyn Store, resolution: Resolution) -> BTreeMap<(String, String, i64), RollupRow> {
    let mut out = BTreeMap::new();
    for d in store.deployments().await.unwrap() {
        let rows = store.rollup_rows(resolution, &d, None, Window { start_ms: i64::MIN, end_ms: i64::MAX }).await;
        for r in rows.unwrap() {
            out.insert((r.model_deployment_crn.clone(), r.path.clone(), r.bucket_start_ms), r);
        }
    }
    out
}

fn query(deployment: &str, path: &str, step: Resolution, source: Source, start: i64, end: i64) -> SeriesQuery {
    SeriesQuery {
        deployment: deployment.into(),
        path: path.into(),
        window: Window { start_ms: start, end_ms: end },
        step,
        source,
        quantiles: vec![0.0, 0.5, 0.9, 1.0],
        include_sketch: true,
    }
}

/// A day and a half of predictions for two deployments, some labelled.
fn history(rng: &mut impl Rng) -> (Vec<Prediction>, Vec<DelayedMetrics>) {
    let mut predictions = Vec::new();
    let mut labels = Vec::new();
    let mut t = T0 + 17_000;
    while t < T0 + DAY + 12 * HOUR {
        for d in ["dep-a", "dep-b"] {
            let tenure = rng.random_range(0..60);
            let plan = ["basic", "pro", "team"][rng.random_range(0..3)];
            let p = prediction(d, t + rng.random_range(0..MINUTE), tenure, plan, rng.random());
            if rng.random_bool(0.5) {
                labels.push(label(p.uuid, p.start_timestamp_ms + HOUR, rng.random_range(0..2)));
            }
            predictions.push(p);
        }
        t += 7 * MINUTE + rng.random_range(0..3 * MINUTE);
    }
    (predictions, labels)
}

async fn complete_minutes_hours_and_days_roll_up_and_match_raw(store: Arc<dyn Store>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (predictions, labels) = history(&mut rng);
    write(&*store, predictions.clone(), labels.clone()).await;

    // Nothing rolled yet: auto answers from raw rows alone.
    let before = series(
        &*store,
        &query("dep-a", "input.tenure", Resolution::Hour, Source::Auto, T0, T0 + 2 * DAY),
        SummaryOptions::default(),
    )
    .await
    .unwrap();

    // The hour from T0 + 35 h is in progress: it has predictions but is not complete.
    let now = T0 + DAY + 11 * HOUR + 30 * MINUTE;
    let progress = catch_up(&store, now).await;
    let target = Resolution::Minute.floor(now - 5 * MINUTE);
    let complete = predictions.iter().filter(|p| p.start_timestamp_ms < target).count();
    assert!(complete < predictions.len());
    assert_eq!(progress.predictions, complete as u64);
    assert_eq!(progress.rolled_to_ms, Some(target), "rolled up to the last complete minute before the lateness");
    assert_eq!(catch_up(&store, now).await.steps, 0, "a second round finds nothing to do");

    // Minute rollups hold exactly the raw values.
    let minutes = all_rows(&*store, Resolution::Minute).await;
    for d in ["dep-a", "dep-b"] {
        let mut want: BTreeMap<i64, (i64, f64, f64, f64)> = BTreeMap::new();
        for p in predictions.iter().filter(|p| p.model_deployment_crn == d && p.start_timestamp_ms < target) {
            let tenure = p.metrics.to_map()["input"]["tenure"].as_f64().unwrap();
            let e = want.entry(Resolution::Minute.floor(p.start_timestamp_ms)).or_insert((0, 0.0, f64::MAX, f64::MIN));
            e.0 += 1;
            e.1 += tenure;
            e.2 = e.2.min(tenure);
            e.3 = e.3.max(tenure);
        }
        for (minute, (n, sum, min, max)) in want {
            let row = &minutes[&(d.to_owned(), "input.tenure".to_owned(), minute)];
            assert_eq!((row.n_numeric, row.sum, row.min, row.max), (n, sum, Some(min), Some(max)));
        }
    }
    let labelled =
        labels.iter().filter(|l| predictions.iter().any(|p| p.uuid == l.uuid && p.start_timestamp_ms < target)).count();
    let label_rows: i64 = minutes.iter().filter(|(k, _)| k.1 == "label").map(|(_, r)| r.n_numeric).sum();
    assert_eq!(label_rows, labelled as i64, "every label is rolled with its prediction");
    let plan_rows = minutes.iter().filter(|(k, _)| k.1 == "input.plan");
    assert!(plan_rows.clone().all(|(_, r)| r.n_numeric == 0 && r.value_counts.is_some()));

    // Hours merge minutes, days merge hours: totals agree at every resolution.
    let hours = all_rows(&*store, Resolution::Hour).await;
    let days = all_rows(&*store, Resolution::Day).await;
    let total = |rows: &BTreeMap<(String, String, i64), RollupRow>, path: &str, before: i64| -> i64 {
        rows.iter().filter(|(k, _)| k.1 == path && k.2 < before).map(|(_, r)| r.n_numeric).sum()
    };
    assert_eq!(
        total(&hours, "@predictions", T0 + DAY + 11 * HOUR),
        total(&minutes, "@predictions", T0 + DAY + 11 * HOUR)
    );
    assert_eq!(total(&days, "@predictions", T0 + DAY), total(&minutes, "@predictions", T0 + DAY));
    assert!(days.keys().all(|k| k.2 == T0), "only the first day is complete");
    assert!(hours.keys().all(|k| k.2 < T0 + DAY + 11 * HOUR), "the hour in progress has no hour rollup");

    // The series is the same from rollups, from raw rows, and before the worker ran.
    for step in Resolution::ALL {
        for path in ["input.tenure", "label", "input.plan", "@latency_ms", "@event_bytes"] {
            let end = T0 + DAY + 12 * HOUR;
            let raw = series(&*store, &query("dep-a", path, step, Source::Raw, T0, end), SummaryOptions::default())
                .await
                .unwrap();
            let auto = series(&*store, &query("dep-a", path, step, Source::Auto, T0, end), SummaryOptions::default())
                .await
                .unwrap();
            assert!(!raw.series.is_empty());
            assert_eq!(raw, auto, "{path} at {}", step.name());
        }
    }
    let after = series(
        &*store,
        &query("dep-a", "input.tenure", Resolution::Hour, Source::Auto, T0, T0 + 2 * DAY),
        SummaryOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(before, after, "the answer does not change when the worker runs");
    let rollup_only = series(
        &*store,
        &query("dep-a", "input.tenure", Resolution::Hour, Source::Rollup, T0, T0 + 2 * DAY),
        SummaryOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(rollup_only.series.len(), after.series.len() - 1, "the hour in progress is not in the rollups");
}

async fn late_events_are_rerolled_and_answers_stay_exact_meanwhile(store: Arc<dyn Store>) {
    let old = prediction("dep-a", T0 + 10 * MINUTE + 5, 10, "basic", 0.5);
    let other = prediction("dep-a", T0 + 3 * HOUR, 20, "pro", 0.7);
    write(&*store, vec![old.clone(), other.clone()], vec![]).await;
    let now = T0 + DAY + HOUR;
    catch_up(&store, now).await;
    assert!(store.dirty(100).await.unwrap().is_empty());

    // A prediction for a rolled minute, and a label for a rolled prediction.
    let late = prediction("dep-a", T0 + 10 * MINUTE + 30_000, 30, "pro", 0.1);
    write(&*store, vec![late.clone()], vec![label(old.uuid, now, 1)]).await;
    let dirty = store.dirty(100).await.unwrap();
    assert_eq!(
        dirty.iter().map(|e| (e.model_deployment_crn.as_str(), e.bucket_start_ms)).collect::<Vec<_>>(),
        vec![("dep-a", T0 + 10 * MINUTE)],
        "one entry for the minute both events touch"
    );

    // Before the re-roll, auto reads the stale buckets from raw rows.
    for step in Resolution::ALL {
        for path in ["input.tenure", "label"] {
            let raw =
                series(&*store, &query("dep-a", path, step, Source::Raw, T0, T0 + DAY), SummaryOptions::default())
                    .await
                    .unwrap();
            let auto =
                series(&*store, &query("dep-a", path, step, Source::Auto, T0, T0 + DAY), SummaryOptions::default())
                    .await
                    .unwrap();
            assert_eq!(raw, auto, "{path} at {} before the re-roll", step.name());
        }
    }
    let stale = series(
        &*store,
        &query("dep-a", "input.tenure", Resolution::Day, Source::Rollup, T0, T0 + DAY),
        SummaryOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(stale.series[0].count, 2, "the rollup itself is stale until the worker runs");

    let progress = catch_up(&store, now).await;
    assert_eq!(progress.minutes_rerolled, 1);
    assert!(store.dirty(100).await.unwrap().is_empty());
    for step in Resolution::ALL {
        let rolled = series(
            &*store,
            &query("dep-a", "input.tenure", step, Source::Rollup, T0, T0 + DAY),
            SummaryOptions::default(),
        )
        .await
        .unwrap();
        let raw = series(
            &*store,
            &query("dep-a", "input.tenure", step, Source::Raw, T0, T0 + DAY),
            SummaryOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(rolled, raw, "after the re-roll at {}", step.name());
    }
    let day = series(
        &*store,
        &query("dep-a", "label", Resolution::Day, Source::Rollup, T0, T0 + DAY),
        SummaryOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((day.series[0].count, day.series[0].sum), (1, Some(1.0)));
}

/// Rollups are the same whatever order predictions and labels arrive in, rolled as they come,
/// as in one pass over everything written first.
/// Returns how many minutes were re-rolled for late events on the way.
async fn any_arrival_order_gives_the_same_rollups(
    make: impl Fn() -> futures::future::BoxFuture<'static, Arc<dyn Store>>,
    seed: u64,
) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut predictions = Vec::new();
    let mut labels = Vec::new();
    for i in 0..40 {
        let d = if i % 3 == 0 { "dep-b" } else { "dep-a" };
        let start = T0 + rng.random_range(0..2 * DAY) / 97 * 97;
        let p = prediction(d, start, rng.random_range(0..50), ["x", "y"][i % 2], i as f64 / 40.0);
        if rng.random_bool(0.6) {
            labels.push(label(p.uuid, start + rng.random_range(0..HOUR), rng.random_range(0..2)));
        }
        predictions.push(p);
    }
    let end = T0 + 3 * DAY;

    let in_order = make().await;
    write(&*in_order, predictions.clone(), labels.clone()).await;
    catch_up(&in_order, end).await;

    // The same events one or two at a time in a random order, with the worker running at
    // random moments and "now" moving forward.
    let shuffled = make().await;
    let mut events: Vec<(Option<Prediction>, Option<DelayedMetrics>)> = predictions
        .iter()
        .cloned()
        .map(|p| (Some(p), None))
        .chain(labels.iter().cloned().map(|l| (None, Some(l))))
        .collect();
    events.shuffle(&mut rng);
    let mut now = T0;
    let mut rerolled = 0;
    for (p, l) in events {
        write(&*shuffled, p.into_iter().collect(), l.into_iter().collect()).await;
        now += rng.random_range(0..2 * HOUR);
        if rng.random_bool(0.3) {
            rerolled += catch_up(&shuffled, now.min(end)).await.minutes_rerolled;
        }
    }
    rerolled += catch_up(&shuffled, end).await.minutes_rerolled;

    for resolution in Resolution::ALL {
        let (a, b) = (all_rows(&*in_order, resolution).await, all_rows(&*shuffled, resolution).await);
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "seed {seed}: the same buckets at {}",
            resolution.name()
        );
        assert_eq!(a, b, "seed {seed}: the same rollups at {}", resolution.name());
    }
    rerolled
}

async fn paths_over_the_limit_are_counted_not_rolled(store: Arc<dyn Store>) {
    let mut p = prediction("dep-a", T0, 1, "basic", 0.5);
    p.metrics = metrics(json!({"a": 1, "b": 2, "c": 3, "d": "x"}));
    let mut q = prediction("dep-a", T0 + 1_000, 1, "basic", 0.5);
    q.metrics = metrics(json!({"c": 4, "d": "y", "a": 5}));
    write(&*store, vec![p, q], vec![]).await;
    let mut worker = Worker::new(store.clone(), WorkerOptions { max_paths: 2, ..options() });
    worker.catch_up(T0 + DAY, |_| {}).await.unwrap();
    let paths = store.rollup_paths("dep-a").await.unwrap();
    let seen: Vec<(&str, bool, i64)> = paths.iter().map(|p| (p.path.as_str(), p.admitted, p.refused_values)).collect();
    assert_eq!(seen, vec![("a", true, 0), ("b", true, 0), ("c", false, 2), ("d", false, 2)]);
    let rows = all_rows(&*store, Resolution::Minute).await;
    assert!(rows.keys().all(|k| k.1 != "c" && k.1 != "d"));
    assert!(
        rows.contains_key(&("dep-a".to_owned(), "@predictions".to_owned(), T0)),
        "technical paths are always rolled"
    );
}

async fn a_stretch_without_predictions_is_crossed_in_few_steps(store: Arc<dyn Store>) {
    write(
        &*store,
        vec![
            prediction("dep-a", T0 + 5, 1, "basic", 0.5),
            prediction("dep-a", T0 + 400 * DAY + 7 * HOUR, 2, "pro", 0.5),
        ],
        vec![],
    )
    .await;
    let mut steps = Vec::new();
    let mut worker = Worker::new(store.clone(), options());
    worker.catch_up(T0 + 401 * DAY + HOUR, |s| steps.push(s.clone())).await.unwrap();
    let rolled = steps.iter().filter(|s| matches!(s, Step::Rolled { .. })).count();
    assert!(rolled < 60, "{rolled} steps for two predictions 400 days apart");
    let days = all_rows(&*store, Resolution::Day).await;
    let counted: Vec<(i64, i64)> =
        days.iter().filter(|(k, _)| k.1 == "@predictions").map(|(k, r)| (k.2, r.n_numeric)).collect();
    assert_eq!(counted, vec![(T0, 1), (T0 + 400 * DAY, 1)]);
}

async fn replica_figures_and_refused_events_roll_up(store: Arc<dyn Store>) {
    let stats = |replica: &str, at: i64, cpu: f64| driftline_core::ReplicaStats {
        model_deployment_crn: "dep-a".into(),
        replica_id: replica.into(),
        timestamp_ms: at,
        cpu_percent: cpu,
        memory_bytes: 1_000_000 + at as u64 % 1_000,
    };
    let figures: Vec<_> = (0..120)
        .flat_map(|i| [stats("r-1", T0 + i * 30_000, i as f64), stats("r-2", T0 + i * 30_000 + 7, 50.0)])
        .collect();
    let refused = |at: i64, deployment: &str| DeadLetter {
        received_at_ms: at,
        source: "http:r#0".into(),
        reason: "field `uuid`: is required".into(),
        raw: format!(r#"{{"v":1,"type":"prediction","model_deployment_crn":"{deployment}"}}"#).into_bytes(),
        key: None,
    };
    let batch = WriteBatch {
        predictions: vec![prediction("dep-a", T0 + 5, 1, "basic", 0.5)],
        replica_stats: figures.clone(),
        dead_letters: vec![
            refused(T0 + 1_000, "dep-a"),
            refused(T0 + 2_000, "dep-a"),
            refused(T0 + HOUR, "dep-a"),
            refused(T0, "dep-z"),
        ],
        ..WriteBatch::new(T0)
    };
    let outcome = store.write(&batch).await.unwrap();
    assert_eq!((outcome.replica_stats, outcome.dead_letters), (240, 4));
    // A retried report is stored once.
    let again =
        store.write(&WriteBatch { replica_stats: figures[..10].to_vec(), ..WriteBatch::new(T0) }).await.unwrap();
    assert_eq!((again.replica_stats, again.replica_duplicates), (0, 10));

    let now = T0 + DAY + HOUR;
    catch_up(&store, now).await;
    let hour = |path: &str, source| query("dep-a", path, Resolution::Hour, source, T0, T0 + 2 * HOUR);
    let cpu =
        series(&*store, &hour("@replica.r-1.cpu_percent", Source::Rollup), SummaryOptions::default()).await.unwrap();
    assert_eq!(cpu.series.len(), 1);
    let p = &cpu.series[0];
    assert_eq!((p.count, p.min, p.max, p.sum), (120, Some(0.0), Some(119.0), Some((0..120).sum::<i64>() as f64)));
    let raw = series(&*store, &hour("@replica.r-1.cpu_percent", Source::Raw), SummaryOptions::default()).await.unwrap();
    assert_eq!(raw, cpu);
    let memory =
        series(&*store, &hour("@replica.r-2.memory_bytes", Source::Rollup), SummaryOptions::default()).await.unwrap();
    assert_eq!(memory.series[0].count, 120);
    let rejected = series(&*store, &hour("@rejected", Source::Rollup), SummaryOptions::default()).await.unwrap();
    let counts: Vec<(i64, u64)> = rejected.series.iter().map(|p| (p.bucket_start_ms, p.count)).collect();
    assert_eq!(counts, vec![(T0, 2), (T0 + HOUR, 1)], "dead letters are counted for the deployment they name");
    assert!(
        !store.deployments().await.unwrap().contains(&"dep-z".to_owned()),
        "naming a deployment in a refused event does not make it one"
    );

    // Late figures for a rolled minute are re-rolled.
    store
        .write(&WriteBatch { replica_stats: vec![stats("r-1", T0 + 10, 500.0)], ..WriteBatch::new(now) })
        .await
        .unwrap();
    assert_eq!(store.dirty(10).await.unwrap().len(), 1);
    catch_up(&store, now).await;
    let cpu =
        series(&*store, &hour("@replica.r-1.cpu_percent", Source::Rollup), SummaryOptions::default()).await.unwrap();
    assert_eq!((cpu.series[0].count, cpu.series[0].max), (121, Some(500.0)));
}

/// A deployment with a binary drift job gets the scores of each class rolled apart, by the
/// job's score and label paths, late labels included; series read them like any path.
async fn binary_jobs_keep_the_scores_of_each_class(store: Arc<dyn Store>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    let (predictions, labels) = history(&mut rng);
    let unlabelled = predictions
        .iter()
        .find(|p| p.model_deployment_crn == "dep-a" && !labels.iter().any(|l| l.uuid == p.uuid))
        .unwrap()
        .clone();
    write(&*store, predictions.clone(), labels.clone()).await;
    // As a drift job is stored: every field written, unknown ones ignored here.
    let spec = json!({"name": "churn", "deployment": "dep-a", "score": "prediction", "label": "label",
                      "task": "binary", "features": ["input.tenure"], "window": "1d"});
    let job = driftline_store::StoredJob {
        name: "churn".into(),
        spec: spec.to_string(),
        created_at_ms: T0,
        updated_at_ms: T0,
    };
    assert!(store.create_job(&job).await.unwrap());
    let now = T0 + 3 * DAY;
    catch_up(&store, now).await;

    let positive = "@score[prediction|label=1]";
    let day = |path: &str, source| query("dep-a", path, Resolution::Day, source, T0, T0 + 2 * DAY);
    let count = |s: &driftline_rollup::Series| s.series.iter().map(|p| p.count).sum::<u64>();
    let rolled = series(&*store, &day(positive, Source::Rollup), SummaryOptions::default()).await.unwrap();
    let raw = series(&*store, &day(positive, Source::Raw), SummaryOptions::default()).await.unwrap();
    assert_eq!(rolled, raw);
    let score_of = |uuid: Uuid| {
        predictions
            .iter()
            .find(|p| p.uuid == uuid)
            .unwrap()
            .metrics
            .to_map()
            .get("prediction")
            .cloned()
            .unwrap()
            .as_f64()
            .unwrap()
    };
    let ones: Vec<f64> = labels
        .iter()
        .filter(|l| {
            l.metrics.to_map().get("label") == Some(&json!(1))
                && predictions.iter().any(|p| p.uuid == l.uuid && p.model_deployment_crn == "dep-a")
        })
        .map(|l| score_of(l.uuid))
        .collect();
    assert_eq!(count(&rolled), ones.len() as u64);
    assert_eq!(rolled.series.iter().map(|p| p.sum.unwrap()).sum::<f64>().round(), ones.iter().sum::<f64>().round());
    // Only dep-a has a job; the class paths are not counted against the path limit.
    let b = query("dep-b", positive, Resolution::Day, Source::Rollup, T0, T0 + 2 * DAY);
    assert!(series(&*store, &b, SummaryOptions::default()).await.unwrap().series.is_empty());
    assert!(store.rollup_paths("dep-a").await.unwrap().iter().all(|p| !p.path.starts_with('@')));

    // A late label re-rolls its minute: the class it names counts one more.
    let negative = "@score[prediction|label=0]";
    let before = count(&series(&*store, &day(negative, Source::Rollup), SummaryOptions::default()).await.unwrap());
    write(&*store, vec![], vec![label(unlabelled.uuid, now, 0)]).await;
    catch_up(&store, now + HOUR).await;
    let after = count(&series(&*store, &day(negative, Source::Rollup), SummaryOptions::default()).await.unwrap());
    assert_eq!(after, before + 1);
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::SqliteStore::open(&dir.path().join("t.sqlite")).await.unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::TestDatabase::create().await else { return };
                    let store = super::PostgresStore::connect(&db.url).await.unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

both_backends!(
    complete_minutes_hours_and_days_roll_up_and_match_raw,
    late_events_are_rerolled_and_answers_stay_exact_meanwhile,
    paths_over_the_limit_are_counted_not_rolled,
    a_stretch_without_predictions_is_crossed_in_few_steps,
    retention_removes_only_what_is_rolled,
    replay_rebuilds_what_the_worker_made,
    replica_figures_and_refused_events_roll_up,
    binary_jobs_keep_the_scores_of_each_class,
);

#[tokio::test]
async fn sqlite_any_arrival_order_gives_the_same_rollups() {
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut rerolled = 0;
    for seed in 0..12 {
        let dirs = dirs.clone();
        rerolled += any_arrival_order_gives_the_same_rollups(
            move || {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("t.sqlite");
                dirs.lock().unwrap().push(dir);
                Box::pin(async move { Arc::new(SqliteStore::open(&path).await.unwrap()) as Arc<dyn Store> })
            },
            seed,
        )
        .await;
    }
    assert!(rerolled > 0, "late events were re-rolled along the way");
}

#[tokio::test]
async fn postgres_any_arrival_order_gives_the_same_rollups() {
    let dbs = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut rerolled = 0;
    for seed in 100..104 {
        let dbs = dbs.clone();
        let Some(probe) = TestDatabase::create().await else { return };
        drop(probe);
        rerolled += any_arrival_order_gives_the_same_rollups(
            move || {
                let dbs = dbs.clone();
                Box::pin(async move {
                    let db = TestDatabase::create().await.expect("a test database");
                    let store = PostgresStore::connect(&db.url).await.unwrap();
                    dbs.lock().await.push(db);
                    Arc::new(store) as Arc<dyn Store>
                })
            },
            seed,
        )
        .await;
    }
    assert!(rerolled > 0, "late events were re-rolled along the way");
}

const DAYS: i64 = 20;

fn days(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n * 86_400))
}

/// Twenty days of predictions, every 20 minutes, half of them labelled.
fn twenty_days() -> (Vec<Prediction>, Vec<DelayedMetrics>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let (mut predictions, mut labels) = (Vec::new(), Vec::new());
    let mut t = T0 + 1_000;
    while t < T0 + DAYS * DAY {
        let p = prediction("dep-a", t, rng.random_range(0..60), ["basic", "pro"][rng.random_range(0..2)], rng.random());
        if rng.random_bool(0.5) {
            labels.push(label(p.uuid, t + HOUR, rng.random_range(0..2)));
        }
        predictions.push(p);
        t += 20 * MINUTE;
    }
    (predictions, labels)
}

async fn raw_count(store: &dyn Store, window: Window) -> usize {
    let rows: Vec<_> = store.read_window(Selection::Deployment("dep-a".into()), window).try_collect().await.unwrap();
    rows.len()
}

async fn day_series(store: &dyn Store, path: &str, source: Source) -> driftline_rollup::Series {
    series(store, &query("dep-a", path, Resolution::Day, source, T0, T0 + DAYS * DAY), SummaryOptions::default())
        .await
        .unwrap()
}

async fn retention_removes_only_what_is_rolled(store: Arc<dyn Store>) {
    let (predictions, labels) = twenty_days();
    write(&*store, predictions.clone(), labels.clone()).await;
    let now = T0 + DAYS * DAY + HOUR;

    // The worker "crashed" after announcing a range and before committing it: nothing is
    // rolled yet, and retention removes nothing, however old the events.
    store.announce_rolling(T0 + 5 * DAY).await.unwrap();
    let none = apply(&*store, &Retention::default(), now).await.unwrap();
    assert_eq!(none.raw.predictions, 0);
    assert_eq!(raw_count(&*store, Window { start_ms: 0, end_ms: i64::MAX }).await, predictions.len());

    catch_up(&store, now).await;
    let before_labels = day_series(&*store, "label", Source::Auto).await;
    let before_tenure = day_series(&*store, "input.tenure", Source::Auto).await;

    // A crash between recording the cut and deleting: the cut holds, nothing is lost.
    let cut = now - 14 * DAY;
    store.mark_raw_removed(cut - HOUR).await.unwrap();
    assert_eq!(store.rollup_state().await.unwrap().raw_kept_from_ms, Some(cut - HOUR));
    assert_eq!(day_series(&*store, "input.tenure", Source::Auto).await, before_tenure);

    let retention = Retention { raw: days(14), minute: days(15), hour: days(730), dead_letters: days(30) };
    let done = apply(&*store, &retention, now).await.unwrap();
    let old = predictions.iter().filter(|p| p.start_timestamp_ms < cut).count();
    assert_eq!(done.raw.predictions, old as u64);
    let old_labels =
        labels.iter().filter(|l| predictions.iter().any(|p| p.uuid == l.uuid && p.start_timestamp_ms < cut)).count();
    assert_eq!(done.raw.delayed_metrics, old_labels as u64, "their delayed metrics go with them");
    assert_eq!(raw_count(&*store, Window { start_ms: 0, end_ms: cut }).await, 0);
    assert_eq!(raw_count(&*store, Window { start_ms: cut, end_ms: i64::MAX }).await, predictions.len() - old);
    assert!(done.minute_rollups > 0, "minutes older than 15 days go");
    assert!(all_rows(&*store, Resolution::Minute).await.keys().all(|k| k.2 >= T0 + 5 * DAY + HOUR));

    // Answers from rollups do not change; raw rows answer only for what is left.
    assert_eq!(day_series(&*store, "label", Source::Auto).await, before_labels);
    assert_eq!(day_series(&*store, "input.tenure", Source::Auto).await, before_tenure);
    let raw = day_series(&*store, "input.tenure", Source::Raw).await;
    assert_eq!(raw.series.first().unwrap().bucket_start_ms, Resolution::Day.floor(cut));
    assert_eq!(store.rollup_state().await.unwrap().raw_kept_from_ms, Some(cut));

    // A late event for a minute whose raw rows are gone is counted, and changes nothing.
    write(&*store, vec![prediction("dep-a", T0 + DAY + 7, 99, "pro", 0.5)], vec![]).await;
    let progress = catch_up(&store, now).await;
    assert_eq!(progress.beyond_retention, 1);
    assert_eq!(day_series(&*store, "input.tenure", Source::Auto).await, before_tenure);

    // Events of any age received within the retention (a backfill) are kept.
    let backfill = prediction("dep-a", T0 + 2 * DAY + 11, 5, "pro", 0.5);
    store.write(&WriteBatch { predictions: vec![backfill.clone()], ..WriteBatch::new(now) }).await.unwrap();
    apply(&*store, &retention, now).await.unwrap();
    assert_eq!(raw_count(&*store, Window { start_ms: T0 + 2 * DAY, end_ms: T0 + 3 * DAY }).await, 1);

    // Dead letters have their own clock.
    let letter = |at: i64| DeadLetter {
        received_at_ms: at,
        source: "http:x#0".into(),
        reason: "r".into(),
        raw: b"{".to_vec(),
        key: None,
    };
    store
        .write(&WriteBatch { dead_letters: vec![letter(now - 40 * DAY), letter(now - DAY)], ..WriteBatch::new(now) })
        .await
        .unwrap();
    assert_eq!(apply(&*store, &retention, now).await.unwrap().dead_letters, 1);
    assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);
}

async fn replay_rebuilds_what_the_worker_made(store: Arc<dyn Store>) {
    let (predictions, labels) = twenty_days();
    let (early, late): (Vec<_>, Vec<_>) = predictions.into_iter().partition(|p| p.start_timestamp_ms % 3 != 0);
    write(&*store, early, labels[..labels.len() / 2].to_vec()).await;
    let now = T0 + DAYS * DAY + HOUR;
    catch_up(&store, now).await;
    // Late predictions and labels, re-rolled incrementally.
    write(&*store, late, labels[labels.len() / 2..].to_vec()).await;
    assert!(catch_up(&store, now).await.minutes_rerolled > 0);
    let incremental: Vec<_> = futures::future::join_all(Resolution::ALL.map(|r| {
        let s = store.clone();
        async move { all_rows(&*s, r).await }
    }))
    .await;

    let mut total = None;
    let mut stepped = 0;
    let done = replay(store.clone(), options(), now, |t| total = Some(t), |n| stepped += n).await.unwrap();
    assert_eq!(done.from_ms, None, "nothing was removed: everything is rebuilt");
    assert_eq!((total, stepped), (Some(done.total), done.total));
    for (resolution, before) in Resolution::ALL.into_iter().zip(&incremental) {
        assert_eq!(&all_rows(&*store, resolution).await, before, "{} after replay", resolution.name());
    }

    // After retention, a replay rebuilds from the first whole day still held raw and keeps
    // what came before.
    let retention = Retention { raw: days(14), minute: None, hour: None, dead_letters: None };
    apply(&*store, &retention, now).await.unwrap();
    let kept_from = store.rollup_state().await.unwrap().raw_kept_from_ms.unwrap();
    let done = replay(store.clone(), options(), now, |_| {}, |_| {}).await.unwrap();
    let from = done.from_ms.unwrap();
    assert!(from >= kept_from && from % DAY == 0 && from - kept_from < DAY);
    for (resolution, before) in Resolution::ALL.into_iter().zip(&incremental) {
        assert_eq!(&all_rows(&*store, resolution).await, before, "{} after a partial replay", resolution.name());
    }
}

#[tokio::test]
async fn postgres_retention_drops_whole_day_partitions() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    // Partitions for the three first days, as a server running then would have made.
    for day in 0..3 {
        store.make_partition(T0 / DAY + day).await.unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(store);
    let predictions: Vec<Prediction> =
        (0..5 * 24).map(|h| prediction("dep-a", T0 + h * HOUR + 5, h, "basic", 0.5)).collect();
    let labels = vec![label(predictions[3].uuid, T0 + DAY, 1)];
    write(&*store, predictions, labels).await;
    let now = T0 + 16 * DAY + HOUR;
    catch_up(&store, now).await;
    let retention =
        driftline_rollup::Retention { raw: Some(std::time::Duration::from_secs(14 * 86_400)), ..Default::default() };
    let done = driftline_rollup::retention::apply(&*store, &retention, now).await.unwrap();
    // Two whole days are past the cut (T0 + 2 d + 1 h): their partitions are dropped; the rest
    // of the third day stays until the whole day is past it.
    assert_eq!((done.raw.partitions, done.raw.predictions, done.raw.delayed_metrics), (2, 48, 1));
    let left = store
        .read_window(driftline_store::Selection::Deployment("dep-a".into()), Window { start_ms: 0, end_ms: i64::MAX });
    let left: Vec<_> = futures::TryStreamExt::try_collect(left).await.unwrap();
    assert_eq!(left.len(), 72);
    // Their UUIDs are free again: the same events would be stored anew (and counted as late).
    let lookup = store.deployments_of(&[left[0].uuid]).await.unwrap();
    assert_eq!(lookup.len(), 1);
}
